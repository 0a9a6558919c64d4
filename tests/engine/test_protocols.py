# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The client protocols end to end: http and websocket against the server half, a
WebSocket server built on the websockets library, and servers that answer wrong."""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest

from enginelib import SERVER_ADDR, run

HERE = os.path.dirname(os.path.abspath(__file__))


def client_args(pair, n, *extra):
    return ['--endpoints', '%s:10000,%s:10001' % (SERVER_ADDR, SERVER_ADDR),
            '--sources', ','.join(pair.sources), '--connections', str(n), '--hold', '3',
            '--heartbeat-interval', '1'] + list(extra)


@pytest.mark.parametrize('protocol, status', [('http', '200'), ('websocket', '101')])
def test_each_protocol_against_the_server_half(netpair, protocol, status):
    """With heartbeats: the client reads as data arrives (epoll), and the server half
    answers them as they arrive (--echo, which the roles pass for heartbeats)."""
    pair = netpair.up(sources=2)
    srv = pair.server(['--listen', SERVER_ADDR, '--ports', '10000-10001', '--protocol', protocol,
                       '--echo'])
    srv.wait_ready()
    code, summary = pair.client(client_args(pair, 4000, '--protocol', protocol)).finish()
    assert code == 0, summary
    assert summary['watch']['mode'] == 'epoll'
    proto = summary['protocol']
    assert proto['name'] == protocol and proto['requests_sent'] == 4000
    assert proto['responses_by_status'][status] >= 4000 and proto['errors_total'] == 0
    hb = summary['heartbeat']
    assert hb['received'] > 0 and hb['rtt_p50_ms'] is not None and hb['rtt_p99_ms'] is not None


def tcp_out_segments(ns):
    """TcpOutSegs of a namespace's TCP (its /proc/net/snmp, read inside it)."""
    rows = [line.split() for line in run(['ip', 'netns', 'exec', ns, 'cat',
                                          '/proc/net/snmp']).stdout.splitlines()
            if line.startswith('Tcp:')]
    return int(rows[1][rows[0].index('OutSegs')])


@pytest.mark.parametrize('protocol', ['http', 'websocket'])
def test_the_handshake_ack_rides_on_the_first_request(netpair, protocol):
    """A client that speaks first sends the handshake's last ACK with its request
    (TCP_QUICKACK off before connect): from the client's namespace, the SYN, the
    request and the response's ACK, 3 segments per connection instead of 4; from the
    server's, the SYN-ACK, the request's ACK and the answer."""
    pair = netpair.up(sources=1)
    srv = pair.server(['--listen', SERVER_ADDR, '--ports', '10000-10001', '--protocol', protocol])
    srv.wait_ready()
    n = 3000
    before = tcp_out_segments(pair.cli), tcp_out_segments(pair.srv)
    client = pair.client(['--endpoints', '%s:10000,%s:10001' % (SERVER_ADDR, SERVER_ADDR),
                          '--sources', pair.sources[0], '--connections', str(n), '--hold', '60',
                          '--protocol', protocol])
    client.wait_status(lambda st: st.get('reached'))
    time.sleep(0.5)         # the last answers' ACKs
    cli, srv_sent = (tcp_out_segments(pair.cli) - before[0], tcp_out_segments(pair.srv) - before[1])
    client.kill()
    assert 3 * n <= cli < 3.5 * n, 'client: %d segments for %d connections' % (cli, n)
    assert 3 * n <= srv_sent < 3.5 * n, 'server: %d segments for %d connections' % (srv_sent, n)


def epoll_items(pids):
    """How many items the epoll descriptors of pids hold (their fdinfo's tfd: lines)."""
    n = 0
    for pid in pids:
        fd_dir = '/proc/%d/fd' % pid
        for fd in os.listdir(fd_dir):
            try:
                if os.readlink(os.path.join(fd_dir, fd)) != 'anon_inode:[eventpoll]':
                    continue
                with open('/proc/%d/fdinfo/%s' % (pid, fd)) as f:
                    n += sum(1 for line in f if line.startswith('tfd:'))
            except OSError:
                continue        # closed meanwhile
    return n


