# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The filters are thin adapters over the core (tested in tests/unit/plugins/module_utils)."""

from __future__ import annotations

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.scalelab.testbed.plugins.filter import testbed as tb
from ansible_collections.scalelab.testbed.plugins.module_utils import plan as pl
from ansible_collections.scalelab.testbed.plugins.module_utils import tuning as tu

from testlib import role_defaults


def test_filters_are_registered():
    assert set(tb.FilterModule().filters()) == {
        'testbed_plan', 'testbed_tuning', 'testbed_report', 'testbed_service_preflight'}


def test_the_filters_are_the_core():
    variables = role_defaults(testbed_connections=1000)
    plan = tb.testbed_plan(variables, ['h'], ['h'])
    assert plan == pl.build(variables, ['h'], ['h'])
    kernel = {'sysctls': {'fs.nr_open': '1048576'}, 'mem_available_kb': 1 << 24}
    assert tb.testbed_tuning(plan, 'h', kernel, variables) == tu.compute(plan, 'h', kernel, variables)


def test_tuning_needs_a_valid_plan():
    with pytest.raises(AnsibleFilterError):
        tb.testbed_tuning({'ok': False}, 'h', {}, {})
    with pytest.raises(AnsibleFilterError):
        tb.testbed_plan('not a dict', [], [])
