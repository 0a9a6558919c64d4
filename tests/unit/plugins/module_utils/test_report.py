# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The report of a run and its verdict over the whole run (module_utils/report.py)."""

from __future__ import annotations

import os
import re
import xml.dom.minidom

import jinja2
import pytest

from ansible_collections.scalelab.testbed.plugins.filter import testbed as tb
from ansible_collections.scalelab.testbed.plugins.module_utils import report as rp

T0 = 1767225600.0          # 2026-01-01T00:00:00Z, the start of every run here


def summary(target, reached=True, peak=None, final=None, timeline=None, errors=None,
            lost=(), dropped=0, hold_lost=0, allowed=0):
    peak = target if peak is None else peak
    final = (peak - hold_lost) if final is None else final
    return {
        'role': 'client', 'target': target, 'reached': reached,
        'established_peak': peak, 'established_at_target': target if reached else None,
        'established_final': final, 'seconds_to_target': 10.0 if reached else None,
        'connections_per_s': 1000.0, 'errors': errors or {}, 'dropped': dropped,
        'hold': {'held_ok': (hold_lost <= allowed and not lost) if reached else None,
                 'lost': hold_lost if reached else None, 'allowed_loss': allowed,
                 'tolerance': allowed / float(target), 'dropped_by_peer': dropped},
        'kernel_bytes_per_conn': 8000.0, 'user_bytes_per_conn': 200.0, 'workers': 2,
        'lost_workers': list(lost),
        'timeline': timeline or [[0, 0, 0, 0, 0], [5, target // 2, 10, 100, 0],
                                 [10, target, 20, 200, dropped]],
    }


def record(client=None, server=None, start=None, end=None, failure=None, started_at=T0):
    verified = {}
    if start:
        verified['start'] = dict(zip(('server', 'client'), start))
    if end:
        verified['end'] = dict(zip(('server', 'client'), end))
    return {'client': client, 'started_at': started_at, 'verified': verified,
            'server': server or {}, 'failure': failure}


def server_state(held, lost=(), running=True):
    status = {'held_total': held, 'listening': 16, 'workers': 3, 'lost_workers': list(lost)}
    return {'start': status, 'end': status, 'running_at_start': True, 'running_at_end': running}


def one_box(client, server, start, end, failure=None, target=1000):
    return rp.report_from_records({'h': record(client, server, start, end, failure)},
                                  ['h'], ['h'], target, finished=T0 + 60)


def test_a_run_that_held_its_target_passes():
    r = one_box({'rc': 0, 'summary': summary(1000)}, server_state(1000), (1000, 1000),
                (1000, 1000))
    assert r['verified_ok'] and r['reasons'] == []
    assert r['verified'] == 1000 and r['verified_end'] == 1000
    assert r['verified_end_server_side'] == 1000 and r['verified_end_client_side'] == 1000
    assert r['started'] == '2026-01-01T00:00:00Z' and r['wall_seconds'] == 60.0
    assert r['timeline'][-1] == [10, 1000, 20, 200, 0, 0, 0]
    assert r['plot']['drops'] == '' and r['plot']['marks'] == []


def test_a_client_row_says_when_its_hold_started_and_when_it_was_counted():
    rec = record({'rc': 0, 'summary': summary(1000), 'hold_started_at': T0 + 12.4},
                 server_state(1000), (1000, 1000), (1000, 1000))
    rec['verified']['start']['at'] = T0 + 13.9
    rec['verified']['end']['at'] = T0 + 23.1
    r = rp.report_from_records({'h': rec}, ['h'], ['h'], 1000, finished=T0 + 60)
    client = r['clients']['h']
    assert client['hold_started_at'] == T0 + 12.4
    assert client['counted_at'] == {'start': T0 + 13.9, 'end': T0 + 23.1}
    # a run without them (a client that never reached, a record from before): None
    bare = one_box({'rc': 0, 'summary': summary(1000)}, server_state(1000), (1000, 1000), None)
    assert bare['clients']['h']['hold_started_at'] is None
    assert bare['clients']['h']['counted_at'] == {'start': None, 'end': None}


def test_a_holder_lost_in_the_hold_fails_and_is_named():
    lost = {'pid': 4242, 'worker': 's3', 'keeper': 0, 'how': 'killed by SIGKILL',
            'at': T0 + 25.3, 't': 1234.5, 'held': 400}
    earlier = dict(lost, pid=17, worker='s1', at=T0 - 3600)       # a previous run's loss
    client = {'rc': 1, 'summary': summary(1000, hold_lost=400, dropped=400), 'hold_planned': 60}
    client['summary']['hold']['seconds'] = 8.3
    r = one_box(client, server_state(600, lost=[earlier, lost]), (1000, 1000), (600, 600))
    assert not r['verified_ok']
    assert [w['pid'] for w in r['lost_workers']] == [4242]
    w = r['lost_workers'][0]
    assert w['host'] == 'h' and w['half'] == 'server' and w['seconds_into_run'] == 25.3
    assert w['at_iso'] == '2026-01-01T00:00:25Z' and w['held'] == 400
    text = ' | '.join(r['reasons'])
    assert 'server h lost worker s3 (pid 4242, killed by SIGKILL) at 2026-01-01T00:00:25Z, ' \
           '25.3 s into the run, holding 400 connection(s)' in text
    assert 'at the end of the hold the kernel counted server side 600, client side 600: ' \
           '400 connection(s) lost during the hold, more than the 0 allowed' in text
    assert 'client h held 600 of 1,000 at the end (ended by the peer during the hold: 400; ' \
           'the hold was cut short after 8.3 s of the 60 s planned, once it had broken)' in text
    assert 'did not reach or did not hold its target (exit status 1)' in text
    assert r['plot']['marks'][0]['label'] == 'h s3 lost'


def test_connections_ended_by_the_peer_fail_unless_within_the_tolerance():
    tl = [[0, 0, 0, 0, 0], [5, 1000, 1, 1, 0], [6, 990, 1, 1, 10], [10, 990, 1, 1, 10]]
    short = one_box({'rc': 1, 'summary': summary(1000, hold_lost=10, dropped=10, timeline=tl)},
                    server_state(990), (1000, 1000), (990, 990))
    assert not short['verified_ok'] and short['dropped_during_hold'] == 10
    assert 'drops' in short['plot'] and short['plot']['drops']
    within = one_box({'rc': 0, 'summary': summary(1000, hold_lost=10, dropped=10, allowed=10,
                                                  timeline=tl)},
                     server_state(990), (1000, 1000), (990, 990))
    assert within['verified_ok'], within['reasons']
    assert within['allowed_loss'] == 10


def test_a_short_start_count_fails_even_when_the_clients_say_they_reached():
    r = one_box({'rc': 0, 'summary': summary(1000)}, server_state(1000), (1000, 990), (1000, 990))
    assert not r['verified_ok'] and r['verified'] == 990
    assert r['reasons'] == ['at the start of the hold the kernel counted server side 1,000, '
                            'client side 990, below the target 1,000']


def test_a_killed_client_supervisor_fails_with_what_is_known():
    r = one_box({'rc': 137, 'summary': {}, 'log_tail': ['tcpscale: [ 3.0s] established 1000']},
                server_state(0), (1000, 1000), (0, 0))
    assert not r['verified_ok']
    assert r['clients']['h']['exit'] == 'was killed by SIGKILL'
    assert 'client h wrote no summary: its half was killed by SIGKILL' in r['reasons']


def test_a_client_that_never_started_and_a_caught_failure():
    failure = {'phase': 'Start the client half', 'message': 'boom', 'at': '2026-01-01T00:00:01Z'}
    r = rp.report_from_records({'h': record(None, server_state(0), failure=failure,
                                            started_at=None)},
                               ['h'], ['h'], 1000, finished=T0)
    assert not r['verified_ok']
    assert r['clients']['h']['exit'] == 'did not start'
    assert r['failures'] == [dict(failure, host='h')]
    assert r['reasons'][0] == 'h failed in "Start the client half" at 2026-01-01T00:00:01Z: boom'


def test_hosts_that_left_the_play_and_a_stopped_server_fail_the_run():
    records = {'c1': record({'rc': 0, 'summary': summary(500)}, start=(None, 500), end=(None, 500)),
               's1': record(None, server_state(500, running=False), start=(500, None),
                            end=(500, None), started_at=None)}
    r = rp.report_from_records(records, ['c1', 'c2'], ['s1'], 1000, missing=['c2'],
                               finished=T0 + 30)
    assert not r['verified_ok']
    assert 'host c2 left the play (unreachable, or failed in an earlier step)' in r['reasons']
    assert 'the server half on s1 was not running at the end of the hold' in r['reasons']
    assert r['clients']['c2']['exit'] == 'did not start'


def test_timelines_are_merged_on_the_run_clock():
    a = summary(100, timeline=[[0, 0, 0, 0, 0], [2, 100, 1, 1, 0]])
    b = summary(100, timeline=[[0, 50, 1, 1, 0], [2, 100, 1, 1, 3]])
    records = {'a': record({'rc': 0, 'summary': a}),
               'b': record({'rc': 0, 'summary': b}, started_at=T0 + 1)}
    r = rp.report_from_records(records, ['a', 'b'], [], 200, finished=T0 + 10)
    assert [row[:2] for row in r['timeline']] == [[0, 0], [1, 50], [2, 150], [3, 200]]
    assert r['timeline'][-1][4] == 3


def test_older_four_column_timelines_are_padded():
    assert rp.clean_timeline([[1, 2, 3, 4]]) == [[1.0, 2.0, 3.0, 4.0, 0, 0, 0]]


def test_timeline_rows_are_read_by_their_column_names():
    columns = ['t_seconds', 'established', 'opened', 'user_pss_bytes', 'kernel_bytes', 'dropped']
    assert rp.clean_timeline([[2, 10, 12, 3, 4, 1], [1, 5, 5, 3, 4, 0]], columns) == \
        [[1.0, 5.0, 3.0, 4.0, 0.0, 5.0, 0], [2.0, 10.0, 3.0, 4.0, 1.0, 12.0, 0]]
    assert rp.has_column({'timeline': [[0, 1, 2, 3, 4, 5, 6]],
                          'timeline_columns': rp.TIMELINE_COLUMNS}, 'opened')
    assert not rp.has_column({'timeline': [[0, 1, 2, 3, 4]]}, 'opened')
    assert not rp.has_column({'timeline': [[0, 1, 2, 3, 4, 5, 6]],
                              'timeline_columns': rp.TIMELINE_COLUMNS[:5]}, 'opened')


def test_plot_stays_inside_its_frame():
    timeline = [[t, t * 1000, 10 * t, 100 * t, 7 * t] for t in range(0, 40)]
    p = rp.plot(timeline, [{'t': 20, 'label': 'x'}])
    for series in (p['connections'], p['memory'], p['drops']):
        for point in series.split():
            x, y = (float(v) for v in point.split(','))
            assert p['x0'] <= x <= p['x1'] and p['y0'] <= y <= p['y1']
    assert p['yticks'][-1]['label'] == '39,000'
    assert p['x0'] < p['marks'][0]['x'] < p['x1']


@pytest.mark.parametrize('rc, words', [(0, 'ended cleanly'), (2, 'refused its arguments'),
                                       (3, 'lost a worker'), (143, 'SIGTERM'), (-9, 'SIGKILL'),
                                       (None, 'without an exit status'), (7, 'exit status 7')])
def test_exit_statuses_in_words(rc, words):
    assert words in rp.describe_exit(rc)


def test_the_filter_is_the_core():
    records = {'h': record({'rc': 0, 'summary': summary(10)}, server_state(10), (10, 10), (10, 10))}
    assert tb.testbed_report(records, ['h'], ['h'], 10, finished=T0) == \
        rp.report_from_records(records, ['h'], ['h'], 10, finished=T0)


def test_report_html_renders_the_verdict_the_losses_and_a_valid_svg():
    here = os.path.dirname(os.path.abspath(tb.__file__))
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(
        os.path.join(here, '..', '..', 'roles', 'report', 'templates')), autoescape=False)
    lost = {'pid': 4242, 'worker': 's3', 'how': 'killed by SIGKILL', 'at': T0 + 5, 'held': 400}
    records = {'c<1>': record({'rc': 1, 'summary': summary(1000, hold_lost=400, dropped=400,
                                                           errors={'peer_closed': 400})},
                              server_state(600, lost=[lost]), (1000, 1000), (600, 600))}
    data = rp.report_from_records(records, ['c<1>'], ['c<1>'], 1000, finished=T0 + 20)
    html = env.get_template('report.html.j2').render(report_data=data, report_title='t & t')
    svg = re.search(r'<svg.*?</svg>', html, re.S).group(0)
    xml.dom.minidom.parseString(svg)
    assert 'c&lt;1&gt;' in html and 't &amp; t' in html
    assert 'Why the run failed' in html and 'lost worker s3 (pid 4242' in html
    assert 'class="drops"' in svg and 'class="lost"' in svg
    assert 'peer_closed 400' in html and 'Workers lost during the run' in html


