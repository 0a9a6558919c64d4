# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Teardown after the failed run: every host is back to the snapshot prepare
took before converge (sysctls of its namespace, limits.d, sysctl.d, systemd
units and drop-ins and the manager's defaults, nft rules, addresses, the
testbed's directories), and a second teardown changes nothing."""

import pytest

from conftest import HOSTS, playbook, recap, take_snapshot

import snapshot as snapshot_lib


@pytest.fixture(scope='module')
def teardowns():
    return [playbook('teardown.yml'), playbook('teardown.yml')]


def test_teardown_succeeds(teardowns):
    rc, out = teardowns[0]
    assert rc == 0, out[-3000:]


@pytest.mark.parametrize('name', HOSTS)
def test_the_host_is_back_to_its_snapshot(teardowns, hosts, snapshots, name):
    assert teardowns[0][0] == 0
    assert snapshot_lib.diff(snapshots[name], take_snapshot(hosts[name])) == []


def test_a_second_teardown_changes_nothing(teardowns):
    rc, out = teardowns[1]
    assert rc == 0, out[-3000:]
    counts = recap(out)
    assert sorted(counts) == sorted(HOSTS)
    assert dict((h, c['changed']) for h, c in counts.items()) == dict((h, 0) for h in HOSTS), out[-3000:]
