# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The report of a run: what every host saw, merged, and the verdict.

Pure functions, no I/O: the report role gathers per-host facts (the clients'
summaries, the servers' status, the kernel's counts at the start and at the
end of the hold, the failures the play caught) and ``build_report`` turns them
into report.json's content.

The verdict covers the whole run. It passes only when:

* the kernel (sock_diag) counted the target on both sides at the start of the
  hold, and no fewer than target - allowed loss at its end (the allowed loss
  comes from each client's ``--hold-tolerance``, the role's
  ``client_hold_tolerance``);
* every client reached its share, held it, and exited 0;
* no worker of either half was lost during the run, and every server half
  still runs at the end of the hold;
* the play caught no failure and no host left the play.

Every reason it fails for is a sentence in ``reasons``.
"""

from __future__ import annotations

import datetime

# Rows of the engine's timeline (files/tcpscale/shm.py TIMELINE_COLUMNS; a unit test
# proves the two lists equal).
TIMELINE_COLUMNS = ['t_seconds', 'established', 'user_pss_bytes', 'kernel_bytes', 'dropped']

# The client half's exit statuses (files/tcpscale), and 128 + N for signal N.
EXIT_MEANING = {
    0: 'ended cleanly',
    1: 'did not reach or did not hold its target',
    2: 'refused its arguments (preflight)',
    3: 'lost a worker process',
}
SIGNALS = {1: 'SIGHUP', 2: 'SIGINT', 6: 'SIGABRT', 9: 'SIGKILL', 11: 'SIGSEGV', 15: 'SIGTERM'}


def _num(value, default=0):
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _int_or_none(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def fmt(n):
    return '{:,}'.format(int(n))


def iso(epoch):
    if epoch is None:
        return None
    return datetime.datetime.fromtimestamp(float(epoch), datetime.timezone.utc).strftime(
        '%Y-%m-%dT%H:%M:%SZ')


def describe_exit(rc):
    """What an exit status of the client half means, in words."""
    rc = _int_or_none(rc)
    if rc is None:
        return 'ended without an exit status (killed, or its job lost)'
    if rc in EXIT_MEANING:
        return EXIT_MEANING[rc]
    if rc > 128:
        return 'was killed by %s' % SIGNALS.get(rc - 128, 'signal %d' % (rc - 128))
    if rc < 0:
        return 'was killed by %s' % SIGNALS.get(-rc, 'signal %d' % -rc)
    return 'ended with exit status %d' % rc


# ------------------------------------------------------------------ timelines

def clean_timeline(timeline):
    """Rows of numbers, sorted by time, padded to the five columns."""
    out = []
    for point in timeline or []:
        if not isinstance(point, (list, tuple)) or not point:
            continue
        out.append([_num(point[0])] + [_num(point[i]) if len(point) > i else 0
                                       for i in range(1, len(TIMELINE_COLUMNS))])
    out.sort(key=lambda r: r[0])
    return out


def shift(timeline, offset):
    """A host's timeline (seconds since its own start) on the run's clock."""
    return [[round(r[0] + offset, 3)] + r[1:] for r in timeline]


def merge_timelines(series, max_points=1500):
    """Sum per-host timelines.

    At every sample time of any host (rounded to 0.1 s), each host counts its
    latest sample at or before it (0 before its first sample; a finished host
    keeps its last). Thinned to at most max_points rows, keeping the last.
    """
    series = [s for s in series if s]
    if not series:
        return []
    width = len(TIMELINE_COLUMNS)
    times = sorted(set(round(p[0], 1) for s in series for p in s))
    if len(times) > max_points:
        step = len(times) / float(max_points)
        times = sorted(set([times[int(i * step)] for i in range(max_points)] + [times[-1]]))
    merged = []
    index = [-1] * len(series)
    for t in times:
        row = [t] + [0] * (width - 1)
        for n, s in enumerate(series):
            while index[n] + 1 < len(s) and round(s[index[n] + 1][0], 1) <= t:
                index[n] += 1
            if index[n] >= 0:
                point = s[index[n]]
                for i in range(1, width):
                    row[i] += point[i]
        merged.append([row[0]] + [int(v) for v in row[1:]])
    return merged


def drop_rates(timeline):
    """[(t, connections ended by the peer per second)] between timeline rows."""
    out = []
    for a, b in zip(timeline, timeline[1:]):
        dt = b[0] - a[0]
        if dt > 0:
            out.append((b[0], max(0.0, (b[4] - a[4]) / dt)))
    return out


def plot(timeline, marks=(), width=800, height=300, left=72, right=72, top=16, bottom=32):
    """Geometry of the report's SVG on a shared time axis.

    Connections (left axis), memory (user + kernel, right axis), connections
    ended by the peer per second (red, on the connections axis) and vertical
    marks (lost workers) at their times. The plot area spans x0..x1, y0
    (top)..y1 (bottom).
    """
    if not timeline:
        return None
    tmax = max([r[0] for r in timeline] + [m['t'] for m in marks]) or 1
    drops = drop_rates(timeline)
    cmax = max([r[1] for r in timeline] + [d for _t, d in drops]) or 1
    mmax = max(r[2] + r[3] for r in timeline) or 1
    x0, x1, y0, y1 = left, width - right, top, height - bottom

    def x(t):
        return x0 + (x1 - x0) * t / tmax

    def pts(values, vmax):
        return ' '.join('%.1f,%.1f' % (x(t), y1 - (y1 - y0) * v / vmax) for t, v in values)

    fractions = (0, 0.25, 0.5, 0.75, 1)
    return {
        'width': width, 'height': height, 'x0': x0, 'x1': x1, 'y0': y0, 'y1': y1,
        'tmax': tmax, 'cmax': cmax, 'mmax': mmax,
        'connections': pts([(r[0], r[1]) for r in timeline], cmax),
        'memory': pts([(r[0], r[2] + r[3]) for r in timeline], mmax),
        'drops': pts(drops, cmax) if any(d for _t, d in drops) else '',
        'marks': [{'x': round(x(m['t']), 1), 'label': m['label']} for m in marks],
        'xticks': [{'x': round(x0 + (x1 - x0) * f, 1), 'label': '%.0f s' % (tmax * f)}
                   for f in fractions],
        'yticks': [{'y': round(y1 - (y1 - y0) * f, 1), 'label': fmt(cmax * f),
                    'mlabel': '%.0f MiB' % (mmax * f / 1048576.0)} for f in fractions],
    }


# ------------------------------------------------------------------- hosts

def by_family(sides):
    """{ipv4: n, ipv6: n} verified at the start of the hold, the smaller side of each, for a
    dual-stack run (where the IPv6 connections were counted on their own); else None."""
    six = [sides.get(('start', s + '6')) for s in ('server', 'client')]
    alls = [sides.get(('start', s)) for s in ('server', 'client')]
    if None in six or None in alls:
        return None
    return {'ipv4': min(a - b for a, b in zip(alls, six)), 'ipv6': min(six)}


def _side(verified, host, phase, side):
    return ((verified.get(host) or {}).get(phase) or {}).get(side)


def client_entry(host, data, verified):
    """One client host's row of the report."""
    data = data or {}
    summary = data.get('summary') or {}
    rc = _int_or_none(data.get('rc'))
    hold = summary.get('hold') or {}
    return {
        'role': 'client', 'rc': rc, 'exit': describe_exit(rc) if data else 'did not start',
        'target': summary.get('target', data.get('target')),
        'reached': bool(summary.get('reached')),
        'held_ok': hold.get('held_ok'),
        'established_peak': int(_num(summary.get('established_peak'))),
        'established_at_target': summary.get('established_at_target'),
        'established_final': int(_num(summary.get('established_final'))),
        'seconds_to_target': summary.get('seconds_to_target'),
        'connections_per_s': summary.get('connections_per_s'),
        'dropped': int(_num(summary.get('dropped'))),
        'dropped_during_hold': hold.get('dropped_by_peer'),
        'hold_seconds': hold.get('seconds'),
        'hold_planned': _num(data.get('hold_planned'), None),
        'allowed_loss': int(_num(hold.get('allowed_loss'))),
        'hold_tolerance': hold.get('tolerance'),
        'errors': summary.get('errors') or {},
        'workers': summary.get('workers'),
        'heartbeat': summary.get('heartbeat'),
        'protocol': summary.get('protocol') or {'name': 'tcp'},
        'verified_client': _side(verified, host, 'start', 'client'),
        'verified_client_end': _side(verified, host, 'end', 'client'),
        'started_at': iso(data.get('started_at')),
        'launched_at': iso(data.get('launched_at')),
        'manager': data.get('manager'),
        'conntrack': _int_or_none(_side(verified, host, 'start', 'conntrack')),
        'summary_missing': not summary,
        'log_tail': data.get('log_tail') or [],
    }