def test_the_timeline_columns_are_the_engines():
    from testlib import load_module
    shm = load_module('engine_shm', 'files', 'tcpscale', 'shm.py')
    assert shm.TIMELINE_COLUMNS == rp.TIMELINE_COLUMNS


def test_a_fleet_report_has_one_row_per_host_the_start_spread_and_conntrack():
    records = {}
    for i, host in enumerate(('c1', 'c2', 'c3')):
        client = {'rc': 0, 'summary': summary(80000), 'launched_at': T0 + 0.4 * i,
                  'manager': 'systemd'}
        records[host] = record(client, start=(None, 80000), end=(None, 80000))
        records[host]['verified']['start']['conntrack'] = '12'
    for host in ('s1', 's2'):
        records[host] = record(None, server_state(120000), start=(120000, None),
                               end=(120000, None), started_at=None)
    r = rp.report_from_records(records, ['c1', 'c2', 'c3'], ['s1', 's2'], 240000, finished=T0 + 60)
    assert r['verified_ok'], r['reasons']
    assert len(r['clients']) + len(r['servers']) == 5
    assert r['verified_server_side'] == 240000 and r['verified_client_side'] == 240000
    assert r['start_spread_seconds'] == 0.8
    assert r['clients']['c2']['conntrack'] == 12 and r['clients']['c1']['manager'] == 'systemd'


