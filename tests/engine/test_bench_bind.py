# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""benchmarks/bind.py runs: both kinds of connect loop, alternating, in real namespaces
that it removes again, with the ratio it prints; every connection it times is
established, the bound ones from the address they were bound to."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from enginelib import REPO, run


# heavy_lock: the benchmark's namespaces have fixed names (benchmarks/connections.py's)
def test_the_bind_benchmark_times_bound_and_unbound_connects(heavy_lock):
    res = subprocess.run([sys.executable, os.path.join(REPO, 'benchmarks', 'bind.py'),
                          '--connections', '3000', '--rounds', '3'],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True, timeout=300, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.splitlines()[-1])
    for kind in ('bound', 'unbound'):
        assert len(out[kind]['wall_by_round']) == 3, out
        assert out[kind]['wall_us_per_conn'] > 0 and out[kind]['cpu_us_per_conn'] > 0, out
        # every connection of every round established, from the address it should have:
        # the bound loop's from the second address, which the route would not pick
        assert out[kind]['established_by_round'] == [3000] * 3, out
    assert out['unbound_vs_bound']['wall'] == round(
        out['unbound']['wall_us_per_conn'] / out['bound']['wall_us_per_conn'], 3)
    assert 'tbd-bench' not in run(['ip', 'netns', 'list']).stdout