def server_entry(host, data, verified):
    """One server host's row: its status at the end of the hold (or the start)."""
    data = data or {}
    status = data.get('end') or data.get('start') or {}
    return {
        'held_total': status.get('held_total'),
        'listening': status.get('listening'),
        'workers': status.get('workers'),
        'running_at_end': data.get('running_at_end'),
        'verified_server': _side(verified, host, 'start', 'server'),
        'verified_server_end': _side(verified, host, 'end', 'server'),
        'conntrack': _int_or_none(_side(verified, host, 'start', 'conntrack')),
    }


def lost_workers(clients, servers, started_ts, finished_ts):
    """Every worker lost during the run: [{host, half, worker, pid, how, at, t, held}].

    The server half outlives runs, so only its losses inside the run window
    count; a client's belong to its run.
    """
    found = []
    for host in sorted(clients):
        for w in ((clients[host] or {}).get('summary') or {}).get('lost_workers') or []:
            found.append(dict(w, host=host, half='client'))
    for host in sorted(servers):
        data = servers[host] or {}
        status = data.get('end') or data.get('start') or {}
        for w in status.get('lost_workers') or []:
            at = _num(w.get('at'), None)
            if started_ts is not None and at is not None and at < started_ts:
                continue
            if finished_ts is not None and at is not None and at > finished_ts:
                continue
            found.append(dict(w, host=host, half='server'))
    for w in found:
        at = _num(w.get('at'), None)
        w['at_iso'] = iso(at)
        w['seconds_into_run'] = round(at - started_ts, 1) \
            if at is not None and started_ts is not None else None
        w['held'] = int(_num(w.get('held')))
    return sorted(found, key=lambda w: (_num(w.get('at')), w['host']))


