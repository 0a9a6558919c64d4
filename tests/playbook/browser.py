# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A real browser for the report: Debian's headless Chromium.

render() loads report.html as a user would open it (file://), and gives the
DOM after rendering (--dump-dom), screenshots at a desktop and at a phone
width (--screenshot) and every request the page made, read from Chromium's
own network log (--log-net-log). check_report() asserts the report draws its
plots and loads nothing: the page is one self-contained file.

Chromium's own background requests (component updates, the account check,
the time service) are in the same log; they are told apart by their
initiator ("not an origin": the browser, not the page), and returned apart.
A file:// subresource never reaches the network log, so check_report also
reads the DOM for anything that would load one (src, href, url()).
"""

from __future__ import annotations

import html.parser
import json
import os
import shutil
import subprocess
import tempfile

CHROMIUM = '/usr/bin/chromium'
# Widths of the screenshots, a desktop's and a phone's; their windows are tall (the
# page is longer than a screen), about as tall as the report at that width.
DESKTOP, PHONE = 1280, 412
HEIGHT = {DESKTOP: 4800, PHONE: 8000}
# The plots a report of a real run draws (ids on the SVGs of report.html.j2);
# plot-errors and plot-rtt draw only when there were errors / heartbeats.
PLOTS = ('plot-timeline', 'plot-established', 'plot-rate', 'plot-latency')
SECTIONS = ('section-established', 'section-rate', 'section-latency', 'section-errors',
            'section-rtt')
FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars',
         '--no-first-run', '--no-default-browser-check', '--disable-extensions',
         '--disable-background-networking', '--disable-component-update', '--disable-sync',
         '--disable-default-apps', '--mute-audio', '--disable-dev-shm-usage']


def chromium():
    """The path of Chromium, or None when it is not installed."""
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    return shutil.which('chromium')


def _run(url, args, netlog, timeout=120):
    binary = chromium()
    assert binary, 'chromium is missing: scripts/setup.sh installs Debian\'s chromium package'
    profile = tempfile.mkdtemp(prefix='report-chromium.')
    try:
        cmd = [binary] + FLAGS + ['--user-data-dir=%s' % profile,
                                  '--log-net-log=%s' % netlog] + args + [url]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=timeout, check=False)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert proc.returncode == 0, 'chromium %s failed (%d): %s' % (
        ' '.join(args), proc.returncode, proc.stderr.decode('utf-8', 'replace')[-3000:])
    return proc.stdout.decode('utf-8', 'replace')


def net_log_requests(path):
    """(the page's request URLs, the browser's own) from a JSON net log, in order, each once.

    A request is a URL_REQUEST_START_JOB event (params.url); the browser's own
    have the initiator "not an origin". A log cut short (no closing brackets) is read too.
    """
    with open(path) as f:
        text = f.read()
    try:
        log = json.loads(text)
    except ValueError:
        log = json.loads(text.rstrip().rstrip(',') + ']}')
    names = dict((v, k) for k, v in log['constants']['logEventTypes'].items())
    page, browser = [], []
    for event in log.get('events') or []:
        params = event.get('params') or {}
        if names.get(event.get('type')) != 'URL_REQUEST_START_JOB' or 'url' not in params:
            continue
        into = browser if params.get('initiator') == 'not an origin' else page
        if params['url'] not in into:
            into.append(params['url'])
    return page, browser


def render(html_path, artefact_dir, widths=(DESKTOP, PHONE)):
    """Render html_path in headless Chromium.

    Returns {'dom': the serialized DOM after rendering, 'screenshots': [a PNG under
    artefact_dir per width of widths, in that order], 'requests': [URLs the page
    requested], 'browser_requests': [Chromium's own]}. The net logs stay in artefact_dir.
    """
    os.makedirs(artefact_dir, exist_ok=True)
    url = 'file://' + os.path.abspath(html_path)
    stem = os.path.splitext(os.path.basename(html_path))[0]
    logs = [os.path.join(artefact_dir, '%s.dom.netlog.json' % stem)]
    dom = _run(url, ['--dump-dom'], logs[0])
    shots = []
    for width in widths:
        shot = os.path.join(artefact_dir, '%s.%d.png' % (stem, width))
        logs.append(os.path.join(artefact_dir, '%s.%d.netlog.json' % (stem, width)))
        _run(url, ['--screenshot=%s' % shot,
                   '--window-size=%d,%d' % (width, HEIGHT.get(width, 6000))], logs[-1])
        assert os.path.isfile(shot) and os.path.getsize(shot) > 0, \
            'chromium wrote no screenshot %s' % shot
        shots.append(shot)
    page, browser = [], []
    for log in logs:
        p, b = net_log_requests(log)
        page += [u for u in p if u not in page]
        browser += [u for u in b if u not in browser]
    return {'dom': dom, 'screenshots': shots, 'requests': page, 'browser_requests': browser}


class _Dom(html.parser.HTMLParser):
    """The SVGs by id with the shapes drawn in them, the sections by id with their
    notes, and every attribute or style that would load something."""

    LOADS = ('src', 'href', 'xlink:href', 'srcset', 'poster', 'data', 'action', 'background')

    def __init__(self):
        html.parser.HTMLParser.__init__(self)
        self.svgs, self.sections, self.loads = {}, {}, []
        self.svg = self.section = None
        self.in_note = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for name in self.LOADS:
            value = (a.get(name) or '').strip()
            if value and not value.startswith('#'):
                self.loads.append('%s %s="%s"' % (tag, name, value))
        if 'url(' in (a.get('style') or ''):
            self.loads.append('%s style="%s"' % (tag, a['style']))
        if tag in ('script', 'iframe', 'object', 'embed', 'link'):
            self.loads.append('<%s>' % tag)
        if tag == 'section' and a.get('id'):
            self.section = self.sections.setdefault(a['id'], {'notes': [], 'missing': []})
        if tag == 'svg':
            self.svg = self.svgs.setdefault(a.get('id') or '', {'polyline': [], 'rect': 0})
        elif self.svg is not None and tag == 'polyline':
            self.svg['polyline'].append(len((a.get('points') or '').split()))
        elif self.svg is not None and tag == 'rect' and 'bar' in (a.get('class') or '').split():
            self.svg['rect'] += 1
        if tag == 'p' and 'note' in (a.get('class') or '').split():
            self.in_note = 'missing' if 'missing' in a['class'].split() else 'notes'
            if self.section is not None:
                self.section[self.in_note].append('')

    def handle_endtag(self, tag):
        if tag == 'svg':
            self.svg = None
        elif tag == 'section':
            self.section = None
        elif tag == 'p':
            self.in_note = False

    def handle_data(self, data):
        if self.in_note and self.section is not None:
            self.section[self.in_note][-1] += data
        if self.svg is None and 'url(' in data and 'style' == self.lasttag:
            self.loads.append('url() in a style sheet')


def check_report(html_path, artefact_dir, require=PLOTS, widths=(DESKTOP, PHONE)):
    """Assert that report.html, rendered by Chromium, draws its plots and loads nothing.

    Every plot id in require is an SVG in the rendered DOM with at least one drawn
    polyline of two points or more (plot-latency and plot-rtt: histogram bars); every
    plot section either draws its SVG or says why not, in a sentence; the page requests
    no URL (the network log) and refers to nothing it would load (src, href, url()).
    Returns render()'s result, with 'plots' (the ids drawn) and 'notes' ({section: [the
    sentences]}). The screenshots (one per width of widths) stay in artefact_dir.
    """
    result = render(html_path, artefact_dir, widths)
    dom = _Dom()
    dom.feed(result['dom'])
    dom.close()
    url = 'file://' + os.path.abspath(html_path)
    others = [u for u in result['requests'] if u != url]
    assert not others, 'the report requested %s' % others
    assert not dom.loads, 'the report refers to resources: %s' % dom.loads
    for plot in require:
        svg = dom.svgs.get(plot)
        assert svg is not None, 'no <svg id="%s"> in the rendered report (ids: %s)' % (
            plot, sorted(dom.svgs))
        if plot in ('plot-latency', 'plot-rtt'):
            assert svg['rect'] > 0, '%s draws no bar' % plot
        else:
            assert any(n >= 2 for n in svg['polyline']), '%s draws no line' % plot
    for section in SECTIONS:
        assert section in dom.sections, 'no <section id="%s"> in the report' % section
        plot = 'plot-' + section.split('-', 1)[1]
        said = dom.sections[section]['missing']
        assert plot in dom.svgs or any(s.strip() for s in said), \
            '%s neither draws %s nor says why' % (section, plot)
    result['plots'] = sorted(k for k in dom.svgs if k)
    result['notes'] = dict((k, [n.strip() for n in v['missing'] + v['notes']])
                           for k, v in dom.sections.items())
    return result