@pytest.mark.parametrize('protocol, status', [('http', '200'), ('websocket', '101')])
def test_without_heartbeats_no_connection_is_in_an_epoll_set(netpair, protocol, status):
    """Without heartbeats neither half reads anything after a connection's first words:
    the client polls each first answer with the handshakes, the server half answers
    each request or upgrade when it accepts the connection, and no held connection is
    an epoll item on either side (the kernel's own count, in fdinfo)."""
    pair = netpair.up(sources=2)
    srv = pair.server(['--listen', SERVER_ADDR, '--ports', '10000-10001', '--protocol', protocol])
    srv.wait_ready()
    n = 4000
    client = pair.client(['--endpoints', '%s:10000,%s:10001' % (SERVER_ADDR, SERVER_ADDR),
                          '--sources', ','.join(pair.sources), '--connections', str(n),
                          '--hold', '2', '--protocol', protocol])
    cst = client.wait_status(lambda st: st.get('reached'))
    sst = srv.status()
    items = epoll_items(cst['pids'] + sst['pids'])
    code, summary = client.finish()
    assert code == 0, client.stderr()
    assert summary['watch']['mode'] == 'poll', summary['watch']
    assert summary['protocol']['responses_by_status'] == {status: n}
    assert summary['protocol']['errors_total'] == 0
    # the wake-up pipes and the listening sockets: a few per process, not one per connection
    assert items < 100, '%d epoll items for %d connections' % (items, n)
    _code, ssum = srv.finish(sig=signal.SIGTERM)
    assert ssum['watch']['mode'] == 'poll', ssum['watch']


SPEAKS_TWICE = r'''
import socket, sys
addr, port, src = sys.argv[1], int(sys.argv[2]), sys.argv[3]
req = b'GET / HTTP/1.1\r\nHost: h\r\n\r\n'
s = socket.create_connection((addr, port), source_address=(src, 0))
s.settimeout(20)
statuses = []
for _i in range(2):
    s.sendall(req)
    statuses.append(s.recv(4096).split(b' ')[1].decode())
print(' '.join(statuses))
'''


@pytest.mark.parametrize('echo', [False, True])
def test_what_a_client_sends_later_is_answered_at_a_pass_or_at_once_with_echo(netpair, echo):
    """Polling, the server half answers a second request at its next pass over the held
    connections (--watch-interval 1 here; without the answer in the pass it never comes
    and the client times out); with --echo (the roles pass it for heartbeats) the
    connections are in epoll and it is answered as it arrives."""
    pair = netpair.up(sources=1)
    srv = pair.server(['--listen', SERVER_ADDR, '--ports', '10000', '--protocol', 'http',
                       '--watch-interval', '1'] + (['--echo'] if echo else []))
    srv.wait_ready()
    res = run(['ip', 'netns', 'exec', pair.cli, sys.executable, '-c', SPEAKS_TWICE, SERVER_ADDR,
               '10000', pair.sources[0]], timeout=60)
    assert res.stdout.split() == ['200', '200'], res.stdout
    _code, ssum = srv.finish(sig=signal.SIGTERM)
    assert ssum['watch']['mode'] == ('epoll' if echo else 'poll'), ssum['watch']


SPLIT_WORDS = r'''
import os, socket, struct, sys, time
addr, port, src, proto = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
s = socket.create_connection((addr, port), source_address=(src, 0))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
s.settimeout(20)


def pieces(*parts):
    for part in parts:
        s.sendall(part)
        time.sleep(0.3)         # each piece is a read of its own on the server


def frame(opcode, payload):
    mask = os.urandom(4)
    size = len(payload)
    head = bytes([0x80 | opcode]) + (bytes([0x80 | size]) if size < 126 else
                                     bytes([0x80 | 127]) + struct.pack('>Q', size))
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def answer():
    data = s.recv(4096)
    assert data, 'closed'
    return data


req = b'GET / HTTP/1.1\r\nHost: h\r\n'
if proto == 'http':
    pieces(req, b'\r\n')                            # the head's end in the next read
    print(answer().split(b' ')[1].decode())
    pieces(req + b'\r', b'\n\r\n')                  # its end split in two
    print(answer().split(b' ')[1].decode())
else:
    pieces(req, b'Upgrade: websocket\r\nConnection: Upgrade\r\n'
           b'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n')
    print(answer().split(b' ')[1].decode())
    ping = frame(0x9, b'one')
    pieces(ping[:3], ping[3:])                      # a ping in two reads
    print(answer()[2:].decode())
    big = frame(0x2, b'b' * 50000)                  # a long data frame, then a ping
    pieces(big[:20000], big[20000:] + frame(0x9, b'two'))
    print(answer()[2:].decode())
'''


@pytest.mark.parametrize('echo', [False, True])
@pytest.mark.parametrize('protocol', ['http', 'websocket'])
def test_words_split_over_reads_are_answered_when_whole(netpair, protocol, echo):
    """A request head, an upgrade or a frame that reaches the server half in pieces is
    answered once it is whole, polling (at its next pass) or with --echo: the start is
    kept for the next read (a long data frame is skipped), so the upgrade is not a 400
    and the ping after a long frame still gets its pong."""
    pair = netpair.up(sources=1)
    srv = pair.server(['--listen', SERVER_ADDR, '--ports', '10000', '--protocol', protocol,
                       '--watch-interval', '1'] + (['--echo'] if echo else []))
    srv.wait_ready()
    res = run(['ip', 'netns', 'exec', pair.cli, sys.executable, '-c', SPLIT_WORDS, SERVER_ADDR,
               '10000', pair.sources[0], protocol], check=False, timeout=60)
    expected = ['200', '200'] if protocol == 'http' else ['101', 'one', 'two']
    assert res.stdout.split() == expected, (res.stdout, res.stderr)
    srv.finish(sig=signal.SIGTERM)


