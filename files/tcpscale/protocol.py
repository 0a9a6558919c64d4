# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The application protocols both halves speak on a held connection.

``tcp``        connect and hold; heartbeats are raw bytes the server echoes.
``http``       HTTP/1.1 keep-alive: one request when the connection is
               established, its response read and its status counted; each
               heartbeat repeats the request (the RTT is the response's).
``websocket``  the RFC 6455 client handshake (Sec-WebSocket-Accept checked,
               an optional subprotocol); each heartbeat is a ping frame, the
               RTT comes from the pong.

Everything here is pure bytes in, bytes out (standard library only): the
workers keep the sockets, this module only builds requests and answers and
reads what came back. A response is read with :class:`Reader`, which keeps
nothing for a response that arrives in one read (the usual case).
"""

import hashlib
import os
from base64 import b64encode
from random import getrandbits

PROTOCOLS = ('tcp', 'http', 'websocket')
WS_GUID = b'258EAFA5-E914-47DA-95CA-C5AB0DC85B11'
MAX_HEAD = 16384            # response heads longer than this are a protocol error
# Error kinds that are not an errno (the summary's errors, by name)
BAD_ACCEPT = 'ws_bad_accept'
BAD_RESPONSE = 'http_bad_response'
NO_ANSWER = 'no_answer'         # the first request was not answered within the connect timeout
TLS_FAILED = 'tls_failed'      # a TLS handshake failed (certificate not verified, protocol error)


def http_request(method, path, host, headers=(), extra=()):
    """The bytes of one HTTP/1.1 keep-alive request (headers: (name, value) pairs)."""
    lines = ['%s %s HTTP/1.1' % (method, path), 'Host: %s' % host]
    lines += ['%s: %s' % (k, v) for k, v in list(extra) + list(headers)]
    return ('\r\n'.join(lines) + '\r\n\r\n').encode('latin-1')


def ws_key():
    """A Sec-WebSocket-Key: 16 random bytes, base64 (RFC 6455 4.1: a nonce "selected
    randomly", a guard against caching intermediaries, not a secret; from the random
    module, 0.19 us here, not os.urandom's system call, 0.53 us)."""
    return b64encode(getrandbits(128).to_bytes(16, 'little'))


def ws_accept(key):
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (both bytes)."""
    return b64encode(hashlib.sha1(key + WS_GUID).digest())


def ws_upgrade_headers(key, subprotocol=''):
    extra = [('Upgrade', 'websocket'), ('Connection', 'Upgrade'),
             ('Sec-WebSocket-Key', key.decode('latin-1')), ('Sec-WebSocket-Version', '13')]
    if subprotocol:
        extra.append(('Sec-WebSocket-Protocol', subprotocol))
    return extra


def ws_request_parts(path, host, headers=(), subprotocol=''):
    """(head, tail) of an upgrade request: head + Sec-WebSocket-Key + tail is the request."""
    marker = b'\x00KEY\x00'
    req = http_request('GET', path, host, headers, ws_upgrade_headers(marker, subprotocol))
    head, _sep, tail = req.partition(marker)
    return head, tail


def masked(payload, mask):
    """payload XOR the 4-byte mask (RFC 6455 5.3): masks and unmasks alike."""
    return bytes(b ^ mask[i & 3] for i, b in enumerate(payload))


def ws_frame(opcode, payload, mask=None):
    """One final frame; a client masks (mask: 4 bytes), a server does not."""
    n = len(payload)
    head = bytearray([0x80 | opcode])
    bit = 0x80 if mask else 0
    if n < 126:
        head.append(bit | n)
    elif n < 65536:
        head += bytes([bit | 126]) + n.to_bytes(2, 'big')
    else:
        head += bytes([bit | 127]) + n.to_bytes(8, 'big')
    if mask:
        head += mask
        payload = masked(payload, mask)
    return bytes(head) + payload


def ws_ping(payload):
    return ws_frame(0x9, payload, os.urandom(4))


def header(head, name, low=None):
    """The value (stripped bytes) of the first header field called name (lower-case bytes)
    in head, or None. head: a message head whose every line ends with CRLF; low: head
    lower-cased, when the caller looks up several fields (lowered once).

    Found with one search of the lower-cased head instead of a {name: value} of every
    field (benchmarks/protocol_codec.py times the calls that use it)."""
    if low is None:
        low = head.lower()
    i = low.find(b'\r\n' + name + b':')
    if i < 0:
        return None
    i += len(name) + 3
    return head[i:head.find(b'\r\n', i)].strip()


def parse_head(buf):
    """(status, head, head length) of a response head, or None if incomplete; head is its
    status line and header lines, each with its CRLF (for header()).

    Raises ValueError when what arrived is not an HTTP/1.x response.
    """
    end = buf.find(b'\r\n\r\n')
    if end < 0:
        if len(buf) > MAX_HEAD or (len(buf) >= 5 and not buf.startswith(b'HTTP/')):
            raise ValueError('not an HTTP response')
        return None
    head = bytes(buf[:end + 2])
    parts = head[:head.find(b'\r\n')].split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b'HTTP/1.') or not parts[1].isdigit():
        raise ValueError('not an HTTP response')
    return int(parts[1]), head, end + 4


def body_length(status, head):
    """Bytes of body after the head: a number, or -1 for chunked (read to the last chunk)."""
    if status in (101, 204, 304) or 100 <= status < 200:
        return 0
    low = head.lower()
    if b'chunked' in (header(head, b'transfer-encoding', low) or b'').lower():
        return -1
    try:
        return int(header(head, b'content-length', low) or b'0')
    except ValueError:
        return 0


def ws_frames(buf):
    """The whole frames at the start of buf: (opcode, payload start, size, mask or None, end)."""
    i, n = 0, len(buf)
    while i + 2 <= n:
        b1 = buf[i + 1]
        size, j = b1 & 0x7f, i + 2
        if size >= 126:
            width = 2 if size == 126 else 8
            if j + width > n:
                return
            size, j = int.from_bytes(buf[j:j + width], 'big'), j + width
        mask = None
        if b1 & 0x80:
            mask, j = buf[j:j + 4], j + 4
        if j + size > n:
            return
        yield buf[i] & 0x0f, j, size, mask, j + size
        i = j + size


class Reader(object):
    """What one connection waits for: a response head and its body, or the upgrade's 101.

    feed(data) returns None while more is needed, else (status or None, error
    kind or None, leftover bytes). Kept only while something is outstanding.
    """

    __slots__ = ('sent', 'heartbeat', 'accept', 'buf', 'body', 'status')

    def __init__(self, sent, heartbeat, accept=None):
        self.sent = sent
        self.heartbeat = heartbeat
        self.accept = accept        # the Sec-WebSocket-Accept expected (handshake only)
        self.buf = b''
        self.body = None            # body bytes still to come (-1: chunked), once the head is in
        self.status = None

    def feed(self, data):
        accept = self.accept
        if accept is not None and not self.buf:
            # the usual 101, whole in one read, with the expected accept in the casing of
            # RFC 6455's examples: found with one search (0.5 instead of 1.2 us here,
            # benchmarks/protocol_codec.py, client_reads_101); anything else is read below
            end = data.find(b'\r\n\r\n')
            if end > 0 and data.startswith(b'HTTP/1.1 101 ') and data.find(
                    b'\r\nSec-WebSocket-Accept: ' + accept + b'\r\n', 12, end + 2) > 0:
                self.status = 101
                return 101, None, data[end + 4:]
        buf = self.buf + data if self.buf else data
        if self.body is None:
            try:
                head = parse_head(buf)
            except ValueError:
                return None, BAD_RESPONSE, b''
            if head is None:
                self.buf = bytes(buf)
                return None
            self.status, head, hlen = head
            if self.accept is not None and self.status == 101:
                if header(head, b'sec-websocket-accept') != self.accept:
                    return self.status, BAD_ACCEPT, b''
                return self.status, None, buf[hlen:]
            self.body = body_length(self.status, head)
            buf = buf[hlen:]
        if self.body == -1:
            end = buf.find(b'0\r\n\r\n')
            if end < 0 or (end and buf[end - 2:end] != b'\r\n'):
                self.buf = bytes(buf[-5:])
                return None
            return self.status, None, buf[end + 5:]
        if len(buf) < self.body:
            self.body -= len(buf)
            self.buf = b''
            return None
        return self.status, None, buf[self.body:]


# ---------------------------------------------------------------- server side

BAD_REQUEST = b'HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'


def http_response(body=b'tcpscale\n'):
    return (b'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n'
            b'Connection: keep-alive\r\n\r\n' % len(body)) + body


WS_KEY_FIELD = b'\r\nsec-websocket-key:'
WS_PROTOCOL_FIELD = b'\r\nsec-websocket-protocol:'


def ws_handshake_response(request):
    """The 101 answer to an upgrade request, or None when it is not one (400 then).

    The two fields are found in the lower-cased head by constant needles, not with
    header() (which builds its needle per call): 1.1 instead of 1.5 us here
    (benchmarks/protocol_codec.py, server_101_answer)."""
    head = request.split(b'\r\n\r\n', 1)[0] + b'\r\n'
    low = head.lower()
    i = low.find(WS_KEY_FIELD)
    if i < 0:
        return None
    i += len(WS_KEY_FIELD)
    key = head[i:head.find(b'\r\n', i)].strip()
    if not key:
        return None
    out = (b'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n'
           b'Sec-WebSocket-Accept: ' + ws_accept(key) + b'\r\n')
    i = low.find(WS_PROTOCOL_FIELD)
    if i >= 0:
        i += len(WS_PROTOCOL_FIELD)
        proto = head[i:head.find(b'\r\n', i)].split(b',')[0].strip()
        if proto:
            out += b'Sec-WebSocket-Protocol: ' + proto + b'\r\n'
    return out + b'\r\n'


WS_KEPT = 4096      # the start of a longer frame than this is not kept: its rest is skipped


def ws_frame_length(buf):
    """The whole length of the frame buf starts with, or None while its header is not in."""
    if len(buf) < 2:
        return None
    b1 = buf[1]
    size, j = b1 & 0x7f, 2
    if size >= 126:
        width = 2 if size == 126 else 8
        if len(buf) < j + width:
            return None
        size, j = int.from_bytes(buf[j:j + width], 'big'), j + width
    return j + (4 if b1 & 0x80 else 0) + size


def ws_leftover(buf, used):
    """What to keep of buf past its whole frames (the first used bytes) for the next read:
    None, the start of a frame (bytes), or how many bytes of a long frame are still to
    come and are skipped (int; a data frame's payload, which nothing here reads)."""
    if used >= len(buf):
        return None
    tail = buf[used:]
    whole = ws_frame_length(tail)
    if whole is not None and whole > WS_KEPT:
        return whole - len(tail)
    return bytes(tail)


def ws_resume(left, data):
    """data after what the last read left (ws_leftover): (bytes to parse, what is still
    to skip or None)."""
    if left is None:
        return data, None
    if isinstance(left, int):
        if len(data) <= left:
            return b'', (left - len(data)) or None
        return data[left:], None
    return left + data, None


def ws_answer_pings(buf, client=False):
    """(pong frames answering the pings among the whole frames of buf, pongs seen in it,
    bytes of buf those whole frames take: what follows is the start of one to come).

    A client masks its pongs (RFC 6455 5.3), a server does not.
    """
    out, pongs, used = [], 0, 0
    for opcode, start, size, mask, used in ws_frames(buf):
        if opcode == 0xA:
            pongs += 1
        elif opcode == 0x9:
            payload = buf[start:start + size]
            if mask is not None:
                payload = masked(payload, mask)
            out.append(ws_frame(0xA, payload, os.urandom(4) if client else None))
    return b''.join(out), pongs, used