def test_a_dual_stack_run_reports_each_family():
    sides = {('start', 'server'): 100, ('start', 'client'): 100,
             ('start', 'server6'): 50, ('start', 'client6'): 49}
    assert rp.by_family(sides) == {'ipv4': 50, 'ipv6': 49}
    assert rp.by_family({('start', 'server'): 100, ('start', 'client'): 100}) is None


# ------------------------------------------------ series, histograms, plots

def row(t, est, opened=None, errors=0):
    """A timeline row of the engine (seven columns); opened defaults to est."""
    return [t, est, 0, 0, 0, est if opened is None else opened, errors]


def new_summary(target, timeline, errors_timeline=None, latency=None, rtt=None, errors=None):
    s = summary(target, timeline=timeline, errors=errors)
    s['timeline_columns'] = list(rp.TIMELINE_COLUMNS)
    s['errors_timeline'] = errors_timeline or []
    if latency is not None:
        s['connect_latency'] = latency
    if rtt is not None:
        s['heartbeat'] = {'rtt_p50_ms': rtt.get('p50_ms'), 'rtt': rtt}
    return s


def test_histogram_buckets_add_up_and_percentiles_come_from_the_merged_buckets():
    a = {'count': 4, 'sum_seconds': 0.004, 'p50_ms': 0.975, 'max_ms': 2.0,
         'buckets': [[1.0, 3], [2.0, 1]]}
    b = {'count': 6, 'sum_seconds': 0.02, 'p50_ms': 1.951, 'max_ms': 10.5,
         'buckets': [[1.0, 2], [2.0, 3], [10.0, 1]]}
    m = rp.merge_histograms([a, None, b])
    assert m['buckets'] == [[1.0, 5], [2.0, 4], [10.0, 1]]
    assert m['count'] == 10 and m['sum_seconds'] == 0.024 and m['mean_ms'] == 2.4
    # the middle of the bucket, half a bucket (1/40 of an e-fold of 1 + us) below its edge:
    # (1001 us * e^-0.025 - 1) = 975.3 us; (2001 * e^-0.025 - 1) = 1950.6; (10001 ...) = 9753.1
    assert (m['p50_ms'], m['p90_ms'], m['p99_ms']) == (0.975, 1.951, 9.753)
    assert m['max_ms'] == 10.5                       # the hosts' max, not the bucket's edge
    assert rp.merge_histograms([None, {}]) == {
        'count': 0, 'sum_seconds': 0.0, 'mean_ms': None, 'p50_ms': None, 'p90_ms': None,
        'p99_ms': None, 'max_ms': None, 'buckets': []}
    assert rp.merge_histograms([None, 'x']) is None


