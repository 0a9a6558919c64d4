# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures of the fleet scenario's verifier.

The hosts are reached as Ansible reaches them: testinfra's ansible backend
on molecule's inventory (connection ssh, the run's key, ansible_host), never
``podman exec``. Only the faults act on the containers from outside (podman
stop, which no SSH session can do to itself).

The files converge and prepare left in molecule's scratch directory are
read with ../../shared/tests/verifylib.py; the playbooks are run again
(load with a fault, teardown, a start with a host down) by ``playbook()``
with molecule's own ansible.cfg and inventory.
"""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
import testinfra

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', '..', 'shared', 'tests'))
sys.path.insert(0, HERE)

from verifylib import PROJECT, install_module_utils, make_counter, read_json, scratch, target_from_env  # noqa: E402,F401  pylint: disable=wrong-import-position

SERVERS = ('server1', 'server2')
CLIENTS = ('client1', 'client2', 'client3')
HOSTS = SERVERS + CLIENTS
CLIENT_UNIT = 'scalelab-testbed-client.service'
SERVER_UNIT = 'scalelab-testbed-server.service'
RUN_DIR = '/run/scalelab_testbed'


def inventory():
    """molecule's inventory directory: its generated file, hosts.yml and group_vars linked in."""
    return str(scratch() / 'inventory')


def get_host(name):
    return testinfra.get_host('ansible://%s' % name, ansible_inventory=inventory())


def play_env():
    return dict(os.environ, ANSIBLE_CONFIG=str(scratch() / 'ansible.cfg'), ANSIBLE_NOCOLOR='1',
                ANSIBLE_FORCE_COLOR='0', ANSIBLE_STDOUT_CALLBACK='default', PYTHONUNBUFFERED='1')


def play_argv(playbook, *extra):
    return [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), '-i', inventory(),
            str(PROJECT / playbook)] + list(extra)


def playbook(playbook_name, *extra, timeout=1200):
    """Run a playbook of the collection on the fleet; (rc, output)."""
    proc = subprocess.run(play_argv(playbook_name, *extra), cwd=str(PROJECT), env=play_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
                          check=False)
    return proc.returncode, proc.stdout.decode('utf-8', 'replace')


class BackgroundPlay:
    """A playbook run in the background while the test acts on the fleet; its
    output is read as it comes (wait_for), and the run is stopped if the test
    ends first."""

    def __init__(self, playbook_name, *extra):
        self.proc = subprocess.Popen(play_argv(playbook_name, *extra), cwd=str(PROJECT), env=play_env(),
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.lines = []
        self._seen = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for raw in self.proc.stdout:
            self.lines.append(raw.decode('utf-8', 'replace'))

    @property
    def output(self):
        return ''.join(self.lines)

    def wait_for(self, pattern, timeout=600):
        """The next output line (after the one an earlier call returned) matching
        pattern, a regular expression."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while self._seen < len(self.lines):
                line = self.lines[self._seen]
                self._seen += 1
                if regex.search(line):
                    return line
            if self.proc.poll() is not None and not self._reader.is_alive() \
                    and self._seen == len(self.lines):
                raise AssertionError('the play ended (rc %s) before %r:\n%s'
                                     % (self.proc.returncode, pattern, self.output[-4000:]))
            time.sleep(0.2)
        raise AssertionError('no %r within %d s:\n%s' % (pattern, timeout, self.output[-4000:]))

    def finish(self, timeout=900):
        """(rc, output) once the play has ended."""
        self.proc.wait(timeout=timeout)
        self._reader.join(timeout=30)
        return self.proc.returncode, self.output

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.finish(timeout=300)


def recap(output):
    """{host: {'ok': n, 'changed': n, 'failed': n, 'unreachable': n, ...}} of the PLAY RECAP."""
    hosts = {}
    for line in output[output.rindex('PLAY RECAP'):].splitlines()[1:]:
        m = re.match(r'^(\S+)\s+:\s+(ok=.*)$', line.strip())
        if m:
            hosts[m.group(1)] = dict((k, int(v)) for k, v in re.findall(r'(\w+)=(\d+)', m.group(2)))
    return hosts


def when_reachable(host, command, *args, timeout=60):
    """host.run(command), once the host answers over SSH again (after a dropped
    connection the old control connection may fail a command or two)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = host.run(command, *args)
            if result.rc == 0 and result.stdout.strip():
                return result.stdout
        except RuntimeError:          # ssh itself failed (exit 255)
            result = None
        if time.monotonic() > deadline:
            raise AssertionError('%s: %r gave no answer within %d s (last: %r)'
                                 % (host.backend.hostname, command, timeout, result))
        time.sleep(1)


def take_snapshot(host):
    """snapshot.py run on host (over SSH), as prepare.yml ran it."""
    with open(os.path.join(HERE, 'snapshot.py')) as f:
        source = f.read()
    return json.loads(host.check_output('python3 -c %s', source))


def podman(*argv):
    env = dict(os.environ, CONTAINERS_CONF=str(PROJECT / 'molecule' / 'containers.conf'))
    return subprocess.run(['podman'] + list(argv), env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, check=False)


@pytest.fixture(scope='session')
def target():
    return target_from_env()


@pytest.fixture(scope='session')
def hosts():
    return dict((name, get_host(name)) for name in HOSTS)


@pytest.fixture(scope='session')
def plan():
    return read_json('plan.json')


@pytest.fixture(scope='session')
def tuning():
    return dict((name, read_json('tuning-%s.json' % name)) for name in HOSTS)


@pytest.fixture(scope='session')
def report():
    return read_json('report/report.json')


@pytest.fixture(scope='session')
def snapshots():
    """The snapshot of each host taken by prepare.yml, before converge."""
    return dict((name, read_json('snapshot-%s.json' % name)) for name in HOSTS)


@pytest.fixture(scope='session')
def sockdiag(hosts):
    """count(name, **kwargs) -> {state: count}, counted on the host by the
    collection's sockdiag.py (copied in as a package, see verifylib)."""
    counters, installed = {}, []
    try:
        def count(name, **kwargs):
            if name not in counters:
                directory = install_module_utils(hosts[name], 'sockdiag')
                installed.append((hosts[name], directory))
                counters[name] = make_counter(hosts[name], directory)
            return counters[name](**kwargs)
        yield count
    finally:
        for host, directory in installed:
            host.run('rm -rf %s', directory)
