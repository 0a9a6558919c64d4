# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared memory between a supervisor and its workers: one slot per process.

A slot is SLOT_WORDS int64 words (the same memory also read as float64); a
worker writes its own slot, the supervisor (or a keeper) reads them all.
The field numbers, the worker states and the two histograms (connect
latency, heartbeat RTT) are defined here, once, for both halves.
"""

import errno
import math
import operator
import mmap
import os

PAGE = os.sysconf('SC_PAGE_SIZE') if hasattr(os, 'sysconf') else 4096

SLOT_WORDS = 2048
F_PID, F_STATE, F_EST, F_TOTAL, F_ATTEMPTS, F_FAILED, F_INFLIGHT, F_DROPPED = range(8)
F_DONE_NS, F_QUOTA, F_HB_SENT, F_HB_RECV, F_RATE, F_INFL_CAP, F_STOP, F_PEAK = range(8, 16)
F_LISTEN, F_WANT, F_LANE, F_CAP, F_NHOLDERS = range(16, 21)
F_ERRNO, F_ERR_INDEX, F_ECHO_BYTES, F_CPU_USER_US, F_CPU_SYS_US = range(24, 29)
# F_DROPPED counts held connections the peer closed (FIN) or reset (RST);
# F_DROP_RST the resets among them. F_LOST_* are written into the slot of a
# holder that died unexpectedly: its wait status, when (wall clock, ns) and
# how many connections it held.
F_DROP_RST, F_LOST_STATUS, F_LOST_NS, F_LOST_HELD = range(29, 33)
# The application protocol (client): requests (or upgrades) sent, responses read,
# answers that were not HTTP, upgrades with a wrong Sec-WebSocket-Accept, first
# requests not answered within the connect timeout.
F_REQ_SENT, F_RESP_RECV, F_BAD_RESPONSE, F_BAD_ACCEPT, F_NO_ANSWER = range(33, 38)
# The sums (us) of the samples in the two histograms (Prometheus wants _sum).
F_RTT_SUM_US, F_CONNECT_SUM_US = range(38, 40)
# TLS: handshakes completed, of which resumed sessions, handshakes that failed
# (a certificate not verified, a protocol error); the server counts the first.
F_TLS_DONE, F_TLS_RESUMED, F_TLS_FAILED = range(40, 43)
# Watch mode poll (watch.py): passes over the held connections, and the time spent in them (us).
# The supervisor sets F_WATCH_GO to 1 once the ramp is over (the client: no worker connects any
# more; the server: nothing accepted for a while): the periodic passes are for the hold, where
# they cost nothing the ramp needs (so are a client's heartbeats after an unpaced ramp). A
# worker makes one pass whenever F_WATCH_REQ differs from its F_WATCH_ACK, then acknowledges
# it (the client's count at the end of the hold).
F_WATCH_PASSES, F_WATCH_US, F_WATCH_GO, F_WATCH_REQ, F_WATCH_ACK = range(43, 48)
# When the worker sent its first heartbeat (CLOCK_MONOTONIC ns; 0: none yet).
F_HB_FIRST_NS = 48
ERR_BASE, ERR_SLOTS = 64, 256          # connect errors by errno (last slot: errno >= 255)
HIST_BASE, HIST_SLOTS = 320, 512       # RTT histogram, HIST_PER_E buckets per e-fold of us
HIST_PER_E = 20
STATUS_BASE, STATUS_PAIRS = 832, 32    # responses by HTTP status: (code, count) pairs
# Connect latency (connect() to established, as the worker saw it), the same buckets:
# bucket i holds samples of exp(i / HIST_PER_E) - 1 .. exp((i + 1) / HIST_PER_E) - 1 us,
# so each bucket is 5% wide; the last one takes everything above ~140 s.
CONNECT_HIST_BASE = 1024

ST_EMPTY, ST_STARTING, ST_ACTIVE, ST_HOLDING, ST_SETTLED, ST_EXITED, ST_FAILED, ST_LOST = range(8)
STATE_NAMES = ('empty', 'starting', 'active', 'holding', 'settled', 'exited', 'failed', 'lost')
# Error kinds that are not an errno: a held connection ended by the peer.
PEER_CLOSED, PEER_RESET = 'peer_closed', 'peer_reset'
# Columns of the timeline rows of both halves (dropped: cumulative count of
# connections the peer ended; the server counts the ones clients closed).
# opened: cumulative connections established (client) or accepted (server), so
# the rate over time; errors: cumulative errors of every kind.
TIMELINE_COLUMNS = ['t_seconds', 'established', 'user_pss_bytes', 'kernel_bytes', 'dropped',
                    'opened', 'errors']


class Shm(object):
    """Anonymous shared memory created before fork: int64 and float64 views.

    With extra_u32, a second mapping of that many uint32 counters (the
    server's connections per endpoint and holder).
    """

    def __init__(self, nslots, extra_u32=0):
        self.nslots = nslots
        self.mm = mmap.mmap(-1, max(PAGE, nslots * SLOT_WORDS * 8))
        self.q = memoryview(self.mm).cast('q')
        self.d = memoryview(self.mm).cast('d')
        self.mm2 = None
        self.u = None
        if extra_u32:
            self.mm2 = mmap.mmap(-1, max(PAGE, extra_u32 * 4))
            self.u = memoryview(self.mm2).cast('I')


def err_slot(err):
    """The slot of an errno in the error counters (out of range: the last one)."""
    return err if 0 < err < ERR_SLOTS else ERR_SLOTS - 1


def errno_name(num):
    if num == ERR_SLOTS - 1:
        return 'EOTHER'
    return errno.errorcode.get(num, 'E%d' % num)


def error_counts(q, slots):
    """{errno name: count} summed over the error counters of the given slots."""
    out = {}
    bases = [s * SLOT_WORDS + ERR_BASE for s in slots]
    for e in range(1, ERR_SLOTS):
        n = sum(q[base + e] for base in bases)
        if n:
            out[errno_name(e)] = n
    return out


def publish_statuses(q, b, counts):
    """{status: count} into the (code, count) pairs of the slot at b (the first 32 codes)."""
    base = b + STATUS_BASE
    for i, (code, n) in enumerate(sorted(counts.items())[:STATUS_PAIRS]):
        q[base + 2 * i] = code
        q[base + 2 * i + 1] = n


def status_counts(q, slots):
    """{status: count} summed over the given slots."""
    out = {}
    for s in slots:
        base = s * SLOT_WORDS + STATUS_BASE
        for i in range(STATUS_PAIRS):
            code = q[base + 2 * i]
            if not code:
                break
            out[code] = out.get(code, 0) + q[base + 2 * i + 1]
    return out


def publish_cpu(q, b):
    """This process's CPU time (user, system, in us) into its slot at b."""
    t = os.times()
    q[b + F_CPU_USER_US] = int(t[0] * 1e6)
    q[b + F_CPU_SYS_US] = int(t[1] * 1e6)


def hist_index(seconds):
    """The bucket of a sample of this many seconds."""
    us = seconds * 1e6
    idx = int(math.log(us + 1.0) * HIST_PER_E) if us > 0 else 0
    return idx if idx < HIST_SLOTS else HIST_SLOTS - 1


def hist_add(q, base, seconds, sum_at):
    """One sample into the histogram at base; its us added to the word at sum_at."""
    q[base + hist_index(seconds)] += 1
    q[sum_at] += int(seconds * 1e6)


def hist_merge(q, slots, base=HIST_BASE):
    """The histograms at base (default: RTT) of the given slots, added up (a slice of
    each slot and a map: half the time of a loop over the buckets, measured with 60
    slots: 0.86 instead of 2.4 ms)."""
    hist = [0] * HIST_SLOTS
    for s in slots:
        b = s * SLOT_WORDS + base
        hist = list(map(operator.add, hist, q[b:b + HIST_SLOTS]))
    return hist


def bucket_upper_s(idx):
    """The upper edge of bucket idx, in seconds."""
    return (math.exp((idx + 1.0) / HIST_PER_E) - 1.0) / 1e6


def hist_percentile(hist, fraction):
    """The fraction-quantile in milliseconds (the middle of its bucket), or None."""
    total = sum(hist)
    if not total:
        return None
    want = fraction * total
    run = 0
    for idx, n in enumerate(hist):
        run += n
        if run >= want:
            return round((math.exp((idx + 0.5) / HIST_PER_E) - 1.0) / 1000.0, 3)
    return None


def _sig4(v):
    return float('%.4g' % v)


def hist_summary(hist, sum_us):
    """A histogram for the summary: count, sum, p50/p90/p99/max (ms) and its non-empty
    buckets as [upper edge ms, count]. max is the upper edge of the highest non-empty
    bucket (within 5% of the true maximum)."""
    count = sum(hist)
    top = max((i for i, n in enumerate(hist) if n), default=None)
    return {'count': count, 'sum_seconds': round(sum_us / 1e6, 6),
            'p50_ms': hist_percentile(hist, 0.50), 'p90_ms': hist_percentile(hist, 0.90),
            'p99_ms': hist_percentile(hist, 0.99),
            'max_ms': None if top is None else _sig4(bucket_upper_s(top) * 1e3),
            'buckets': [[_sig4(bucket_upper_s(i) * 1e3), n] for i, n in enumerate(hist) if n]}