def test_percentiles_count_the_samples_up_to_the_fraction():
    buckets = [[1.0, 50], [2.0, 40], [4.0, 9], [8.0, 1]]
    assert rp.percentile_ms(buckets, 0.5) == 0.975     # 50 of 100 reached in the first
    assert rp.percentile_ms(buckets, 0.9) == 1.951     # 90 in the second
    assert rp.percentile_ms(buckets, 0.99) == 3.901    # 99 in the third: 4001 * e^-0.025 - 1 us
    assert rp.percentile_ms(buckets, 1.0) == 7.802     # all: 8001 * e^-0.025 - 1 us
    assert rp.percentile_ms([], 0.5) is None


def test_one_host_merged_gives_the_engines_own_figures():
    import reportlib
    shm = reportlib.engine_shm()
    assert shm.HIST_PER_E == rp.HIST_PER_E
    samples = [0.0004 * 1.07 ** i for i in range(120)] + [0.003] * 300
    own = reportlib.histogram(samples)
    merged = rp.merge_histograms([own])
    assert merged['buckets'] == own['buckets'] and merged['count'] == own['count'] == 420
    for key in ('p50_ms', 'p90_ms', 'p99_ms'):
        assert merged[key] == pytest.approx(own[key], rel=1e-3), key
    assert merged['max_ms'] == own['max_ms']
    lower = rp.bucket_lower_ms(own['buckets'][0][0])
    assert lower == pytest.approx(shm.bucket_upper_s(shm.hist_index(0.0004) - 1) * 1e3, rel=1e-3)


