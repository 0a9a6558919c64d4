# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The protocol codec (files/tcpscale/protocol.py): requests, answers, frames (no sockets)."""

from __future__ import annotations

import base64
import hashlib

from enginelib import engine_package

pr = engine_package().protocol


def test_the_accept_key_is_the_rfc_6455_example():
    # RFC 6455 section 1.3
    assert pr.ws_accept(b'dGhlIHNhbXBsZSBub25jZQ==') == b's3pPLMBiTxaQ9kYGzzhZRbK+xOo='
    key = pr.ws_key()
    assert len(base64.b64decode(key)) == 16
    assert pr.ws_accept(key) == base64.b64encode(hashlib.sha1(key + pr.WS_GUID).digest())


def test_an_upgrade_round_trip_checks_the_accept_key():
    head, tail = pr.ws_request_parts('/ws', 'h:80', subprotocol='chat')
    key = pr.ws_key()
    answer = pr.ws_handshake_response(head + key + tail)
    assert answer.startswith(b'HTTP/1.1 101 ') and b'Sec-WebSocket-Protocol: chat' in answer
    assert pr.Reader(0, False, pr.ws_accept(key)).feed(answer) == (101, None, b'')
    assert pr.Reader(0, False, pr.ws_accept(pr.ws_key())).feed(answer)[1] == pr.BAD_ACCEPT
    assert pr.ws_handshake_response(b'GET / HTTP/1.1\r\nHost: h\r\n\r\n') is None


def test_the_fast_reads_of_the_upgrade_give_what_the_general_ones_do():
    """The server's constant needles and the client's one search for its accept line
    are shortcuts: any casing, a split 101, frames after it and a wrong or missing
    accept give what the general parsing gives."""
    key = b'dGhlIHNhbXBsZSBub25jZQ=='
    accept = pr.ws_accept(key)
    lower = (b'GET / HTTP/1.1\r\nhost: h\r\nupgrade: websocket\r\nconnection: upgrade\r\n'
             b'SEC-WEBSOCKET-KEY:' + key + b' \r\nsec-websocket-protocol: chat, superchat\r\n\r\n')
    answer = pr.ws_handshake_response(lower)
    assert b'Sec-WebSocket-Accept: ' + accept + b'\r\n' in answer
    assert answer.endswith(b'Sec-WebSocket-Protocol: chat\r\n\r\n')
    assert pr.ws_handshake_response(b'GET / HTTP/1.1\r\nSec-WebSocket-Key: \r\n\r\n') is None
    ping = pr.ws_frame(0x9, b'p')
    plain = (b'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n'
             b'Sec-WebSocket-Accept: ' + accept + b'\r\n\r\n')
    assert pr.Reader(0, False, accept).feed(plain + ping) == (101, None, ping)
    # another casing, or the answer in two reads: the general path, the same result
    other = plain.replace(b'Sec-WebSocket-Accept', b'sec-websocket-accept')
    assert pr.Reader(0, False, accept).feed(other + ping) == (101, None, ping)
    r = pr.Reader(0, False, accept)
    assert r.feed(plain[:20]) is None and r.feed(plain[20:]) == (101, None, b'')
    # the accept line of another key, or none: a bad accept either way
    assert pr.Reader(0, False, pr.ws_accept(b'x' * 24)).feed(plain)[1] == pr.BAD_ACCEPT
    none = plain.replace(b'Sec-WebSocket-Accept: ' + accept + b'\r\n', b'')
    assert pr.Reader(0, False, accept).feed(none)[1] == pr.BAD_ACCEPT
    # a 200 to an upgrade is read as a response, not as the 101
    ok = pr.http_response()
    assert pr.Reader(0, False, accept).feed(ok)[0] == 200


