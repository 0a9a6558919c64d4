# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A client host is down when the play starts (its container stopped): site.yml
fails before it changes any host, names the host, and does not split the
target over the others. Runs on the torn-down fleet, so any change would show
against the snapshots of prepare."""

import pytest

from conftest import HOSTS, playbook, podman, recap, take_snapshot, when_reachable

import snapshot as snapshot_lib

DOWN = 'client3'


@pytest.fixture(scope='module')
def run_with_a_host_down(hosts):
    stop = podman('stop', '--time', '30', DOWN)
    assert stop.returncode == 0, stop.stdout
    try:
        yield playbook('site.yml')
    finally:
        # back up for destroy (and for a rerun of verify)
        start = podman('start', DOWN)
        assert start.returncode == 0, start.stdout
        when_reachable(hosts[DOWN], 'systemctl is-system-running --wait', timeout=120)


def test_the_play_fails_and_names_the_host(run_with_a_host_down):
    rc, out = run_with_a_host_down
    assert rc != 0, out[-3000:]
    assert '%s cannot be reached' % DOWN in out, out[-3000:]
    assert 'does not split the target over the others' in out
    counts = recap(out)
    assert counts[DOWN]['unreachable'] == 1


def test_no_host_was_changed(run_with_a_host_down):
    counts = recap(run_with_a_host_down[1])
    assert dict((h, c['changed']) for h, c in counts.items()) == dict((h, 0) for h in HOSTS)
    # the run stopped in its first play, the validation
    assert 'PLAY [Provision the testbed]' not in run_with_a_host_down[1]


@pytest.mark.parametrize('name', [h for h in HOSTS if h != DOWN])
def test_the_other_hosts_are_as_before(run_with_a_host_down, hosts, snapshots, name):
    assert snapshot_lib.diff(snapshots[name], take_snapshot(hosts[name])) == []