def test_the_rate_comes_from_opened_and_adds_up_hosts_sampled_at_other_instants():
    # a opens 100 in its first second and 200 in its second; b, started 0.5 s later,
    # opens 50 in its first second: half of those in each second of the run
    a = new_summary(300, [row(0, 0), row(1, 100), row(2, 300)])
    b = new_summary(50, [row(0, 0), row(1, 50)])
    r = rp.report_from_records({'a': record({'rc': 0, 'summary': a}),
                                'b': record({'rc': 0, 'summary': b}, started_at=T0 + 0.5)},
                               ['a', 'b'], [], 350, finished=T0 + 10)
    assert r['series']['connections_per_s'] == [[1, 125.0], [2, 225.0]]
    assert r['series']['connections_per_s_from_established'] == []
    assert r['plots']['rate']['notes'] == [] and r['plots']['rate']['geometry']
    assert r['series']['established_by_host'] == {'a': [[0, 0], [1, 100], [2, 300]],
                                                  'b': [[0.5, 0], [1.5, 50]]}
    assert r['series']['established_total'] == [[0, 0], [0.5, 0], [1, 100], [1.5, 150],
                                                [2, 350]]
    # opened counts connections that ended too: established falls, opened does not
    c = new_summary(300, [row(0, 0), row(1, 100, 100), row(2, 50, 150)])
    r = rp.report_from_records({'c': record({'rc': 0, 'summary': c})}, ['c'], [], 300,
                               finished=T0 + 10)
    assert r['series']['connections_per_s'] == [[1, 100.0], [2, 50.0]]


def test_an_older_summary_without_opened_gets_its_rate_from_established():
    old = summary(150, timeline=[[0, 0, 0, 0, 0], [1, 100, 0, 0, 0], [2, 80, 0, 0, 20],
                                 [3, 150, 0, 0, 20]])
    r = rp.report_from_records({'old': record({'rc': 0, 'summary': old})}, ['old'], [], 150,
                               finished=T0 + 10)
    # the rises of established: 100, 0 (it fell), 70
    assert r['series']['connections_per_s'] == [[1, 100.0], [2, 0.0], [3, 70.0]]
    assert r['series']['connections_per_s_from_established'] == ['old']
    assert 'old: an older summary without the opened column; there the rate is derived ' \
           'from the rise of established connections' in r['plots']['rate']['notes'][0]
    assert r['timeline'][-1] == [3, 150, 0, 0, 20, 0, 0]


def test_errors_by_kind_add_up_over_hosts_on_the_run_clock():
    a = new_summary(10, [row(0, 0), row(4, 10, errors=5)],
                    errors_timeline=[[1, {'ECONNREFUSED': 2}], [3, {'ECONNREFUSED': 5}]])
    # b started 2 s after a: its 0.5 s is the run's 2.5 s
    b = new_summary(10, [row(0, 0), row(2, 10, errors=5)],
                    errors_timeline=[[0.5, {'ECONNREFUSED': 1, 'ETIMEDOUT': 4}],
                                     [1.5, {'ETIMEDOUT': 4, 'ECONNREFUSED': 1}]])
    r = rp.report_from_records({'a': record({'rc': 0, 'summary': a}),
                                'b': record({'rc': 0, 'summary': b}, started_at=T0 + 2)},
                               ['a', 'b'], [], 20, finished=T0 + 10)
    assert r['series']['errors_by_kind'] == {'ECONNREFUSED': [[1, 2], [2.5, 3], [3, 6]],
                                             'ETIMEDOUT': [[2.5, 4]]}
    g = r['plots']['errors']['geometry']
    assert [s['label'] for s in g['series']] == ['ECONNREFUSED', 'ETIMEDOUT']
    # a step line: from 0 at t=0, up at each change, held to the end (4 s)
    steps = [tuple(float(v) for v in p.split(',')) for p in g['series'][1]['points'].split()]
    assert [y for _x, y in steps] == [g['y1'], g['y1'], steps[2][1], steps[2][1]]
    assert steps[-1][0] == g['x1'] and steps[1][0] == steps[2][0]
    assert r['timeline'][-1][6] == 10                # the errors column, summed


def test_a_kind_a_row_leaves_out_keeps_its_count():
    assert rp.errors_by_kind([[[1, {'x': 3}], [2, {'y': 1}], [3, {'x': 4, 'y': 1}]]]) == \
        {'x': [[1, 3], [3, 4]], 'y': [[2, 1]]}


