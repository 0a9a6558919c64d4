# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""benchmarks/connections.py --baseline runs end to end at a small count: the engine, the
naive Python baseline and the C reference each reach the target, verified by sock_diag on
both sides, and the three-way table gives each one's CPU per connection, in all and by
half (its client processes, its server processes), with the engine's ratios, and each
one's rate over the first and the last 10% of its ramp; the contenders' processes run in
the benchmark's session unless --sessions per-process."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

import pytest

from enginelib import REPO

sys.path.insert(0, os.path.join(REPO, 'benchmarks'))


def half_sum_matches(phase):
    """The halves' CPU adds up to the whole (each is rounded to 0.1 us)."""
    halves = phase['cpu_us_per_conn_by_half']
    return abs(halves['client'] + halves['server'] - phase['cpu_us_per_conn_procs']) <= 0.15


# heavy_lock: the benchmark's namespaces have fixed names, as a developer's run has
def test_the_three_way_run_gives_each_contenders_cpu_by_half(heavy_lock):
    if os.geteuid() != 0:
        pytest.skip('needs root (network namespaces, sysctls)')
    # enough that each half's CPU is many clock ticks (10 ms), yet under 50,000 sockets
    n = 15000
    proc = subprocess.Popen([sys.executable, os.path.join(REPO, 'benchmarks', 'connections.py'),
                             '--connections', str(n), '--baseline'],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True)
    stdout, stderr = proc.communicate(timeout=300)
    res = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    assert res.returncode == 0, res.stderr[-3000:]
    # a run whose phases all passed leaves none of its working directories behind (the
    # phases' logs, the C reference's build, which its log names)
    assert '/tmp/tbd-bench-%d-cref/cref' % proc.pid in res.stderr
    assert glob.glob('/tmp/tbd-bench-%d-*' % proc.pid) == []
    out = json.loads(res.stdout.splitlines()[-1])
    phases = out['phases']
    table = out['table']
    for name in ('engine', 'baseline', 'c'):
        ph = phases[name]
        assert ph['ok'] and ph['established'] == n, (name, ph)
        halves = ph['cpu_us_per_conn_by_half']
        # both halves did work: a client connects, a server accepts
        assert halves['client'] > 0 and halves['server'] > 0, (name, halves)
        assert half_sum_matches(ph), (name, ph['cpu_us_per_conn_procs'], halves)
        row = table['rows'][name]
        assert row['cpu_us_client'] == halves['client']
        assert row['cpu_us_server'] == halves['server']
        # every contender's ramp is timed from the client namespace's sockets
        tenths = ph['ramp_tenths']
        assert tenths['first_10pct_per_s'] > 0 and tenths['last_10pct_per_s'] > 0, (name, ph)
        assert row['last_vs_first_10pct'] == tenths['last_vs_first']
        assert set(ph['foreign_cpu_by_window']) == {'first_10pct', 'last_10pct'}
    # the engine's memory by process, its supervisors apart (each half has both)
    split = phases['engine']['pss_split']
    for half in ('client', 'server'):
        assert split[half]['supervisor'] > 0 and split[half]['workers'] >= 1, split
        assert 0 < split[half]['worker_mean'] <= split[half]['worker_max'], split
    assert 'PSS by process: client supervisor' in res.stderr
    eng = table['rows']['engine']
    for other in ('baseline', 'c'):
        o, ratios = table['rows'][other], table['engine_vs'][other]
        assert ratios['rate'] == round(eng['connections_per_s'] / o['connections_per_s'], 2)
        assert ratios['cpu_us_client'] == round(eng['cpu_us_client'] / o['cpu_us_client'], 2)
        assert ratios['cpu_us_server'] == round(eng['cpu_us_server'] / o['cpu_us_server'], 2)
    assert 'client CPU' in res.stderr and '(client %sx, server %sx)' % (
        table['engine_vs']['c']['cpu_us_client'], table['engine_vs']['c']['cpu_us_server']) \
        in res.stderr


def test_a_half_that_is_missing_from_a_phase_leaves_its_ratio_empty():
    """A phase from before the split (or one whose half did not report) still makes a
    table: that half's column and ratio are empty, the others are computed."""
    import connections
    base = {'connections_per_s': 40000.0, 'kernel_bytes_per_conn': 9000,
            'user_bytes_per_conn': 600, 'cpu_us_per_conn_procs': 40.0}
    phases = {'engine': dict(base, connections_per_s=30000.0, cpu_us_per_conn_procs=48.0,
                             cpu_us_per_conn_by_half={'client': 38.0, 'server': 10.0}),
              'baseline': base}
    table = connections.contenders_table(phases)
    ratios = table['engine_vs']['baseline']
    assert ratios['rate'] == 0.75 and ratios['cpu_us'] == 1.2
    assert ratios['cpu_us_client'] is None and ratios['cpu_us_server'] is None
    assert 'c' not in table['engine_vs']


def test_the_median_run_keeps_each_rounds_figures_in_the_order_they_ran():
    import connections
    runs = [{'ok': True, 'connections_per_s': rate, 'cpu_us_per_conn_procs': cpu,
             'cpu_us_per_conn_by_half': {'client': cpu - 10, 'server': 10.0},
             'kernel_bytes_per_conn': 9600, 'user_bytes_per_conn': 200, 'other': rate}
            for rate, cpu in ((35000.0, 50.0), (23000.0, 61.0))]
    out = connections.median_run(runs)
    assert out['connections_per_s'] == 23000.0 and out['other'] == 23000.0   # the lower run
    assert out['rates'] == [35000.0, 23000.0]
    assert [r['connections_per_s'] for r in out['by_round']] == [35000.0, 23000.0]
    assert [r['cpu_us_per_conn_by_half']['client'] for r in out['by_round']] == [40.0, 51.0]
    assert 'other' not in out['by_round'][0]


def test_the_pss_split_puts_the_supervisor_apart_from_its_workers():
    import connections
    assert connections.pss_split([4000, 2000, 1000, 3000]) == {
        'supervisor': 4000, 'workers': 3, 'worker_mean': 2000, 'worker_max': 3000}
    assert connections.pss_split([4000]) == {
        'supervisor': 4000, 'workers': 0, 'worker_mean': 0, 'worker_max': 0}
    assert connections.pss_split([])['supervisor'] == 0


@pytest.mark.parametrize('sessions', ['shared', 'per-process'])
def test_a_contenders_processes_share_the_benchmarks_session_unless_asked(sessions):
    """--sessions shared (the default): a contender's process is in the benchmark's session
    (one scheduling group, as a shell starts scripts), in a process group of its own (killed
    with it); per-process: in a session of its own (2 x N groups for the blocking ones)."""
    import argparse
    import connections
    args = argparse.Namespace(sessions=sessions)
    ph = connections.Phase(args, None, 'sessions-test')
    p = ph.spawn(['sleep', '60'])
    try:
        assert os.getpgid(p.pid) == p.pid
        if sessions == 'shared':
            assert os.getsid(p.pid) == os.getsid(0)
        else:
            assert os.getsid(p.pid) == p.pid
    finally:
        p.kill()
        p.wait()
        os.rmdir(ph.workdir)