SPLIT_PINGER = r'''
import base64, hashlib, socket, sys, time
addr, port, ready, result = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
lsn = socket.create_server((addr, port))
open(ready, 'w').write('ready')
s, _peer = lsn.accept()
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
s.settimeout(20)
head = b''
while b'\r\n\r\n' not in head:
    head += s.recv(4096)
key = [line.split(b':', 1)[1].strip() for line in head.split(b'\r\n')
       if line.lower().startswith(b'sec-websocket-key:')][0]
accept = base64.b64encode(hashlib.sha1(key + b'258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest())
s.sendall(b'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n'
          b'Connection: Upgrade\r\nSec-WebSocket-Accept: ' + accept + b'\r\n\r\n')


def pong():
    data = b''
    while len(data) < 6 or len(data) < 6 + (data[1] & 0x7f):
        data += s.recv(4096)
    mask, size = data[2:6], data[1] & 0x7f
    return bytes(b ^ mask[i % 4] for i, b in enumerate(data[6:6 + size])).decode()


got = []
ping = b'\x89\x03one'
for piece in (ping[:3], ping[3:]):              # a ping in two reads, a pass apart
    s.sendall(piece)
    time.sleep(1.5)
got.append(pong())
open(result, 'w').write(' '.join(got))
big = b'\x82\x7f' + (50000).to_bytes(8, 'big') + b'b' * 50000
for piece in (big[:20000], big[20000:] + b'\x89\x03two'):
    s.sendall(piece)
    time.sleep(1.5)
got.append(pong())
open(result, 'w').write(' '.join(got))
time.sleep(30)
'''


def test_the_client_answers_a_ping_split_over_reads(netpair):
    """The client keeps the start of a server's frame that did not arrive whole (and
    skips a long data frame): a ping sent in two pieces, a pass apart, gets its pong,
    and so does one that follows a 50,000-byte frame."""
    pair = netpair.up(sources=1)
    result = os.path.join(pair.workdir, 'pinger.result')
    serve(pair, 'pinger', SPLIT_PINGER, result)
    code, summary = pair.client(['--endpoints', '%s:10000' % SERVER_ADDR, '--sources',
                                 pair.sources[0], '--connections', '1', '--hold', '8',
                                 '--watch-interval', '1', '--protocol', 'websocket']).finish()
    assert code == 0, summary['errors']
    with open(result) as f:
        assert f.read() == 'one two'


def test_websocket_pings_of_a_server_are_answered_while_polling(netpair):
    """The websockets library pings every client every 2 s and closes a connection whose
    pong does not come within 10 s: a client without heartbeats (polling) answers them
    at its passes, during the ramp and the hold, and loses nothing in 14 s."""
    pair = netpair.up(sources=1)
    ws_server(pair, 10000)
    n = 2000
    code, summary = pair.client(['--endpoints', '%s:10000' % SERVER_ADDR, '--sources',
                                 pair.sources[0], '--connections', str(n), '--hold', '14',
                                 '--watch-interval', '1', '--protocol', 'websocket',
                                 '--ws-subprotocol', 'chat']).finish(timeout=300)
    assert summary['watch']['mode'] == 'poll', summary['watch']
    assert code == 0, dict((k, summary[k]) for k in ('errors', 'drops', 'hold'))
    assert summary['established_final'] == n and summary['dropped'] == 0
    assert summary['protocol']['responses_by_status'] == {'101': n}


LATE_CLIENT = r'''
import socket, sys, time
addr, port, src, proto = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
req = b'GET / HTTP/1.1\r\nHost: h\r\n'
if proto == 'websocket':
    req += (b'Upgrade: websocket\r\nConnection: Upgrade\r\n'
            b'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n')
silent = socket.create_connection((addr, port), source_address=(src, 0))
silent.close()
late = socket.create_connection((addr, port), source_address=(src, 0))
time.sleep(0.5)
late.sendall(req + b'\r\n')
late.settimeout(10)
print(late.recv(4096).split(b'\r\n')[0].decode())
'''