def test_latency_and_rtt_are_merged_over_the_clients_and_kept_per_client():
    lat_a = {'count': 4, 'sum_seconds': 0.004, 'p50_ms': 0.975, 'p90_ms': 1.951,
             'p99_ms': 1.951, 'max_ms': 2.0, 'buckets': [[1.0, 3], [2.0, 1]]}
    lat_b = {'count': 6, 'sum_seconds': 0.02, 'p50_ms': 1.951, 'p90_ms': 9.753,
             'p99_ms': 9.753, 'max_ms': 10.0, 'buckets': [[1.0, 2], [2.0, 3], [10.0, 1]]}
    rtt = {'count': 2, 'sum_seconds': 0.0004, 'p50_ms': 0.195, 'max_ms': 0.2,
           'buckets': [[0.2, 2]]}
    a = new_summary(10, [row(0, 0), row(1, 10)], latency=lat_a, rtt=rtt)
    b = new_summary(10, [row(0, 0), row(1, 10)], latency=lat_b)
    r = rp.report_from_records({'a': record({'rc': 0, 'summary': a}),
                                'b': record({'rc': 0, 'summary': b})},
                               ['a', 'b'], [], 20, finished=T0 + 10)
    lat = r['connect_latency']
    assert (lat['count'], lat['p50_ms'], lat['p90_ms'], lat['p99_ms'], lat['max_ms']) == \
        (10, 0.975, 1.951, 9.753, 10.0)
    assert r['clients']['b']['connect_latency'] == {'count': 6, 'p50_ms': 1.951,
                                                    'p90_ms': 9.753, 'p99_ms': 9.753,
                                                    'max_ms': 10.0}
    assert r['heartbeat_rtt']['count'] == 2 and r['heartbeat_rtt']['buckets'] == [[0.2, 2]]
    assert r['plots']['rtt']['notes'] == [
        'No heartbeat.rtt histogram from b (an older engine, or no summary); the histogram '
        'covers the other hosts.']
    g = r['plots']['latency']['geometry']
    assert [m['label'] for m in g['marks']] == ['p50 975 \u00b5s', 'p90 1.95 ms', 'p99 9.75 ms',
                                                'max 10 ms']
    assert [b['count'] for b in g['bars']] == [5, 4, 1]
    for b in g['bars']:
        assert g['x0'] <= b['x'] and b['x'] + b['w'] <= g['x1'] + 1e-6
        assert g['y0'] <= b['y'] and b['y'] + b['h'] == pytest.approx(g['y1'])
    assert [t['label'] for t in g['xticks']] == ['100 \u00b5s', '200 \u00b5s', '500 \u00b5s',
                                                 '1 ms', '2 ms', '5 ms', '10 ms']
    assert g['xticks'][0]['x'] == g['x0'] and g['xticks'][-1]['x'] == g['x1']
    assert g['xticks'][-1]['anchor'] == 'end'


def test_older_summaries_say_what_is_missing_instead_of_plotting_nothing():
    old = summary(100, errors={'ECONNREFUSED': 3})         # five columns, no histograms
    r = rp.report_from_records({'old': record({'rc': 0, 'summary': old})}, ['old'], [], 100,
                               finished=T0 + 10)
    assert r['connect_latency'] is None and r['heartbeat_rtt'] is None
    assert r['clients']['old']['connect_latency'] is None
    assert r['series']['errors_by_kind'] == {}
    assert r['plots']['latency'] == {'geometry': None, 'notes': [
        'No connect latency was recorded: the summaries have no connect_latency histogram '
        '(older engine, or no summary).']}
    assert r['plots']['errors'] == {'geometry': None, 'notes': [
        'Errors were counted (ECONNREFUSED 3) but the summaries have no errors timeline '
        '(older engine).']}
    assert r['plots']['established']['geometry'] is not None
    # no client wrote anything: every plot says so, nothing raises
    r = rp.report_from_records({'h': record({'rc': 137, 'summary': {}})}, ['h'], [], 100,
                               finished=T0 + 10)
    assert all(p['geometry'] is None and p['notes'] for p in r['plots'].values()), r['plots']
    assert r['plots']['established']['notes'] == ['No client recorded a timeline.']
    assert r['plots']['errors']['notes'] == ['No errors were counted.']
    assert r['series']['connections_per_s'] == [] and r['series']['established_total'] == []
    # a histogram with no sample, and malformed rows, are not a crash either
    s = new_summary(10, [row(0, 0), 'x', [], row(1, 10)], errors_timeline=[[1], 'x', [2, 3]],
                    latency={'count': 0, 'buckets': [['x', 1], [1.0, 'y'], None]})
    r = rp.report_from_records({'h': record({'rc': 0, 'summary': s})}, ['h'], [], 10,
                               finished=T0 + 10)
    assert r['plots']['latency']['notes'] == [
        'No connect latency was measured (no connection was established).']
    assert r['series']['errors_by_kind'] == {}


