# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""site.yml and teardown.yml for real, on this host (root), in order.

The module snapshots the kernel keys and files the testbed may touch, then:
bad variables and an unreachable target fail before anything changes; check
mode changes nothing; site.yml reaches and verifies 150,000 connections
(above the 65,535 of one (source, destination, port) from one client
namespace) and writes the report; a second provisioning run changes nothing;
a run whose server half is gone still writes a report and fails; teardown
puts the snapshot back. The whole module holds /tmp/scalelab-heavy.lock: it
runs above 50,000 connections, and the one-box names (tb-server, tb-client)
are shared by every checkout on the machine.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from xml.etree import ElementTree

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import browser  # noqa: E402  pylint: disable=wrong-import-position
import prom  # noqa: E402  pylint: disable=wrong-import-position
import snapshot  # noqa: E402  pylint: disable=wrong-import-position

TARGET = 150000
LOCK = '/tmp/scalelab-heavy.lock'
# Kept after the run (tests/output is ignored by git): the screenshots of the report.
ARTEFACTS = os.environ.get('SCALELAB_ARTEFACTS',
                           os.path.join(REPO, 'tests', 'output', 'artefacts'))
CLIENT_STATUS = '/run/scalelab_testbed/client.status.json'
SERVER_STATUS = '/run/scalelab_testbed/server.status.json'
CLOSER = os.path.join(REPO, 'tests', 'engine', 'closer.py')
OURS = ('tb-server', 'tb-client')
# other helpers' tests write files with these prefixes on the shared machine
FOREIGN = re.compile(r'/tb[a-d]-')

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason='needs root (namespaces, sysctls)'),
]


def playbook(args, reports, timeout=1800, wrapper=()):
    """Run ansible-playbook from the checkout (under the wrapper command, if any); returns (rc, output)."""
    cmd = list(wrapper) + [os.path.join(REPO, '.venv', 'bin', 'ansible-playbook')] + args + [
        '-e', 'report_base_dir=%s' % reports,
        '-e', 'client_fetch_dir=%s' % os.path.join(reports, '.fetched')]
    env = dict(os.environ, ANSIBLE_NOCOLOR='1', ANSIBLE_FORCE_COLOR='0',
               ANSIBLE_STDOUT_CALLBACK='default', PYTHONUNBUFFERED='1')
    proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=timeout, check=False)
    return proc.returncode, proc.stdout.decode('utf-8', 'replace')


def recap(output):
    """{host: {'ok': n, 'changed': n, 'failed': n, ...}} from the PLAY RECAP."""
    hosts = {}
    text = output[output.rindex('PLAY RECAP'):]
    for line in text.splitlines()[1:]:
        m = re.match(r'^(\S+)\s+:\s+(.*)$', line.strip())
        if m:
            hosts[m.group(1)] = dict((k, int(v)) for k, v in re.findall(r'(\w+)=(\d+)', m.group(2)))
    return hosts


def differences(before):
    after = snapshot.snapshot()
    return [d for d in snapshot.diff(before, after) if not FOREIGN.search(d)]


def ours_present():
    return [n for n in OURS if os.path.exists('/var/run/netns/' + n)]


@pytest.fixture(scope='module')
def pristine(tmp_path_factory):
    """The lock, the snapshot before anything; teardown at the end whatever happened."""
    with open(LOCK, 'a') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ours_present() or os.path.exists('/var/lib/scalelab_testbed'):
            pytest.skip('a testbed is already set up on this host (run teardown.yml first)')
        reports = str(tmp_path_factory.mktemp('reports'))
        before = snapshot.snapshot()
        state = {'before': before, 'reports': reports}
        try:
            yield state
        finally:
            stop_closer(state)
            if ours_present() or os.path.exists('/var/lib/scalelab_testbed'):
                playbook(['teardown.yml'], reports)


