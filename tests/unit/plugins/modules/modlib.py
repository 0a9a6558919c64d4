# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers of the module-level tests: each module's main() in this process, on real kernel state.

Root only (they make network namespaces and files for real); every test
cleans up what it made. Names start with tbm- so that nothing else on the
machine is touched.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess

import pytest

from ansible.module_utils.testing import patch_module_args


def call(main, **args):
    """main() of a module with args; (failed, result) from the JSON it prints."""
    out = io.StringIO()
    with patch_module_args(args), contextlib.redirect_stdout(out):
        with pytest.raises(SystemExit):
            main()
    result = json.loads(out.getvalue())
    return bool(result.get('failed')), result


def ns_read(netns, key):
    return subprocess.run(['ip', 'netns', 'exec', netns, 'sysctl', '-n', key], check=True,
                          stdout=subprocess.PIPE, universal_newlines=True).stdout.split()


def journal_of(path):
    with open(path) as f:
        return json.load(f)['entries']
