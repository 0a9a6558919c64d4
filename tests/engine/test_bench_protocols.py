# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""benchmarks/protocols.py runs end to end at a small count: each protocol's phase
reaches its target, verified by sock_diag on both sides, with its answers counted,
and the ratio against tcp is printed. (It shares its phase code with
benchmarks/connections.py: a change there that breaks it fails here.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from enginelib import REPO


# heavy_lock: the benchmark's namespaces have fixed names, as a developer's run has
def test_the_protocols_benchmark_runs_tcp_and_http_against_a_reference_engine(heavy_lock):
    """Both protocols, each run again by a reference copy of the engine (here the same
    files, from their own path), in two rounds: every phase reaches its target, each
    round's ratio is the one of that round's rates, and the ratio reported is the lower
    median of the rounds' (their lower one, of two)."""
    if os.geteuid() != 0:
        pytest.skip('needs root (network namespaces, sysctls)')
    n = 3000
    res = subprocess.run([sys.executable, os.path.join(REPO, 'benchmarks', 'protocols.py'),
                          '--connections', str(n), '--protocols', 'tcp,http', '--rounds', '2',
                          '--reference-engine', os.path.join(REPO, 'files', 'tcpscale')],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True, timeout=300, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.splitlines()[-1])
    names = ['http', 'http@reference', 'tcp', 'tcp@reference']
    assert len(out['rounds']) == 2
    for runs in out['rounds']:
        assert sorted(runs) == names
        for name, f in runs.items():
            assert f['ok'] and f['established'] == n, (name, f)
            assert f['connections_per_s'] > 0 and f['cpu_us_per_conn'] > 0, (name, f)
        for suffix in ('', '@reference'):
            tcp, http = runs['tcp' + suffix], runs['http' + suffix]
            assert http['answers'] == {'200': n}
            assert tcp['rate_vs_tcp'] == 1.0        # against the tcp of the same engine
            assert http['rate_vs_tcp'] == round(
                http['connections_per_s'] / tcp['connections_per_s'], 2)
        for proto in ('tcp', 'http'):
            assert runs[proto]['rate_vs_reference'] == round(
                runs[proto]['connections_per_s'] / runs[proto + '@reference']['connections_per_s'],
                2)
            assert 'rate_vs_reference' not in runs[proto + '@reference']
    median = out['protocols']
    assert sorted(median) == names
    for name, f in median.items():
        assert f['ok'] and f['rates'] == [r[name]['connections_per_s'] for r in out['rounds']]
        assert f['connections_per_s'] == min(f['rates'])     # the lower middle of two
        for key in ('rate_vs_tcp', 'rate_vs_reference'):
            if key in f:
                assert f['ratios_by_round'][key] == [r[name][key] for r in out['rounds']]
                assert f[key] == min(f['ratios_by_round'][key])
    assert 'rate_vs_reference' in median['http'] and 'rate_vs_tcp' in median['http']
    assert 'median  http@reference' in res.stderr and 'round 2 http' in res.stderr
