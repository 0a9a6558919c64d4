# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The control commands of the engine (start, run, stop, status): real processes.

`run` is how the client role starts a half under Ansible's async wrapper,
which kills its job with SIGKILL to the job's process group on timeout. The
tests play that wrapper: a parent of their own, in a fresh session, runs
`run`; `stop` must then end the engine and only the engine, and killing the
parent's group must still end the engine.
"""

import json
import os
import select
import signal
import subprocess
import sys
import time

import pytest

from enginelib import ENGINE, SERVER_ADDR, pids_alive, wait_gone

# The wrapper: runs its argv, says when it ended, then stays (the tests check it survives).
PARENT = r'''
import subprocess, sys, time
rc = subprocess.call(sys.argv[1:])
print('run exited %d' % rc, flush=True)
time.sleep(300)
'''

# A half that ignores SIGTERM (so that stop needs SIGKILL), with a child of its own,
# both pids in the file argv[1].
STUBBORN = r'''
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
kid = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])
with open(sys.argv[1] + '.tmp', 'w') as f:
    f.write('%d %d' % (os.getpid(), kid.pid))
os.rename(sys.argv[1] + '.tmp', sys.argv[1])
time.sleep(300)
'''

SLEEPER = [sys.executable, '-c', 'import time; time.sleep(300)']
PF_KTHREAD = 0x00200000


def ctl(*args, timeout=120):
    """(exit code, the JSON object it printed) of one control command."""
    proc = subprocess.run([sys.executable, ENGINE] + list(args), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=timeout,
                          check=False)
    lines = proc.stdout.strip().splitlines()
    return proc.returncode, (json.loads(lines[-1]) if lines else None)


def wait_for(pred, timeout=30, what='condition'):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError('%s not met in %d s' % (what, timeout))


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


class Wrapper(object):
    """A parent in a fresh session (its own process group) that runs `run -- argv`."""

    def __init__(self, run_dir, name, argv):
        self.pidfile = os.path.join(run_dir, name + '.json')
        self.exitfile = os.path.join(run_dir, name + '.exit.json')
        self.proc = subprocess.Popen(
            [sys.executable, '-c', PARENT, sys.executable, ENGINE, 'run', '--name', name,
             '--run-dir', run_dir, '--log', os.path.join(run_dir, name + '.log'), '--'] + argv,
            stdout=subprocess.PIPE, start_new_session=True)
        self.record = wait_for(lambda: read_json(self.pidfile), what='the pid file of run')

    def alive(self):
        return self.proc.poll() is None

    def run_exit(self, timeout=60):
        """The exit status of run, as the parent saw it (its stdout also has the half's)."""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        data = b''
        while time.monotonic() < deadline:
            for line in data.decode().splitlines():
                if line.startswith('run exited '):
                    return int(line.split()[-1])
            ready, _w, _x = select.select([fd], [], [], 1.0)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                data += chunk
        raise AssertionError('run did not end in %d s: %r' % (timeout, data[-500:]))

    def kill_group(self):
        """What the async wrapper does on timeout: SIGKILL to the job's process group."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def close(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(30)


def kill_quietly(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# ---------------------------------------------------------------- status, stop

def test_status_and_stop_do_not_create_the_run_dir(tmp_path):
    """The roles call status in check mode: it must not create anything."""
    run_dir = str(tmp_path / 'not' / 'there')
    code, st = ctl('status', '--name', 'server', '--run-dir', run_dir, '--', 'true')
    assert code == 0 and st == {'name': 'server', 'running': False, 'record': None,
                                'exit': None, 'same': False}
    code, st = ctl('stop', '--name', 'server', '--run-dir', run_dir)
    assert code == 0 and st['changed'] is False and st['state'] == 'stopped'
    assert not os.path.exists(str(tmp_path / 'not'))


def test_start_status_stop(tmp_path):
    run_dir = str(tmp_path / 'run')
    code, st = ctl('start', '--name', 'half', '--run-dir', run_dir, '--', *SLEEPER)
    assert code == 0 and st['changed'] is True and st['state'] == 'started', st
    pid = st['pid']
    try:
        assert os.getpgid(pid) == pid               # its own group
        code, again = ctl('start', '--name', 'half', '--run-dir', run_dir, '--', *SLEEPER)
        assert code == 0 and again['changed'] is False and again['pid'] == pid
        code, st = ctl('status', '--name', 'half', '--run-dir', run_dir, '--', *SLEEPER)
        assert st['running'] is True and st['same'] is True and st['record']['pid'] == pid
        code, st = ctl('stop', '--name', 'half', '--run-dir', run_dir, '--timeout', '10')
        assert code == 0 and st == {'name': 'half', 'changed': True, 'state': 'stopped',
                                    'how': 'terminated', 'pid': pid}
        exit_file = os.path.join(run_dir, 'half.exit.json')
        assert wait_for(lambda: read_json(exit_file), what='the exit file')['rc'] == 128 + 15
        assert not os.path.exists(os.path.join(run_dir, 'half.json'))
    finally:
        kill_quietly([pid])


def test_clean_removes_an_earlier_run_but_not_a_running_one(tmp_path):
    run_dir = str(tmp_path)
    files = [os.path.join(run_dir, n) for n in ('half.status.json', 'half.summary.json',
                                                'half.log', 'half.exit.json')]
    for f in files:
        with open(f, 'w') as fh:
            fh.write('{}')
    args = ['clean', '--name', 'half', '--run-dir', run_dir] + \
        ['--remove=' + f for f in files[:3]] + ['--remove', os.path.join(run_dir, 'absent')]
    code, st = ctl(*args)
    assert code == 0 and st['changed'] is True and sorted(st['removed']) == sorted(files), st
    assert not any(os.path.exists(f) for f in files)
    code, st = ctl(*args)
    assert code == 0 and st == {'name': 'half', 'changed': False, 'removed': []}
    code, st = ctl('start', '--name', 'half', '--run-dir', run_dir, '--', *SLEEPER)
    pid = st['pid']
    try:
        with open(files[0], 'w') as fh:
            fh.write('{}')
        code, st = ctl(*args)
        assert code == 2 and st['failed'] and 'half is running as pid %d' % pid in st['msg']
        assert os.path.exists(files[0]), 'nothing removed while the half runs'
    finally:
        ctl('stop', '--name', 'half', '--run-dir', run_dir, '--timeout', '10')
        kill_quietly([pid])


def test_stop_reports_the_stale_pid_file_it_removed(tmp_path):
    run_dir = str(tmp_path)
    pidfile = os.path.join(run_dir, 'client.json')
    dead = subprocess.Popen(['true'])
    dead.wait()
    with open(pidfile, 'w') as f:
        json.dump({'pid': dead.pid, 'pgid': dead.pid, 'start_time': 1, 'argv': ['x']}, f)
    code, st = ctl('stop', '--name', 'client', '--run-dir', run_dir)
    assert code == 0 and st['changed'] is True and st['state'] == 'stopped', st
    assert not os.path.exists(pidfile)
    code, st = ctl('stop', '--name', 'client', '--run-dir', run_dir)
    assert code == 0 and st['changed'] is False
    # a pid file that is not even JSON is stale too
    with open(pidfile, 'w') as f:
        f.write('{"pid": 12')
    code, st = ctl('stop', '--name', 'client', '--run-dir', run_dir)
    assert code == 0 and st['changed'] is True and not os.path.exists(pidfile)


def kernel_thread():
    """kthreadd (pid 2) when this pid namespace shows it: no signal can end it."""
    try:
        with open('/proc/2/stat') as f:
            stat = f.read()
        with open('/proc/2/comm') as f:
            name = f.read().strip()
    except OSError:
        return None
    fields = stat[stat.rindex(')') + 2:].split()
    if name != 'kthreadd' or not int(fields[6]) & PF_KTHREAD:
        return None
    return 2, int(fields[19])


def test_stop_says_when_the_process_survives(tmp_path):
    """A process that outlives SIGTERM and SIGKILL: state running, a msg, exit 1."""
    if os.geteuid() != 0:
        pytest.skip('needs root (signals a kernel thread)')
    thread = kernel_thread()
    if thread is None:
        pytest.skip('no kernel thread visible in this pid namespace')
    pid, began = thread
    pidfile = os.path.join(str(tmp_path), 'server.json')
    with open(pidfile, 'w') as f:
        json.dump({'pid': pid, 'pgid': pid, 'start_time': began, 'argv': ['x']}, f)
    code, st = ctl('stop', '--name', 'server', '--run-dir', str(tmp_path), '--timeout', '0.5')
    assert code == 1, st
    assert st['state'] == 'running' and st['failed'] is True and st['pid'] == pid
    assert 'still runs' in st['msg']
    assert os.path.exists(pidfile)          # it still runs: the record stays


# ------------------------------------------------------------------------ run

def test_stop_of_run_kills_only_the_engine_group(tmp_path):
    """SIGKILL after the timeout reaches the half and its children, never run's caller."""
    run_dir = str(tmp_path)
    pids_file = os.path.join(run_dir, 'pids')
    wrapper = Wrapper(run_dir, 'client', [sys.executable, '-c', STUBBORN, pids_file])
    try:
        half, kid = [int(x) for x in wait_for(
            lambda: os.path.exists(pids_file) and open(pids_file).read().split(),
            what='the pids of the half')]
        record = wrapper.record
        assert record['pid'] == half and record['pgid'] == half
        assert os.getpgid(half) == half != os.getpgid(wrapper.proc.pid)
        code, st = ctl('stop', '--name', 'client', '--run-dir', run_dir, '--timeout', '1')
        assert code == 0 and st['state'] == 'stopped' and st['how'] == 'killed', st
        assert wait_gone([half, kid]) == []
        assert wrapper.run_exit() == 128 + 9
        assert wrapper.alive()
        assert read_json(wrapper.exitfile)['rc'] == 128 + 9
    finally:
        wrapper.close()
        kill_quietly([int(x) for x in (open(pids_file).read().split()
                                       if os.path.exists(pids_file) else [])])


def engine_server(pair, status_file):
    return ['ip', 'netns', 'exec', pair.srv, sys.executable, ENGINE, 'server', '--listen',
            SERVER_ADDR, '--ports', '10000-10001', '--status-file', status_file,
            '--progress-interval', '0.2']


def test_run_then_stop_the_engine_leaves_the_caller(netpair, tmp_path):
    """The engine under run under a parent: stop ends every engine process, the parent stays."""
    pair = netpair.up(sources=1)
    run_dir = str(tmp_path)
    status_file = os.path.join(run_dir, 'server.status.json')
    wrapper = Wrapper(run_dir, 'server', engine_server(pair, status_file))
    pids = []
    try:
        st = wait_for(lambda: (read_json(status_file) or {}).get('ready')
                      and read_json(status_file), what='the engine ready')
        pids = st['pids']
        assert wrapper.record['pid'] == pids[0]         # ip netns exec execs the engine
        code, out = ctl('stop', '--name', 'server', '--run-dir', run_dir, '--timeout', '30')
        assert code == 0 and out['how'] == 'terminated', out
        assert wait_gone(pids) == []
        assert wrapper.run_exit() == 0
        assert wrapper.alive()
        assert read_json(wrapper.exitfile)['rc'] == 0
        assert read_json(status_file)['stopped_by'] == 'signal:SIGTERM'
    finally:
        wrapper.close()
        kill_quietly(pids)


def test_the_engine_dies_with_the_job_of_run(netpair, tmp_path):
    """The async wrapper's timeout: SIGKILL to the job's group; the engine must go too."""
    pair = netpair.up(sources=1)
    run_dir = str(tmp_path)
    status_file = os.path.join(run_dir, 'server.status.json')
    wrapper = Wrapper(run_dir, 'server', engine_server(pair, status_file))
    pids = []
    try:
        st = wait_for(lambda: (read_json(status_file) or {}).get('ready')
                      and read_json(status_file), what='the engine ready')
        pids = st['pids']
        assert len(pids) >= 3                           # supervisor, keeper, holder(s)
        wrapper.kill_group()
        assert wait_gone(pids) == []
        # it stopped as on SIGTERM: the summary is written
        assert read_json(status_file)['stopped_by'] == 'signal:SIGTERM'
        assert pids_alive([wrapper.record['pid']]) == []
    finally:
        wrapper.close()
        kill_quietly(pids)
