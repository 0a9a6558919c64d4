# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Synthetic runs for the report's tests, and the report role's files written from them
the way the role writes them: the filter (testbed_report) makes report_data, the role's
templates (report.html.j2, report.junit.xml.j2) draw it.

The engine summaries use the engine's own histogram code (files/tcpscale/shm.py), so
their connect_latency and heartbeat.rtt are in the engine's format.
"""

from __future__ import annotations

import json
import os
import random

import jinja2

from testlib import REPO, load_module

from ansible_collections.scalelab.testbed.plugins.filter import testbed as tb

T0 = 1767225600.0          # 2026-01-01T00:00:00Z
TEMPLATES = os.path.join(REPO, 'roles', 'report', 'templates')


def engine_shm():
    """files/tcpscale/shm.py, the engine's shared-memory layout and histograms."""
    return load_module('engine_shm', 'files', 'tcpscale', 'shm.py')


def histogram(samples_s):
    """The engine's summary of a histogram of these samples (seconds)."""
    shm = engine_shm()
    hist = [0] * shm.HIST_SLOTS
    for s in samples_s:
        hist[shm.hist_index(s)] += 1
    return shm.hist_summary(hist, int(sum(s * 1e6 for s in samples_s)))


def engine_summary(target, seconds=30, ramp=10, errors=(), latency_ms=2.0, seed=1,
                   reached=True, rtt=True):
    """A client summary as the engine writes it (the fields the report reads).

    A ramp to target in ramp seconds, held to seconds, one sample a second; errors:
    [(t, kind, count)] cumulative counts from t on.
    """
    rng = random.Random(seed)
    top = target if reached else target // 2
    timeline, errors_timeline, last = [], [], {}
    for t in range(seconds + 1):
        est = min(top, top * t // ramp)
        counts = {}
        for at, kind, n in errors:
            if t >= at and n:
                counts[kind] = n
        err = sum(counts.values())
        timeline.append([float(t), est, 1000 * est, 8000 * est, 0, est, err])
        if counts != last:
            errors_timeline.append([float(t), dict(counts)])
            last = counts
    lat = [rng.lognormvariate(0, 0.6) * latency_ms / 1e3 for _i in range(2000)]
    rtts = [rng.lognormvariate(0, 0.3) * 0.2 / 1e3 for _i in range(500)] if rtt else []
    heartbeat = {'interval_s': 5 if rtt else None, 'size': 1, 'sent': len(rtts),
                 'received': len(rtts)}
    if rtt:
        h = histogram(rtts)
        heartbeat.update(rtt_p50_ms=h['p50_ms'], rtt_p99_ms=h['p99_ms'], rtt=h)
    final = dict((k, n) for _t, k, n in errors if n)
    return {
        'role': 'client', 'target': target, 'reached': reached, 'established_peak': top,
        'established_at_target': target if reached else None, 'established_final': top,
        'seconds_to_target': float(ramp) if reached else None,
        'connections_per_s': target / float(ramp), 'errors': final, 'dropped': 0,
        'hold': {'held_ok': True if reached else None, 'lost': 0 if reached else None,
                 'allowed_loss': 0, 'tolerance': 0.0, 'dropped_by_peer': 0,
                 'seconds': float(seconds - ramp)},
        'kernel_bytes_per_conn': 8000.0, 'user_bytes_per_conn': 1000.0, 'workers': 2,
        'lost_workers': [], 'heartbeat': heartbeat, 'connect_latency': histogram(lat),
        'timeline': timeline, 'timeline_columns': list(engine_shm().TIMELINE_COLUMNS),
        'errors_timeline': errors_timeline,
    }


def fleet(shares, failing=None, started=T0):
    """records, clients, servers of a fleet: one client host per share (c1, c2, ...) each
    started a little after the previous, two server hosts. failing: the name of a client
    that reaches half of its share only and exits 1 (its log tail says so)."""
    records, clients = {}, []
    for i, share in enumerate(shares):
        host = 'c%d' % (i + 1)
        clients.append(host)
        bad = host == failing
        summary = engine_summary(share, reached=not bad, seed=i,
                                 errors=[(3, 'ECONNREFUSED', 5 * (i + 1)),
                                         (12, 'peer_reset', i)] if i < 2 else ())
        counted = share // 2 if bad else share
        records[host] = {
            'client': {'rc': 1 if bad else 0, 'summary': summary,
                       'launched_at': started + 0.5 * i,
                       'log_tail': ['tcpscale: [ 9.0s] established %d <of %d> & stalled'
                                    % (counted, share)] if bad else []},
            'started_at': started + 0.5 * i,
            'verified': {'start': {'client': counted, 'at': started + 20},
                         'end': {'client': counted, 'at': started + 30}},
            'server': {}, 'failure': None}
    total = sum(shares)
    counted = sum(r['verified']['start']['client'] for r in records.values())
    servers = ['s1', 's2']
    for n, host in enumerate(servers):
        half = counted // 2 + (counted % 2 if n == 0 else 0)
        status = {'held_total': half, 'listening': 16, 'workers': 2, 'lost_workers': []}
        records[host] = {'client': None, 'started_at': None, 'server': {
            'start': status, 'end': status, 'running_at_start': True, 'running_at_end': True},
            'verified': {'start': {'server': half}, 'end': {'server': half}}, 'failure': None}
    return records, clients, servers, total


def report_data(records, clients, servers, target, finished=T0 + 40):
    """The report, through the role's filter."""
    return tb.testbed_report(records, clients, servers, target, finished=finished)


def environment():
    """Jinja as Ansible's template module sets it up (trim_blocks), on the role's templates."""
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), trim_blocks=True,
                              autoescape=False, undefined=jinja2.StrictUndefined)


def write_report(data, directory, title='scalelab.testbed run'):
    """report.json, report.html and report.junit.xml of data in directory, as the role
    writes them. Returns {name: path}."""
    os.makedirs(directory, exist_ok=True)
    env = environment()
    paths = dict((n, os.path.join(directory, n))
                 for n in ('report.json', 'report.html', 'report.junit.xml'))
    # the role's copy of report_data | to_nice_json, then a round trip like the facts
    data = json.loads(json.dumps(data))
    with open(paths['report.json'], 'w') as f:
        f.write(json.dumps(data, indent=4, sort_keys=True) + '\n')
    for name in ('report.html', 'report.junit.xml'):
        with open(paths[name], 'w', encoding='utf-8') as f:
            f.write(env.get_template(name + '.j2').render(report_data=data, report_title=title))
    return paths
