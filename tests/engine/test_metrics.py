# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Live metrics of both halves (Prometheus text format, textfile and HTTP), the
connect-latency histogram, the timeline's rate and error columns, and bad metrics
options refused before a connection is opened."""

from __future__ import annotations

import os
import re
import socket
import sys
import time
import urllib.request

from enginelib import REPO, SERVER_ADDR

sys.path.insert(0, os.path.join(REPO, 'tests', 'playbook'))
from prom import check_metrics, free_port  # noqa: E402  pylint: disable=wrong-import-position

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


def parse(text):
    """{(name, labels text): value} of an exposition (what a scraper reads)."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith('#'):
            continue
        m = SAMPLE.match(line)
        assert m, 'not an exposition line: %r' % line
        out[(m.group(1), m.group(2) or '')] = float(m.group(3))
    return out


def scrape(port):
    with urllib.request.urlopen('http://127.0.0.1:%d/metrics' % port, timeout=5) as r:
        assert r.headers['Content-Type'].startswith('text/plain; version=0.0.4')
        return r.read().decode()


def promtool_check(path):
    rc, out = check_metrics(path)
    assert rc == 0, out


def test_both_halves_export_while_the_clients_hold(netpair, tmp_path):
    pair = netpair.up(sources=2)
    here = '/proc/%d/ns/net' % os.getpid()          # the test's namespace, not the engine's
    mdir = tmp_path / 'textfile'
    mdir.mkdir()
    sport, cport = free_port(), free_port()
    srv = pair.server(['--listen', SERVER_ADDR, '--ports', '10000-10001', '--echo',
                       '--metrics-dir', str(mdir), '--metrics-listen', '127.0.0.1:%d' % sport,
                       '--metrics-netns', here])
    srv.wait_ready()
    n = 6000
    cli = pair.client(['--targets', SERVER_ADDR, '--ports', '10000-10001', '--sources',
                       ','.join(pair.sources), '--connections', str(n), '--hold', '4',
                       '--heartbeat-interval', '1', '--metrics-dir', str(mdir),
                       '--metrics-listen', '127.0.0.1:%d' % cport, '--metrics-netns', here])
    cli.wait_status(lambda st: st.get('reached'))
    time.sleep(2.2)                 # two progress intervals: heartbeats answered
    live = parse(scrape(cport))
    assert live[('tcpscale_client_established', '')] == n
    assert live[('tcpscale_client_target', '')] == n
    assert live[('tcpscale_client_reached', '')] == 1
    assert live[('tcpscale_client_connects_total', '')] == n
    assert live[('tcpscale_client_connect_latency_seconds_count', '')] == n
    assert live[('tcpscale_client_connect_latency_seconds_bucket', '{le="+Inf"}')] == n
    assert 0 < live[('tcpscale_client_connect_latency_seconds_sum', '')] < n * 10
    assert live[('tcpscale_client_heartbeat_rtt_seconds_count', '')] > 0
    assert live[('tcpscale_client_running', '')] == 1
    served = parse(scrape(sport))
    assert served[('tcpscale_server_held', '')] == n
    assert served[('tcpscale_server_listening_endpoints', '')] == 2
    # (while the client still holds: promtool below can outlast its --hold on a busy host)
    with urllib.request.urlopen('http://127.0.0.1:%d/' % cport, timeout=5) as r:
        assert r.status == 200
    try:
        urllib.request.urlopen('http://127.0.0.1:%d/other' % cport, timeout=5)
        raise AssertionError('a path other than /metrics answered')
    except urllib.error.HTTPError as exc:
        assert exc.code == 404
    # the textfile is the same exposition, replaced atomically: nothing else in the directory
    assert sorted(os.listdir(str(mdir))) == ['tcpscale_client.prom', 'tcpscale_server.prom']
    promtool_check(str(mdir / 'tcpscale_client.prom'))
    promtool_check(str(mdir / 'tcpscale_server.prom'))
    code, summary = cli.finish()
    assert code == 0, summary
    lat = summary['connect_latency']
    assert lat['count'] == n and lat['p50_ms'] <= lat['p90_ms'] <= lat['p99_ms'] <= lat['max_ms']
    assert sum(c for _ms, c in lat['buckets']) == n
    assert summary['heartbeat']['rtt']['count'] == summary['heartbeat']['received'] > 0
    cols = summary['timeline_columns']
    assert cols[-2:] == ['opened', 'errors']
    assert summary['timeline'][-1][cols.index('opened')] == n
    # at the end the file says the half stopped, and the HTTP listener is gone
    final = parse((mdir / 'tcpscale_client.prom').read_text())
    assert final[('tcpscale_client_running', '')] == 0
    try:
        scrape(cport)
        raise AssertionError('the metrics listener outlived the half')
    except OSError:
        pass


def test_errors_over_time_are_counted_by_kind(netpair):
    pair = netpair.up(sources=1)
    # nothing listens on port 10009: every connect is refused
    code, summary = pair.client(['--targets', SERVER_ADDR, '--ports', '10009', '--sources',
                                 pair.sources[0], '--connections', '50', '--retries', '0',
                                 '--timeout', '2']).finish()
    assert code != 0
    assert summary['errors'] == {'ECONNREFUSED': 50}
    last_t, kinds = summary['errors_timeline'][-1]
    assert kinds == {'ECONNREFUSED': 50} and last_t > 0
    cols = summary['timeline_columns']
    assert summary['timeline'][-1][cols.index('errors')] == 50
    assert summary['connect_latency']['count'] == 0


def test_bad_metrics_options_fail_before_any_connection(netpair, tmp_path):
    pair = netpair.up(sources=1)
    here = '/proc/%d/ns/net' % os.getpid()
    base = ['--targets', SERVER_ADDR, '--ports', '10000', '--sources', pair.sources[0],
            '--connections', '10']
    taken = socket.socket()
    taken.bind(('127.0.0.1', 0))
    taken.listen(1)
    cases = [
        (['--metrics-listen', '127.0.0.1'], ['--metrics-listen', 'has no port']),
        (['--metrics-dir', str(tmp_path / 'missing')], ['--metrics-dir', 'no such directory']),
        (['--metrics-listen', '127.0.0.1:%d' % taken.getsockname()[1], '--metrics-netns', here],
         ['--metrics-listen', 'Address already in use', 'choose another port']),
        (['--metrics-listen', '127.0.0.1:9', '--metrics-netns', str(tmp_path / 'nons')],
         ['--metrics-netns', 'No such file']),
    ]
    try:
        for extra, words in cases:
            eng = pair.client(base + extra)
            code, summary = eng.finish()
            err = eng.stderr()
            assert code == 2, (extra, code, err)
            assert summary is None, extra
            for w in words:
                assert w in err, (extra, err)
            assert 'established' not in err
    finally:
        taken.close()