@pytest.mark.parametrize('protocol, status', [('http', '200'), ('websocket', '101')])
def test_a_client_that_speaks_late_or_never_is_served_as_before(netpair, protocol, status):
    """The server half answers a request at accept when it is there; one that comes
    after the accept is answered on its epoll event, and a connection closed before a
    word is counted as closed by its client."""
    pair = netpair.up(sources=1)
    srv = pair.server(['--listen', SERVER_ADDR, '--ports', '10000', '--protocol', protocol])
    srv.wait_ready()
    res = run(['ip', 'netns', 'exec', pair.cli, sys.executable, '-c', LATE_CLIENT, SERVER_ADDR,
               '10000', pair.sources[0], protocol], timeout=60)
    assert res.stdout.split()[:2] == ['HTTP/1.1', status], res.stdout
    srv.wait_status(lambda st: st.get('accepted_total') == 2 and st.get('closed_total') == 2,
                    timeout=30)


def wait_ready(path, what):
    """Until a server started in the background wrote its ready file (30 s at most)."""
    deadline = time.monotonic() + 30
    while not os.path.exists(path):
        assert time.monotonic() < deadline, 'the %s server did not start' % what
        time.sleep(0.1)


def serve(pair, what, script, *args):
    """A server script of this file in the server namespace, on port 10000: its
    arguments are the address, the port, the file it writes once it listens, then args."""
    ready = os.path.join(pair.workdir, what + '.ready')
    pair.spawn(pair.srv, [sys.executable, '-c', script, SERVER_ADDR, '10000', ready] + list(args))
    wait_ready(ready, what)


def ws_server(pair, port, *flags):
    ready = os.path.join(pair.workdir, 'ws-%d.ready' % port)
    pair.spawn(pair.srv, [sys.executable, os.path.join(HERE, 'wsserver.py'), SERVER_ADDR,
                          str(port), ready] + list(flags))
    wait_ready(ready, 'websockets')


def test_websocket_against_the_websockets_library(netpair):
    pair = netpair.up(sources=2)
    ws_server(pair, 10000)
    n = 10000
    code, summary = pair.client(['--endpoints', '%s:10000' % SERVER_ADDR, '--sources',
                                 ','.join(pair.sources), '--connections', str(n), '--hold', '4',
                                 '--heartbeat-interval', '2', '--protocol', 'websocket',
                                 '--ws-subprotocol', 'chat']).finish(timeout=300)
    shown = ('errors', 'protocol', 'hold', 'reached', 'stopped_by', 'established_final')
    assert code == 0, dict((k, summary[k]) for k in shown)
    assert summary['established_final'] == n
    assert summary['protocol']['responses_by_status'] == {'101': n}
    hb = summary['heartbeat']
    # pings answered by the library's pongs, with the RTT
    assert hb['received'] >= n // 2, hb
    assert 0 < hb['rtt_p50_ms'] <= hb['rtt_p99_ms'], hb


def test_a_wrong_accept_key_is_an_error(netpair):
    pair = netpair.up(sources=1)
    ws_server(pair, 10000, '--bad-accept')
    code, summary = pair.client(['--endpoints', '%s:10000' % SERVER_ADDR, '--sources',
                                 pair.sources[0], '--connections', '50', '--hold', '1',
                                 '--protocol', 'websocket', '--ws-subprotocol', 'chat']).finish()
    assert code == 1
    assert summary['protocol']['errors'] == {'ws_bad_accept': 50}
    assert summary['errors']['ws_bad_accept'] == 50


BUSY_SERVER = '''
import http.server, sys
class Busy(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def do_GET(self):
        self.send_response(503)
        self.send_header('Content-Length', '4')
        self.end_headers()
        self.wfile.write(b'busy')
    def log_message(self, *args):
        pass
srv = http.server.ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Busy)
open(sys.argv[3], 'w').write('ready')
srv.serve_forever()
'''


def test_a_503_counts_by_status_and_fails_the_run(netpair):
    pair = netpair.up(sources=1)
    serve(pair, 'busy', BUSY_SERVER)
    code, summary = pair.client(['--endpoints', '%s:10000' % SERVER_ADDR, '--sources',
                                 pair.sources[0], '--connections', '40', '--hold', '1',
                                 '--protocol', 'http', '--http-path', '/x']).finish()
    assert code == 1
    proto = summary['protocol']
    assert proto['responses_by_status'] == {'503': 40} and proto['responses_by_class'] == {'5xx': 40}
    assert proto['errors'] == {'http_503': 40}


def test_no_answer_in_time_counts_against_the_tolerance(netpair):
    pair = netpair.up(sources=1)
    # the tcp server half does not speak HTTP: nothing comes back, within --timeout
    srv = pair.server(['--listen', SERVER_ADDR, '--ports', '10000'])
    srv.wait_ready()
    code, summary = pair.client(['--endpoints', '%s:10000' % SERVER_ADDR, '--sources',
                                 pair.sources[0], '--connections', '100', '--hold', '1',
                                 '--timeout', '1', '--protocol', 'http',
                                 '--hold-tolerance', '0.5']).finish()
    assert code == 1
    assert summary['protocol']['errors'] == {'no_answer': 100}
    assert summary['hold']['held_ok'] is True       # the connections themselves were held
