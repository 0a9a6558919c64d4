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
import math
import re

# Rows of the engine's timeline (files/tcpscale/shm.py TIMELINE_COLUMNS; a unit test
# proves the two lists equal). opened: cumulative connections established; errors:
# cumulative errors of every kind. Older summaries have the first five only.
TIMELINE_COLUMNS = ['t_seconds', 'established', 'user_pss_bytes', 'kernel_bytes', 'dropped',
                    'opened', 'errors']
OPENED, ERRORS = TIMELINE_COLUMNS.index('opened'), TIMELINE_COLUMNS.index('errors')

# The engine's histogram buckets (files/tcpscale/shm.py HIST_PER_E; a unit test proves
# them equal): bucket i holds exp(i / HIST_PER_E) - 1 .. exp((i + 1) / HIST_PER_E) - 1 us.
HIST_PER_E = 20

# Series longer than this are thinned (JSON); polylines are drawn with at most DRAWN.
MAX_POINTS = 1500
DRAWN = 600
# Client hosts drawn one by one in the established plot; the others are in the sum only.
MAX_HOSTS_DRAWN = 12
# Error kinds drawn one by one; the others are named under the plot.
MAX_KINDS_DRAWN = 12
PALETTE = ('#1565c0', '#ef6c00', '#2e7d32', '#6a1b9a', '#00838f', '#ad1457', '#827717',
           '#4e342e', '#283593', '#d84315', '#00695c', '#5d4037')

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


def _epoch(value):
    """A time as epoch seconds rounded to the millisecond, or None."""
    value = _num(value, None)
    return None if value is None else round(value, 3)


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

def clean_timeline(timeline, columns=None):
    """Rows of numbers in TIMELINE_COLUMNS' order, sorted by time; a column the rows do
    not have (older summaries: opened, errors) is 0. columns: the summary's
    timeline_columns, when it names them."""
    names = list(columns) if isinstance(columns, (list, tuple)) and columns else TIMELINE_COLUMNS
    where = [names.index(c) if c in names else None for c in TIMELINE_COLUMNS]
    out = []
    for point in timeline or []:
        if not isinstance(point, (list, tuple)) or not point:
            continue
        out.append([_num(point[where[0] or 0])]
                   + [_num(point[i]) if i is not None and len(point) > i else 0
                      for i in where[1:]])
    out.sort(key=lambda r: r[0])
    return out


def has_column(summary, name):
    """Whether a summary's timeline rows carry the column (older summaries lack opened)."""
    rows = [r for r in summary.get('timeline') or [] if isinstance(r, (list, tuple)) and r]
    columns = summary.get('timeline_columns')
    if isinstance(columns, (list, tuple)) and columns:
        if name not in columns:
            return False
        i = list(columns).index(name)
        return bool(rows) and all(len(r) > i for r in rows)
    i = TIMELINE_COLUMNS.index(name)
    return bool(rows) and all(len(r) > i for r in rows)


def thin(points, max_points=MAX_POINTS):
    """At most max_points of points, evenly spaced, the first and the last kept."""
    if len(points) <= max_points:
        return list(points)
    step = (len(points) - 1) / float(max_points - 1)
    return [points[int(round(i * step))] for i in range(max_points)]


def shift(timeline, offset):
    """A host's timeline (seconds since its own start) on the run's clock."""
    return [[round(r[0] + offset, 3)] + r[1:] for r in timeline]


def merge_timelines(series, max_points=MAX_POINTS):
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


def merge_steps(series):
    """Sum step functions [[t, value]] (each holds its value until its next point; 0
    before its first): [[t, sum]] at every time any of them changes, repeats left out."""
    series = [sorted(s, key=lambda p: p[0]) for s in series if s]
    times = sorted(set(p[0] for s in series for p in s))
    index = [-1] * len(series)
    out = []
    for t in times:
        total = 0
        for n, s in enumerate(series):
            while index[n] + 1 < len(s) and s[index[n] + 1][0] <= t:
                index[n] += 1
            if index[n] >= 0:
                total += s[index[n]][1]
        if not out or out[-1][1] != total:
            out.append([t, total])
    return out


