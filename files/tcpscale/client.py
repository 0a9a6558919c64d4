# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The client half: workers that open and hold connections, and their supervisor.

Workers are started a few at a time (one per core); each opens its quota
with non-blocking connects (bound to a source alias with
IP_BIND_ADDRESS_NO_PORT, so the kernel picks the port per 4-tuple at connect
time and one source address is not capped at the local port range), many
handshakes in flight, then holds; the next worker starts when one is done.
Connection k of the whole run goes to tuple k mod T over sources x
destinations x ports, so every tuple carries the same share.
"""

import array
import errno
import heapq
import itertools
import math
import os
import random
import select
import signal
import socket
import _socket
import time

from . import VERSION
from . import protocol as proto_mod
from . import ipplan
from . import tls as tls_mod
from .plan import RESERVE_FDS, ClientPlan, tuple_at, worker_order
from .metrics import Exposition, exporter_of
from .shm import (CONNECT_HIST_BASE, ERR_BASE, F_ATTEMPTS, F_BAD_ACCEPT, F_BAD_RESPONSE,
                  F_CONNECT_SUM_US, F_CPU_SYS_US, F_CPU_USER_US, F_DONE_NS, F_DROP_RST, F_DROPPED,
                  F_EST, F_FAILED, F_HB_RECV, F_HB_SENT, F_INFL_CAP, F_INFLIGHT, F_NO_ANSWER,
                  F_PEAK, F_PID, F_QUOTA, F_RATE, F_REQ_SENT, F_RESP_RECV, F_RTT_SUM_US, F_STATE,
                  F_HB_FIRST_NS, F_STOP, F_TLS_DONE, F_TLS_FAILED, F_TLS_RESUMED, F_TOTAL,
                  F_WATCH_ACK,
                  F_WATCH_GO, F_WATCH_PASSES, F_WATCH_REQ, F_WATCH_US, HIST_BASE, HIST_PER_E,
                  HIST_SLOTS, PEER_CLOSED, PEER_RESET,
                  SLOT_WORDS, ST_ACTIVE, ST_EXITED, ST_HOLDING, ST_LOST, ST_SETTLED, ST_STARTING,
                  TIMELINE_COLUMNS, Shm, err_slot, error_counts, hist_add, hist_merge, hist_summary,
                  publish_cpu, publish_statuses, status_counts)
from .supervisor import Supervisor, finish, fork_worker
from .system import (EXIT_LOST, EXIT_NOT_REACHED, EXIT_OK, EXIT_USAGE, IP_BIND_ADDRESS_NO_PORT,
                     IP_FREEBIND, SOCK_NONBLOCK, Usage, child_setup, close_rst, drain, held_fds,
                     held_table, log, set_name, trim_heap, write_json_atomic)
from .watch import (ENDED_EVENTS, HELD_EVENTS, POLLIN, POLLOUT, RESET_EVENTS, Poller,
                    describe)

HB_BURST = 32               # heartbeats a client worker sends in one pass (small: RTT fidelity)
CONNECT_BATCH = 256         # connects started in one pass of a worker's loop at most
INF = float('inf')


# =========================================================== worker

def sock_error(fd):
    """SO_ERROR of a bare descriptor (the descriptor stays open)."""
    s = _socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0, fd)
    try:
        return s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    finally:
        s.detach()


def client_worker(parent_pid, plan, args, shm, slot, start_g, quota, notify_w):
    """The body of a forked client worker (see ClientWorker)."""
    return ClientWorker(parent_pid, plan, args, shm, slot, start_g, quota, notify_w).run()


class ClientWorker(object):
    """Opens connections start_g .. start_g + quota - 1 of the run, then holds them.

    Each connection is a bare descriptor, marked in a table of one byte per possible
    descriptor (system.held_table; no socket object).
    Watch mode epoll: every connection is in the worker's epoll set. Watch
    mode poll (watch.py): the in-flight handshakes are polled, with the
    connections whose first answer (http, websocket) is not in yet, and the
    held connections once every --watch-interval seconds; no epoll item per
    connection. One pass of the loop: open what the rate and the in-flight
    cap allow, wait for events, handle them, expire handshakes that took too
    long, send the heartbeats that are due (or, polling, check the held
    connections when due), publish the counts.
    Each phase is a method that binds what it uses to locals once per pass: a
    worker makes about one pass per 250 connections while it connects, so the
    calls of a pass cost nothing measurable. The per-connection work stays
    inline in connect() and dispatch(): with a method call per connect and per
    event instead, the Python around the system calls cost 1.52 instead of
    1.06 us per connection (+44%; a replay of 200,000 connects with fake
    sockets and epoll, min of 7 runs; the one-function worker of 1.0.0: 1.09),
    and the workers' user CPU in alternating end-to-end runs at 200,000
    connections was 3.30 instead of 2.15 us per connection (median of 6).
    """

    def __init__(self, parent_pid, plan, args, shm, slot, start_g, quota, notify_w):
        self.parent_pid = parent_pid
        self.wake_r, self.flags = child_setup(parent_pid, 'tcpscale-c%d' % slot)
        self.plan = plan
        self.q, self.d = shm.q, shm.d
        self.b = b = slot * SLOT_WORDS
        self.err_base = b + ERR_BASE
        self.hist_base = b + HIST_BASE
        self.rtt_sum = b + F_RTT_SUM_US
        self.conn_hist = b + CONNECT_HIST_BASE
        self.quota = quota
        self.notify_w = notify_w
        self.q[b + F_PID] = os.getpid()
        self.q[b + F_QUOTA] = quota
        self.q[b + F_STATE] = ST_ACTIVE
        # plan.watch_late: polled as in watch mode poll until the ramp is over, then in epoll
        self.late = getattr(plan, 'watch_late', False)
        self.poller = Poller() if plan.watch == 'poll' or self.late else None
        self.epoll = None
        if self.poller is None:
            self.epoll = select.epoll(1024)
            self.epoll.register(self.wake_r, select.EPOLLIN)
        self.watch_interval = plan.watch_interval
        self.watch_acked = 0
        self.watch_passes = 0
        self.watch_s = 0.0
        self.held = held_table(plan.nofile)                     # fd -> 1 while held
        self.inflight = {}                                      # fd -> (g, attempt, started, dst)
        self.retry_heap = []                                    # (due, g, attempt)
        self.hb_pending = {}                                    # fd -> heartbeat sent at
        self.proto = plan.protocol                              # tcp, http or websocket
        self.readers = {}                                       # fd -> protocol.Reader
        self.ws_left = {}           # fd -> the start of a frame not yet whole (ws_leftover)
        self.statuses = {}                                      # HTTP status -> responses
        self.req_sent = self.resp_recv = self.bad_response = self.bad_accept = 0
        self.greeting = self.no_answer = 0                      # first answers outstanding, never came
        # only drops are read, polling tcp without heartbeats: a small buffer will do
        self.rbufs = [bytearray(4096 if plan.watch == 'poll' and self.proto == 'tcp'
                                else 65536)]
        # polling, a connection waiting for its first answer (self.readers) is polled
        # with the handshakes and counts toward the in-flight cap as they do
        self.polled_answers = self.poller is not None and self.proto != 'tcp'
        self.tls = plan.tls                                     # an SSLContext, or None
        self.tlss = {} if plan.tls is not None else None        # fd -> tls.Conn
        self.sessions = {}                                      # destination -> TLS session
        self.tls_done = self.tls_resumed = self.tls_failed = 0
        self.retries = args.retries
        self.timeout = args.timeout
        self.freebind = getattr(args, 'freebind', False)
        self.hb_interval = args.heartbeat_interval
        self.next_g = start_g
        self.end_g = start_g + quota
        # the g to open, in turn: tuple by tuple, but with TLS in index order (round the
        # destinations), so that every destination has a session to resume early on
        # (tuple by tuple, a worker's first handshakes to each destination are full ones)
        self.order = (worker_order(start_g, quota, plan.tuples) if plan.tls is None
                      else iter(range(start_g, start_g + quota)))
        self.est = self.peak = self.total = self.attempts = self.failed = 0
        self.dropped = self.drop_rst = self.hb_cursor = self.hb_sent = self.hb_recv = 0
        self.tokens = self.hb_budget = 0.0
        self.last = self.last_scan = self.last_ppid = self.last_hb = time.monotonic()
        self.last_watch = self.last
        self.hb_start = INF
        self.done = False

    def run(self):
        self.loop()
        self.close_all()
        return 0

    def loop(self):
        q, b, flags = self.q, self.b, self.flags
        poll = self.epoll.poll if self.poller is None else self.poll_inflight
        # polling: the periodic passes (watch mode poll) and the passes the supervisor asks
        # for (F_WATCH_REQ, at the end of the hold; late too, while it has not joined epoll)
        polling = self.plan.watch == 'poll' or self.late
        late = self.late
        interval = self.watch_interval
        monotonic = time.monotonic
        heartbeats = self.hb_interval > 0
        # websocket, polling: a server's pings are answered at the passes, and these run
        # during the ramp too (a server may close a connection whose pong is late)
        pass_in_ramp = self.polled_answers and self.proto == 'websocket'
        # An unpaced ramp (no --rate) is a race to the target that takes every core:
        # heartbeats wait for its end (F_WATCH_GO). A paced one leaves room for them.
        paced = self.plan.paced
        while True:
            now = monotonic()
            if flags['stop'] or q[b + F_STOP]:
                break
            if now - self.last_ppid > 0.5 and self.orphaned(now):
                break
            if late and q[b + F_WATCH_GO]:
                self.join_epoll(now)
                poll = self.epoll.poll
                late = False
            if not self.done:
                self.open_connections(now)
            self.last = now
            events = poll(self.poll_timeout(now), 4096)
            now = monotonic()
            if events:
                self.dispatch(events, now)
            if (self.inflight or self.greeting) and now - self.last_scan > 0.1:
                self.expire(now)
            if heartbeats and self.est and now >= self.hb_start and \
                    (paced or q[b + F_WATCH_GO]):
                self.heartbeat(now)
            if polling:
                req = q[b + F_WATCH_REQ]
                if req != self.watch_acked:
                    if self.poller is not None:
                        self.watch_held(now)    # (in epoll, a drop is already counted)
                    self.watch_acked = req
                elif self.poller is not None and (q[b + F_WATCH_GO] or pass_in_ramp) \
                        and now - self.last_watch >= interval:
                    self.watch_held(now)
            self.publish()

    # --- watch mode poll
    def join_epoll(self, now):
        """plan.watch_late: the ramp is over; from now on every connection is in the epoll
        set. A connection the peer ended before is reported by the first epoll.poll()
        (epoll_ctl ADD reports what is already pending, edge-triggered or not)."""
        ep = select.epoll(1024)
        ep.register(self.wake_r, select.EPOLLIN)
        register = ep.register
        held_mask = select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLET
        for fd in held_fds(self.held):
            register(fd, held_mask)
        conn_mask = held_mask | select.EPOLLOUT
        for fd in self.inflight:
            register(fd, conn_mask)
        self.epoll, self.poller, self.late = ep, None, False
        self.watch_s += time.monotonic() - now
        self.q[self.b + F_WATCH_US] = int(self.watch_s * 1e6)

    def poll_inflight(self, timeout, _maxevents):
        """The events of the in-flight handshakes, of the connections waiting for their
        first answer and of the wake-up pipe (epoll.poll's form)."""
        if self.done and self.q[self.b + F_WATCH_GO]:
            timeout = min(timeout, max(0.0, self.last_watch + self.watch_interval
                                       - time.monotonic()))
        more = (self.readers, HELD_EVENTS) if self.readers else None
        return self.poller.ready(array.array('i', self.inflight), POLLOUT,
                                 math.ceil(timeout * 1000), (self.wake_r, POLLIN), more)

    def watch_held(self, now):
        """One poll() over the held connections: the ones the peer ended are dropped
        (FIN or RST, as a read tells); what arrived is read: a first answer or a
        server's WebSocket ping is handled (the pong sent), the rest ignored.

        When: once this worker's quota is open (before it counts as done), every
        --watch-interval seconds once the supervisor says the ramp is over, and when
        the supervisor asks (the end of the hold). Never during the ramp otherwise
        (a pass costs about 0.3 us per held connection, which the ramp needs), but
        for websocket: a server may close a connection whose pong is late.
        """
        self.last_watch = now
        speaks = self.proto != 'tcp'
        for fd, ev in self.poller.ready(held_fds(self.held), HELD_EVENTS):
            if ev & ENDED_EVENTS:
                # RST (the error is set) or FIN (the peer shut its side): no read needed
                self.drop(fd, bool(ev & RESET_EVENTS))
            else:
                n = self.read_held(fd)
                if n > 0 and speaks:
                    self.on_data(fd, n, now)    # a first answer, a server's ping
        trim_heap()         # the pass's temporary arrays: not this worker's memory for good
        self.watch_passes += 1
        self.watch_s += time.monotonic() - now

    def orphaned(self, now):
        """Every half second: publish the CPU time; whether the supervisor is gone."""
        self.last_ppid = now
        publish_cpu(self.q, self.b)
        return os.getppid() != self.parent_pid

    def in_flight(self):
        """What the in-flight cap counts: the handshakes under way, and polling, the
        connections waiting for their first answer (a server that answers late or never
        slows the ramp down instead of piling up descriptors to poll)."""
        if self.polled_answers:
            return len(self.inflight) + len(self.readers)
        return len(self.inflight)

    # --- opening
    def open_connections(self, now):
        """Start due retries, then new connections, within the rate and in-flight caps."""
        q, b = self.q, self.b
        rate = self.d[b + F_RATE]
        room = int(q[b + F_INFL_CAP]) - self.in_flight()
        if rate > 0:
            self.tokens = min(self.tokens + (now - self.last) * rate, max(1.0, rate * 0.02))
            room = min(room, int(self.tokens))
        if room > CONNECT_BATCH:
            room = CONNECT_BATCH
        n = 0
        retry_heap = self.retry_heap
        if room > 0 and retry_heap and retry_heap[0][0] <= now:
            due = []
            while len(due) < room and retry_heap and retry_heap[0][0] <= now:
                _t, g, attempt = heapq.heappop(retry_heap)
                due.append((g, attempt))
            self.connect(due, now)
            n = len(due)
        k = min(room - n, self.end_g - self.next_g)
        if k > 0:
            self.next_g += k
            self.connect(zip(itertools.islice(self.order, k), itertools.repeat(0)), now)
            n += k
        self.attempts += n
        if rate > 0:
            self.tokens -= n

    def connect(self, todo, now):
        """One non-blocking connect per (g, attempt) in todo (connection g, its retry attempt).

        A second connect() right after EINPROGRESS says whether the handshake already
        completed (0), as it does when the server's kernel answers within the first
        call (the same host, or a fast network), or is still on its way (EALREADY):
        an established connection is held at once, without an in-flight entry, a
        poll and an event, which is most of the engine's own work per connection.
        """
        plan = self.plan
        segments = plan.segments
        single = len(segments) == 1
        seg_af, _t, seg_src, seg_dst = segments[0]
        tuples = plan.tuples
        nsrc, ndst = len(seg_src), len(seg_dst)
        new_socket = _socket.socket
        nonblock_stream = socket.SOCK_STREAM | SOCK_NONBLOCK
        sol_ip = socket.IPPROTO_IP
        freebind = self.freebind
        bind = plan.bind
        einprogress, ealready = errno.EINPROGRESS, errno.EALREADY
        register = self.epoll.register if self.epoll is not None else None
        monotonic = time.monotonic
        conn_mask = select.EPOLLOUT | select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLET
        held_mask = select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLET
        inflight = self.inflight
        fail = self.fail
        held = self.held
        q, conn_hist, log, last_bucket = self.q, self.conn_hist, math.log, HIST_SLOTS - 1
        speaks = self.proto != 'tcp' or self.tls is not None
        # A client that speaks first (a request, an upgrade, a ClientHello) asks its
        # kernel not to answer the server's SYN-ACK with a bare ACK (TCP_QUICKACK 0:
        # the ACK waits, up to 200 ms, for the first data and rides on it), as Linux
        # does itself for a connect with a write pending: 6 segments per connection
        # instead of 7 (tcp: 3).
        sol_tcp, quickack = socket.IPPROTO_TCP, socket.TCP_QUICKACK
        opened = 0
        lat_us = 0.0
        for g, attempt in todo:
            p = (g + attempt) % tuples
            if single:
                # destinations (address:port) first, then sources (see plan.tuple_at)
                af = seg_af
                src = seg_src[(p // ndst) % nsrc]
                dst = seg_dst[p % ndst]
            else:
                af, src, dst = tuple_at(p, segments)
            try:
                s = new_socket(af, nonblock_stream)
            except OSError as exc:
                fail(g, attempt, exc.errno or 0, now)
                continue
            try:
                if speaks:
                    s.setsockopt(sol_tcp, quickack, 0)
                if bind:
                    s.setsockopt(sol_ip, IP_BIND_ADDRESS_NO_PORT, 1)
                    if freebind:
                        s.setsockopt(sol_ip, IP_FREEBIND, 1)
                    s.bind((src, 0))
                t = monotonic()
                err = s.connect_ex(dst)
                if err == einprogress:
                    err = s.connect_ex(dst)
            except OSError as exc:
                err = exc.errno or 0
            if err == 0:
                # established: held now (the connect latency, inline as in dispatch)
                fd = s.detach()
                if register is not None:
                    register(fd, held_mask)
                held[fd] = 1
                opened += 1
                us = (monotonic() - t) * 1e6
                lat_us += us
                i = int(log(us + 1.0) * HIST_PER_E) if us > 0 else 0
                q[conn_hist + (i if i < last_bucket else last_bucket)] += 1
                if speaks:
                    self.established(fd, dst, now)
            elif err == ealready:
                fd = s.detach()
                if register is not None:
                    register(fd, conn_mask)
                inflight[fd] = (g, attempt, t, dst)
            else:
                s.close()
                fail(g, attempt, err, now)
        if opened:
            self.opened(opened, lat_us, now)

    def established(self, fd, dst, now):
        """A connection just established that speaks a protocol or TLS: its first words."""
        if self.tls is not None:
            self.tls_start(fd, dst, now)
        else:
            self.greet(fd, dst, now)

    def opened(self, n, lat_us, now):
        """n connections were established (their connect latencies summing to lat_us)."""
        self.q[self.b + F_CONNECT_SUM_US] += int(lat_us)
        est = self.est + n
        self.est = est
        self.total += n
        if est > self.peak:
            self.peak = est
        if self.hb_start == INF:
            self.hb_start = self.last_hb = now + self.hb_interval

    def fail(self, g, attempt, err, now):
        """A connect failed with err: count it, retry later (exponential backoff) or give up."""
        self.q[self.err_base + err_slot(err)] += 1
        if attempt < self.retries:
            delay = min(10.0, 0.2 * (2 ** attempt)) * (0.5 + random.random())
            heapq.heappush(self.retry_heap, (now + delay, g, attempt + 1))
        else:
            self.failed += 1

    # --- waiting
    def poll_timeout(self, now):
        """How long the next poll may wait (s)."""
        if self.done:
            if self.hb_interval <= 0:
                return 1.0          # (polling: until the next watch pass at most)
            if self.hb_budget >= 1:
                return 0
            return min(0.1, max(0.001, self.hb_interval / max(1, self.est) * HB_BURST))
        if self.inflight or self.retry_heap or self.next_g < self.end_g:
            b = self.b
            if self.next_g < self.end_g and self.in_flight() < self.q[b + F_INFL_CAP]:
                rate = self.d[b + F_RATE]
                tmo = 0 if rate <= 0 or self.tokens >= 1 else min(0.05, (1 - self.tokens) / rate)
            else:
                tmo = 0.05
            if self.retry_heap:
                tmo = min(tmo, max(0.0, self.retry_heap[0][0] - now))
            return tmo
        if self.greeting:
            return 0.05             # first answers still to come
        return 0

    # --- events
    def dispatch(self, events, now):
        """Handshakes that completed or failed, heartbeat echoes, connections the peer ended."""
        inflight_pop = self.inflight.pop
        held = self.held
        wake_r = self.wake_r
        bad_mask = select.EPOLLERR | select.EPOLLHUP | select.EPOLLRDHUP
        in_mask = select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLERR | select.EPOLLHUP
        hb_pending_pop = self.hb_pending.pop
        read_held = self.read_held
        q, hist_base, rtt_sum = self.q, self.hist_base, self.rtt_sum
        conn_hist, log, last_bucket = self.conn_hist, math.log, HIST_SLOTS - 1
        lat_us = 0.0
        opened = 0
        hb_recv = 0
        speaks = self.proto != 'tcp' or self.tls is not None
        for fd, ev in events:
            st = inflight_pop(fd, None)
            if st is not None:
                if ev & bad_mask:
                    self.connect_failed(fd, st, now)
                else:
                    held[fd] = 1
                    opened += 1
                    # connect latency, inline (hist_index): the log-bucketed histogram
                    us = (now - st[2]) * 1e6
                    lat_us += us
                    i = int(log(us + 1.0) * HIST_PER_E) if us > 0 else 0
                    q[conn_hist + (i if i < last_bucket else last_bucket)] += 1
                    if speaks:
                        self.established(fd, st[3], now)
                continue
            if fd == wake_r:
                drain(wake_r)
                continue
            if ev & in_mask:
                # echo of a heartbeat, or the end of the connection
                n = read_held(fd)
                if n <= 0:
                    continue
                if speaks:
                    hb_recv += self.on_data(fd, n, now)
                    continue
                t = hb_pending_pop(fd, None)
                if t is not None:
                    hb_recv += 1
                    hist_add(q, hist_base, now - t, rtt_sum)
        self.hb_recv += hb_recv
        if opened:
            self.opened(opened, lat_us, now)

    # --- the application protocol (http, websocket)
    def greet(self, fd, dst, now):
        """Established: send the request (http) or the upgrade (websocket), expect the answer."""
        accept = None
        if self.proto == 'http':
            req = self.plan.requests[dst]
        else:
            key = proto_mod.ws_key()
            head, tail = self.plan.requests[dst]
            req = head + key + tail
            accept = proto_mod.ws_accept(key)
        try:
            self.send(fd, req)
        except OSError:
            return                  # the read side sees the end
        self.readers[fd] = proto_mod.Reader(now, False, accept)
        self.req_sent += 1
        self.greeting += 1

    # --- TLS (plan.tls): the handshake counts as the first answer
    def tls_start(self, fd, dst, now):
        """Established: start the TLS handshake, offering the destination's session."""
        conn = tls_mod.Conn(self.tls, fd, False, now, dst, self.plan.tls_server_name,
                            self.sessions.get(dst))
        self.tlss[fd] = conn
        self.greeting += 1
        try:
            conn.handshake()
        except tls_mod.ssl.SSLError as exc:
            self.tls_error(conn, exc)

    def tls_error(self, conn, exc):
        """A handshake failed: counted (a protocol error), no longer awaited; the
        connection stays held until the peer ends it, as after a failing answer."""
        if not self.tls_failed:
            log('worker: TLS handshake with %s failed: %s'
                % (ipplan.endpoint_text(conn.dst[0], conn.dst[1]), getattr(exc, 'reason', None) or exc))
        self.tls_failed += 1
        conn.done = None
        self.greeting -= 1

    def tls_feed(self, fd, conn, data, now):
        """Ciphertext that arrived on fd: the plaintext in it (b'' when none)."""
        if conn.done is None:
            return b''              # failed or expired: nothing more is read from it
        try:
            completed, data = conn.feed(data)
        except tls_mod.ssl.SSLError as exc:
            self.tls_error(conn, exc)
            return b''
        if completed:
            self.greeting -= 1
            self.tls_done += 1
            if conn.obj.session_reused:
                self.tls_resumed += 1
            if self.proto != 'tcp':
                self.greet(fd, conn.dst, now)
        if conn.dst not in self.sessions and conn.done:
            session = conn.session()
            if session is not None:
                self.sessions[conn.dst] = session
        return data

    def send(self, fd, data):
        """Write data to the peer of fd: through TLS when the run speaks it."""
        if self.tlss is None:
            os.write(fd, data)
            return
        conn = self.tlss.get(fd)
        if conn is not None and conn.done:
            conn.send(data)

    def on_data(self, fd, n, now):
        """n bytes arrived on fd (in rbufs[0]): feed the answer it waits for.

        Returns 1 when that completed a heartbeat (its RTT is recorded), else 0.
        """
        data = bytes(memoryview(self.rbufs[0])[:n])
        while n == len(self.rbufs[0]):              # edge-triggered: read it all
            try:
                n = os.readv(fd, self.rbufs)
            except OSError:
                break
            data += bytes(memoryview(self.rbufs[0])[:n])
        if self.tlss is not None:
            conn = self.tlss.get(fd)
            if conn is not None:
                data = self.tls_feed(fd, conn, data, now)
                if not data:
                    return 0
        r = self.readers.get(fd)
        if r is None:
            if self.proto == 'tcp':
                # the echo of a heartbeat, through TLS
                t = self.hb_pending.pop(fd, None)
                if t is None:
                    return 0
                hist_add(self.q, self.hist_base, now - t, self.rtt_sum)
                return 1
            if self.proto != 'websocket':
                return 0            # nothing asked for: ignored
            return self.ws_data(fd, data, now)
        res = r.feed(data)
        if res is None:
            return 0
        del self.readers[fd]
        if not r.heartbeat:
            self.greeting -= 1
        status, err, rest = res
        if rest and status == 101 and err is None:
            self.ws_data(fd, rest, now)     # the server's first frames, sent with its 101
        self.resp_recv += 1
        if status is not None:
            self.statuses[status] = self.statuses.get(status, 0) + 1
        if err == proto_mod.BAD_RESPONSE:
            self.bad_response += 1
        elif err == proto_mod.BAD_ACCEPT:
            self.bad_accept += 1
        if r.heartbeat:
            hist_add(self.q, self.hist_base, now - r.sent, self.rtt_sum)
            return 1
        return 0

    def ws_data(self, fd, data, now):
        """WebSocket frames read on fd: pongs to our pings, pings of the server (answered).
        The start of a frame that is not whole yet waits for the next read. Returns 1
        when a pong completed a heartbeat (its RTT is recorded), else 0."""
        if self.ws_left:
            data, left = proto_mod.ws_resume(self.ws_left.pop(fd, None), data)
            if left is not None:
                self.ws_left[fd] = left
                return 0
        answer, pongs, used = proto_mod.ws_answer_pings(data, client=True)
        left = proto_mod.ws_leftover(data, used)
        if left is not None:
            self.ws_left[fd] = left
        if answer:
            try:
                self.send(fd, answer)
            except OSError:
                pass
        t = self.hb_pending.pop(fd, None) if pongs else None
        if t is not None:
            hist_add(self.q, self.hist_base, now - t, self.rtt_sum)
            return 1
        return 0

    def request_of(self, fd):
        """The request to repeat on fd (its destination's, when they differ)."""
        requests = self.plan.requests
        if len(requests) == 1:
            return next(iter(requests.values()))
        peer = socket.socket(fileno=fd)
        try:
            return requests[peer.getpeername()[:2]]
        finally:
            peer.detach()

    def connect_failed(self, fd, st, now):
        """A handshake ended in an error (SO_ERROR says which): close, count, maybe retry."""
        try:
            err = sock_error(fd) or errno.ECONNRESET
        except OSError as exc:
            err = exc.errno or errno.ECONNRESET
        os.close(fd)
        self.fail(st[0], st[1], err, now)

    def read_held(self, fd):
        """Read what arrived on held connection fd into rbufs[0]: the bytes read, 0 when
        the peer ended it (dropped here), -1 when there was nothing to read."""
        try:
            n = os.readv(fd, self.rbufs)
        except BlockingIOError:
            return -1
        except OSError:
            self.drop(fd, True)
            return 0
        if n == 0:
            self.drop(fd, False)
        return n

    def drop(self, fd, reset):
        """The peer ended a held connection: FIN (reset False) or RST (reset True).

        Returns 1 when fd was held (the count of established went down), else 0.
        """
        held = self.held
        if not held[fd]:
            return 0
        held[fd] = 0
        self.hb_pending.pop(fd, None)
        if self.ws_left:
            self.ws_left.pop(fd, None)
        r = self.readers.pop(fd, None)
        if r is not None and not r.heartbeat:
            self.greeting -= 1
        if self.tlss is not None:
            conn = self.tlss.pop(fd, None)
            if conn is not None and conn.done is False:
                self.greeting -= 1          # its handshake was still awaited
        try:
            os.close(fd)
        except OSError:
            pass
        self.dropped += 1
        self.est -= 1
        if reset:
            self.drop_rst += 1
        return 1

    def expire(self, now):
        """Handshakes older than --timeout fail with ETIMEDOUT (scanned every 100 ms)."""
        self.last_scan = now
        limit = now - self.timeout
        inflight = self.inflight
        for fd, st in list(inflight.items()):
            if st[2] <= limit:
                del inflight[fd]
                os.close(fd)
                self.fail(st[0], st[1], errno.ETIMEDOUT, now)
        if self.greeting and self.tlss:
            # handshakes that did not complete within --timeout: no answer came
            for conn in self.tlss.values():
                if conn.done is False and conn.started <= limit:
                    conn.done = None
                    self.greeting -= 1
                    self.no_answer += 1
        if self.greeting:
            # first answers that did not come within --timeout: counted, no longer awaited
            for fd, r in list(self.readers.items()):
                if not r.heartbeat and r.sent <= limit:
                    del self.readers[fd]
                    self.greeting -= 1
                    self.no_answer += 1

    def heartbeat(self, now):
        """Every connection gets one heartbeat per interval, the first about one interval
        after it was established (a worker opens its quota within a second or two, so its
        first connection's time stands for all of them). At most HB_BURST per pass, each
        stamped when sent, so the echoes of a burst do not wait behind a long burst and the
        RTT stays honest."""
        nf = self.est
        self.hb_budget += nf * min(1.0, now - self.last_hb) / self.hb_interval
        self.last_hb = now
        k = min(int(self.hb_budget), HB_BURST, nf)
        if not k:
            return
        self.hb_budget -= k
        write = os.write
        monotonic = time.monotonic
        payload = self.plan.payload
        hb_pending = self.hb_pending
        proto, readers = self.proto, self.readers
        tlss = self.tlss
        if tlss is not None:
            write = self.send
        # the cursor runs over the descriptors held, in their order, round and round
        find = self.held.find
        cursor = self.hb_cursor
        sent = 0
        for _i in range(k):
            fd = find(1, cursor)
            if fd < 0:
                fd = find(1)
            cursor = fd + 1
            if fd in readers:
                continue            # the last answer (or the upgrade's) is not in yet
            if tlss is not None and not getattr(tlss.get(fd), 'done', False):
                continue            # no TLS session on it (yet)
            if proto == 'http':
                payload = self.request_of(fd)
            elif proto == 'websocket':
                payload = proto_mod.ws_ping(self.plan.payload[:125])  # a fresh mask each
            try:
                write(fd, payload)
            except OSError:
                continue
            if proto == 'http':
                readers[fd] = proto_mod.Reader(monotonic(), True)
            else:
                hb_pending[fd] = monotonic()
            sent += 1
        self.hb_cursor = cursor
        if sent and not self.hb_sent:
            self.q[self.b + F_HB_FIRST_NS] = time.monotonic_ns()
        self.hb_sent += sent

    # --- publishing
    def publish(self):
        q, b = self.q, self.b
        finishing = not self.done and self.next_g >= self.end_g and not self.inflight \
            and not self.retry_heap and not self.greeting
        if finishing and self.poller is not None:
            self.watch_held(time.monotonic())   # what the peer ended while the quota opened
        if self.req_sent:
            q[b + F_REQ_SENT] = self.req_sent
            q[b + F_RESP_RECV] = self.resp_recv
            q[b + F_BAD_RESPONSE] = self.bad_response
            q[b + F_BAD_ACCEPT] = self.bad_accept
            q[b + F_NO_ANSWER] = self.no_answer
            publish_statuses(q, b, self.statuses)
        q[b + F_EST] = self.est
        q[b + F_PEAK] = self.peak
        q[b + F_TOTAL] = self.total
        q[b + F_ATTEMPTS] = self.attempts
        q[b + F_FAILED] = self.failed
        q[b + F_INFLIGHT] = len(self.inflight)
        q[b + F_DROPPED] = self.dropped
        q[b + F_DROP_RST] = self.drop_rst
        q[b + F_HB_SENT] = self.hb_sent
        q[b + F_HB_RECV] = self.hb_recv
        q[b + F_WATCH_PASSES] = self.watch_passes
        q[b + F_WATCH_US] = int(self.watch_s * 1e6)
        q[b + F_WATCH_ACK] = self.watch_acked          # after F_EST: the count is the pass's
        if self.tlss is not None:
            q[b + F_TLS_DONE] = self.tls_done
            q[b + F_TLS_RESUMED] = self.tls_resumed
            q[b + F_TLS_FAILED] = self.tls_failed
        if self.done:
            return
        if finishing:
            self.done = True
            if self.poller is None:
                trim_heap()     # what the ramp freed (in poll mode the pass above trimmed)
            q[b + F_DONE_NS] = time.monotonic_ns()
            publish_cpu(q, b)           # the CPU of the ramp, complete (not 0.5 s old)
            q[b + F_STATE] = ST_HOLDING if self.est >= self.quota else ST_SETTLED
            try:
                os.write(self.notify_w, b'c')
            except OSError:
                pass
        elif self.est >= self.quota and q[b + F_DONE_NS] == 0:
            q[b + F_DONE_NS] = time.monotonic_ns()
            publish_cpu(q, b)

    def close_all(self):
        """The end: close in-flight handshakes, reset held connections."""
        q, b = self.q, self.b
        for fd in self.inflight:
            try:
                os.close(fd)
            except OSError:
                pass
        q[b + F_INFLIGHT] = 0
        publish_cpu(q, b)
        close_rst(held_fds(self.held))
        q[b + F_STATE] = ST_EXITED


# =========================================================== supervisor

class ClientRun(object):
    """The client supervisor: starts the workers, watches them, decides the verdict.

    A lost worker (killed, crashed) does not stop the run: its connections are
    gone, the others keep holding, so the summary shows what survived. Any
    lost worker, a target not reached, or more connections ended by the peer
    during the hold than --hold-tolerance allows makes the exit status non-zero.
    """

    def __init__(self, args, plan, exporter=None):
        self.args = args
        self.plan = plan
        self.sup = Supervisor(args, 'client')
        self.exporter = exporter
        if exporter is not None:
            self.sup.export_to(exporter)
        self.errors_timeline = []       # [t, {kind: count}] when the counts changed
        self.last_errors = {}
        self.shm = Shm(plan.workers)
        self.q, self.d = self.shm.q, self.shm.d
        self.started = 0
        self.t0 = self.sup.t0 = time.monotonic()
        self.t0_ns = time.monotonic_ns()
        self.reached = False
        self.t_reached = None
        self.t_reached_mono = None
        self.at_target = None           # figures taken when the target was reached
        self.stop_reason = None
        self.peak_total = 0
        self.hold_until = None
        self.allowed_loss = int(plan.target * args.hold_tolerance)
        self.dropped_seen = 0
        self.next_tick = self.t0 + args.progress_interval
        self.last_tick = (0, self.t0)
        self.last_status = 0.0
        self.watching = False           # the ramp is over (F_WATCH_GO set in every slot)

    # --- shared-memory readings
    def total_of(self, field):
        q = self.q
        return sum(q[i * SLOT_WORDS + field] for i in range(self.started))

    def states(self):
        q = self.q
        return [q[i * SLOT_WORDS + F_STATE] for i in range(self.started)]

    def live_pids(self):
        return [self.sup.pid] + list(self.sup.children)

    def cpu_totals(self):
        own = os.times()
        return {'workers_user_s': round(self.total_of(F_CPU_USER_US) / 1e6, 3),
                'workers_sys_s': round(self.total_of(F_CPU_SYS_US) / 1e6, 3),
                'supervisor_s': round(own[0] + own[1], 3)}

    def drops(self):
        dropped = self.total_of(F_DROPPED)
        reset = self.total_of(F_DROP_RST)
        return {PEER_CLOSED: dropped - reset, PEER_RESET: reset}

    def errors_total(self):
        out = error_counts(self.q, range(self.started))
        out.update((k, v) for k, v in self.drops().items() if v)
        out.update(self.protocol_errors())
        return out

    def protocol_errors(self):
        """{kind: count}: answers that were not HTTP, wrong accept keys, failing statuses
        (http: 400 and above; websocket: an upgrade answered with anything but 101)."""
        out = {}
        for kind, field in ((proto_mod.BAD_RESPONSE, F_BAD_RESPONSE),
                            (proto_mod.BAD_ACCEPT, F_BAD_ACCEPT),
                            (proto_mod.NO_ANSWER, F_NO_ANSWER)):
            n = self.total_of(field)
            if n:
                out[kind] = n
        if self.plan.tls is not None and self.total_of(F_TLS_FAILED):
            out[proto_mod.TLS_FAILED] = self.total_of(F_TLS_FAILED)
        ws = self.plan.protocol == 'websocket'
        for code, n in status_counts(self.q, range(self.started)).items():
            if (ws and code != 101) or (not ws and code >= 400):
                out['http_%d' % code] = n
        return out

    def tls_summary(self):
        """Handshakes completed, resumed and failed; None without TLS."""
        plan = self.plan
        if plan.tls is None:
            return None
        return {'handshakes': self.total_of(F_TLS_DONE), 'resumed': self.total_of(F_TLS_RESUMED),
                'failed': self.total_of(F_TLS_FAILED),
                'server_name': plan.tls_server_name or None,
                'verified': plan.tls.verify_mode == tls_mod.ssl.CERT_REQUIRED}

    def protocol_summary(self):
        tls = self.tls_summary()
        if self.plan.protocol == 'tcp':
            if tls is None:
                return {'name': 'tcp'}
            errors = self.protocol_errors()
            return {'name': 'tcp', 'tls': tls, 'errors': errors,
                    'errors_total': sum(errors.values())}
        statuses = status_counts(self.q, range(self.started))
        errors = self.protocol_errors()
        return {'name': self.plan.protocol, 'tls': tls,
                'requests_sent': self.total_of(F_REQ_SENT),
                'responses': self.total_of(F_RESP_RECV),
                'responses_by_status': dict((str(k), v) for k, v in sorted(statuses.items())),
                'responses_by_class': self.by_class(statuses),
                'errors': errors, 'errors_total': sum(errors.values())}

    @staticmethod
    def by_class(statuses):
        out = {}
        for code, n in statuses.items():
            key = '%dxx' % (code // 100)
            out[key] = out.get(key, 0) + n
        return out

    def on_lost(self, pid, slot):
        """A worker died: keep what it held in the record, then count it out."""
        b = slot * SLOT_WORDS
        held = self.q[b + F_EST]
        self.q[b + F_EST] = 0
        self.q[b + F_INFLIGHT] = 0
        self.q[b + F_STATE] = ST_LOST
        return {'worker': 'c%d' % slot, 'slot': slot, 'held': held}

    # --- phases of one pass of the loop
    def start_workers(self, states):
        plan, args, q, d, sup = self.plan, self.args, self.q, self.d, self.sup
        connecting = sum(1 for st in states if st in (ST_STARTING, ST_ACTIVE))
        blocked = any(st in (ST_SETTLED, ST_LOST) for st in states)
        while not blocked and self.started < plan.workers and connecting < plan.active:
            i = self.started
            b = i * SLOT_WORDS
            q[b + F_STATE] = ST_STARTING
            q[b + F_INFL_CAP] = max(1, args.inflight // plan.active)
            d[b + F_RATE] = 0.0
            pid = fork_worker(client_worker, sup.pid, plan, args, self.shm, i,
                              plan.starts[i], plan.quotas[i], sup.notify_w)
            sup.children[pid] = i
            q[b + F_PID] = pid
            self.started += 1
            connecting += 1

    def share_rate(self, now):
        """Rate and in-flight shares of the workers that are connecting."""
        args, q, d = self.args, self.q, self.d
        active = [i for i, st in enumerate(self.states()) if st in (ST_STARTING, ST_ACTIVE)]
        if not active:
            return
        share = 0.0
        if args.rate > 0:
            frac = 1.0 if args.ramp <= 0 else min(1.0, max(0.02, (now - self.t0) / args.ramp))
            share = args.rate * frac / len(active)
        cap = max(1, args.inflight // len(active))
        for i in active:
            d[i * SLOT_WORDS + F_RATE] = share
            q[i * SLOT_WORDS + F_INFL_CAP] = cap

    def start_watching(self, states):
        """Once no worker connects any more, the ramp is over (F_WATCH_GO): polling, the
        periodic passes over the held connections begin; the heartbeats of an unpaced
        ramp too."""
        if self.watching or self.started < self.plan.workers \
                or any(st in (ST_STARTING, ST_ACTIVE) for st in states):
            return
        self.watching = True
        for i in range(self.started):
            self.q[i * SLOT_WORDS + F_WATCH_GO] = 1

    def last_watch_pass(self, timeout=30.0):
        """Watch mode poll: every live worker checks what it holds now (its count goes
        into the summary); returns when they all did, or after timeout seconds."""
        if self.plan.watch != 'poll' and not getattr(self.plan, 'watch_late', False):
            return
        q, sup = self.q, self.sup
        waiting = {}
        for pid, i in list(sup.children.items()):
            b = i * SLOT_WORDS
            token = q[b + F_WATCH_ACK] + 1
            q[b + F_WATCH_REQ] = token
            waiting[pid] = (b, token)
            try:
                os.kill(pid, signal.SIGUSR1)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        while waiting and time.monotonic() < deadline:
            sup.reap(self.on_lost)
            for pid, (b, token) in list(waiting.items()):
                if q[b + F_WATCH_ACK] == token or pid not in sup.children:
                    del waiting[pid]
            if waiting:
                sup.wait(0.01)
        if waiting:
            log('warning: %d worker(s) did not check their connections within %.0f s'
                % (len(waiting), timeout))

    def check_reached(self, now, states, est):
        plan = self.plan
        if self.reached or self.started < plan.workers or est < plan.target \
                or not all(st == ST_HOLDING for st in states):
            return
        self.reached = True
        q = self.q
        done_ns = max(q[i * SLOT_WORDS + F_DONE_NS] for i in range(self.started))
        self.t_reached = round((done_ns - self.t0_ns) / 1e9, 3)
        self.t_reached_mono = now
        self.at_target = {'established': est, 'pss': self.sup.pss_total(self.live_pids()),
                          'kernel': self.sup.kernel_bytes(), 'cpu': self.cpu_totals(),
                          'dropped': self.total_of(F_DROPPED)}
        self.dropped_seen = self.at_target['dropped']
        log('target %d reached in %.2f s (%.0f connections/s)'
            % (plan.target, self.t_reached, plan.target / max(self.t_reached, 1e-9)))
        self.sample(self.t_reached, est, self.at_target['pss'], self.at_target['kernel'],
                    self.at_target['dropped'])
        if self.args.hold > 0:
            self.hold_until = now + self.args.hold

    def stop_condition(self, now, states):
        """Why the loop ends now, or None."""
        if self.sup.signalled:
            return 'signal:%s' % self.sup.signalled
        busy = any(st in (ST_STARTING, ST_ACTIVE) for st in states)
        if not self.reached and not busy:
            if any(st == ST_LOST for st in states):
                return 'lost_worker'
            if any(st == ST_SETTLED for st in states) or self.started == self.plan.workers:
                # every worker is done and connections were lost on the way: nothing
                # will change any more
                return 'settled'
        if self.hold_until is not None and now >= self.hold_until:
            return 'hold'
        return None

    def tick(self, now, est):
        """A progress line and a timeline sample every progress interval."""
        plan, sup = self.plan, self.sup
        pss = sup.pss_total(self.live_pids())
        kb = sup.kernel_bytes()
        t = round(now - self.t0, 3)
        dropped = self.total_of(F_DROPPED)
        errs = self.sample(t, est, pss, kb, dropped)
        rate = (est - self.last_tick[0]) / max(1e-9, now - self.last_tick[1])
        self.last_tick = (est, now)
        if self.exporter is not None:
            self.exporter.publish(self.metrics(est, pss, kb, errs))
        log('[%7.1fs] established %d/%d (%.1f%%) rate %.0f/s in-flight %d workers %d/%d '
            'user %.1f MB kernel %.1f MB%s%s%s'
            % (t, est, plan.target, 100.0 * est / plan.target, rate,
               self.total_of(F_INFLIGHT), self.started, plan.workers, pss / 1e6, kb / 1e6,
               ' dropped %d' % dropped if dropped else '',
               ' lost workers %d' % len(sup.lost) if sup.lost else '',
               (' errors ' + ' '.join('%s=%d' % kv for kv in sorted(errs.items())))
               if errs else ''))
        if self.reached and dropped > self.dropped_seen:
            self.log_drops(dropped, est)
        self.dropped_seen = dropped
        trim_heap()         # this second's status and samples, freed: not kept dirty
        self.next_tick += self.args.progress_interval
        if self.next_tick < now:
            self.next_tick = now + self.args.progress_interval

    def sample(self, t, est, pss, kb, dropped):
        """A timeline row (TIMELINE_COLUMNS) and, when the error counts changed, an
        errors_timeline row. Returns the error counts."""
        errs = self.errors_total()
        self.sup.timeline.append([t, est, pss, kb, dropped, self.total_of(F_TOTAL),
                                  sum(errs.values())])
        if errs != self.last_errors:
            self.errors_timeline.append([t, errs])
            self.last_errors = errs
        return errs

    def metrics(self, est, pss, kb, errs, running=True):
        """The Prometheus exposition of this half now (metrics.py)."""
        plan, q, sup = self.plan, self.q, self.sup
        slots = range(self.started)
        m = Exposition('tcpscale_client_')
        m.add('info', 'gauge', 'The engine version and the protocol, as labels.',
              samples=[({'version': VERSION, 'protocol': plan.protocol,
                         'tls': 'true' if plan.tls is not None else 'false'}, 1)])
        m.add('running', 'gauge', '1 while the client half runs, 0 once it stopped.',
              1 if running else 0)
        m.add('start_time_seconds', 'gauge', 'When the half started (Unix time).',
              round(sup.started_at, 3))
        m.add('target', 'gauge', 'Connections this client is to open and hold.', plan.target)
        m.add('established', 'gauge', 'Connections established and held now.', est)
        m.add('connecting', 'gauge', 'Handshakes in flight.', self.total_of(F_INFLIGHT))
        m.add('reached', 'gauge', '1 once the target was reached.', 1 if self.reached else 0)
        m.add('connects_total', 'counter', 'Connections established since the start.',
              self.total_of(F_TOTAL))
        m.add('connect_attempts_total', 'counter', 'connect() calls, retries included.',
              self.total_of(F_ATTEMPTS))
        m.add('errors_total', 'counter', 'Errors by kind: connect errno, peer_closed and '
              'peer_reset (held connections ended by the peer), protocol errors.',
              samples=[({'kind': k}, v) for k, v in sorted(errs.items())])
        if plan.tls is not None:
            m.add('tls_handshakes_total', 'counter', 'TLS handshakes completed.',
                  self.total_of(F_TLS_DONE))
            m.add('tls_resumed_total', 'counter', 'TLS handshakes that resumed a session.',
                  self.total_of(F_TLS_RESUMED))
        if plan.protocol != 'tcp':
            m.add('responses_total', 'counter', 'Answers read, by HTTP status code.',
                  samples=[({'code': str(c)}, n)
                           for c, n in sorted(status_counts(q, slots).items())])
        m.histogram('connect_latency_seconds', 'Time from connect() to established.',
                    hist_merge(q, slots, CONNECT_HIST_BASE), self.total_of(F_CONNECT_SUM_US))
        m.histogram('heartbeat_rtt_seconds', 'Round-trip time of the heartbeats.',
                    hist_merge(q, slots, HIST_BASE), self.total_of(F_RTT_SUM_US))
        m.add('heartbeats_sent_total', 'counter', 'Heartbeats sent.', self.total_of(F_HB_SENT))
        m.add('user_memory_bytes', 'gauge', 'PSS of the half\'s processes.', pss)
        m.add('kernel_memory_bytes', 'gauge', 'Growth of slab and TCP memory on the host '
              'since the half started.', kb)
        m.add('workers', 'gauge', 'Worker processes started.', self.started)
        m.add('workers_lost_total', 'counter', 'Workers that died unexpectedly.', len(sup.lost))
        m.add('cpu_seconds_total', 'counter', 'CPU time of the workers.',
              samples=[({'mode': 'user'}, round(self.total_of(F_CPU_USER_US) / 1e6, 6)),
                       ({'mode': 'system'}, round(self.total_of(F_CPU_SYS_US) / 1e6, 6))])
        return m.text()

    def log_drops(self, dropped, est):
        drops = self.drops()
        log('warning: %d connection(s) ended by the peer since the target was reached '
            '(%s=%d %s=%d); %d established of %d'
            % (dropped - self.at_target['dropped'], PEER_CLOSED, drops[PEER_CLOSED],
               PEER_RESET, drops[PEER_RESET], est, self.plan.target))

    def status(self, final=False):
        est = self.total_of(F_EST)
        return {'role': 'client', 'target': self.plan.target, 'established': est,
                'reached': self.reached, 'seconds_to_target': self.t_reached,
                'established_at_target': self.at_target['established'] if self.reached else None,
                'dropped': self.total_of(F_DROPPED), 'drops': self.drops(),
                'allowed_loss': self.allowed_loss,
                'lost_workers': self.sup.lost,
                'workers': self.plan.workers, 'workers_started': self.started,
                'pids': self.live_pids(), 'errors': self.errors_total(),
                'elapsed_s': round(time.monotonic() - self.t0, 3), 'final': final}

    def write_status(self, now):
        if not self.args.status_file or now - self.last_status < self.args.progress_interval:
            return
        self.last_status = now
        try:
            write_json_atomic(self.args.status_file, self.status())
        except OSError as exc:
            log('cannot write the status file: %s' % exc)

    def loop(self):
        sup = self.sup
        while True:
            now = time.monotonic()
            sup.reap(self.on_lost)
            states = self.states()
            self.start_workers(states)
            self.share_rate(now)
            states = self.states()
            self.start_watching(states)
            est = self.total_of(F_EST)
            self.peak_total = max(self.peak_total, est)
            self.check_reached(now, states, est)
            self.stop_reason = self.stop_condition(now, states)
            if self.stop_reason:
                return
            if now >= self.next_tick:
                self.tick(now, est)
            self.write_status(now)
            sup.wait(min(0.05, max(0.0, self.next_tick - time.monotonic())))

    def run(self):
        self.sup.install_signals()
        try:
            self.loop()
        except BaseException:
            self.sup.emergency_kill()
            raise
        return self.stop()

    # --- the end
    def stop(self):
        sup = self.sup
        self.last_watch_pass()
        cpu_at_stop = self.cpu_totals()
        final = {'established': self.total_of(F_EST), 'pss': sup.pss_total(self.live_pids()),
                 'kernel': sup.kernel_bytes(), 'dropped': self.total_of(F_DROPPED)}
        self.peak_total = max(self.peak_total, final['established'])
        t_stop = time.monotonic()
        errs = self.sample(round(t_stop - self.t0, 3), final['established'], final['pss'],
                           final['kernel'], final['dropped'])
        log('stopping (%s): closing %d connections' % (self.stop_reason, final['established']))
        sup.stop_children(list(sup.children), grace=60.0)
        sup.reap(self.on_lost)
        close_s = round(time.monotonic() - t_stop, 3)
        summary = self.summary(final, t_stop, close_s, cpu_at_stop)
        if self.args.status_file:
            try:
                st = self.status(final=True)
                st['established'] = final['established']
                write_json_atomic(self.args.status_file, st)
            except OSError:
                pass
        if self.exporter is not None:
            self.exporter.publish(self.metrics(0, 0, 0, errs, running=False))
            self.exporter.close()
        finish(summary, self.args.summary_file)
        self.log_verdict(summary)
        return summary['exit_code']

    def rate_stats(self):
        """Connect rate per progress interval, up to the target."""
        rates = []
        tl = self.sup.timeline
        for a, b in zip(tl, tl[1:]):
            if b[0] > a[0] and (self.t_reached is None or b[0] <= self.t_reached + 1e-6):
                rates.append((b[1] - a[1]) / (b[0] - a[0]))
        return sorted(rates)

    def histogram(self, base, sum_field):
        """A histogram of the workers (hist_summary), base: HIST_BASE or CONNECT_HIST_BASE."""
        return hist_summary(hist_merge(self.q, range(self.started), base),
                            self.total_of(sum_field))

    def heartbeat_summary(self):
        rtt = self.histogram(HIST_BASE, F_RTT_SUM_US)
        args = self.args
        firsts = [self.q[i * SLOT_WORDS + F_HB_FIRST_NS] for i in range(self.started)]
        firsts = [ns for ns in firsts if ns]
        return {'interval_s': args.heartbeat_interval or None, 'size': args.heartbeat_size,
                'sent': self.total_of(F_HB_SENT), 'received': self.total_of(F_HB_RECV),
                # on the run's clock, as seconds_to_target: after it, unless the ramp is paced
                'first_sent_s': round((min(firsts) - self.t0_ns) / 1e9, 3) if firsts else None,
                'during_ramp': self.plan.paced,
                'rtt_p50_ms': rtt['p50_ms'], 'rtt_p99_ms': rtt['p99_ms'], 'rtt': rtt}

    def hold_verdict(self, final, t_stop):
        """The hold: how long, what was lost, and whether that is within the tolerance."""
        if not self.reached:
            return {'seconds': None, 'tolerance': self.args.hold_tolerance,
                    'allowed_loss': self.allowed_loss, 'established_at_start': None,
                    'established_at_end': final['established'], 'lost': None,
                    'dropped_by_peer': None, 'held_ok': None}
        lost = max(0, self.plan.target - final['established'])
        return {'seconds': round(t_stop - self.t_reached_mono, 3),
                'tolerance': self.args.hold_tolerance, 'allowed_loss': self.allowed_loss,
                'established_at_start': self.at_target['established'],
                'established_at_end': final['established'], 'lost': lost,
                'dropped_by_peer': final['dropped'] - self.at_target['dropped'],
                'held_ok': lost <= self.allowed_loss and not self.sup.lost}

    def connect_rate(self, mean):
        rates = self.rate_stats()
        args = self.args
        return {'mean_per_s': mean,
                'peak_per_s': round(rates[-1], 1) if rates else None,
                'p50_per_s': round(rates[len(rates) // 2], 1) if rates else None,
                'min_per_s': round(rates[0], 1) if rates else None,
                'interval_s': args.progress_interval,
                'rate_limit_per_s': args.rate or None, 'ramp_s': args.ramp or None,
                'inflight_cap': args.inflight}

    def exit_code(self, hold, proto):
        if self.sup.lost:
            return EXIT_LOST
        if self.reached and hold['held_ok'] and proto.get('errors_total', 0) <= self.allowed_loss:
            return EXIT_OK
        return EXIT_NOT_REACHED

    def summary(self, final, t_stop, close_s, cpu_at_stop):
        plan, sup = self.plan, self.sup
        elapsed = (self.t_reached if self.t_reached else (t_stop - self.t0)) or 1e-9
        basis = self.at_target if self.reached else final
        per_conn = (lambda v: round(v / float(basis['established']), 1)) \
            if basis['established'] else (lambda v: None)
        hold = self.hold_verdict(final, t_stop)
        proto = self.protocol_summary()
        mean = round((plan.target if self.reached else self.peak_total) / elapsed, 1)
        at_target = self.at_target['established'] if self.reached else None
        return {
            'role': 'client', 'version': VERSION, 'target': plan.target, 'reached': self.reached,
            # Unix time of t_seconds 0 of the timeline (to line it up with other traces)
            'started_at': round(time.time() - (time.monotonic() - self.t0), 3),
            'exit_code': self.exit_code(hold, proto), 'protocol': proto, 'stopped_by': self.stop_reason,
            'established_peak': max(self.peak_total, at_target or 0),
            'established_at_target': at_target,
            'established_final': final['established'],
            'seconds_to_target': self.t_reached,
            'connections_per_s': mean, 'connect_rate': self.connect_rate(mean),
            'attempts': self.total_of(F_ATTEMPTS),
            'failed_connections': self.total_of(F_FAILED),
            'dropped': self.total_of(F_DROPPED), 'drops': self.drops(),
            'hold': hold, 'errors': self.errors_total(), 'heartbeat': self.heartbeat_summary(),
            'connect_latency': self.histogram(CONNECT_HIST_BASE, F_CONNECT_SUM_US),
            'user_pss_bytes': basis['pss'], 'kernel_bytes': basis['kernel'],
            'user_bytes_per_conn': per_conn(basis['pss']),
            'kernel_bytes_per_conn': per_conn(basis['kernel']),
            'kernel_scope': 'host-wide delta of Slab + TCP memory (includes the server half when '
                            'it runs on the same host)',
            'workers': plan.workers, 'workers_started': self.started,
            'concurrency': plan.active, 'lost_workers': sup.lost,
            'limits': {'nofile_soft_before': plan.nofile_before, 'nofile': plan.nofile,
                       'nofile_hard': plan.nofile_hard, 'reserve': RESERVE_FDS,
                       'per_worker': plan.cap},
            'plan': {'sources': len(plan.sources), 'destinations': len(plan.targets),
                     'ports': plan.nports, 'endpoints': len(plan.destinations),
                     'tuples': plan.tuples,
                     'local_port_range': [plan.port_lo, plan.port_hi],
                     'local_ports': plan.port_count, 'per_tuple': plan.per_tuple,
                     'bound': plan.bind},
            'watch': {'mode': plan.watch, 'why': plan.watch_why,
                      'late': getattr(plan, 'watch_late', False),
                      'interval_s': plan.watch_interval if plan.watch == 'poll' else None,
                      'passes': self.total_of(F_WATCH_PASSES),
                      'seconds': round(self.total_of(F_WATCH_US) / 1e6, 3)},
            'close_seconds': close_s,
            'cpu_at_target': self.at_target['cpu'] if self.reached else None,
            'cpu_at_stop': cpu_at_stop, 'cpu_final': self.cpu_totals(),
            'timeline': sup.timeline,
            'timeline_columns': TIMELINE_COLUMNS,
            'errors_timeline': self.errors_timeline,
        }

    def log_verdict(self, summary):
        if self.sup.lost:
            self.sup.log_lost()
        hold = summary['hold']
        drops = summary['drops']
        dropped = 'ended by the peer %d (%s=%d %s=%d)' % (
            summary['dropped'], PEER_CLOSED, drops[PEER_CLOSED], PEER_RESET, drops[PEER_RESET])
        if not self.reached:
            log('error: target %d not reached (peak %d established; %s; errors %s)'
                % (self.plan.target, summary['established_peak'], dropped,
                   summary['errors'] or 'none'))
        proto = summary['protocol']
        if proto.get('errors_total', 0) > hold['allowed_loss']:
            log('error: %d %s answer(s) failed (%s), more than the %d allowed (--hold-tolerance %s)'
                % (proto['errors_total'], proto['name'],
                   ' '.join('%s=%d' % kv for kv in sorted(proto['errors'].items())),
                   hold['allowed_loss'], self.args.hold_tolerance))
        if not self.reached:
            return
        if not hold['held_ok'] and hold['lost'] > hold['allowed_loss']:
            log('error: %d of %d connections lost during the hold of %.1f s (%s), more than '
                'the %d allowed (--hold-tolerance %s)'
                % (hold['lost'], self.plan.target, hold['seconds'], dropped,
                   hold['allowed_loss'], self.args.hold_tolerance))


def client_main(args):
    try:
        plan = ClientPlan(args)
    except Usage as exc:
        log('error: %s' % exc)
        return EXIT_USAGE
    log('plan: %s; %d connections, %d per tuple' % (plan.arith, plan.target, plan.per_tuple))
    log(describe(plan))
    log('nofile: soft limit %d raised to %d (hard %d); %d reserved, %d connections per worker at '
        'most -> %d workers (%d connecting at a time)'
        % (plan.nofile_before, plan.nofile, plan.nofile_hard, RESERVE_FDS, plan.cap,
           plan.workers, plan.active))
    for w in plan.warnings:
        log('warning: %s' % w)
    try:
        plan.probe_sources()
    except Usage as exc:
        log('error: %s' % exc)
        return EXIT_USAGE
    log('sources: %s' % plan.bind_why)
    try:
        exporter = exporter_of('client', args)
    except Usage as exc:
        log('error: %s' % exc)
        return EXIT_USAGE
    set_name('tcpscale-client')
    return ClientRun(args, plan, exporter).run()