def test_a_ping_gets_a_pong_with_its_payload():
    ping = pr.ws_ping(b'x' * 16)
    assert ping[0] == 0x89 and ping[1] == 0x80 | 16           # final ping, masked
    pong, seen, used = pr.ws_answer_pings(ping + ping[:3])    # a partial frame waits
    assert seen == 0 and pong == b'\x8a\x10' + b'x' * 16 and used == len(ping)
    assert pr.ws_answer_pings(pong * 2) == (b'', 2, 2 * len(pong))
    big = pr.ws_frame(0x9, b'y' * 300, b'abcd')
    assert pr.ws_answer_pings(big)[0] == pr.ws_frame(0xA, b'y' * 300)
    # a client answers a server's (unmasked) ping with a masked pong
    masked, _seen, _used = pr.ws_answer_pings(pr.ws_frame(0x9, b'z'), client=True)
    assert masked[0] == 0x8A and masked[1] == 0x80 | 1 and len(masked) == 2 + 4 + 1


def test_a_frame_split_over_reads_is_kept_and_a_long_one_skipped():
    ping = pr.ws_ping(b'x' * 16)
    assert [pr.ws_frame_length(ping[:i]) for i in (0, 1, 2)] == [None, None, len(ping)]
    big = pr.ws_frame(0x2, b'b' * 70000, b'abcd')      # 8-byte length, masked
    assert pr.ws_frame_length(big[:9]) is None and pr.ws_frame_length(big[:10]) == len(big)
    # the start of a short frame is kept whole, with the bytes of the next read after it
    buf = ping + ping[:5]
    _pong, _seen, used = pr.ws_answer_pings(buf)
    left = pr.ws_leftover(buf, used)
    assert left == ping[:5] and pr.ws_leftover(ping, len(ping)) is None
    data, still = pr.ws_resume(left, ping[5:])
    assert still is None and pr.ws_answer_pings(data)[0] == b'\x8a\x10' + b'x' * 16
    # a long data frame: its rest is counted down over the reads that bring it, then
    # what follows it is parsed
    buf = ping + big[:1000]
    _pong, _seen, used = pr.ws_answer_pings(buf)
    left = pr.ws_leftover(buf, used)
    assert left == len(big) - 1000
    data, still = pr.ws_resume(left, big[1000:60000])
    assert data == b'' and still == len(big) - 60000
    data, still = pr.ws_resume(still, big[60000:] + ping)
    assert still is None and data == ping
    assert pr.ws_resume(len(big) - 1000, big[1000:]) == (b'', None)


def test_responses_are_read_whole_across_reads():
    resp = pr.http_response(b'hello')
    r = pr.Reader(0, True)
    assert r.feed(resp[:7]) is None and r.feed(resp[7:-2]) is None
    assert r.feed(resp[-2:] + b'next') == (200, None, b'next')
    chunked = pr.Reader(0, False)
    assert chunked.feed(b'HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbusy\r\n') is None
    assert chunked.feed(b'0\r\n\r\n') == (503, None, b'')
    assert pr.Reader(0, False).feed(b'SSH-2.0-OpenSSH\r\n')[1] == pr.BAD_RESPONSE


def test_requests_are_one_line_per_header():
    req = pr.http_request('HEAD', '/x', '10.0.0.1:80', [('X-A', '1')])
    assert req == b'HEAD /x HTTP/1.1\r\nHost: 10.0.0.1:80\r\nX-A: 1\r\n\r\n'


def test_header_fields_are_found_by_name_whatever_their_case():
    head = (b'HTTP/1.1 200 OK\r\nX-Content-Length-Note: 7\r\ncontent-LENGTH:  12 \r\n'
            b'Sec-WebSocket-Protocol: chat, superchat\r\n')
    assert pr.header(head, b'content-length') == b'12'          # not the longer name's
    assert pr.header(head, b'sec-websocket-protocol') == b'chat, superchat'
    assert pr.header(head, b'transfer-encoding') is None
    assert pr.header(head, b'http/1.1 200 ok') is None           # the status line is no field
    assert pr.body_length(200, head) == 12 and pr.body_length(204, head) == 0
    # the upgrade's key and subprotocol, however the client spells their names
    answer = pr.ws_handshake_response(b'GET / HTTP/1.1\r\nhost: h\r\nSEC-WEBSOCKET-KEY: '
                                      b'dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-protocol: '
                                      b' chat , x\r\n\r\n')
    assert b'Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n' in answer
    assert b'Sec-WebSocket-Protocol: chat\r\n' in answer
    assert pr.ws_key() != pr.ws_key()
