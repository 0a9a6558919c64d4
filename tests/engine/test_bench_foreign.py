# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""benchmarks/connections.py: --idle-descriptors (helper processes really hold the
descriptors asked for, and nothing is left behind, also when a helper cannot open its
share), the ramp timeline every contender gets (RampCounter: the client namespace's
sockets), and from it the rate and the CPU of other processes in the first and the last
10% of the ramp (ramp_tenths, foreign_cpu_by_window)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from enginelib import REPO

sys.path.insert(0, os.path.join(REPO, 'benchmarks'))


def devnull_fds(pid):
    fd_dir = '/proc/%d/fd' % pid
    n = 0
    for name in os.listdir(fd_dir):
        try:
            if os.readlink(os.path.join(fd_dir, name)) == os.devnull:
                n += 1
        except OSError:
            pass
    return n


def test_idle_descriptors_are_held_by_helpers_and_released(monkeypatch):
    import connections
    monkeypatch.setattr(connections, 'BASE_PER_PROC', 1000)
    idle = connections.IdleDescriptors()
    try:
        pids = idle.start(2500)
        assert idle.counts() == [1000, 1000, 500]
        # each helper holds its share of /dev/null (stdin and stdout are pipes; stderr is
        # this test's, which may itself be /dev/null: allow one more)
        for pid, k in zip(pids, idle.counts()):
            assert k <= devnull_fds(pid) <= k + 1
    finally:
        idle.stop()
    assert idle.procs == []
    for pid in pids:
        assert not os.path.exists('/proc/%d' % pid)


def test_a_helper_that_cannot_open_its_share_fails_the_start_and_leaves_nothing(monkeypatch):
    import connections
    monkeypatch.setattr(connections, 'BASE_PER_PROC', 10 ** 7)     # above any RLIMIT_NOFILE
    idle = connections.IdleDescriptors()
    children = '/proc/%d/task/%d/children' % (os.getpid(), os.getpid())
    with open(children) as f:
        before = f.read().split()
    with pytest.raises(connections.BenchError, match='could not open'):
        idle.start(10 ** 7)
    assert idle.procs == []
    with open(children) as f:
        assert f.read().split() == before


def test_the_foreign_sampler_puts_a_busy_process_cpu_in_its_window():
    import connections
    spin = subprocess.Popen([sys.executable, '-c', 'while True: pass'])
    try:
        time.sleep(0.3)
        sampler = connections.ForeignSampler(connections.process_cpu(), ours=set())
        quiet = connections.ForeignSampler(connections.process_cpu(), ours={spin.pid})
        for s in (sampler, quiet):
            s.sample()
        t0 = time.monotonic()
        time.sleep(1.5)
        t1 = time.monotonic()
        for s in (sampler, quiet):
            s.sample()
    finally:
        spin.kill()
        spin.wait()
    busy = sampler.window(t0, t1)
    # the spinning process had most of a CPU for 1.5 s (this machine has 2)
    assert 0.9 <= busy['seconds'] <= 1.6, busy
    assert busy['share_of_cpus_pct'] >= 90.0 / (os.cpu_count() or 1), busy
    # the same window without it: the spinner is the benchmark's own here
    assert quiet.window(t0, t1)['seconds'] < busy['seconds'] - 0.8
    # outside the samples there is no figure, not a guess
    assert sampler.window(t0 - 60, t1) is None


def test_the_first_and_last_tenth_come_from_the_ramp_timeline():
    import connections
    sampler = connections.ForeignSampler({}, ours=set())
    now = time.monotonic()
    # 100 ticks per second of other processes' CPU, sampled from now - 10 s to now + 1 s
    sampler.samples = [(now - 10 + i, i * 100.0) for i in range(12)]
    # the client namespace's sockets, 100 a second from now - 10 s (the go) to now
    samples = [(now - 10 + i, i * 100) for i in range(11)]
    marks = connections.ramp_marks(samples, now - 10, 1000)
    assert marks == pytest.approx([now - 10, now - 9, now - 1, now])
    fw = connections.foreign_by_window(sampler, marks)
    hz = float(os.sysconf('SC_CLK_TCK'))
    for w in ('first_10pct', 'last_10pct'):
        assert abs(fw[w]['seconds'] - 100.0 / hz) < 0.02, fw
    tenths = connections.ramp_tenths(marks, 1000)
    assert tenths == {'first_10pct_per_s': 100.0, 'last_10pct_per_s': 100.0,
                      'last_vs_first': 1.0}
    # a ramp that did not reach its target has no marks, so no figures
    assert connections.ramp_marks(samples, now - 10, 2000) is None
    assert connections.foreign_by_window(sampler, None) is None
    assert connections.ramp_tenths(None, 2000) is None


def test_a_ramp_that_slows_down_has_a_last_tenth_slower_than_its_first():
    import connections
    # 200 sockets a second up to 500, then 50 a second up to 1000
    samples = [(float(t), min(200 * t, 500)) for t in range(0, 4)]
    samples += [(2.5 + t, 500 + 50 * t) for t in range(1, 11)]
    tenths = connections.ramp_tenths(connections.ramp_marks(samples, 0.0, 1000), 1000)
    assert tenths['first_10pct_per_s'] == 200.0
    assert tenths['last_10pct_per_s'] == 50.0
    assert tenths['last_vs_first'] == 0.25


def test_the_ramp_counter_reads_the_sockets_of_the_namespace_its_process_is_in():
    """RampCounter on a real namespace: readings only once the process is in it, and they
    are the namespace's own TCP sockets (30 listeners), not the host's."""
    if os.geteuid() != 0:
        pytest.skip('needs root (a network namespace)')
    import connections
    ns = 'tbd-test-rc-%d' % os.getpid()
    subprocess.run(['ip', 'netns', 'add', ns], check=True)
    holder = outsider = None
    try:
        holder = subprocess.Popen(
            ['ip', 'netns', 'exec', ns, sys.executable, '-c', LISTENERS, '30'],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, universal_newlines=True)
        assert holder.stdout.readline().strip() == 'ready'
        counter = connections.RampCounter(holder.pid, ns).start()
        time.sleep(0.3)
        counter.stop()
        assert counter.samples and {c for _t, c in counter.samples} == {30}, counter.samples
        # a process of the host's namespace gives no readings for ns
        outsider = subprocess.Popen([sys.executable, '-c', LISTENERS, '3'],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    universal_newlines=True)
        assert outsider.stdout.readline().strip() == 'ready'
        counter = connections.RampCounter(outsider.pid, ns).start()
        time.sleep(0.2)
        counter.stop()
        assert counter.samples == []
    finally:
        for p in (holder, outsider):
            if p is not None:
                p.stdin.close()
                p.wait()
        subprocess.run(['ip', 'netns', 'del', ns], check=False)


LISTENERS = r'''
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(('0.0.0.0', 0))
    s.listen(1)
    socks.append(s)
print('ready', flush=True)
sys.stdin.readline()
'''
