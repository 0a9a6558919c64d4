# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Live metrics of a half in the Prometheus text exposition format (0.0.4).

Written by the engine itself (standard library only), each progress interval:

* into DIR/tcpscale_<half>.prom, replaced atomically (a temporary file in the
  same directory, then rename), for node_exporter's textfile collector;
* served over HTTP by the supervisor on ADDR:PORT (GET /metrics), from a
  non-blocking listening socket polled by the supervisor's own loop (no
  thread: the supervisor forks workers while it runs). The socket can be
  opened in another network namespace (--metrics-netns: a namespace file, or
  'parent', the namespace of the process that ran `ip netns exec`: the host's
  while the engine runs in a test namespace), so a Prometheus outside the test
  namespace can scrape it.

Histograms come from the workers' log-bucketed histograms in shared memory
(shm.py, 20 buckets per e-fold, 5% wide): a fine bucket is counted under
every ``le`` at or above the middle of the bucket.
"""

import ctypes
import errno
import math
import os
import socket

from . import ipplan
from .shm import HIST_PER_E
from .system import Usage, libc, log

CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8'
LE_SECONDS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
              0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
CLONE_NEWNET = 0x40000000


def _label_value(v):
    return str(v).replace('\\', '\\\\').replace('"', '\\"').replace('\n', '\\n')


def _labels(labels):
    if not labels:
        return ''
    return '{%s}' % ','.join('%s="%s"' % (k, _label_value(v)) for k, v in sorted(labels.items()))


def _value(v):
    if v is None:
        return 'NaN'
    if isinstance(v, float):
        if math.isinf(v):
            return '+Inf' if v > 0 else '-Inf'
        return repr(v)
    return str(int(v))


class Exposition(object):
    """The text of one scrape: families of samples, each with HELP and TYPE."""

    def __init__(self, prefix):
        self.prefix = prefix
        self.lines = []

    def add(self, name, kind, doc, value=None, samples=None):
        """A gauge or counter: one value, or samples [(labels, value)]."""
        full = self.prefix + name
        self.lines.append('# HELP %s %s' % (full, doc))
        self.lines.append('# TYPE %s %s' % (full, kind))
        for labels, v in (samples if samples is not None else [({}, value)]):
            self.lines.append('%s%s %s' % (full, _labels(labels), _value(v)))

    def histogram(self, name, doc, hist, sum_us):
        """A histogram (seconds) from the fine buckets of shm.py."""
        full = self.prefix + name
        self.lines.append('# HELP %s %s' % (full, doc))
        self.lines.append('# TYPE %s histogram' % full)
        cumulative = [0] * len(LE_SECONDS)
        count = 0
        for idx, n in enumerate(hist):
            if not n:
                continue
            count += n
            mid = (math.exp((idx + 0.5) / HIST_PER_E) - 1.0) / 1e6
            for j, le in enumerate(LE_SECONDS):
                if mid <= le:
                    cumulative[j] += n
        for le, n in zip(LE_SECONDS, cumulative):
            self.lines.append('%s_bucket{le="%s"} %d' % (full, repr(le), n))
        self.lines.append('%s_bucket{le="+Inf"} %d' % (full, count))
        self.lines.append('%s_sum %s' % (full, repr(sum_us / 1e6)))
        self.lines.append('%s_count %d' % (full, count))

    def text(self):
        return '\n'.join(self.lines) + '\n'


def parse_listen(text, field='--metrics-listen'):
    """(family, address, port) of ADDR:PORT or [V6ADDR]:PORT."""
    try:
        host, port = ipplan.split_endpoint(text)
        ip = ipplan.address(host)
    except ValueError as exc:
        raise Usage('%s: %s (give ADDRESS:PORT, [IPV6]:PORT for IPv6, for instance '
                    '127.0.0.1:9464)' % (field, exc))
    return (socket.AF_INET6 if ip.version == 6 else socket.AF_INET), str(ip), int(port)


def in_netns(path, fn):
    """fn() with this thread in the network namespace at path, then back. path
    'parent' is the namespace of the parent process: the one that ran
    `ip netns exec ... python3 tcpscale` (ip execs the engine), so the host's on the
    one-box default."""
    if path == 'parent':
        path = '/proc/%d/ns/net' % os.getppid()
    lib = libc()
    if not lib:
        raise Usage('--metrics-netns: no C library to call setns(2) with')
    own = os.open('/proc/thread-self/ns/net', os.O_RDONLY)
    try:
        try:
            target = os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise Usage('--metrics-netns %s: %s (give a network namespace file such as '
                        '/run/netns/NAME, or parent)' % (path, exc.strerror))
        try:
            if lib.setns(target, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise Usage('--metrics-netns %s: setns: %s' % (path, os.strerror(err)))
            try:
                return fn()
            finally:
                if lib.setns(own, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), 'cannot return to the own namespace')
        finally:
            os.close(target)
    finally:
        os.close(own)


class Exporter(object):
    """Where a half's metrics go: a textfile, an HTTP listener, or both.

    Everything that can fail (a directory that is not there or not writable, an
    address without a port, a port in use) fails here, before the half starts.
    """

    def __init__(self, half, directory=None, listen=None, netns=None):
        self.half = half
        self.directory = directory
        self.body = b''
        self.sock = None
        self.path = None
        if directory:
            if not os.path.isdir(directory):
                raise Usage('--metrics-dir %s: no such directory (create it, or point it at '
                            'node_exporter\'s --collector.textfile.directory)' % directory)
            if not os.access(directory, os.W_OK | os.X_OK):
                raise Usage('--metrics-dir %s: not writable by this user' % directory)
            self.path = os.path.join(directory, 'tcpscale_%s.prom' % half)
        if listen:
            family, addr, port = parse_listen(listen)
            self.listen = (addr, port)
            try:
                if netns:
                    self.sock = in_netns(netns, lambda: self._listener(family, addr, port))
                else:
                    self.sock = self._listener(family, addr, port)
            except OSError as exc:
                hints = {errno.EADDRINUSE: 'another process listens there: choose another port',
                         errno.EADDRNOTAVAIL: 'no interface has this address in that namespace'}
                hint = hints.get(exc.errno, 'choose another address')
                raise Usage('--metrics-listen %s: %s (%s)' % (listen, exc.strerror, hint))
            shown = '[%s]:%d' % (addr, port) if ':' in addr else '%s:%d' % (addr, port)
            log('metrics: http://%s/metrics' % shown)

    @staticmethod
    def _listener(family, addr, port):
        s = socket.socket(family, socket.SOCK_STREAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((addr, port))
            s.listen(64)
            s.setblocking(False)
        except OSError:
            s.close()
            raise
        return s

    def fileno(self):
        return self.sock.fileno() if self.sock else None

    def publish(self, text):
        """The latest scrape: the HTTP body, and the textfile replaced atomically."""
        self.body = text.encode('utf-8')
        if not self.path:
            return
        tmp = os.path.join(self.directory, '.tcpscale_%s.prom.%d' % (self.half, os.getpid()))
        try:
            with open(tmp, 'wb') as f:
                f.write(self.body)
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.path)
        except OSError as exc:
            log('cannot write %s: %s' % (self.path, exc))

    def serve(self):
        """Answer the scrapes that are waiting (never blocks for long: 0.5 s per client)."""
        if not self.sock:
            return
        while True:
            try:
                conn, _peer = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log('metrics: accept: %s' % exc)
                return
            try:
                self._answer(conn)
            except OSError:
                pass
            finally:
                conn.close()

    def _answer(self, conn):
        conn.settimeout(0.5)
        data = b''
        while b'\r\n\r\n' not in data and len(data) < 16384:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
        parts = data.split(b'\r\n', 1)[0].split()
        path = parts[1].split(b'?', 1)[0] if len(parts) > 1 else b''
        if len(parts) < 2 or parts[0] not in (b'GET', b'HEAD'):
            status, body = '405 Method Not Allowed', b'GET /metrics\n'
        elif path in (b'/metrics', b'/'):
            status, body = '200 OK', self.body
        else:
            status, body = '404 Not Found', b'GET /metrics\n'
        head = ('HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close'
                '\r\n\r\n' % (status, CONTENT_TYPE, len(body))).encode('ascii')
        conn.sendall(head + (body if parts and parts[0] != b'HEAD' else b''))

    def close(self):
        if self.sock:
            self.sock.close()
            self.sock = None


def exporter_of(half, args):
    """The Exporter the options of half ask for (--metrics-dir, --metrics-listen), or None;
    raises Usage when it cannot be opened."""
    if not (args.metrics_dir or args.metrics_listen):
        return None
    return Exporter(half, args.metrics_dir, args.metrics_listen, args.metrics_netns)