def test_the_established_plot_draws_twelve_hosts_and_the_sum():
    records = {}
    for i in range(14):
        records['c%02d' % i] = record({'rc': 0, 'summary': new_summary(
            10, [row(0, 0), row(1, 10)])})
    r = rp.report_from_records(records, sorted(records), [], 140, finished=T0 + 10)
    g = r['plots']['established']['geometry']
    assert [s['label'] for s in g['series']] == ['c%02d' % i for i in range(12)] + ['all clients']
    assert r['plots']['established']['notes'] == ['2 more client host(s) are drawn in the sum only.']
    assert len(r['series']['established_by_host']) == 14
    assert r['series']['established_total'] == [[0, 0], [1, 140]]
    assert g['yticks'][-1]['label'] == '150' and g['xticks'][-1]['label'] == '1 s'


def test_time_plots_stay_in_their_frame_and_long_series_are_thinned():
    points = [[t * 0.5, (t * 37) % 1000] for t in range(5000)]
    step = {'label': 'y', 'step': True, 'points': [[10, 3], [2000, 900]]}
    g = rp.time_plot([{'label': 'x', 'points': points}, step])
    for s in g['series']:
        coords = [tuple(float(v) for v in p.split(',')) for p in s['points'].split()]
        assert all(g['x0'] <= x <= g['x1'] and g['y0'] <= y <= g['y1'] for x, y in coords)
    assert len(g['series'][0]['points'].split()) == rp.DRAWN
    assert g['vmax'] == 1000 and [t['label'] for t in g['yticks']] == \
        ['0', '250', '500', '750', '1k']
    assert rp.time_plot([{'label': 'x', 'points': []}]) is None
    assert len(rp.thin(points)) == rp.MAX_POINTS and rp.thin(points)[-1] == points[-1]


@pytest.mark.parametrize('value, text', [(0, '0'), (0.25, '0.25'), (999, '999'), (1000, '1k'),
                                         (12500, '12.5k'), (250000, '250k'), (1.5e6, '1.5M'),
                                         (2e9, '2G')])
def test_axis_numbers_are_short(value, text):
    assert rp.short(value) == text


@pytest.mark.parametrize('ms, text', [(0.05, '50 \u00b5s'), (1, '1 ms'), (2.5, '2.5 ms'),
                                      (1500, '1.5 s')])
def test_axis_times(ms, text):
    assert rp.ms_label(ms) == text


def test_a_host_short_of_its_share_fails_even_when_the_sums_are_met():
    # c2 counted 10 above its share hides c1's 10 below its own in the sums
    records = {'c1': record({'rc': 0, 'summary': summary(100)}, start=(None, 90), end=(None, 90)),
               'c2': record({'rc': 0, 'summary': summary(100)}, start=(None, 110),
                            end=(None, 110)),
               's': record(None, server_state(200), start=(200, None), end=(200, None),
                           started_at=None)}
    r = rp.report_from_records(records, ['c1', 'c2'], ['s'], 200, finished=T0 + 30)
    assert not r['verified_ok']
    assert r['reasons'] == ['at the start of the hold the kernel counted 90 connection(s) of '
                            'client c1, below its share 100']
    assert rp.host_reasons(r, 'c2') == []


def test_report_html_draws_every_plot_with_its_id():
    import reportlib
    records, clients, servers, total = reportlib.fleet([300, 300, 400])
    data = reportlib.report_data(records, clients, servers, total)
    assert data['verified_ok'], data['reasons']
    html = reportlib.environment().get_template('report.html.j2').render(
        report_data=data, report_title='t')
    ids = []
    for svg in re.findall(r'<svg.*?</svg>', html, re.S):
        doc = xml.dom.minidom.parseString(svg)
        ids.append(doc.documentElement.getAttribute('id'))
    assert ids == ['plot-timeline', 'plot-established', 'plot-rate', 'plot-latency',
                   'plot-errors', 'plot-rtt']
    assert '<script' not in html and 'http://' not in html.replace(
        'http://www.w3.org/2000/svg', '')
    assert 'ECONNREFUSED' in html and 'p99 ' in html
    # an older summary: sentences instead of the plots it cannot draw
    old = rp.report_from_records({'h': record({'rc': 0, 'summary': summary(10)}, server_state(10),
                                              (10, 10), (10, 10))}, ['h'], ['h'], 10,
                                 finished=T0 + 10)
    html = reportlib.environment().get_template('report.html.j2').render(
        report_data=old, report_title='t')
    assert 'id="plot-latency"' not in html and 'id="plot-errors"' not in html
    assert 'No connect latency was recorded' in html and 'No errors were counted.' in html
    assert 'id="plot-established"' in html and 'id="plot-rate"' in html


def test_a_kind_counted_zero_only_is_no_error():
    assert rp.errors_by_kind([[[1, {'x': 0}]], [[2, {'x': 0, 'y': 2}]]]) == {'y': [[2, 2]]}


