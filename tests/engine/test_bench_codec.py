# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""benchmarks/protocol_codec.py runs: every codec call of the engine and of a reference
copy is timed in one run, with the ratios and the per-connection sums it prints."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from enginelib import REPO

CALLS = ['client_reads_101', 'client_reads_200', 'server_101_answer', 'ws_accept', 'ws_key']


def test_the_codec_benchmark_times_both_engines():
    res = subprocess.run([sys.executable, os.path.join(REPO, 'benchmarks', 'protocol_codec.py'),
                          '--number', '2000', '--reference-engine',
                          os.path.join(REPO, 'files', 'tcpscale')],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True, timeout=300, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.splitlines()[-1])
    assert sorted(out['ratio_vs_reference']) == CALLS
    for label in ('engine', 'reference'):
        us = out['us'][label]
        assert all(us[c] > 0 for c in CALLS), us
        ws = sum(us[c] for c in CALLS if c.startswith(('ws_', 'server_', 'client_reads_101')))
        assert abs(us['websocket_per_connection'] - ws) < 0.01, us
        assert us['http_per_connection'] == us['client_reads_200']
