# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers for the load engine tests: real namespaces, real sockets.

Every namespace is named tbd-t-<unique>-{s,c}; every process the tests start
runs in its own session and is killed (whole process group) at teardown, and
the namespaces are deleted, also when a test fails.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The engine is a package directory, run as `python3 files/tcpscale COMMAND ...`.
ENGINE = os.path.join(REPO, 'files', 'tcpscale')
FILES = os.path.join(REPO, 'files')
CLOSER = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'closer.py')
COLLECTIONS = os.path.join(REPO, '.collections')
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)

HEAVY_LOCK = '/tmp/scalelab-heavy.lock'
SERVER_ADDR = '198.18.0.1'


def engine_package():
    """The engine's package (tcpscale), imported from files/ with nothing written there."""
    sys.dont_write_bytecode = True          # no files/tcpscale/__pycache__ (the roles copy it)
    if FILES not in sys.path:
        sys.path.insert(0, FILES)
    import importlib
    pkg = importlib.import_module('tcpscale')
    for name in ('cli', 'plan', 'shm', 'system', 'supervisor', 'client', 'server', 'ipplan',
                 'protocol', 'metrics'):
        importlib.import_module('tcpscale.' + name)
    return pkg


def run(argv, check=True, **kw):
    return subprocess.run(argv, check=check, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, **kw)


def ns_sysctl(ns, key, value):
    run(['ip', 'netns', 'exec', ns, 'sysctl', '-qw', '%s=%s' % (key, value)])


def nofile_limit(nofile):
    """preexec_fn: RLIMIT_NOFILE soft = hard = nofile (what a smaller host would give)."""
    def preexec():
        import resource
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    return preexec


class Engine(object):
    """One engine run (server or client half) inside a namespace."""

    def __init__(self, pair, ns, role, args, workdir, nofile=None):
        self.role = role
        self.workdir = workdir
        tag = uuid.uuid4().hex[:6]
        self.summary_file = os.path.join(workdir, '%s-%s-summary.json' % (role, tag))
        self.status_file = os.path.join(workdir, '%s-%s-status.json' % (role, tag))
        self.ready_file = os.path.join(workdir, '%s-%s-ready' % (role, tag))
        argv = [sys.executable, ENGINE, role] + list(args) + [
            '--summary-file', self.summary_file, '--status-file', self.status_file,
            '--progress-interval', '0.5']
        if role == 'server':
            argv += ['--ready-file', self.ready_file]
        self.argv = ['ip', 'netns', 'exec', ns] + argv
        preexec = nofile_limit(nofile) if nofile else None
        self.err_path = os.path.join(workdir, '%s-%s.err' % (role, tag))
        self.err = open(self.err_path, 'w')
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=self.err,
                                     universal_newlines=True, start_new_session=True,
                                     preexec_fn=preexec)
        self.stdout = None
        pair.engines.append(self)

    @property
    def pid(self):
        return self.proc.pid

    def wait_ready(self, timeout=120):
        deadline = time.monotonic() + timeout
        while not os.path.exists(self.ready_file):
            if self.proc.poll() is not None:
                raise AssertionError('server exited %s before ready: %s'
                                     % (self.proc.returncode, self.stderr()))
            if time.monotonic() > deadline:
                raise AssertionError('server not ready in %d s: %s' % (timeout, self.stderr()))
            time.sleep(0.05)

    def status(self):
        try:
            with open(self.status_file) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def wait_status(self, pred, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.status()
            if st and pred(st):
                return st
            if self.proc.poll() is not None:
                raise AssertionError('%s exited %s: %s' % (self.role, self.proc.returncode,
                                                           self.stderr()))
            time.sleep(0.1)
        raise AssertionError('status condition not met in %d s: %s' % (timeout, self.status()))

    def finish(self, timeout=180, sig=None):
        """Optionally signal, wait, and return (exit code, summary from stdout)."""
        if sig is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
        out, _err = self.proc.communicate(timeout=timeout)
        self.stdout = out
        summary = None
        for line in reversed(out.strip().splitlines()):
            if line.startswith('{'):
                summary = json.loads(line)
                break
        return self.proc.returncode, summary

    def stderr(self):
        self.err.flush()
        with open(self.err_path) as f:
            return f.read()[-4000:]

    def kill(self):
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                self.proc.wait(30)
        self.err.close()


class NetPair(object):
    """Two fresh namespaces joined by a veth pair: server 198.18.0.1, client aliases."""

    def __init__(self, workdir):
        uid = uuid.uuid4().hex[:6]
        self.srv = 'tbd-t-%s-s' % uid
        self.cli = 'tbd-t-%s-c' % uid
        self.veth_s = 'tbd%ss' % uid
        self.veth_c = 'tbd%sc' % uid
        self.workdir = workdir
        self.engines = []
        self.others = []
        self.sources = []
        self.created = []

    def up(self, sources=2, server_addrs=(SERVER_ADDR,), ipv6=False):
        for ns in (self.srv, self.cli):
            run(['ip', 'netns', 'add', ns])
            self.created.append(ns)
        run(['ip', 'link', 'add', self.veth_s, 'netns', self.srv, 'type', 'veth', 'peer',
             'name', self.veth_c, 'netns', self.cli])
        batch_s = ['link set lo up', 'link set %s up' % self.veth_s]
        for a in server_addrs:
            batch_s.append('addr add %s/15 dev %s' % (a, self.veth_s))
        self.sources = ['198.19.%d.%d' % (i // 250, i % 250 + 1) for i in range(sources)]
        batch_c = ['link set lo up', 'link set %s up' % self.veth_c]
        for a in self.sources:
            batch_c.append('addr add %s/15 dev %s' % (a, self.veth_c))
        if ipv6:
            batch_s.append('addr add fd00:5ca1::1/64 dev %s nodad' % self.veth_s)
            for i in range(2):
                batch_c.append('addr add fd00:5ca1::%x/64 dev %s nodad' % (0x100 + i, self.veth_c))
        run(['ip', '-n', self.srv, '-batch', '-'], input='\n'.join(batch_s) + '\n')
        run(['ip', '-n', self.cli, '-batch', '-'], input='\n'.join(batch_c) + '\n')
        ns_sysctl(self.cli, 'net.ipv4.ip_local_port_range', '1024 65535')
        ns_sysctl(self.srv, 'net.core.somaxconn', 65535)
        ns_sysctl(self.srv, 'net.ipv4.tcp_max_syn_backlog', 65535)
        return self

    def spawn(self, ns, argv):
        """Another program in a namespace, killed (process group) at teardown."""
        proc = subprocess.Popen(['ip', 'netns', 'exec', ns] + argv, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.others.append(proc)
        return proc

    def server(self, args, nofile=None):
        return Engine(self, self.srv, 'server', args, self.workdir, nofile)

    def client(self, args, nofile=None):
        return Engine(self, self.cli, 'client', args, self.workdir, nofile)

    def teardown(self):
        for e in self.engines:
            e.kill()
        for proc in self.others:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
        for ns in self.created:
            run(['ip', 'netns', 'del', ns], check=False)


def pids_alive(pids):
    alive = []
    for pid in pids:
        try:
            with open('/proc/%d/stat' % pid) as f:
                state = f.read().rsplit(')', 1)[1].split()[0]
            if state != 'Z':
                alive.append(pid)
        except OSError:
            pass
    return alive


def wait_gone(pids, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pids_alive(pids):
            return []
        time.sleep(0.1)
    return pids_alive(pids)