def test_the_last_rate_bin_ends_with_the_data():
    # 1 s samples, then a last one 0.5 s later: 30 in that half second is 60/s
    assert rp.rate_series([[[0, 0], [1, 100], [2, 200], [2.5, 230]]]) == \
        [[1, 100.0], [2, 100.0], [2.5, 60.0]]


def test_tls_handshakes_are_added_up_over_the_clients():
    entries = [{'protocol': {'name': 'http', 'tls': {'handshakes': 10, 'resumed': 8, 'failed': 1}}},
               {'protocol': {'name': 'http', 'tls': {'handshakes': 5, 'resumed': 5, 'failed': 0}}}]
    assert rp.protocol_totals(entries)['tls'] == {'handshakes': 15, 'resumed': 13, 'failed': 1}
    assert 'tls' not in rp.protocol_totals([{'protocol': {'name': 'tcp'}}])


def service_run(readings, services=('svc1', 'svc2'), client_counts=(50000, 50000)):
    records = {}
    for host, n in zip(('c1', 'c2'), client_counts):
        records[host] = record({'rc': 0, 'summary': summary(50000)}, start=(None, n), end=(None, n))
        records[host]['service_counts'] = readings
    return rp.report_from_records(records, ['c1', 'c2'], [], 100000, finished=T0 + 60,
                                  services=list(services))


def counted(host, n):
    return {'item': host, 'total': n, 'changed': False}


def test_a_service_counted_on_every_host_is_verified_on_both_sides():
    readings = {'start': [counted('svc1', 50000), counted('svc2', 50003)],
                'end': [counted('svc1', 50000), counted('svc2', 50001)]}
    r = service_run(readings)
    assert r['verified_ok'], r['reasons']
    assert r['verified_on'] == 'both' and r['verification_note'] is None
    assert r['verified_server_side'] == 100003 and r['verified_end_server_side'] == 100001
    assert r['services']['svc2'] == {'start': 50003, 'end': 50001, 'reachable': True, 'error': None}


def test_a_short_service_side_fails_the_run():
    readings = {'start': [counted('svc1', 50000), counted('svc2', 20000)],
                'end': [counted('svc1', 50000), counted('svc2', 20000)]}
    r = service_run(readings)
    assert not r['verified_ok']
    assert any('server side 70,000, client side 100,000, below the target 100,000' in x
               for x in r['reasons']), r['reasons']


def test_no_reachable_service_host_says_client_side_only():
    down = {'item': 'svc1', 'unreachable': True, 'msg': 'No route to host'}
    r = service_run({'start': [down], 'end': [down]}, services=['svc1'])
    assert r['verified_ok'], r['reasons']
    assert r['verified_on'] == 'client' and r['verified_server_side'] is None
    assert r['verification_note'] == ('verified on the client side only: svc1 could not be reached '
                                      '(No route to host)')
    r = service_run({}, services=[])
    assert r['verified_ok'] and r['verification_note'] == (
        'verified on the client side only: the inventory has no group "services" to count the '
        'service\'s side on')


def test_a_service_counted_on_some_hosts_rests_on_the_client_side_and_says_so():
    readings = {'start': [counted('svc1', 50000), {'item': 'svc2', 'failed': True, 'msg': 'boom'}],
                'end': [counted('svc1', 50000), {'item': 'svc2', 'failed': True, 'msg': 'boom'}]}
    r = service_run(readings)
    assert r['verified_on'] == 'partial' and r['verified_ok'], r['reasons']
    assert r['verification_note'] == ("the service's side was counted on svc1 only (50,000 at the "
                                      "start of the hold); svc2 could not be counted (boom): the "
                                      "verdict rests on the client side")
    # the client side still decides
    r = service_run(readings, client_counts=(50000, 40000))
    assert not r['verified_ok']
    assert any('client side 90,000, below the target 100,000' in x for x in r['reasons'])


def test_the_html_report_says_where_a_service_was_counted():
    here = os.path.dirname(os.path.abspath(tb.__file__))
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(
        os.path.join(here, '..', '..', 'roles', 'report', 'templates')), autoescape=False)
    down = {'item': 'svc<2>', 'unreachable': True, 'msg': 'No route to host'}
    data = service_run({'start': [counted('svc1', 50000), down], 'end': [counted('svc1', 50000), down]},
                       services=['svc1', 'svc<2>'])
    html = env.get_template('report.html.j2').render(report_data=data, report_title='t')
    assert "Note: the service&#39;s side was counted on svc1 only" in html \
        or "Note: the service's side was counted on svc1 only" in html
    assert 'Hosts of the service under test' in html and 'svc&lt;2&gt;' in html
    assert '<h2>Server hosts</h2>' not in html