def _sum_side(verified, phase, side):
    values = [((v or {}).get(phase) or {}).get(side) for v in verified.values()]
    values = [int(v) for v in values if v is not None]
    return sum(values) if values else None


# ------------------------------------------------------------------ verdict

def protocol_totals(entries):
    """The clients' protocol figures added up: answers by status and class, failures by kind."""
    out = {'name': 'tcp', 'requests_sent': 0, 'responses': 0, 'responses_by_status': {},
           'responses_by_class': {}, 'errors': {}, 'errors_total': 0}
    for c in entries:
        p = c.get('protocol') or {}
        out['name'] = p.get('name') or out['name']
        for key in ('requests_sent', 'responses', 'errors_total'):
            out[key] += int(_num(p.get(key)))
        for key in ('responses_by_status', 'responses_by_class', 'errors'):
            for k, v in (p.get(key) or {}).items():
                out[key][k] = out[key].get(k, 0) + int(_num(v))
    return out


def verdict(report, failures, missing):
    """The sentences that say why the run does not pass (empty: it passes)."""
    reasons = []
    target = report['target']
    for f in failures:
        reasons.append('%s failed in "%s"%s: %s' % (
            f.get('host', '?'), f.get('phase', '?'),
            ' at %s' % f['at'] if f.get('at') else '', f.get('message', 'failed')))
    for host in missing:
        reasons.append('host %s left the play (unreachable, or failed in an earlier step)'
                       % host)
    for host, c in sorted(report['clients'].items()):
        if c['summary_missing']:
            reasons.append('client %s wrote no summary: its half %s' % (host, c['exit']))
            continue
        if not c['reached']:
            reasons.append('client %s reached %s of %s at most (ended by the peer %s; '
                           'errors %s)' % (host, fmt(c['established_peak']),
                                           fmt(c['target'] or 0), fmt(c['dropped']),
                                           c['errors'] or 'none'))
        elif c['held_ok'] is False:
            cut = ''
            if c['hold_planned'] and c['hold_seconds'] is not None \
                    and c['hold_seconds'] < c['hold_planned'] - 1:
                cut = '; the hold was cut short after %.1f s of the %.0f s planned, once it ' \
                      'had broken' % (c['hold_seconds'], c['hold_planned'])
            reasons.append('client %s held %s of %s at the end (ended by the peer during '
                           'the hold: %s%s)' % (host, fmt(c['established_final']),
                                                fmt(c['target'] or 0),
                                                fmt(c['dropped_during_hold'] or 0), cut))
        failed = (c['protocol'] or {}).get('errors_total') or 0
        if failed > c['allowed_loss']:
            reasons.append('client %s: %s %s answer(s) failed (%s), more than the %s allowed '
                           '(client_hold_tolerance)' % (
                               host, fmt(failed), c['protocol'].get('name'),
                               ', '.join('%s %s' % (k, fmt(v))
                                         for k, v in sorted(c['protocol'].get('errors', {}).items())),
                               fmt(c['allowed_loss'])))
        if c['rc'] != 0:
            reasons.append('the client half on %s %s (exit status %s)'
                           % (host, c['exit'], c['rc']))
    start = [('server', report['verified_server_side']), ('client', report['verified_client_side'])]
    short = [(side, n) for side, n in start if n is None or n < target]
    if target and short:
        reasons.append('at the start of the hold the kernel counted %s, below the target %s'
                       % (', '.join('%s side %s' % (side, '-' if n is None else fmt(n))
                                    for side, n in start), fmt(target)))
    end = [('server', report['verified_end_server_side']),
           ('client', report['verified_end_client_side'])]
    floor = target - report['allowed_loss']
    short_end = [(side, n) for side, n in end if n is None or n < floor]
    if target and short_end and not short:
        reasons.append('at the end of the hold the kernel counted %s: %s connection(s) lost '
                       'during the hold, more than the %s allowed (client_hold_tolerance)'
                       % (', '.join('%s side %s' % (side, '-' if n is None else fmt(n))
                                    for side, n in end),
                          fmt(target - min(n or 0 for _s, n in end)),
                          fmt(report['allowed_loss'])))
    for w in report['lost_workers']:
        reasons.append('%s %s lost worker %s (pid %s, %s) at %s, %s s into the run, holding %s '
                       'connection(s)' % (w['half'], w['host'], w.get('worker', '?'),
                                          w.get('pid', '?'), w.get('how', '?'),
                                          w['at_iso'] or '?', w['seconds_into_run'],
                                          fmt(w['held'])))
    for host, s in sorted(report['servers'].items()):
        if s['running_at_end'] is False:
            reasons.append('the server half on %s was not running at the end of the hold'
                           % host)
    return reasons


