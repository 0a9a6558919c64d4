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
    assert r['timeline'][-1] == [10, 1000, 20, 200, 0]
    assert r['plot']['drops'] == '' and r['plot']['marks'] == []


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
    assert rp.clean_timeline([[1, 2, 3, 4]]) == [[1.0, 2.0, 3.0, 4.0, 0]]


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
    import importlib.util
    from testlib import REPO
    path = os.path.join(REPO, 'files', 'tcpscale', 'shm.py')
    spec = importlib.util.spec_from_file_location('engine_shm', path)
    shm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shm)
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
