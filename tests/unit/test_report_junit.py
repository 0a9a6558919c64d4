# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""report.junit.xml: built from synthetic runs through the role's filter and written
from the role's template, as the report role does, then read back as XML."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

import reportlib


def written(tmp_path, data):
    paths = reportlib.write_report(data, str(tmp_path))
    with open(paths['report.json']) as f:
        report = json.load(f)
    return report, ET.parse(paths['report.junit.xml']).getroot()


def cases(root):
    suites = root.findall('testsuite')
    assert root.tag == 'testsuites' and len(suites) == 1
    assert suites[0].get('name') == 'scalelab.testbed'
    return suites[0], dict((c.get('name'), c) for c in suites[0].findall('testcase'))


def check_counts(root, suite, by_name):
    failed = [n for n, c in by_name.items() if c.find('failure') is not None]
    for element in (root, suite):
        assert element.get('tests') == str(len(by_name))
        assert element.get('failures') == str(len(failed))
        assert element.get('errors') == '0'
    return failed


def test_a_passing_run_passes_every_case(tmp_path):
    records, clients, servers, total = reportlib.fleet([3000, 3000, 4000])
    report, root = written(tmp_path, reportlib.report_data(records, clients, servers, total))
    assert report['verified_ok']
    suite, by_name = cases(root)
    assert sorted(by_name) == ['c1: share reached and verified', 'c2: share reached and verified',
                               'c3: share reached and verified', 'run: 10,000 connections verified']
    assert check_counts(root, suite, by_name) == []
    assert by_name['run: 10,000 connections verified'].get('classname') == 'scalelab.testbed.run'
    assert by_name['c1: share reached and verified'].get('classname') == 'scalelab.testbed.client'
    assert suite.get('timestamp') == '2026-01-01T00:00:00' and suite.get('time') == '40.0'


def test_a_failing_host_fails_its_case_and_the_run(tmp_path):
    records, clients, servers, total = reportlib.fleet([3000, 3000, 4000], failing='c2')
    report, root = written(tmp_path, reportlib.report_data(records, clients, servers, total))
    assert not report['verified_ok']
    suite, by_name = cases(root)
    assert check_counts(root, suite, by_name) == ['c2: share reached and verified',
                                                  'run: 10,000 connections verified']
    host = by_name['c2: share reached and verified'].find('failure')
    assert host.get('message') == ("client c2 reached 1,500 of 3,000 at most (ended by the peer 0; "
                                   "errors {'ECONNREFUSED': 10, 'peer_reset': 1})")
    assert host.text.split('\n')[1:] == [
        'the client half on c2 did not reach or did not hold its target (exit status 1)',
        'at the start of the hold the kernel counted 1,500 connection(s) of client c2, '
        'below its share 3,000']
    out = by_name['c2: share reached and verified'].find('system-out').text
    assert out == 'End of the client log on c2:\ntcpscale: [ 9.0s] established 1500 <of 3000> & stalled'
    run = by_name['run: 10,000 connections verified'].find('failure')
    assert run.text.split('\n') == report['reasons']
    assert run.get('message') == '; '.join(report['reasons'])


def test_what_xml_cannot_carry_is_escaped_or_replaced(tmp_path):
    records, clients, servers, total = reportlib.fleet([10, 10])
    records['c1']['failure'] = {'phase': 'Start <the> "client" & co', 'at': None,
                                'message': "it's \x1b[31mred\x1b[0m\x00 and \x0c <![CDATA[ ]]>"}
    report, root = written(tmp_path, reportlib.report_data(records, clients, servers, total))
    suite, by_name = cases(root)
    assert check_counts(root, suite, by_name) == ['c1: share reached and verified',
                                                  'run: 20 connections verified']
    text = by_name['c1: share reached and verified'].find('failure').text
    assert text == ('c1 failed in "Start <the> "client" & co": it\'s \ufffd[31mred\ufffd[0m\ufffd '
                    'and \ufffd <![CDATA[ ]]>')


@pytest.mark.parametrize('variant', ['pass', 'no target', 'server stopped', 'host left',
                                     'short at the end', 'no summary'])
def test_the_run_case_fails_exactly_when_the_report_does(tmp_path, variant):
    records, clients, servers, total = reportlib.fleet([100, 100])
    missing = []
    if variant == 'no target':
        total = 0
    elif variant == 'server stopped':
        records['s1']['server']['running_at_end'] = False
    elif variant == 'host left':
        del records['c2']
        missing = ['c2']
    elif variant == 'short at the end':
        records['c1']['verified']['end']['client'] = 90
        records['s1']['verified']['end']['server'] = 40
    elif variant == 'no summary':
        records['c1']['client'] = {'rc': 137, 'summary': {}, 'log_tail': ['killed']}
    data = reportlib.tb.testbed_report(records, clients, servers, total, missing=missing,
                                       finished=reportlib.T0 + 40)
    report, root = written(tmp_path, data)
    suite, by_name = cases(root)
    failed = check_counts(root, suite, by_name)
    run = [n for n in by_name if n.startswith('run: ')]
    assert len(run) == 1
    assert (run[0] in failed) == (not report['verified_ok'])
    assert (variant == 'pass') == report['verified_ok']
    hosts = dict((n.split(':')[0], n in failed) for n in by_name if not n.startswith('run: '))
    assert hosts == {'c1': variant in ('short at the end', 'no summary'),
                     'c2': variant == 'host left'}
    if report['verified_ok']:
        assert failed == []
    elif variant == 'no target':
        assert by_name[run[0]].find('failure').text == \
            'no connection target was set (testbed_connections)'
