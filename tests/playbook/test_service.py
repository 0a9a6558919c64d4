# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""site.yml against a service the testbed did not deploy: Debian's nginx-light.

In order, on this host (root), under the heavy-run lock like test_site.py:
bad service input fails before any change (an endpoint without a port, port
0 and 65536, a name that does not resolve, client_protocol bogus, nothing
listening on the service's port); 30,000
HTTP keep-alive connections through site.yml on the one-box default to an
nginx this test starts (2 workers, worker_rlimit_nofile under the 20,000
hard limit here), verified on nginx's side by sock_diag in the host's own
namespace, with the 200s counted; an nginx that closes idle connections
(client_header_timeout) makes the run fail with the drops in the report;
10,000 HTTP keep-alive connections over TLS to the same nginx (a certificate
this test makes, verified by the clients against its CA, sessions resumed);
teardown leaves the host as it was.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from ansible_collections.scalelab.testbed.plugins.module_utils.sockdiag import count_tcp_states
from test_site import LOCK, differences, ours_present, playbook  # noqa: F401 pylint: disable=unused-import
from test_site import pristine  # noqa: F401 pylint: disable=unused-import

NGINX = shutil.which('nginx') or '/usr/sbin/nginx'
SERVER_ADDR = '10.240.0.1'       # the host's end of the veth pair (topology_netns_server_cidr)
PORT = 8080
TLS_PORT = 8443
TARGET = 30000
TLS_TARGET = 10000
HERE = os.path.dirname(os.path.abspath(__file__))


def load_certs():
    """tests/engine/certs.py: a CA and the certificates it signs (cryptography)."""
    spec = importlib.util.spec_from_file_location(
        'engine_certs', os.path.join(os.path.dirname(HERE), 'engine', 'certs.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason='needs root (namespaces, sysctls)'),
    pytest.mark.skipif(not os.path.exists(NGINX), reason='needs nginx (scripts/setup.sh installs nginx-light)'),
]

CONFIG = '''
user root;                      # the pages are in a 0700 pytest directory
worker_processes 2;
worker_rlimit_nofile {rlimit};
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
daemon off;
events {{ worker_connections {connections}; }}
http {{
    access_log off;
    keepalive_timeout 600s;
    keepalive_requests 1000000;
    client_header_timeout {header_timeout};
    server {{
        listen {port} reuseport backlog=65535;
        root {dir}/www;
        location / {{ index index.html; }}
    }}
{tls}}}
'''

TLS_SERVER = '''    ssl_session_cache shared:SSL:50m;
    server {{
        listen {port} ssl reuseport backlog=65535;
        ssl_certificate {crt};
        ssl_certificate_key {key};
        root {dir}/www;
        location / {{ index index.html; }}
    }}
'''


class Nginx(object):
    """nginx started in the foreground from a temporary directory, stopped with SIGQUIT."""

    def __init__(self, directory, header_timeout='60s', tls=None, rlimit=19000):
        """tls: (certificate, key) files to serve TLS on TLS_PORT too; rlimit: each
        worker's nofile limit."""
        self.dir = str(directory)
        os.makedirs(os.path.join(self.dir, 'www'), exist_ok=True)
        with open(os.path.join(self.dir, 'www', 'index.html'), 'w') as f:
            f.write('scalelab\n')
        self.conf = os.path.join(self.dir, 'nginx.conf')
        with open(self.conf, 'w') as f:
            f.write(CONFIG.format(dir=self.dir, port=PORT, header_timeout=header_timeout,
                                  rlimit=rlimit, connections=min(18500, rlimit - 100),
                                  tls=TLS_SERVER.format(port=TLS_PORT, crt=tls[0], key=tls[1],
                                                        dir=self.dir) if tls else ''))
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([NGINX, '-p', self.dir, '-c', self.conf, '-e', os.path.join(self.dir, 'error.log')],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if count_tcp_states(states=['listen'], local_ports=[PORT]).get('listen'):
                return self
            if self.proc.poll() is not None:
                raise RuntimeError('nginx did not start: %s' % self.proc.stderr.read().decode())
            time.sleep(0.1)
        raise RuntimeError('nginx does not listen on %d' % PORT)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def nginx(tmp_path):
    server = Nginx(tmp_path / 'nginx')
    yield server
    server.stop()


def report(state):
    with open(os.path.join(state['reports'], 'latest', 'report.json')) as f:
        return json.load(f)


def run_site(state, *extra):
    args = ['site.yml', '-e', 'testbed_connections=%d' % TARGET, '-e', 'client_hold=3',
            '-e', '{"testbed_service_endpoints": ["%s:%d"]}' % (SERVER_ADDR, PORT)]
    for e in extra:
        args += ['-e', e]
    return playbook(args, state['reports'])


def test_bad_endpoints_fail_before_any_change(pristine):
    # every problem of the list in one message
    bad = ['10.240.0.1', '10.240.0.1:0', '10.240.0.1:65536', 'no-such-host.invalid:8080']
    rc, out = playbook(['site.yml', '-e', json.dumps({'testbed_service_endpoints': bad})],
                       pristine['reports'])
    assert rc != 0
    for message in ("testbed_service_endpoints[0]: '10.240.0.1' has no port",
                    "testbed_service_endpoints[1]: '10.240.0.1:0': the port must be a number from 1",
                    "testbed_service_endpoints[2]: '10.240.0.1:65536': the port must be a number",
                    "testbed_service_endpoints[3]: the name 'no-such-host.invalid' does not resolve"):
        assert message in out
    assert 'PLAY [Provision the testbed]' not in out
    assert differences(pristine['before']) == [] and ours_present() == []


def test_a_bogus_protocol_fails_in_validation(pristine):
    rc, out = run_site(pristine, 'client_protocol=bogus')
    assert rc != 0
    assert 'client_protocol' in out and 'bogus' in out
    assert 'PLAY [Provision the testbed]' not in out
    assert differences(pristine['before']) == [] and ours_present() == []


def test_nothing_listening_fails_before_any_change(pristine):
    rc, out = run_site(pristine, 'client_protocol=http')
    assert rc != 0
    assert 'nothing listens on port(s) 8080 on this host' in out
    assert 'PLAY [Provision the testbed]' not in out
    assert differences(pristine['before']) == [] and ours_present() == []


def test_a_service_that_cannot_open_enough_files_is_warned_of_with_figures(pristine, tmp_path):
    # 2 workers of 2,000 files each cannot hold 30,000: said before the run (check mode here)
    server = Nginx(tmp_path / 'small', rlimit=2000).start()
    try:
        rc, out = playbook(['site.yml', '--check', '--skip-tags', 'load',
                            '-e', 'testbed_connections=%d' % TARGET,
                            '-e', '{"testbed_service_endpoints": ["%s:%d"]}' % (SERVER_ADDR, PORT),
                            '-e', 'client_protocol=http'], pristine['reports'])
    finally:
        server.stop()
    assert rc == 0, out[-4000:]
    flat = ' '.join(out.split())            # the callback wraps long messages
    # the two workers count, not the master that hands the socket down
    assert re.search(r'the processes listening on port\(s\) 8080 can open [\d,]+ more files '
                     r'together \(nginx \d+ \(nofile 2,000, \d+ open\), nginx \d+ \(nofile '
                     r'2,000, \d+ open\)\), fewer than the 30,000 connections', flat), out[-4000:]
    assert 'worker_rlimit_nofile' in flat
    assert differences(pristine['before']) == [] and ours_present() == []


def test_http_keepalive_to_nginx_is_verified_on_nginx_side(pristine, nginx):
    nginx.start()
    rc, out = run_site(pristine, 'client_protocol=http')
    assert rc == 0, out[-6000:]
    r = report(pristine)
    assert r['verified_ok'], r['reasons']
    # counted in the host's namespace, on nginx's port: nginx's own sockets
    assert r['verified_server_side'] >= TARGET and r['verified_end_server_side'] >= TARGET
    assert r['verified_client_side'] >= TARGET
    assert r['protocol']['name'] == 'http'
    assert r['protocol']['responses_by_status'].get('200', 0) >= TARGET
    assert r['protocol']['errors_total'] == 0
    assert not os.path.exists('/var/run/netns/tb-server')     # no server half was deployed
    assert 'http answers by status' in out
    print('nginx over http: %d verified on nginx side (%d at the end of the hold), %d on the '
          'client side, 200s %d, %.0f connections/s, %.1f s to the target'
          % (r['verified_server_side'], r['verified_end_server_side'], r['verified_client_side'],
             r['protocol']['responses_by_status'].get('200', 0), r['connections_per_s'],
             r['seconds_to_target']))


def test_nginx_closing_held_connections_fails_the_run(pristine, tmp_path):
    # raw TCP (no request): nginx closes each connection after client_header_timeout
    server = Nginx(tmp_path / 'closing', header_timeout='6s').start()
    try:
        rc, out = run_site(pristine, 'client_hold=10', 'testbed_connections=10000')
    finally:
        server.stop()
    assert rc != 0
    r = report(pristine)
    assert not r['verified_ok']
    assert r['dropped'] > 0 and r['errors'].get('peer_closed', 0) > 0, r['errors']
    assert any('ended by the peer' in reason or 'lost' in reason for reason in r['reasons']), r['reasons']


def test_https_keepalive_to_nginx_is_verified_and_resumes_sessions(pristine, tmp_path):
    certs = load_certs()
    ca = certs.make(str(tmp_path), 'ca')
    crt, key = certs.make(str(tmp_path), 'nginx', [SERVER_ADDR, 'nginx.test'], ca)
    server = Nginx(tmp_path / 'tls', tls=(crt, key)).start()
    try:
        rc, out = playbook(['site.yml', '-e', 'testbed_connections=%d' % TLS_TARGET,
                            '-e', 'client_hold=3', '-e', 'client_protocol=http',
                            '-e', '{"testbed_service_endpoints": ["%s:%d"]}' % (SERVER_ADDR, TLS_PORT),
                            '-e', '{"client_tls": true, "client_tls_verify": true}',
                            '-e', 'client_tls_ca_file=%s' % ca[0],
                            '-e', 'client_tls_server_name=nginx.test'], pristine['reports'])
    finally:
        server.stop()
    assert rc == 0, out[-6000:]
    r = report(pristine)
    assert r['verified_ok'], r['reasons']
    assert r['verified_server_side'] >= TLS_TARGET and r['verified_end_server_side'] >= TLS_TARGET
    assert r['protocol']['responses_by_status'].get('200', 0) >= TLS_TARGET
    with open(os.path.join(pristine['reports'], 'latest', 'hosts', 'localhost.client.json')) as f:
        tls = json.load(f)['protocol']['tls']
    print('nginx over TLS: %d verified on nginx side, %.0f connections/s; %s'
          % (r['verified_server_side'], r['connections_per_s'], tls))
    assert tls['verified'] is True and tls['server_name'] == 'nginx.test'
    assert tls['handshakes'] == TLS_TARGET and tls['failed'] == 0
    # nginx's session cache (and tickets) let the handshakes after the first resume
    assert tls['resumed'] >= TLS_TARGET // 2, tls


def test_teardown_puts_the_host_back(pristine):
    rc, out = playbook(['teardown.yml'], pristine['reports'])
    assert rc == 0, out[-3000:]
    assert ours_present() == []
    addrs = subprocess.run(['ip', '-j', 'address'], check=True, stdout=subprocess.PIPE).stdout.decode()
    assert SERVER_ADDR not in addrs
    assert differences(pristine['before']) == []
