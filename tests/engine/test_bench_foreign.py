# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""benchmarks/connections.py: --idle-descriptors (helper processes really hold the
descriptors asked for, and nothing is left behind, also when a helper cannot open its
share) and the CPU of other processes by window of the ramp (foreign_cpu_by_window)."""

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


def test_the_first_and_last_tenth_come_from_the_client_timeline():
    import connections
    sampler = connections.ForeignSampler({}, ours=set())
    now = time.monotonic()
    # 100 ticks per second of other processes' CPU, sampled from now - 10 s to now + 1 s
    sampler.samples = [(now - 10 + i, i * 100.0) for i in range(12)]
    started_at = time.time() - 10          # t_seconds 0 of the timeline = now - 10 s
    timeline = [[0, 0], [10, 1000]]       # (t_seconds, established) rows
    fw = connections.foreign_by_window(sampler, started_at, timeline, 1000)
    hz = float(os.sysconf('SC_CLK_TCK'))
    for w in ('first_10pct', 'last_10pct'):
        assert abs(fw[w]['seconds'] - 100.0 / hz) < 0.02, fw
    assert connections.foreign_by_window(sampler, started_at, timeline, 2000) is None
