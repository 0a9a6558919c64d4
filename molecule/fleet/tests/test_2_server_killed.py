# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Faults during a run on the fleet: the load run again (site.yml --tags load),
and while every client holds its share,

1. every SSH session to client2 is killed (a dropped connection, as a flaky
   network or a restarted bastion does it): its client half, a systemd unit,
   goes on holding, and the play goes on over a new connection;
2. then server1's unit is killed (`systemctl kill`): the play fails, and the
   report shows what each of the five hosts reached and which one failed.

Teardown after this is the next file's test.
"""

import json
import time

import pytest

from conftest import CLIENT_UNIT, CLIENTS, SERVER_UNIT, SERVERS, BackgroundPlay, podman, scratch, when_reachable

HOLD = 90


def _show(host, unit, *props):
    out = when_reachable(host, 'systemctl show %s --property=%s', unit, ','.join(props))
    return dict(line.split('=', 1) for line in out.splitlines())


def _wait_inactive(host, unit, timeout=120):
    deadline = time.monotonic() + timeout
    while _show(host, unit, 'ActiveState')['ActiveState'] in ('active', 'deactivating'):
        if time.monotonic() > deadline:
            break
        time.sleep(1)
    return _show(host, unit, 'ActiveState', 'Result')


@pytest.fixture(scope='module')
def killed_run(hosts, target):
    """Runs the load with both faults; what the test saw, the play's rc and output, the report."""
    report_dir = scratch() / 'report-server-killed'
    share = '{:,}'.format(target // len(CLIENTS))
    seen = {}
    with BackgroundPlay('site.yml', '--tags', 'load', '-e', 'client_hold=%d' % HOLD,
                        '-e', 'report_dir=%s' % report_dir) as play:
        play.wait_for(r'client2: holding %s / %s established' % (share, share))
        client2 = hosts['client2']
        seen['pid_before'] = _show(client2, CLIENT_UNIT, 'MainPID')['MainPID']
        seen['kill_ssh'] = podman('exec', 'client2', 'pkill', '--signal', 'KILL', '--full', '^sshd: root')
        time.sleep(3)
        seen['after_drop'] = _show(client2, CLIENT_UNIT, 'ActiveState', 'MainPID')
        # the play carries on with client2 over a new connection
        play.wait_for(r'client2: holding %s / %s established' % (share, share), timeout=120)
        seen['kill_server'] = hosts['server1'].run('systemctl kill %s', SERVER_UNIT)
        seen['server1_after'] = _wait_inactive(hosts['server1'], SERVER_UNIT)
        rc, out = play.finish()
    with open(str(report_dir / 'report.json')) as f:
        report = json.load(f)
    return seen, rc, out, report


def test_a_dropped_ssh_connection_does_not_end_the_client_half(killed_run):
    seen = killed_run[0]
    assert seen['kill_ssh'].returncode == 0, seen['kill_ssh'].stdout      # sessions were there, and killed
    assert seen['after_drop']['ActiveState'] == 'active'
    assert seen['after_drop']['MainPID'] == seen['pid_before'] != '0'


def test_client2_held_its_share_until_the_server_went(killed_run, target):
    report = killed_run[3]
    client2 = report['clients']['client2']
    assert client2['manager'] == 'systemd' and not client2['summary_missing']
    assert client2['reached'] is True and client2['verified_client'] == target // len(CLIENTS)
    assert client2['exit'] != 'was killed by SIGHUP'


def test_killing_a_server_mid_hold_fails_the_play(killed_run, target):
    seen, rc, out, report = killed_run
    assert seen['kill_server'].rc == 0 and seen['server1_after']['ActiveState'] != 'active'
    assert rc != 0, out[-3000:]
    assert 'The run did not pass (target {:,})'.format(target) in out
    assert report['verified_ok'] is False


def test_the_report_shows_what_each_host_reached_and_which_failed(killed_run, target):
    report = killed_run[3]
    share = target // len(CLIENTS)
    assert sorted(report['clients']) == list(CLIENTS) and sorted(report['servers']) == list(SERVERS)
    # at the start of the hold: every host had its part
    assert [report['clients'][c]['verified_client'] for c in CLIENTS] == [share] * len(CLIENTS)
    assert [report['servers'][s]['verified_server'] for s in SERVERS] == [target // len(SERVERS)] * 2
    # at the end: server1 was gone, server2 still held its half
    assert report['servers']['server1']['running_at_end'] is False
    assert not report['servers']['server1']['verified_server_end']
    assert report['servers']['server2']['running_at_end'] is True
    assert report['servers']['server2']['verified_server_end'] == target // len(SERVERS)
    assert 'the server half on server1 was not running at the end of the hold' in report['reasons']
    assert not any('server2' in r for r in report['reasons']), report['reasons']
    # each client lost what it had on server1 (its connections to server2 held)
    for name in CLIENTS:
        entry = report['clients'][name]
        assert entry['held_ok'] is False
        assert 0 < entry['dropped_during_hold'] < share, entry
    html = (scratch() / 'report-server-killed' / 'report.html').read_text()
    assert 'Why the run failed' in html