@pytest.mark.parametrize('extra, name', [
    ('testbed_connections=many', 'testbed_connections'),
    ('topology_mode=bridge', 'topology_mode'),
    ('tuning_conntrack=off', 'tuning_conntrack'),
    ('client_hold=forever', 'client_hold'),
    ('server_manager=init', 'server_manager'),
    ('restore_remove_files=perhaps', 'restore_remove_files'),
    ('client_workers=abc', 'client_workers'),
    ('client_hold_tolerance=1.5', 'client_hold_tolerance'),
    ('client_metrics_listen=127.0.0.1', 'client_metrics_listen'),
    ('server_metrics_dir=/nonexistent/textfile', 'server_metrics_dir'),
    ('client_tls=true client_tls_verify=true', 'client_tls_verify'),
])
def test_bad_variables_fail_in_validation_before_any_change(pristine, extra, name):
    rc, out = playbook(['site.yml', '-e', extra], pristine['reports'])
    assert rc != 0
    assert 'Validate the' in out and name in out
    # the validation play is the first one and nothing after it ran
    assert 'PLAY [Provision the testbed]' not in out
    assert differences(pristine['before']) == []
    assert ours_present() == []


def test_a_metrics_port_in_use_fails_in_preflight(pristine):
    taken = socket.socket()
    taken.bind(('127.0.0.1', 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        rc, out = playbook(['site.yml', '-e', 'client_metrics_listen=127.0.0.1:%d' % port],
                           pristine['reports'])
    finally:
        taken.close()
    assert rc != 0
    assert 'client_metrics_listen 127.0.0.1:%d: port %d already has a listening socket' % (port, port) \
        in ' '.join(out.split())
    assert 'PLAY [Provision the testbed]' not in out
    assert differences(pristine['before']) == []
    assert ours_present() == []


def test_unreachable_target_fails_in_preflight_with_the_arithmetic(pristine):
    rc, out = playbook(['site.yml', '-e', 'testbed_connections=%d' % TARGET,
                        '-e', 'topology_server_port_count=2', '-e', 'topology_client_source_max=1'],
                       pristine['reports'])
    assert rc != 0
    assert 'Preflight (topology)' in out
    assert '1 source address(es) x 1 destination(s) x 2 server port(s) x 16,128' in out
    assert differences(pristine['before']) == []
    assert ours_present() == []


def test_memory_preflight_fails_before_any_change(pristine):
    rc, out = playbook(['site.yml', '-e', 'testbed_connections=%d' % TARGET,
                        '-e', 'tuning_kernel_bytes_per_connection=2000000'], pristine['reports'])
    assert rc != 0
    assert 'Preflight (tuning)' in out and 'cannot hold the target in memory' in out
    assert 'MemAvailable' in out
    assert differences(pristine['before']) == []
    assert ours_present() == []


def test_check_mode_changes_nothing(pristine):
    rc, out = playbook(['site.yml', '--check', '--skip-tags', 'load',
                        '-e', 'testbed_connections=%d' % TARGET], pristine['reports'])
    assert rc == 0, out[-3000:]
    assert recap(out)['localhost']['changed'] > 0     # it says what it would do
    assert differences(pristine['before']) == []
    assert ours_present() == []


def test_site_reaches_and_verifies_the_target(pristine, tmp_path):
    """The main run, watched live by a real Prometheus scraping the client half's HTTP
    endpoint (opened in the host's namespace), with the textfile written beside it."""
    port = prom.free_port()
    textfile = tmp_path / 'textfile'
    textfile.mkdir()
    with prom.prometheus(['127.0.0.1:%d' % port], str(tmp_path / 'prometheus')) as url:
        rc, out = playbook(['site.yml', '-e', 'testbed_connections=%d' % TARGET,
                            '-e', 'client_metrics_listen=127.0.0.1:%d' % port,
                            '-e', 'client_metrics_dir=%s' % textfile], pristine['reports'])
        assert rc == 0, out[-5000:]
        time.sleep(2)
        peak = prom.query(url, 'max_over_time(tcpscale_client_established[30m])')
        samples = prom.query(url, 'max_over_time(tcpscale_client_connect_latency_seconds_count[30m])')
        p99 = prom.query(url, 'histogram_quantile(0.99, max_over_time('
                              'tcpscale_client_connect_latency_seconds_bucket[30m]))')
        up = prom.query(url, 'max_over_time(up[30m])')
    print('prometheus: max_over_time(tcpscale_client_established[30m]) = %s; connect latency '
          'samples %s; p99 %s s' % (peak, samples, p99))
    assert [v for _m, v in up] == [1.0]
    assert [v for _m, v in peak] == [float(TARGET)]
    assert [v for _m, v in samples] == [float(TARGET)]
    assert p99 and 0 < p99[0][1] < 30
    rc, msg = prom.check_metrics(str(textfile / 'tcpscale_client.prom'))
    assert rc == 0, msg
    latest = os.path.join(pristine['reports'], 'latest')
    with open(os.path.join(latest, 'report.json')) as f:
        report = json.load(f)
    assert report['target'] == TARGET
    assert report['verified'] >= TARGET
    assert report['verified_server_side'] >= TARGET and report['verified_client_side'] >= TARGET
    assert report['verified_ok'] and report['reached'] and report['reasons'] == []
    assert report['verified_end_server_side'] >= TARGET
    assert report['verified_end_client_side'] >= TARGET
    assert report['lost_workers'] == [] and report['dropped'] == 0
    assert report['timeline'] and report['timeline'][-1][1] >= TARGET
    # the hold starts when the clients reached their share, and the count at its start
    # runs inside it: counted after the hold's start, the end count client_hold later
    client = report['clients']['localhost']
    hold_from = client['hold_started_at']
    assert client['counted_at']['start'] > hold_from
    # client_hold 10 (the default); the hold's last poll may end it up to 0.2 s early
    assert client['counted_at']['end'] >= hold_from + 10 - 0.2
    with open(os.path.join(latest, 'report.html')) as f:
        html = f.read()
    assert '{:,}'.format(TARGET) in html
    # a real browser draws the plots of the run and loads nothing
    shown = browser.check_report(os.path.join(latest, 'report.html'),
                                 os.path.join(ARTEFACTS, 'test_site'))
    print('report rendered by chromium: plots %s; screenshots %s'
          % (shown['plots'], ' '.join(shown['screenshots'])))
    assert report['connect_latency']['count'] == TARGET
    assert report['series']['established_total'][-1][1] >= TARGET
    assert max(v for _t, v in report['series']['connections_per_s']) > 0
    # the JUnit verdict parses with a standard parser and agrees with report.json
    suite = ElementTree.parse(os.path.join(latest, 'report.junit.xml')).getroot()
    cases = suite.findall('.//testcase')
    assert [c.get('name') for c in cases] == [
        'localhost: share reached and verified',
        'run: %s connections verified' % '{:,}'.format(TARGET)]
    assert suite.get('failures') == '0' and not suite.findall('.//failure')
    with open(os.path.join(latest, 'hosts', 'localhost.client.json')) as f:
        assert json.load(f)['reached'] is True
    # the progress of the run was shown
    assert re.search(r'localhost: [\d,]+ / 150,000 established', out)
    assert '%s connections reached and verified' % '{:,}'.format(TARGET) in out
    assert re.search(r'localhost: holding 150,000 / 150,000 established', out)


def test_second_provisioning_changes_nothing(pristine):
    rc, out = playbook(['site.yml', '--skip-tags', 'load', '-e', 'testbed_connections=%d' % TARGET],
                       pristine['reports'])
    assert rc == 0, out[-3000:]
    assert recap(out)['localhost']['changed'] == 0, re.findall(r'changed: .*', out)


def test_check_mode_on_a_provisioned_host_predicts_no_change(pristine):
    rc, out = playbook(['site.yml', '--check', '--skip-tags', 'load',
                        '-e', 'testbed_connections=%d' % TARGET], pristine['reports'])
    assert rc == 0, out[-3000:]
    assert recap(out)['localhost']['changed'] == 0, re.findall(r'changed: .*', out)


@contextlib.contextmanager
def run_in_background(args, reports):
    """A play that runs while the test acts on the host; killed if the test fails."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(CLIENT_STATUS)        # a stale one from the previous run says "reached"
    cmd = [os.path.join(REPO, '.venv', 'bin', 'ansible-playbook')] + args + [
        '-e', 'report_base_dir=%s' % reports,
        '-e', 'client_fetch_dir=%s' % os.path.join(reports, '.fetched')]
    env = dict(os.environ, ANSIBLE_NOCOLOR='1', ANSIBLE_FORCE_COLOR='0',
               ANSIBLE_STDOUT_CALLBACK='default', PYTHONUNBUFFERED='1')
    play = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield play
    finally:
        if play.poll() is None:
            os.killpg(play.pid, signal.SIGTERM)
            play.communicate(timeout=300)


def wait_for_the_hold(play, timeout=300):
    """Until the client half says it reached its target, and a little more (the count)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert play.poll() is None, play.stdout.read().decode()[-3000:]
        try:
            with open(CLIENT_STATUS) as f:
                if json.load(f).get('reached'):
                    time.sleep(4)
                    return
        except (OSError, ValueError):
            pass
        time.sleep(0.3)
    raise AssertionError('the client half did not reach its target')


def pids_named(comm):
    out = subprocess.run(['pgrep', '-x', comm], stdout=subprocess.PIPE,
                         check=False).stdout.decode().split()
    return [int(p) for p in out]


def report_of_run(reports):
    with open(os.path.join(reports, 'latest', 'report.json')) as f:
        return json.load(f)


def busiest_holder():
    """(pid, worker name, connections) of the server holder that holds the most."""
    with open(SERVER_STATUS) as f:
        holders = json.load(f)['holders']
    best = max(holders, key=lambda h: h['held'])
    return best['pid'], best['worker'], best['held']


def test_a_holder_killed_during_the_hold_fails_the_run_and_is_named(pristine):
    with run_in_background(['site.yml', '--tags', 'load', '-e', 'testbed_connections=30000',
                            '-e', 'client_hold=30'], pristine['reports']) as play:
        wait_for_the_hold(play)
        holder, worker, held = busiest_holder()
        assert held > 0 and worker.startswith('s')
        os.kill(holder, signal.SIGKILL)
        out = play.communicate(timeout=600)[0].decode()
    assert play.returncode != 0, out[-3000:]
    report = report_of_run(pristine['reports'])
    assert not report['verified_ok']
    assert report['verified_server_side'] == 30000 and report['verified_client_side'] == 30000
    lost = report['lost_workers']
    assert len(lost) == 1 and lost[0]['pid'] == holder and lost[0]['half'] == 'server'
    assert lost[0]['worker'] == worker and lost[0]['held'] == held and lost[0]['at_iso']
    assert report['verified_end'] == 30000 - held
    assert report['dropped_during_hold'] == held
    assert any('lost worker %s (pid %d, killed by SIGKILL)' % (worker, holder) in r
               for r in report['reasons'])
    assert 'The run did not pass (target 30,000)' in out
    # the server half kept the others, and replaced the lost holder
    with open(SERVER_STATUS) as f:
        status = json.load(f)
    assert status['final'] is False and status['listening'] == status['endpoints']


def test_the_client_supervisor_killed_fails_the_run_with_a_report(pristine):
    with run_in_background(['site.yml', '--tags', 'load', '-e', 'testbed_connections=20000',
                            '-e', 'client_hold=30'], pristine['reports']) as play:
        wait_for_the_hold(play)
        os.kill(pids_named('tcpscale-client')[0], signal.SIGKILL)
        out = play.communicate(timeout=600)[0].decode()
    assert play.returncode != 0, out[-3000:]
    report = report_of_run(pristine['reports'])
    client = report['clients']['localhost']
    assert client['exit'] == 'was killed by SIGKILL' and client['summary_missing']
    assert 'client localhost wrote no summary: its half was killed by SIGKILL' in report['reasons']
    assert report['verified_client_side'] == 20000 and report['verified_end'] == 0
    with open(os.path.join(pristine['reports'], 'latest', 'report.html')) as f:
        assert 'Why the run failed' in f.read()


def test_a_failed_run_still_writes_its_report_and_fails(pristine):
    # the server half goes away: every connect is refused
    stop = subprocess.run([sys.executable, '/opt/scalelab_testbed/tcpscale', 'stop', '--name',
                           'server', '--run-dir', '/run/scalelab_testbed'],
                          stdout=subprocess.PIPE, check=False)
    assert json.loads(stop.stdout)['changed'] is True
    listening = subprocess.run(['ip', 'netns', 'exec', 'tb-server', 'ss', '-Hltn'],
                               stdout=subprocess.PIPE, check=True).stdout.decode()
    assert listening.strip() == ''
    rc, out = playbook(['site.yml', '--tags', 'load', '-e', 'testbed_connections=3000',
                        '-e', 'client_retries=0', '-e', 'client_connect_timeout=2'],
                       pristine['reports'])
    assert rc != 0
    assert 'The run did not pass (target 3,000)' in out
    assert 'client localhost reached 0 of 3,000 at most' in out
    with open(os.path.join(pristine['reports'], 'latest', 'report.json')) as f:
        report = json.load(f)
    assert report['target'] == 3000 and not report['verified_ok'] and not report['reached']
    assert report['clients']['localhost']['rc'] == 1
    assert 'ECONNREFUSED' in report['errors']


def test_a_server_closing_idle_connections_fails_the_run_and_counts_the_drops(pristine):
    # the server half is stopped (test above); a server that is not the engine takes its
    # endpoints and closes every connection 5 s after accepting it (an idle timeout)
    closer = subprocess.Popen(['ip', 'netns', 'exec', 'tb-server', sys.executable, CLOSER,
                               '--listen', '10.240.0.1', '--ports', '5001-5016',
                               '--close-after', '5'], start_new_session=True)
    pristine['closer'] = closer
    time.sleep(1)
    rc, out = playbook(['site.yml', '--tags', 'load', '-e', 'testbed_connections=3000',
                        '-e', 'client_hold=10'], pristine['reports'])
    assert rc != 0
    report = report_of_run(pristine['reports'])
    assert report['verified_client_side'] == 3000 and report['verified_end'] == 0
    assert report['dropped'] == 3000 and report['errors'] == {'peer_closed': 3000}
    assert report['clients']['localhost']['dropped_during_hold'] == 3000
    assert any('ended by the peer during the hold: 3,000' in r for r in report['reasons'])
    assert re.search(r'holding [\d,]+ / 3,000 established,.*?ended\s+by\s+the\s+peer', out, re.S)
    assert 'the server half on localhost was not running at the end of the hold' \
        in report['reasons']
    assert report['plot']['drops']


def test_a_server_that_never_gets_ready_still_gets_a_report(pristine):
    # the closer still holds every server endpoint: the server half cannot listen
    assert pristine.get('closer') is not None, 'runs after the closer test'
    rc, out = playbook(['site.yml', '--skip-tags', 'load', '-e', 'server_ready_timeout=8',
                        '-e', 'testbed_connections=3000'], pristine['reports'])
    stop_closer(pristine)
    assert rc != 0
    report = report_of_run(pristine['reports'])
    assert not report['verified_ok']
    failure = report['failures'][0]
    assert failure['host'] == 'localhost' and failure['at']
    assert 'did not get ready' in failure['message']
    assert 'Address already in use' in failure['message']
    assert 'did not get ready' in out and 'report.html' in out


def stop_closer(state):
    closer = state.pop('closer', None)
    if closer is not None and closer.poll() is None:
        os.killpg(closer.pid, signal.SIGKILL)
        closer.wait(30)


def test_teardown_puts_the_host_back(pristine):
    rc, out = playbook(['teardown.yml'], pristine['reports'])
    assert rc == 0, out[-3000:]
    assert ours_present() == []
    assert not os.path.exists('/var/lib/scalelab_testbed')
    assert not os.path.exists('/opt/scalelab_testbed')
    assert differences(pristine['before']) == []
    # and again: nothing left to do
    rc, out = playbook(['teardown.yml'], pristine['reports'])
    assert rc == 0 and recap(out)['localhost']['changed'] == 0, out[-3000:]
