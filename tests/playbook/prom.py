# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A real Prometheus (Debian's prometheus package) for the tests: started from a
temporary directory with its own configuration, queried over its HTTP API,
stopped afterwards. And promtool's check of an exposition file."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


def binary(name):
    path = shutil.which(name)
    assert path, '%s is missing: scripts/setup.sh installs Debian\'s prometheus package' % name
    return path


@contextlib.contextmanager
def prometheus(targets, workdir, interval='1s'):
    """A Prometheus scraping targets (ADDR:PORT of /metrics) every interval; yields its URL."""
    os.makedirs(workdir, exist_ok=True)
    config = os.path.join(workdir, 'prometheus.yml')
    with open(config, 'w') as f:
        f.write('global:\n  scrape_interval: %s\n  evaluation_interval: %s\n'
                'scrape_configs:\n  - job_name: tcpscale\n    static_configs:\n'
                '      - targets: [%s]\n' % (interval, interval,
                                             ', '.join('"%s"' % t for t in targets)))
    port = free_port()
    log = open(os.path.join(workdir, 'prometheus.log'), 'w')
    proc = subprocess.Popen([binary('prometheus'), '--config.file=' + config,
                             '--storage.tsdb.path=' + os.path.join(workdir, 'data'),
                             '--web.listen-address=127.0.0.1:%d' % port],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = 'http://127.0.0.1:%d' % port
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, 'prometheus exited: see %s' % log.name
            try:
                with urllib.request.urlopen(url + '/-/ready', timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, 'prometheus not ready in 60 s'
            time.sleep(0.3)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        log.close()


def query(url, promql):
    """The result vector of an instant query: [(labels, float value)]."""
    q = urllib.parse.urlencode({'query': promql})
    with urllib.request.urlopen('%s/api/v1/query?%s' % (url, q), timeout=10) as r:
        data = json.load(r)
    assert data['status'] == 'success', data
    return [(v['metric'], float(v['value'][1])) for v in data['data']['result']]


def check_metrics(path):
    """promtool check metrics on an exposition file: (returncode, output)."""
    with open(path, 'rb') as f:
        res = subprocess.run([binary('promtool'), 'check', 'metrics'], stdin=f,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    return res.returncode, res.stdout.decode()
