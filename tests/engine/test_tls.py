# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""TLS end to end: each protocol wrapped in TLS between the two halves, sessions
resumed, the certificate verified against a CA (or refused when it is not the
right one), and the options that do not go together."""

from __future__ import annotations

import pytest

import certs
from enginelib import SERVER_ADDR

NAME = 'tcpscale.test'


@pytest.fixture
def pki(tmp_path):
    """A CA, a server certificate it signs for SERVER_ADDR and NAME, and another CA."""
    d = str(tmp_path)
    ca = certs.make(d, 'ca')
    server = certs.make(d, 'server', [SERVER_ADDR, NAME], ca)
    other = certs.make(d, 'other')
    return {'ca': ca[0], 'cert': server[0], 'key': server[1], 'other_ca': other[0]}


def tls_server(pair, pki, protocol='tcp', *extra):
    srv = pair.server(['--listen', SERVER_ADDR, '--ports', '10000-10001', '--protocol', protocol,
                       '--tls-cert', pki['cert'], '--tls-key', pki['key']] + list(extra))
    srv.wait_ready()
    return srv


def client_args(pair, n, *extra):
    return ['--endpoints', '%s:10000,%s:10001' % (SERVER_ADDR, SERVER_ADDR),
            '--sources', ','.join(pair.sources), '--connections', str(n), '--hold', '3',
            '--heartbeat-interval', '1', '--tls'] + list(extra)


@pytest.mark.parametrize('protocol, status', [('tcp', None), ('http', '200'),
                                              ('websocket', '101')])
def test_each_protocol_over_tls_against_the_server_half(netpair, pki, protocol, status):
    pair = netpair.up(sources=2)
    srv = tls_server(pair, pki, protocol, *(['--echo'] if protocol == 'tcp' else []))
    n = 3000
    client = pair.client(client_args(pair, n, '--protocol', protocol))
    code, summary = client.finish()
    assert code == 0, (summary, client.stderr()[-2000:])
    proto = summary['protocol']
    tls = proto['tls']
    assert tls['handshakes'] == n and tls['failed'] == 0 and tls['verified'] is False, tls
    # every destination's first session is offered again: most handshakes resume it
    assert tls['resumed'] >= n // 2, tls
    assert proto['errors_total'] == 0, proto
    if status:
        assert proto['responses_by_status'][status] >= n
    hb = summary['heartbeat']
    assert hb['received'] > 0 and hb['rtt_p50_ms'] is not None, hb
    _code, ssum = srv.finish(sig=15)
    assert ssum['tls']['handshakes'] >= n and ssum['tls']['failed'] == 0, ssum['tls']


def test_verification_against_the_ca_with_the_server_name(netpair, pki):
    pair = netpair.up(sources=1)
    tls_server(pair, pki, 'http')
    n = 500
    code, summary = pair.client(client_args(pair, n, '--protocol', 'http', '--tls-ca', pki['ca'],
                                            '--tls-server-name', NAME)).finish()
    assert code == 0, summary
    tls = summary['protocol']['tls']
    assert tls['verified'] is True and tls['server_name'] == NAME and tls['handshakes'] == n


def test_a_certificate_from_another_ca_fails_the_run_and_says_why(netpair, pki):
    pair = netpair.up(sources=1)
    tls_server(pair, pki, 'http')
    n = 200
    client = pair.client(client_args(pair, n, '--protocol', 'http', '--tls-ca', pki['other_ca'],
                                     '--tls-server-name', NAME, '--timeout', '3'))
    code, summary = client.finish()
    assert code != 0
    tls = summary['protocol']['tls']
    assert tls['failed'] >= n and tls['handshakes'] == 0, tls
    assert summary['protocol']['errors']['tls_failed'] >= n
    # the connections stay held (as after a failing answer); the run fails on the errors
    assert 'CERTIFICATE_VERIFY_FAILED' in client.stderr() \
        or 'certificate verify failed' in client.stderr()


def test_a_wrong_server_name_fails_verification(netpair, pki):
    pair = netpair.up(sources=1)
    tls_server(pair, pki, 'tcp')
    code, summary = pair.client(client_args(pair, 100, '--tls-ca', pki['ca'],
                                            '--tls-server-name', 'wrong.example',
                                            '--timeout', '3')).finish()
    assert code != 0 and summary['protocol']['tls']['failed'] >= 100


def test_tls_options_that_do_not_go_together_are_usage_errors(netpair, pki):
    pair = netpair.up(sources=1)
    base = ['--endpoints', '%s:10000' % SERVER_ADDR, '--sources', pair.sources[0],
            '--connections', '10']
    for half, argv, message in [
            (pair.client, base + ['--tls-ca', pki['ca']], '--tls-ca and --tls-server-name need --tls'),
            (pair.client, base + ['--tls', '--tls-ca', '/nonexistent/ca.pem'],
             '--tls-ca /nonexistent/ca.pem'),
            (pair.client, base + ['--tls', '--tls-server-name', 'a b'], '--tls-server-name'),
            (pair.server, ['--listen', SERVER_ADDR, '--ports', '10000', '--tls-cert', pki['cert']],
             '--tls-cert and --tls-key go together'),
            (pair.server, ['--listen', SERVER_ADDR, '--ports', '10000', '--tls-cert', pki['ca'],
                           '--tls-key', pki['key']], 'cannot load them')]:
        eng = half(argv)
        code, _summary = eng.finish()
        assert code == 2, (argv, code, eng.stderr())
        assert message in eng.stderr(), (argv, eng.stderr())
