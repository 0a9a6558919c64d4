# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""trim_heap(): the C heap's free pages really go back to the kernel (the process's
private memory, as /proc/PID/smaps counts it, falls), and what is still in use stays."""

from __future__ import annotations

import json
import subprocess
import sys

from enginelib import FILES

PROBE = r'''
import json, sys
sys.path.insert(0, sys.argv[1])
from tcpscale.system import trim_heap

def heap_dirty_kb():
    kb, in_heap = 0, False
    with open('/proc/self/smaps') as f:
        for line in f:
            parts = line.split()
            if '-' in parts[0] and ':' not in parts[0]:
                in_heap = parts[-1] == '[heap]'
            elif in_heap and parts[0] == 'Private_Dirty:':
                kb += int(parts[1])
    return kb

# 1,500 chunks of 60 KB (under the mmap threshold: they come from the heap), written
# so that their pages are dirty, then all freed but the last: the free space is below
# a chunk in use, where free() alone never gives it back
chunks = [bytearray(b'x' * 60000) for _ in range(1500)]
last = chunks[-1]
del chunks
before = heap_dirty_kb()
trim_heap()
after = heap_dirty_kb()
print(json.dumps({'before': before, 'after': after, 'kept': last == b'x' * 60000}))
'''


def test_trim_heap_gives_free_heap_pages_back_and_keeps_live_data():
    out = subprocess.run([sys.executable, '-c', PROBE, FILES], stdout=subprocess.PIPE,
                         universal_newlines=True, check=True).stdout
    got = json.loads(out.strip().splitlines()[-1])
    # ~88 MB were written and freed: most of it leaves the private memory
    assert got['before'] > 60000, got
    assert got['after'] < got['before'] - 50000, got
    assert got['kept'], got