def opened_series(timeline, has_opened):
    """[[t, connections opened so far]] of one host's (cleaned) timeline: its opened
    column, or, for an older summary without it, the rises of established added up
    (which misses the connections opened while as many ended)."""
    if has_opened:
        return [[r[0], r[OPENED]] for r in timeline]
    out, total, last = [], 0, 0
    for r in timeline:
        total += max(0, r[1] - last)
        last = r[1]
        out.append([r[0], total])
    return out


def rate_series(cumulatives, max_points=MAX_POINTS):
    """Connections per second over time, summed over hosts, from each host's cumulative
    count [[t, opened]] (on the run's clock).

    Each host's openings between two of its samples are spread evenly over that
    interval, and added up in bins as wide as the hosts' median sample interval (no
    fewer than tmax / max_points): hosts sampling at different instants then add up
    without saw teeth. [[end of the bin, connections/s]].
    """
    intervals = []
    for s in cumulatives:
        for a, b in zip(s, s[1:]):
            intervals.append((a[0], b[0], max(0.0, b[1] - a[1])))
    spans = sorted(b - a for a, b, _n in intervals if b > a)
    if not spans:
        return []
    tmax = max(b for _a, b, _n in intervals)
    width = max(spans[len(spans) // 2], tmax / float(max_points))
    bins = [0.0] * max(1, int(math.ceil(tmax / width - 1e-9)))
    last = len(bins) - 1
    for a, b, n in intervals:
        if not n:
            continue
        if b <= a:
            bins[min(last, int(b / width))] += n
            continue
        for i in range(max(0, int(a / width)), min(last, int(b / width)) + 1):
            overlap = min(b, (i + 1) * width) - max(a, i * width)
            if overlap > 0:
                bins[i] += n * overlap / (b - a)
    out = []
    for i, v in enumerate(bins):
        end = min((i + 1) * width, tmax)        # the last bin ends with the data
        out.append([round(end, 3), round(v / (end - i * width), 1) if end > i * width else 0.0])
    return out


def errors_by_kind(per_host, max_points=MAX_POINTS):
    """{kind: [[t, cumulative count over every host]]} from each host's errors_timeline
    ([[t, {kind: cumulative count}]], on the run's clock). A kind a row leaves out
    keeps its count (counts only grow); a kind never above 0 is left out."""
    kinds = sorted(set(k for rows in per_host for _t, counts in rows for k in counts))
    out = {}
    for kind in kinds:
        steps = []
        for rows in per_host:
            s, last = [], 0
            for t, counts in rows:
                v = int(_num(counts.get(kind), last))
                if v != last:
                    s.append([t, v])
                    last = v
            steps.append(s)
        merged = merge_steps(steps)
        if merged:                      # a kind counted 0 only is no error
            out[kind] = thin(merged, max_points)
    return out


def clean_errors_timeline(rows):
    """[[t, {kind: count}]] sorted by time, malformed rows left out."""
    out = []
    for row in rows or []:
        if isinstance(row, (list, tuple)) and len(row) > 1 and isinstance(row[1], dict):
            out.append([_num(row[0]), dict((str(k), int(_num(v))) for k, v in row[1].items())])
    out.sort(key=lambda r: r[0])
    return out


# ----------------------------------------------------------------- histograms

def _sig4(v):
    return float('%.4g' % v)


def bucket_middle_ms(upper_ms):
    """The middle of the engine's bucket whose upper edge is upper_ms, in ms (what the
    engine gives as a percentile): half a bucket down on its log(1 + us) scale."""
    return (math.exp(math.log(upper_ms * 1e3 + 1.0) - 0.5 / HIST_PER_E) - 1.0) / 1e3


def bucket_lower_ms(upper_ms):
    """The lower edge of the engine's bucket whose upper edge is upper_ms, in ms."""
    return (math.exp(math.log(upper_ms * 1e3 + 1.0) - 1.0 / HIST_PER_E) - 1.0) / 1e3


def clean_buckets(buckets):
    """{upper_ms (4 significant digits): count} of a histogram's [[upper_ms, count]]."""
    out = {}
    for b in buckets or []:
        if isinstance(b, (list, tuple)) and len(b) > 1:
            upper, n = _num(b[0], None), int(_num(b[1]))
            if upper is not None and upper > 0 and n > 0:
                out[_sig4(upper)] = out.get(_sig4(upper), 0) + n
    return out


def percentile_ms(buckets, fraction):
    """The fraction-quantile (ms) of sorted [[upper_ms, count]]: the middle of the bucket
    the fraction of the samples reaches, as the engine computes it; None without samples."""
    total = sum(n for _u, n in buckets)
    if not total:
        return None
    want, run = fraction * total, 0
    for upper, n in buckets:
        run += n
        if run >= want:
            return round(bucket_middle_ms(upper), 3)
    return round(bucket_middle_ms(buckets[-1][0]), 3)


def merge_histograms(hists):
    """The engine's histograms ({count, sum_seconds, p50_ms, ..., max_ms, buckets}) of
    several hosts as one: the buckets with the same upper edge added up, the percentiles
    recomputed from them, the max the largest host's. None when no host has one."""
    hists = [h for h in hists if isinstance(h, dict)]
    if not hists:
        return None
    merged = {}
    for h in hists:
        for upper, n in clean_buckets(h.get('buckets')).items():
            merged[upper] = merged.get(upper, 0) + n
    buckets = sorted([u, n] for u, n in merged.items())
    count = sum(n for _u, n in buckets)
    maxes = [_num(h.get('max_ms'), None) for h in hists]
    maxes = [m for m in maxes if m is not None] + ([buckets[-1][0]] if buckets else [])
    sum_seconds = round(sum(_num(h.get('sum_seconds')) for h in hists), 6)
    return {
        'count': count, 'sum_seconds': sum_seconds,
        'mean_ms': round(sum_seconds * 1e3 / count, 3) if count else None,
        'p50_ms': percentile_ms(buckets, 0.50), 'p90_ms': percentile_ms(buckets, 0.90),
        'p99_ms': percentile_ms(buckets, 0.99),
        'max_ms': max(maxes) if count and maxes else None,
        'buckets': buckets,
    }


def histogram_brief(hist):
    """A host's histogram without its buckets (the per-client entry), or None."""
    if not isinstance(hist, dict):
        return None
    return dict((k, hist.get(k)) for k in ('count', 'p50_ms', 'p90_ms', 'p99_ms', 'max_ms'))


# ------------------------------------------------------------ plot geometry

def short(v):
    """A compact number for an axis: 1.5M, 250k, 12.5, 0.25."""
    v = float(v)
    for div, suffix in ((1e9, 'G'), (1e6, 'M'), (1e3, 'k')):
        if abs(v) >= div:
            return '%g%s' % (float('%.3g' % (v / div)), suffix)
    return '%g' % float('%.3g' % v) if v else '0'


def ms_label(ms):
    """A time in ms for an axis: 50 µs, 2 ms, 1.5 s."""
    if ms >= 1000:
        return '%g s' % float('%.3g' % (ms / 1000.0))
    if ms >= 1:
        return '%g ms' % float('%.3g' % ms)
    return '%g \u00b5s' % float('%.3g' % (ms * 1000.0))


def nice_step(span, ticks=4):
    """A round step (1, 2, 2.5, 5 x 10^k) dividing span into about ticks parts."""
    if span <= 0:
        return 1.0
    raw = span / float(ticks)
    base = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * base * (1 + 1e-9):
            return m * base
    return 10 * base


def _xticks(ticks, width):
    """[{x, label, anchor}]: a label near the right edge ends at its tick, inside the box."""
    return [{'x': round(x, 1), 'label': label,
             'anchor': 'end' if x > width - 6 * len(label) else 'middle'} for x, label in ticks]


def _frame(width, height, left, right, top, bottom):
    return {'width': width, 'height': height, 'x0': left, 'x1': width - right,
            'y0': top, 'y1': height - bottom}


def time_plot(series, tmax=None, width=640, height=260, left=56, right=16, top=12, bottom=30):
    """Geometry of a plot of several series over the run's time.

    series: [{label, points: [[t, v]], color, width, dash, step}]; a step series holds
    each value until its next point, from 0 at t=0 to tmax. The y axis ends on a round
    number above the largest value. None when no series has a point.
    """
    series = [s for s in series if s.get('points')]
    if not series:
        return None
    tmax = max([tmax or 0] + [p[0] for s in series for p in s['points']]) or 1
    vmax = max(p[1] for s in series for p in s['points'])
    ystep = nice_step(vmax or 1)
    ytop = ystep * max(1, math.ceil(vmax / ystep - 1e-9))
    f = _frame(width, height, left, right, top, bottom)
    x0, x1, y0, y1 = f['x0'], f['x1'], f['y0'], f['y1']

    def xy(t, v):
        return '%.1f,%.1f' % (x0 + (x1 - x0) * min(t, tmax) / tmax, y1 - (y1 - y0) * v / ytop)

    drawn = []
    for s in series:
        points = s['points']
        if s.get('step'):
            coords, last = [xy(0, 0)], 0
            for t, v in points:
                coords += [xy(t, last), xy(t, v)]
                last = v
            coords.append(xy(tmax, last))
        else:
            coords = [xy(t, v) for t, v in thin(points, DRAWN)]
        drawn.append({'label': s['label'], 'color': s.get('color') or PALETTE[0],
                      'width': s.get('width', 1.5), 'dash': s.get('dash', ''),
                      'points': ' '.join(coords)})
    xstep = nice_step(tmax, 5)
    xticks = [i * xstep for i in range(int(tmax / xstep + 1e-9) + 1)]
    f.update({
        'tmax': tmax, 'vmax': ytop, 'series': drawn,
        'xticks': _xticks([(x0 + (x1 - x0) * t / tmax, '%g s' % round(t, 3)) for t in xticks],
                          width),
        'yticks': [{'y': round(y1 - (y1 - y0) * i * ystep / ytop, 1), 'label': short(i * ystep)}
                   for i in range(int(round(ytop / ystep)) + 1)],
    })
    return f


def histogram_plot(hist, width=640, height=240, left=56, right=16, top=16, bottom=30):
    """Geometry of a histogram on a log time axis (ms): one bar per bucket, from its
    lower to its upper edge, and the p50, p90, p99 and max marked. None without samples."""
    if not isinstance(hist, dict):
        return None
    buckets = sorted(clean_buckets(hist.get('buckets')).items())
    if not buckets:
        return None
    f = _frame(width, height, left, right, top, bottom)
    x0, x1, y0, y1 = f['x0'], f['x1'], f['y0'], f['y1']
    marks = [(name, _num(hist.get(key), None)) for name, key in
             (('p50', 'p50_ms'), ('p90', 'p90_ms'), ('p99', 'p99_ms'), ('max', 'max_ms'))]
    marks = [(name, v) for name, v in marks if v is not None and v > 0]
    lows = [bucket_lower_ms(u) for u, _n in buckets]
    lo = math.floor(math.log10(min(lows + [v for _n, v in marks])))
    hi = math.ceil(math.log10(max([u for u, _n in buckets] + [v for _n, v in marks])))
    hi = max(hi, lo + 1)
    nmax = max(n for _u, n in buckets)
    ystep = nice_step(nmax)
    ytop = ystep * max(1, math.ceil(nmax / ystep - 1e-9))

    def x(ms):
        return x0 + (x1 - x0) * (math.log10(ms) - lo) / (hi - lo)

    bars = []
    for (upper, n), lower in zip(buckets, lows):
        h = (y1 - y0) * n / ytop
        left_x = x(lower)
        bars.append({'x': round(left_x, 2), 'w': round(max(x(upper) - left_x, 1.0), 2),
                     'y': round(y1 - h, 2), 'h': round(h, 2), 'upper_ms': upper, 'count': n})
    ticks = []
    for k in range(lo, hi + 1):
        ticks.append(10.0 ** k)
        if hi - lo <= 2 and k < hi:
            ticks += [2 * 10.0 ** k, 5 * 10.0 ** k]
    f.update({
        'bars': bars, 'vmax': ytop,
        'marks': [{'x': round(x(v), 1), 'name': name, 'label': '%s %s' % (name, ms_label(v)),
                   'ty': y0 + 12 + 13 * i} for i, (name, v) in enumerate(marks)],
        'xticks': _xticks([(x(t), ms_label(t)) for t in sorted(ticks)], width),
        'count': hist.get('count'),
        'mean': ms_label(hist['mean_ms']) if hist.get('mean_ms') else None,
        'yticks': [{'y': round(y1 - (y1 - y0) * i * ystep / ytop, 1), 'label': short(i * ystep)}
                   for i in range(int(round(ytop / ystep)) + 1)],
    })
    return f


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
        'connect_latency': histogram_brief(summary.get('connect_latency')),
        'protocol': summary.get('protocol') or {'name': 'tcp'},
        'verified_client': _side(verified, host, 'start', 'client'),
        'verified_client_end': _side(verified, host, 'end', 'client'),
        'started_at': iso(data.get('started_at')),
        'launched_at': iso(data.get('launched_at')),
        # epoch seconds (ms), as a failure's `at`: when every client had reached its share
        # (the hold's start) and when the kernel's counts were kept; the count at the start
        # of the hold runs inside it
        'hold_started_at': _epoch(data.get('hold_started_at')),
        'counted_at': {'start': _epoch(_side(verified, host, 'start', 'at')),
                       'end': _epoch(_side(verified, host, 'end', 'at'))},
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
        # how the half watched what it held: poll, or epoll (echo, heartbeats, TLS)
        'watch': (status.get('watch') or {}).get('mode'),
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


def service_counts(readings, hosts):
    """The count on the hosts of a service under test (a fleet's group services).

    readings: {phase: [tcp_sockets_info results over the hosts, item: the host]};
    hosts: the hosts of the group. Returns {verified_on, note, hosts: {host: {start, end,
    reachable, error}}, start, end}: verified_on 'both' when every host was counted at
    the start of the hold (start/end: their sums), 'partial' when some were, 'client' when
    none were (the group is empty, or no host of it could be reached or read).
    """
    out = dict((h, {'start': None, 'end': None, 'reachable': None, 'error': None})
               for h in hosts)
    for phase in ('start', 'end'):
        for r in (readings or {}).get(phase) or []:
            host = r.get('item')
            if host not in out:
                continue
            if r.get('unreachable'):
                out[host].update(reachable=False, error=(r.get('msg') or 'unreachable').strip())
            elif r.get('failed') or r.get('total') is None:
                out[host].update(reachable=True, error=(r.get('msg') or 'no count').strip())
            else:
                out[host]['reachable'] = True
                out[host][phase] = int(_num(r.get('total')))
    counted = [h for h in hosts if out[h]['start'] is not None]
    if hosts and len(counted) == len(hosts):
        verified_on, note = 'both', None
    elif counted:
        verified_on = 'partial'
        note = ('the service\'s side was counted on %s only (%s at the start of the hold); %s: '
                'the verdict rests on the client side' % (
                    ', '.join(counted), fmt(sum(out[h]['start'] for h in counted)),
                    '; '.join('%s %s' % (h, _uncounted(out[h])) for h in hosts
                              if h not in counted)))
    else:
        verified_on = 'client'
        note = ('verified on the client side only: %s' % (
            '; '.join('%s %s' % (h, _uncounted(out[h])) for h in hosts) if hosts else
            'the inventory has no group "services" to count the service\'s side on'))
    ends = [out[h]['end'] for h in hosts]

    def total(phase, names):
        values = [out[h][phase] for h in names]
        return sum(values) if names and None not in values else None
    return {'verified_on': verified_on, 'note': note, 'hosts': out,
            'start': total('start', hosts) if verified_on == 'both' else None,
            'end': total('end', hosts) if verified_on == 'both' and None not in ends else None}


def _uncounted(entry):
    if entry['reachable'] is False:
        return 'could not be reached (%s)' % entry['error']
    if entry['error']:
        return 'could not be counted (%s)' % entry['error']
    return 'was not counted'


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
        if isinstance(p.get('tls'), dict):
            tls = out.setdefault('tls', {'handshakes': 0, 'resumed': 0, 'failed': 0})
            for key in ('handshakes', 'resumed', 'failed'):
                tls[key] += int(_num(p['tls'].get(key)))
    return out


def failure_sentence(f):
    """A failure the play caught, in words."""
    return '%s failed in "%s"%s: %s' % (
        f.get('host', '?'), f.get('phase', '?'),
        ' at %s' % f['at'] if f.get('at') else '', f.get('message', 'failed'))


def missing_sentence(host):
    return 'host %s left the play (unreachable, or failed in an earlier step)' % host


def client_reasons(host, c):
    """The sentences that say why client host's half did not do its share (empty: it did)."""
    reasons = []
    if c['summary_missing']:
        return ['client %s wrote no summary: its half %s' % (host, c['exit'])]
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
        reasons.append('the client half on %s %s (exit status %s)' % (host, c['exit'], c['rc']))
    return reasons


def client_count_reasons(host, c):
    """The kernel's count of client host's connections against its share: at the start of
    the hold no fewer than the share, at its end no fewer than the share minus its allowed
    loss. Empty when they are, or when the share is unknown (no summary)."""
    share = _int_or_none(c['target'])
    if not share:
        return []
    start, end = c['verified_client'], c['verified_client_end']
    if start is None:
        return ['the kernel did not count the connections of client %s at the start of the '
                'hold' % host]
    if int(start) < share:
        return ['at the start of the hold the kernel counted %s connection(s) of client %s, '
                'below its share %s' % (fmt(start), host, fmt(share))]
    if end is None:
        return ['the kernel did not count the connections of client %s at the end of the '
                'hold' % host]
    if int(end) < share - c['allowed_loss']:
        return ['at the end of the hold the kernel counted %s connection(s) of client %s: %s '
                'lost during the hold, more than the %s allowed (client_hold_tolerance)'
                % (fmt(end), host, fmt(share - int(end)), fmt(c['allowed_loss']))]
    return []


def host_reasons(report, host):
    """Why client host did not reach and verify its share: the play's failures on it, its
    leaving the play, its half's own account and the kernel's count of it."""
    c = report['clients'][host]
    return ([failure_sentence(f) for f in report['failures'] if f.get('host') == host]
            + ([missing_sentence(host)] if host in report['missing_hosts'] else [])
            + client_reasons(host, c) + client_count_reasons(host, c))


def verdict(report, failures, missing):
    """The sentences that say why the run does not pass (empty: it passes)."""
    reasons = []
    target = report['target']
    for f in failures:
        reasons.append(failure_sentence(f))
    for host in missing:
        reasons.append(missing_sentence(host))
    for host, c in sorted(report['clients'].items()):
        reasons += client_reasons(host, c)
    both = report.get('verified_on', 'both') == 'both'
    start = [('server', report['verified_server_side'])] if both else []
    start.append(('client', report['verified_client_side']))
    short = [(side, n) for side, n in start if n is None or n < target]
    if target and short:
        reasons.append('at the start of the hold the kernel counted %s, below the target %s'
                       % (', '.join('%s side %s' % (side, '-' if n is None else fmt(n))
                                    for side, n in start), fmt(target)))
    end = [('server', report['verified_end_server_side'])] if both else []
    end.append(('client', report['verified_end_client_side']))
    floor = target - report['allowed_loss']
    short_end = [(side, n) for side, n in end if n is None or n < floor]
    if target and short_end and not short:
        reasons.append('at the end of the hold the kernel counted %s: %s connection(s) lost '
                       'during the hold, more than the %s allowed (client_hold_tolerance)'
                       % (', '.join('%s side %s' % (side, '-' if n is None else fmt(n))
                                    for side, n in end),
                          fmt(target - min(n or 0 for _s, n in end)),
                          fmt(report['allowed_loss'])))
    if target and not short and not short_end:
        # the sums can hide a host short of its share behind one counted above its own
        for host, c in sorted(report['clients'].items()):
            reasons += client_count_reasons(host, c)
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
                 started=None, finished=None, services=None):
    """Aggregate a run.

    clients:  {host: {rc, summary, started_at (epoch), log_tail}}; {} when it never started
    servers:  {host: {start: status, end: status, running_at_end: bool}}
    verified: {host: {start: {server: n, client: n, at}, end: {...}}} (tcp_sockets_info)
    failures: [{host, phase, message, at}] caught by the play
    missing:  hosts of the plan that left the play
    started, finished: epoch seconds of the run
    services: a service under test on a fleet, {hosts: [the group services], readings:
    {phase: [tcp_sockets_info results]}} (service_counts); None otherwise
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
    timelines = {}
    offsets = {}
    for host, summary in sorted(summaries.items()):
        tl = clean_timeline(summary.get('timeline'), summary.get('timeline_columns'))
        offsets[host] = (starts[host] - t0) \
            if starts.get(host) is not None and t0 is not None else 0
        if tl:
            timelines[host] = shift(tl, offsets[host])
    merged = merge_timelines(list(timelines.values()))
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
    service = None
    if services is not None:
        service = service_counts(services.get('readings'), list(services.get('hosts') or []))
        sides[('start', 'server')], sides[('end', 'server')] = service['start'], service['end']
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
        # where the count was verified: both sides, or (a service whose hosts could not
        # all be counted) the client side only, with the note that says why
        'verified_on': service['verified_on'] if service else 'both',
        'verification_note': service['note'] if service else None,
        'services': service['hosts'] if service else {},
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
    report.update(over_time(summaries, timelines, offsets, merged, errors))
    report['junit'] = junit(report)
    return report


def over_time(summaries, timelines, offsets, merged, errors):
    """The series over time, the merged histograms and the geometry of their plots.

    summaries: {host: client summary}; timelines: {host: cleaned timeline on the run's
    clock} (hosts with one); offsets: {host: seconds its clock starts after the run's};
    merged: the summed timeline; errors: the run's error totals by kind. Returns the keys
    series, connect_latency, heartbeat_rtt and plots ({name: {geometry, notes}}: geometry
    None and a sentence in notes when there is nothing to draw).
    """
    hosts = sorted(summaries)
    by_host = dict((h, thin([[r[0], int(r[1])] for r in tl])) for h, tl in timelines.items())
    total = [[r[0], r[1]] for r in merged]
    old = [h for h in sorted(timelines) if not has_column(summaries[h], 'opened')]
    rate = rate_series([opened_series(timelines[h], h not in old) for h in sorted(timelines)])
    errors_rows = dict((h, shift(clean_errors_timeline(summaries[h].get('errors_timeline')),
                                 offsets.get(h, 0)))
                       for h in hosts if summaries[h].get('errors_timeline'))
    kinds = errors_by_kind([errors_rows[h] for h in sorted(errors_rows)])
    latency = merge_histograms([summaries[h].get('connect_latency') for h in hosts])
    rtt = merge_histograms([(summaries[h].get('heartbeat') or {}).get('rtt') for h in hosts])
    tmax = max([r[0] for r in merged] + [p[0] for k in kinds.values() for p in k] + [0])
    plots = {}

    # established: each host (the first MAX_HOSTS_DRAWN) and the sum
    notes = []
    drawn = sorted(by_host)[:MAX_HOSTS_DRAWN]
    lines = [{'label': h, 'points': by_host[h], 'color': PALETTE[i % len(PALETTE)]}
             for i, h in enumerate(drawn)]
    if len(by_host) > 1 or not lines:
        lines.append({'label': 'all clients', 'points': total, 'color': '#222', 'width': 2.5})
    if len(by_host) > len(drawn):
        notes.append('%d more client host(s) are drawn in the sum only.'
                     % (len(by_host) - len(drawn)))
    silent = [h for h in hosts if h not in by_host]
    if silent and by_host:
        notes.append('No timeline from %s (no summary, or an empty one).' % ', '.join(silent))
    plots['established'] = {'geometry': time_plot(lines, tmax), 'notes': notes}
    if not by_host:
        plots['established']['notes'] = ['No client recorded a timeline.']

    # connections per second, from the opened column
    notes = []
    if old:
        notes.append('%s: an older summary without the opened column; there the rate is derived '
                     'from the rise of established connections, which misses connections '
                     'opened while others ended.' % ', '.join(old))
    plots['rate'] = {'geometry': time_plot([{'label': 'connections opened per second, all '
                                                      'clients', 'points': rate,
                                             'color': PALETTE[2], 'width': 2}], tmax),
                     'notes': notes}
    if not rate:
        plots['rate']['notes'] = ['No rate to draw: the timelines have fewer than two samples.'
                                  if by_host else 'No client recorded a timeline.']

    for name, hist, field, what in (
            ('latency', latency, 'connect_latency', 'connect latency'),
            ('rtt', rtt, 'heartbeat.rtt', 'heartbeat round-trip time')):
        lacking = [h for h in hosts if not (summaries[h].get(field) if field == 'connect_latency'
                                            else (summaries[h].get('heartbeat') or {}).get('rtt'))]
        notes = []
        if hist is None:
            notes.append('No %s was recorded: the summaries have no %s histogram (older '
                         'engine%s).' % (what, field, ', or heartbeats off' if name == 'rtt'
                                         else ', or no summary'))
        elif not hist['count']:
            notes.append('No %s was measured (%s).' % (
                what, 'no heartbeat was answered' if name == 'rtt'
                else 'no connection was established'))
        elif lacking:
            notes.append('No %s histogram from %s (an older engine, or no summary); the '
                         'histogram covers the other hosts.' % (field, ', '.join(lacking)))
        plots[name] = {'geometry': histogram_plot(hist), 'notes': notes}

    # errors by kind, cumulative
    notes = []
    ranked = sorted(kinds, key=lambda k: (-kinds[k][-1][1], k))
    lines = [{'label': k, 'points': kinds[k], 'color': PALETTE[i % len(PALETTE)], 'step': True}
             for i, k in enumerate(sorted(ranked[:MAX_KINDS_DRAWN]))]
    if len(ranked) > MAX_KINDS_DRAWN:
        notes.append('Not drawn: %s.' % ', '.join('%s %s' % (k, fmt(kinds[k][-1][1]))
                                                  for k in ranked[MAX_KINDS_DRAWN:]))
    without = [h for h in hosts if summaries[h] and 'errors_timeline' not in summaries[h]]
    if not kinds:
        if errors:
            notes.append('Errors were counted (%s) but %s no errors timeline (older '
                         'engine).' % (', '.join('%s %s' % (k, fmt(v))
                                                 for k, v in sorted(errors.items())),
                                       'the summaries have' if without else 'there is'))
        else:
            notes.append('No errors were counted.')
    elif without:
        notes.append('No errors timeline from %s (an older engine).' % ', '.join(without))
    plots['errors'] = {'geometry': time_plot(lines, tmax), 'notes': notes}
    return {
        'series': {'established_by_host': by_host, 'established_total': total,
                   'connections_per_s': rate,
                   'connections_per_s_from_established': old,
                   'errors_by_kind': kinds},
        'connect_latency': latency,
        'heartbeat_rtt': rtt,
        'plots': plots,
    }


# ------------------------------------------------------------------- JUnit

# Characters XML 1.0 cannot carry, even escaped.
_NOT_XML = re.compile(u'[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]')


def xml_text(value):
    """Text an XML document can carry (the template escapes & < > " ')."""
    return _NOT_XML.sub(u'\ufffd', u'%s' % (value,))


def junit(report):
    """The report as a JUnit suite (what report.junit.xml draws): one test case per client
    host (its share reached and verified) and one for the whole run, failing exactly when
    the run does not pass (verified_ok)."""
    cases = []
    for host in sorted(report['clients']):
        c = report['clients'][host]
        reasons = host_reasons(report, host)
        out = ''
        if reasons and c['log_tail']:
            out = 'End of the client log on %s:\n%s' % (host, '\n'.join(c['log_tail']))
        cases.append({'classname': 'scalelab.testbed.client',
                      'name': '%s: share reached and verified' % host,
                      'time': c['seconds_to_target'] or 0,
                      'failure': {'message': reasons[0], 'text': '\n'.join(reasons)}
                      if reasons else None,
                      'system_out': out})
    run_reasons = list(report['reasons'])
    if not report['verified_ok'] and not run_reasons:
        run_reasons = ['no connection target was set (testbed_connections)']
    cases.append({'classname': 'scalelab.testbed.run',
                  'name': 'run: %s connections verified' % fmt(report['target']),
                  'time': report['wall_seconds'] or 0,
                  'failure': {'message': '; '.join(run_reasons), 'text': '\n'.join(run_reasons)}
                  if run_reasons else None,
                  'system_out': ''})
    for case in cases:
        case['name'] = xml_text(case['name'])
        case['system_out'] = xml_text(case['system_out'])
        if case['failure']:
            case['failure'] = {'message': xml_text(' '.join(case['failure']['message'].split())),
                               'text': xml_text(case['failure']['text'])}
    return {'name': 'scalelab.testbed', 'tests': len(cases),
            'failures': sum(1 for c in cases if c['failure']), 'errors': 0, 'skipped': 0,
            'time': report['wall_seconds'] or 0,
            # JUnit's timestamp has no zone: the run's start, in UTC
            'timestamp': (report['started'] or '').rstrip('Z'),
            'testcases': cases}


def report_from_records(records, clients, servers, target, missing=None, finished=None,
                        services=None):
    """build_report from one record per host, as the report role gathers them.

    records: {host: {client, started_at, verified, server, failure}}; client is the
    client role's result (None when its phases did not end), failure what the play
    caught on that host (None). clients/servers: the hosts of each half in the plan.
    services: the hosts of a fleet's service under test (None: no such service); their
    counts are the record's service_counts ({phase: [results]}, the same on every host).
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
        finished=_num(finished, None),
        services=None if services is None else {
            'hosts': list(services),
            'readings': next((rec(h).get('service_counts') for h in sorted(records)
                              if rec(h).get('service_counts')), {})})
