# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""report.html in a real browser (Debian's headless Chromium, tests/playbook/browser.py):
a report of a synthetic fleet, written as the role writes it, draws every plot at a
desktop and at a phone width and requests nothing. The screenshots are kept under the
test's tmp_path (printed; pytest keeps the last runs' directories)."""

from __future__ import annotations

import os

import pytest

import reportlib
from testlib import load_module


browser = load_module('report_browser', 'tests', 'playbook', 'browser.py')


def test_a_fleet_report_draws_every_plot_and_loads_nothing(tmp_path):
    records, clients, servers, total = reportlib.fleet([30000, 30000, 40000], failing='c2')
    paths = reportlib.write_report(reportlib.report_data(records, clients, servers, total),
                                   str(tmp_path / 'report'))
    every = browser.PLOTS + ('plot-errors', 'plot-rtt')
    result = browser.check_report(paths['report.html'], str(tmp_path / 'artefacts'),
                                  require=every)
    print('report %s, screenshots %s' % (paths['report.html'], ' '.join(result['screenshots'])))
    assert result['plots'] == sorted(every)
    names = [os.path.basename(p) for p in result['screenshots']]
    assert names == ['report.1280.png', 'report.412.png']
    for shot in result['screenshots']:
        with open(shot, 'rb') as f:
            assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    assert result['requests'] == []
    dom = result['dom']
    assert 'c2 reached 15,000 of 30,000 at most' in dom and 'ECONNREFUSED' in dom
    assert '<svg id="plot-latency"' in dom


def test_an_older_report_says_what_it_cannot_draw(tmp_path):
    records, clients, servers, total = reportlib.fleet([100])
    summary = records['c1']['client']['summary']
    for key in ('connect_latency', 'errors_timeline', 'timeline_columns'):
        del summary[key]
    summary['heartbeat'] = {}
    summary['timeline'] = [r[:5] for r in summary['timeline']]
    paths = reportlib.write_report(reportlib.report_data(records, clients, servers, total),
                                   str(tmp_path / 'report'))
    result = browser.check_report(paths['report.html'], str(tmp_path / 'artefacts'),
                                  require=('plot-timeline', 'plot-established', 'plot-rate'),
                                  widths=(browser.PHONE,))
    print('screenshot %s' % result['screenshots'][0])
    assert result['plots'] == ['plot-established', 'plot-rate', 'plot-timeline']
    assert result['notes']['section-latency'] == [
        'No connect latency was recorded: the summaries have no connect_latency histogram '
        '(older engine, or no summary).']
    assert result['notes']['section-rate'][0].startswith('c1: an older summary without the '
                                                         'opened column')
    assert result['notes']['section-errors'] == [
        'Errors were counted (ECONNREFUSED 5) but the summaries have no errors '
        'timeline (older engine).']


def test_a_page_that_loads_something_fails_the_check(tmp_path):
    page = tmp_path / 'report.html'
    page.write_text('<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>'
                    '<svg id="plot-timeline"><polyline points="0,0 1,1"/></svg>'
                    '<img src="http://127.0.0.1:9/pixel.png"></body></html>')
    result = browser.render(str(page), str(tmp_path / 'artefacts'), widths=())
    assert result['requests'] == ['http://127.0.0.1:9/pixel.png']
    assert result['screenshots'] == []
    with pytest.raises(AssertionError, match='requested'):
        browser.check_report(str(page), str(tmp_path / 'artefacts'), widths=())
