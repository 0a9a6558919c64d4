# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""benchmarks/walker.py runs at a small size: every kind holds its descriptors (the tcp
kind's clients connect all of theirs) and a window of PID 1's CPU is reported for each."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from enginelib import REPO


# heavy_lock: the benchmark's namespace has a fixed name, as a developer's run has
def test_the_walker_benchmark_samples_every_kind(heavy_lock):
    if os.geteuid() != 0:
        pytest.skip('needs root (a network namespace)')
    res = subprocess.run([sys.executable, os.path.join(REPO, 'benchmarks', 'walker.py'),
                          '--pairs', '2', '--fds', '300', '--alternations', '1', '--windows', '1',
                          '--window', '0.5'], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.splitlines()[-1])
    assert out['descriptors'] == 1200 and out['pid'] == 1
    for kind in ('tcp', 'null', 'spawn'):
        assert len(out[kind]) == 1 and out[kind][0] >= 0, out
    assert len(out['nothing held']) == 4
    namespaces = subprocess.run(['ip', 'netns', 'list'], check=True, stdout=subprocess.PIPE,
                                universal_newlines=True).stdout
    assert 'tbd-bench-walker' not in namespaces