def build_report(clients, servers=None, verified=None, target=0, failures=None, missing=None,
                 started=None, finished=None):
    """Aggregate a run.

    clients:  {host: {rc, summary, started_at (epoch), log_tail}}; {} when it never started
    servers:  {host: {start: status, end: status, running_at_end: bool}}
    verified: {host: {start: {server: n, client: n, at}, end: {...}}} (tcp_sockets_info)
    failures: [{host, phase, message, at}] caught by the play
    missing:  hosts of the plan that left the play
    started, finished: epoch seconds of the run
    """
    clients = dict(clients or {})
    servers = dict(servers or {})
    verified = dict(verified or {})
    failures = list(failures or [])
    missing = sorted(missing or [])
    target = int(_num(target))
    per_client = dict((h, client_entry(h, clients[h], verified)) for h in sorted(clients))
    per_server = dict((h, server_entry(h, servers[h], verified)) for h in sorted(servers))
    errors = {}
    for c in per_client.values():
        for name, count in c['errors'].items():
            errors[name] = errors.get(name, 0) + int(_num(count))
    summaries = dict((h, (clients[h] or {}).get('summary') or {}) for h in clients)
    starts = dict((h, _num((clients[h] or {}).get('started_at'), None)) for h in clients)
    known = [v for v in starts.values() if v is not None]
    t0 = started if started is not None else (min(known) if known else None)
    timelines = []
    for host, summary in summaries.items():
        tl = clean_timeline(summary.get('timeline'))
        offset = (starts[host] - t0) if starts.get(host) is not None and t0 is not None else 0
        if tl:
            timelines.append(shift(tl, offset))
    merged = merge_timelines(timelines)
    lost = lost_workers(clients, servers, t0, finished)

    def weighted(field):
        pairs = [(_num(s[field]), _num(s.get('established_at_target') or s.get('established_peak')))
                 for s in summaries.values() if s.get(field) is not None]
        weight = sum(w for _v, w in pairs)
        return round(sum(v * w for v, w in pairs) / weight, 1) if weight else None

    launched = [_num((clients[h] or {}).get('launched_at'), None) for h in clients]
    launched = [t for t in launched if t is not None]
    stt = [_num(c['seconds_to_target']) for c in per_client.values()
           if c['seconds_to_target'] is not None]
    rates = [_num(c['connections_per_s']) for c in per_client.values()
             if c['connections_per_s'] is not None]
    sides = {}
    for phase in ('start', 'end'):
        for side in ('server', 'client', 'server6', 'client6'):
            sides[(phase, side)] = _sum_side(verified, phase, side)
    report = {
        'target': target,
        'verified': min([v for v in (sides[('start', 'server')], sides[('start', 'client')])
                         if v is not None] or [0]),
        'verified_server_side': sides[('start', 'server')],
        'verified_client_side': sides[('start', 'client')],
        'verified_end': min([v for v in (sides[('end', 'server')], sides[('end', 'client')])
                             if v is not None] or [0]),
        'verified_end_server_side': sides[('end', 'server')],
        'verified_end_client_side': sides[('end', 'client')],
        'verified_by_family': by_family(sides),
        'allowed_loss': sum(c['allowed_loss'] for c in per_client.values()),
        'reached': bool(per_client) and all(c['reached'] for c in per_client.values()),
        'established_peak': sum(c['established_peak'] for c in per_client.values()),
        'established_final': sum(c['established_final'] for c in per_client.values()),
        'dropped': sum(c['dropped'] for c in per_client.values()),
        'dropped_during_hold': sum(c['dropped_during_hold'] or 0 for c in per_client.values()),
        'seconds_to_target': max(stt) if stt and len(stt) == len(per_client) else None,
        'start_spread_seconds': round(max(launched) - min(launched), 3) if len(launched) > 1 else None,
        'connections_per_s': round(sum(rates), 1) if rates else None,
        'errors': errors,
        'lost_workers': lost,
        'failures': failures,
        'missing_hosts': missing,
        'kernel_bytes_per_conn': weighted('kernel_bytes_per_conn'),
        'user_bytes_per_conn': weighted('user_bytes_per_conn'),
        'started': iso(t0),
        'finished': iso(finished),
        'wall_seconds': round(finished - t0, 1) if finished is not None and t0 is not None
        else None,
        'clients': per_client,
        'servers': per_server,
        'timeline': merged,
        'timeline_columns': list(TIMELINE_COLUMNS),
    }
    report['protocol'] = protocol_totals(per_client.values())
    report['memory_peak_bytes'] = max((r[2] + r[3] for r in merged), default=0)
    report['reasons'] = verdict(report, failures, missing)
    report['verified_ok'] = target > 0 and not report['reasons']
    marks = [{'t': w['seconds_into_run'], 'label': '%s %s lost' % (w['host'], w.get('worker', ''))}
             for w in lost if w['seconds_into_run'] is not None]
    report['plot'] = plot(merged, marks)
    return report


def report_from_records(records, clients, servers, target, missing=None, finished=None):
    """build_report from one record per host, as the report role gathers them.

    records: {host: {client, started_at, verified, server, failure}}; client is the
    client role's result (None when its phases did not end), failure what the play
    caught on that host (None). clients/servers: the hosts of each half in the plan.
    """
    records = dict(records or {})

    def rec(host):
        return records.get(host) or {}

    client_data = {}
    for host in clients:
        result = rec(host).get('client')
        started = rec(host).get('started_at')
        if result:
            client_data[host] = dict(result, started_at=result.get('started_at') or started)
        else:
            client_data[host] = {'rc': None, 'summary': {}, 'started_at': started} \
                if started not in (None, '') else {}
    failures = [dict(rec(h)['failure'], host=h) for h in sorted(records) if rec(h).get('failure')]
    starts = [_num(c.get('started_at'), None) for c in client_data.values()]
    starts = [s for s in starts if s is not None]
    return build_report(
        client_data, servers=dict((h, rec(h).get('server') or {}) for h in servers),
        verified=dict((h, rec(h).get('verified') or {}) for h in records),
        target=target, failures=failures, missing=missing,
        started=min(starts) if starts else None,
        finished=_num(finished, None))
