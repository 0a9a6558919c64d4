# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The server half: keepers of listening sockets, holders of connections, their supervisor.

Endpoints (addresses x ports, more than 65,535 is fine) are split into
groups whose listening sockets one *keeper* process creates and keeps.
Holder processes inherit them and accept (one accepting holder per lane and
core; lanes are SO_REUSEPORT siblings of one endpoint); when a holder is
nearly full the keeper forks its successor, and the full holder closes its
copies of the listening sockets. The keeper keeps them open, so no queued
handshake is ever lost when a holder leaves the accepting set.
"""

import array
import ctypes
import errno
import os
import select
import signal
import socket
import time

from . import VERSION
from . import protocol
from . import tls as tls_mod
from .metrics import Exposition, exporter_of
from .plan import RESERVE_FDS, ServerPlan
from .shm import (ERR_BASE, F_CAP, F_CPU_SYS_US, F_CPU_USER_US, F_DROPPED, F_ECHO_BYTES,
                  F_ERR_INDEX, F_ERRNO, F_EST, F_LANE, F_LISTEN, F_LOST_HELD, F_LOST_NS,
                  F_LOST_STATUS, F_NHOLDERS, F_PEAK, F_PID, F_STATE, F_TLS_DONE, F_TLS_FAILED,
                  F_TOTAL, F_WANT, F_WATCH_GO, F_WATCH_PASSES, F_WATCH_US, SLOT_WORDS,
                  ST_ACTIVE, ST_EXITED, ST_FAILED, ST_HOLDING, ST_LOST, ST_STARTING, STATE_NAMES,
                  TIMELINE_COLUMNS, Shm, err_slot, error_counts, publish_cpu)
from .supervisor import Supervisor, finish, fork_worker
from .system import (EXIT_LOST, EXIT_OK, EXIT_USAGE, SOCK_CLOEXEC, SOCK_NONBLOCK, Usage,
                     child_setup, close_rst, drain, fd_table, held_fds, libc, log, lost_children,
                     set_name, tcp_in_use, trim_heap, write_json_atomic)
from .watch import ENDED_EVENTS, HELD_EVENTS, Poller, describe

ACCEPT_BATCH = 512          # a server holder that accepted fewer than this in one round
ACCEPT_PAUSE = 0.005        # ... waits this long (s) for the accept queue to fill
ACCEPT_SHARE = 64           # accepts per pass shared among the listening sockets ready
ACCEPT_AGAIN = 16           # a pass that used a share up and accepted this many: no pause
KEEPER_GRACE = 60.0         # seconds a keeper gives its holders to close, then SIGKILL
QUIET_S = 1.0               # watch mode poll: this long without change ends the ramp (or close)


def make_listener(plan, e, reuseport):
    a, port = plan.endpoint(e)
    af = socket.AF_INET if a.version == 4 else socket.AF_INET6
    s = socket.socket(af, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuseport:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if af == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind((str(a), port))
        s.listen(plan.backlog)
        s.setblocking(False)
    except OSError:
        s.close()
        raise
    return s


# =========================================================== keeper

def server_keeper(parent_pid, plan, args, shm, group, notify_sup):
    """The body of a forked keeper (see Keeper)."""
    return Keeper(parent_pid, plan, args, shm, group, notify_sup).run()


class Keeper(object):
    """Creates and keeps the listening sockets of one endpoint group; forks its holders.

    A holder that asks for a successor (nearly full) gets one; an accepting
    holder that dies is replaced (its lane must keep accepting). Every loss
    is written in the holder's slot for the supervisor.
    """

    def __init__(self, parent_pid, plan, args, shm, group, notify_sup):
        self.wake_r, self.flags = child_setup(parent_pid, 'tcpscale-k%d' % group)
        signal.signal(signal.SIGCHLD, lambda _s, _f: None)
        self.parent_pid = parent_pid
        self.plan, self.args, self.shm, self.group = plan, args, shm, group
        self.notify_sup = notify_sup
        self.q = shm.q
        self.kb = group * SLOT_WORDS
        self.q[self.kb + F_PID] = self.me = os.getpid()
        self.lanes = [[] for _l in range(plan.lanes)]
        self.hbase = plan.groups + group * plan.holders_per_group
        self.children = {}          # pid -> slot
        self.expected = set()       # pids asked to stop
        self.nholders = 0
        self.exhausted = False
        self.stopping = False
        self.deadline = None

    def run(self):
        if not self.open_listeners():
            return 0
        self.notify_r, self.notify_w = os.pipe()
        os.set_blocking(self.notify_r, False)
        os.set_blocking(self.notify_w, False)
        for lane in range(self.plan.lanes):
            self.spawn(lane)
        self.q[self.kb + F_STATE] = ST_ACTIVE
        os.write(self.notify_sup, b'k')
        self.loop()
        self.q[self.kb + F_STATE] = ST_EXITED
        return 0

    def open_listeners(self):
        """One listening socket per endpoint of the group and lane; False when one fails."""
        plan, q, kb = self.plan, self.q, self.kb
        e0 = self.group * plan.group_size
        e1 = min(plan.endpoints, e0 + plan.group_size)
        reuse = plan.lanes > 1
        for e in range(e0, e1):
            try:
                if reuse:
                    # a plain probe bind first: a stale SO_REUSEPORT listener of someone else
                    # on this endpoint must be an error, not a silent sharing of connections
                    make_listener(plan, e, False).close()
                for lane in range(plan.lanes):
                    self.lanes[lane].append(make_listener(plan, e, reuse))
            except OSError as exc:
                q[kb + F_ERRNO] = exc.errno or 0
                q[kb + F_ERR_INDEX] = e
                q[kb + F_STATE] = ST_FAILED
                os.write(self.notify_sup, b'k')
                return False
            q[kb + F_LISTEN] = e - e0 + 1
        return True

    def spawn(self, lane):
        """Fork the next holder of lane (while holder slots are left)."""
        plan, q = self.plan, self.q
        if self.nholders >= plan.holders_per_group:
            if not self.exhausted:
                self.exhausted = True
                log('keeper %d: all %d holder slots used; no more connections accepted'
                    % (self.group, plan.holders_per_group))
            return
        slot = self.hbase + self.nholders
        hb = slot * SLOT_WORDS
        q[hb + F_STATE] = ST_STARTING
        q[hb + F_LANE] = lane
        pid = fork_worker(server_holder, self.me, plan, self.args, self.shm, self.group, slot,
                          self.nholders, lane, self.lanes, self.notify_w, self.notify_sup)
        q[hb + F_PID] = pid
        self.children[pid] = slot
        self.nholders += 1
        q[self.kb + F_NHOLDERS] = self.nholders

    def loop(self):
        flags, q = self.flags, self.q
        ep = select.epoll()
        ep.register(self.wake_r, select.EPOLLIN)
        ep.register(self.notify_r, select.EPOLLIN)
        while True:
            if (flags['stop'] or os.getppid() != self.parent_pid) and not self.stopping:
                self.begin_stop()
            self.reap()
            if self.stopping:
                if not self.children:
                    break
                if time.monotonic() > self.deadline:
                    self.kill_all()
            else:
                for i in range(self.nholders):
                    hb = (self.hbase + i) * SLOT_WORDS
                    if q[hb + F_WANT] == 1:
                        q[hb + F_WANT] = 2
                        self.spawn(q[hb + F_LANE])
            try:
                ep.poll(0.05 if self.stopping else 0.5)
            except InterruptedError:
                pass
            drain(self.wake_r)
            drain(self.notify_r)

    def begin_stop(self):
        self.stopping = True
        for pid in list(self.children):
            self.expected.add(pid)
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        self.deadline = time.monotonic() + KEEPER_GRACE

    def kill_all(self):
        for pid in self.children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def reap(self):
        """Collect exited holders; one that died unasked is marked lost (and replaced)."""
        for _pid, slot, status in lost_children(self.children, self.expected):
            accepting = mark_holder_lost(self.plan, self.shm, slot, status)
            if accepting and not self.stopping:
                # its lane must keep accepting: the keeper still has the listeners
                self.spawn(self.q[slot * SLOT_WORDS + F_LANE])
            try:
                os.write(self.notify_sup, b'l')
            except OSError:
                pass


def mark_holder_lost(plan, shm, slot, status):
    """Record in its slot that a holder died: when, how, what it held.

    Its connections died with it; its counts go to zero so the totals show what
    the other holders still hold. Returns whether it was accepting.
    """
    q, u = shm.q, shm.u
    b = slot * SLOT_WORDS
    accepting = q[b + F_LISTEN] > 0 or q[b + F_STATE] in (ST_STARTING, ST_ACTIVE)
    q[b + F_LOST_HELD] = q[b + F_EST]
    q[b + F_LOST_STATUS] = status
    q[b + F_WANT] = 2                   # a successor it asked for is not needed twice
    q[b + F_LOST_NS] = time.time_ns()
    q[b + F_EST] = 0
    q[b + F_LISTEN] = 0
    q[b + F_STATE] = ST_LOST
    ubase = (slot - plan.groups) * plan.group_size
    for i in range(plan.group_size):
        u[ubase + i] = 0
    return accepting


# =========================================================== holder

def accept4_fallback(socks):
    """accept4(fd, NULL, NULL, flags) of the listening sockets socks, without libc.

    The same contract: a non-blocking descriptor, or -1 with the errno that
    ctypes.get_errno() returns.
    """
    by_fd = dict((s.fileno(), s) for s in socks)

    def accept4(fd, _addr, _addrlen, _flags):
        try:
            cfd, _peer = by_fd[fd]._accept()
        except OSError as exc:
            ctypes.set_errno(exc.errno or 0)
            return -1
        os.set_blocking(cfd, False)
        return cfd
    return accept4


def server_holder(parent_pid, plan, args, shm, group, slot, index, lane, lanes, notify_keeper,
                  notify_sup):
    """The body of a forked holder (see Holder)."""
    return Holder(parent_pid, plan, args, shm, slot, lane, lanes, notify_keeper).run()


class Holder(object):
    """Accepts on its lane's listening sockets until nearly full, holds what it accepted.

    Connections are bare descriptors (marked in self.epof, no socket object); u counts
    them per endpoint for the supervisor. One pass of the loop: wait for events,
    accept or read (echo) or close, pause briefly when connections trickle
    in (so that they are accepted in batches), publish. Watch mode epoll:
    every held connection is in the holder's epoll set; watch mode poll
    (watch.py): only the listening sockets are, and the held connections are
    checked with one poll() every --watch-interval seconds. Polling http or
    websocket, a request or upgrade is answered when its connection is
    accepted; a connection whose first words are not in yet joins the epoll
    set to be answered on its event, and what a client sends later is
    answered at the passes.
    """

    def __init__(self, parent_pid, plan, args, shm, slot, lane, lanes, notify_keeper):
        self.parent_pid = parent_pid
        self.wake_r, self.flags = child_setup(parent_pid, 'tcpscale-s%d' % (slot - plan.groups))
        self.plan = plan
        self.q, self.u = shm.q, shm.u
        self.b = b = slot * SLOT_WORDS
        self.ubase = (slot - plan.groups) * plan.group_size
        self.err_base = b + ERR_BASE
        self.notify_keeper = notify_keeper
        self.q[b + F_PID] = os.getpid()
        self.mine = lanes[lane]
        for other, socks in enumerate(lanes):
            if other != lane:
                for s in socks:
                    s.close()
        self.cap = plan.holder_cap
        self.q[b + F_CAP] = self.cap
        self.ask_at = self.cap - max(64, self.cap // 8)
        self.ep = select.epoll(1024)
        self.ep.register(self.wake_r, select.EPOLLIN)
        self.listener_of = {}
        for i, s in enumerate(self.mine):
            self.listener_of[s.fileno()] = i
            self.ep.register(s.fileno(), select.EPOLLIN | select.EPOLLEXCLUSIVE)
        self.q[b + F_LISTEN] = len(self.mine)
        self.q[b + F_STATE] = ST_ACTIVE
        self.poller = Poller() if plan.watch == 'poll' else None
        # fd -> 1 + its endpoint in the group while held, else 0: the held connections
        self.epof = fd_table(plan.nofile, plan.group_size + 1)
        self.protocol = getattr(args, 'protocol', 'tcp') or 'tcp'
        self.echo = args.echo or self.protocol != 'tcp'
        self.answer = None if self.protocol == 'tcp' else self.answer_http \
            if self.protocol == 'http' else self.answer_websocket
        # TLS: every read goes through the connection's tls.Conn; the protocol's answer
        # (or the echo) is computed on the plaintext and written back encrypted
        self.tls = plan.tls
        self.tlss = None
        if plan.tls is not None:
            self.tlss = {}
            self.plain_answer = self.answer
            self.answer = self.answer_tls
            self.echo = True            # the handshake is answered, echo or not
            self.plain_echo = args.echo or self.protocol != 'tcp'
        self.upgraded = array.array('b', [0]) * (plan.nofile + 2) \
            if self.protocol == 'websocket' else None
        self.partial = {}       # fd -> the start of a request head or frame not yet whole
        self.response = protocol.http_response()
        # polling tcp, only what clients send unasked is read (and dropped): a small buffer
        rbuf = bytearray(4096 if self.poller is not None and self.protocol == 'tcp' else 65536)
        self.rbufs = [rbuf]
        self.rview = memoryview(rbuf)
        lib = libc()
        self.accept4 = lib.accept4 if lib else accept4_fallback(self.mine)
        self.accepting = True
        self.asked = False
        self.watch_passes = 0
        self.watch_s = 0.0

    def run(self):
        self.serve()
        self.close_all()
        return 0

    def serve(self):
        """Accept, read, echo and close until stopped: the hot loop, kept whole.

        Split into methods (a pass's dispatch, an accept per listening-socket
        event, publish; locals bound in each), the Python around the system calls
        cost 0.45 instead of 0.36 us per accepted connection (+25%): a replay of
        the accept pattern measured at 200,000 connections on this machine (65
        connections per accepting pass, 4.7 per listener event) with the system
        calls faked, min of 7 runs. In alternating end-to-end runs at 200,000
        the holders' user CPU was 1.97 instead of 1.62 us per connection (median
        of 8). So the locals are bound once per loop, nothing but the system
        calls runs per connection, and only the rare paths (errors, successor,
        stop accepting, the parent check) are methods.
        """
        q, b, u, ubase, flags = self.q, self.b, self.u, self.ubase, self.flags
        poll, register = self.ep.poll, self.ep.register
        listener_get = self.listener_of.get     # the dict stop_accepting() empties
        wake_r = self.wake_r
        epof = self.epof
        cap, ask_at, echo, answer = self.cap, self.ask_at, self.echo, self.answer
        # http and websocket: the client's request or upgrade comes first (not with TLS: its
        # sessions resumed less often, 1,336 of 3,000 in tests/engine/test_tls.py)
        first_words = answer is not None and self.tlss is None
        rbufs, rview = self.rbufs, self.rview
        readv, write = os.readv, os.write
        accept4, flags4 = self.accept4, SOCK_NONBLOCK | SOCK_CLOEXEC
        get_errno, eagain = ctypes.get_errno, errno.EAGAIN
        conn_mask = select.EPOLLIN | select.EPOLLRDHUP
        # watch mode poll: held connections stay out of epoll, but for one whose first
        # words were not there when it was accepted (answered on their event)
        late_words = register
        if self.poller is not None:
            register = None
        interval = self.plan.watch_interval
        sleep, monotonic = time.sleep, time.monotonic
        held = total = closed = echo_bytes = peak = 0
        last_ppid = last_watch = monotonic()
        wait = 1.0 if register is not None else min(1.0, interval)
        while not flags['stop']:
            events = poll(wait, 4096)
            before = total
            # Accepts per listening socket's event: ACCEPT_SHARE shared among those ready,
            # not each one drained to EAGAIN (one failed accept4 per ready socket: with 53
            # ports, about one per connection). They are level-triggered, so one with more
            # queued is in the next poll's events; a pass that used a share up (and accepted
            # ACCEPT_AGAIN or more) polls again at once instead of pausing.
            per_event = ACCEPT_SHARE // (len(events) or 1) or 1
            more = False
            for fd, _ev in events:
                li = listener_get(fd)
                if li is not None:
                    if not self.accepting:
                        continue
                    eidx = ubase + li
                    mark = li + 1
                    k = per_event
                    while k and held < cap:
                        cfd = accept4(fd, None, None, flags4)
                        if cfd < 0:
                            err = get_errno()
                            if err != eagain:
                                self.accept_error(err)
                            break
                        k -= 1
                        held += 1
                        epof[cfd] = mark
                        u[eidx] += 1
                        total += 1
                        if first_words:
                            # the client speaks first, and its first words are usually
                            # here (the engine's client sends them with the handshake's
                            # last ACK): answered now, before the epoll item exists, not
                            # on a later event
                            try:
                                n = readv(cfd, rbufs)
                            except BlockingIOError:
                                n = -1
                            except OSError:
                                n = 0
                            if n > 0:
                                out = answer(cfd, rview[:n])
                                if not out:
                                    n = -1      # not a whole request yet: its event answers
                                else:
                                    try:
                                        write(cfd, out)
                                        echo_bytes += n
                                    except OSError:
                                        n = 0
                            if n == 0:
                                if self.forget(cfd):
                                    held -= 1
                                    closed += 1
                                continue
                            if n < 0 and register is None:
                                late_words(cfd, conn_mask)
                                continue
                        if register is not None:
                            register(cfd, conn_mask)
                    if not k:
                        more = True
                    if held >= ask_at:
                        self.ask_successor()
                    if held >= cap and self.accepting:
                        self.stop_accepting()
                    continue
                if fd == wake_r:
                    drain(wake_r)
                    continue
                n = 0
                try:
                    n = readv(fd, rbufs)
                except BlockingIOError:
                    continue
                except OSError:
                    n = 0
                if n and echo:
                    try:
                        write(fd, rview[:n] if answer is None else answer(fd, rview[:n]))
                        echo_bytes += n
                    except OSError:
                        n = 0
                if n == 0 and self.forget(fd):
                    held -= 1
                    closed += 1
            if held > peak:
                peak = held
            if ACCEPT_PAUSE and 0 < total - before < ACCEPT_BATCH \
                    and not (more and total - before >= ACCEPT_AGAIN):
                # Connections keep arriving: the kernel completes their handshakes and
                # queues them (the client sees them established), so let a batch build
                # up instead of waking once per connection.
                sleep(ACCEPT_PAUSE)
            q[b + F_EST] = held
            q[b + F_PEAK] = peak
            q[b + F_TOTAL] = total
            q[b + F_DROPPED] = closed
            q[b + F_ECHO_BYTES] = echo_bytes
            now = monotonic()
            if register is None and q[b + F_WATCH_GO] and now - last_watch >= interval:
                last_watch = now
                gone = self.watch_held(now)
                held -= gone
                closed += gone
                q[b + F_EST] = held
                q[b + F_DROPPED] = closed
            if now - last_ppid > 0.5:
                last_ppid = now
                if self.orphaned():
                    break

    def forget(self, fd):
        """A held connection the client ended: out of the counts, closed.
        Returns False when fd was not a held connection."""
        epof = self.epof
        mark = epof[fd]
        if not mark:
            return False
        epof[fd] = 0
        self.u[self.ubase + mark - 1] -= 1
        if self.upgraded is not None:
            self.upgraded[fd] = 0
        if self.partial:
            self.partial.pop(fd, None)
        if self.tlss is not None:
            self.tlss.pop(fd, None)
        os.close(fd)
        return True

    def watch_held(self, now):
        """Watch mode poll: one poll() over the held connections. Returns how many the
        clients ended (closed here); what a client sent is answered (http, websocket),
        or read and ignored (tcp without --echo)."""
        gone = 0
        answer = self.answer
        for fd, ev in self.poller.ready(held_fds(self.epof), HELD_EVENTS):
            if ev & ENDED_EVENTS:
                # reset or closed by the client (no read needed to tell)
                if self.forget(fd):
                    gone += 1
                continue
            try:
                n = os.readv(fd, self.rbufs)
            except BlockingIOError:
                continue
            except OSError:
                n = 0
            if n > 0 and answer is not None:
                try:
                    os.write(fd, answer(fd, self.rview[:n]))
                except OSError:
                    n = 0
            if n == 0 and self.forget(fd):
                gone += 1
        trim_heap()         # the pass's temporary arrays: not this holder's memory for good
        self.watch_passes += 1
        self.watch_s += time.monotonic() - now
        self.q[self.b + F_WATCH_PASSES] = self.watch_passes
        self.q[self.b + F_WATCH_US] = int(self.watch_s * 1e6)
        return gone

    # --- the application protocol: what to write back for the data read on fd
    def answer_http(self, fd, data):
        """A 200 for every request head that arrived whole (keep-alive); the start of one
        that did not waits in self.partial for the next read."""
        data = bytes(data)
        partial = self.partial
        if partial:
            left = partial.pop(fd, None)
            if left is not None:
                data = left + data
        heads = data.count(b'\r\n\r\n')
        if not data.endswith(b'\r\n\r\n'):
            tail = data[data.rfind(b'\r\n\r\n') + 4:] if heads else data
            # a head longer than any request's: only its last bytes, where an end may start
            partial[fd] = tail if len(tail) <= protocol.MAX_HEAD else tail[-3:]
        return self.response * heads

    def answer_websocket(self, fd, data):
        """The 101 to the upgrade (400 to anything else), then a pong to every ping. The
        start of the upgrade or of a frame that did not arrive whole waits in
        self.partial for the next read."""
        data = bytes(data)
        partial = self.partial
        left = partial.pop(fd, None) if partial else None
        out = b''
        if not self.upgraded[fd]:
            if left is not None:
                data = left + data
            end = data.find(b'\r\n\r\n')
            if end < 0:
                if len(data) > protocol.MAX_HEAD:
                    self.upgraded[fd] = 1
                    return protocol.BAD_REQUEST
                partial[fd] = data
                return out
            self.upgraded[fd] = 1
            out = protocol.ws_handshake_response(data[:end + 4])
            if out is None:
                return protocol.BAD_REQUEST
            data = data[end + 4:]
            if not data:
                return out
        else:
            data, left = protocol.ws_resume(left, data)
            if left is not None:
                partial[fd] = left
                return out
        pongs, _seen, used = protocol.ws_answer_pings(data)
        left = protocol.ws_leftover(data, used)
        if left is not None:
            partial[fd] = left
        return out + pongs

    def answer_tls(self, fd, data):
        """Ciphertext read on fd: the handshake's next flight, then the protocol's
        answer (or the echo) to the plaintext, encrypted. The handshake's own writes
        go out as they are made (tls.Conn.flush); this returns b''."""
        conn = self.tlss.get(fd)
        if conn is None:
            conn = self.tlss[fd] = tls_mod.Conn(self.tls, fd, True)
        if conn.done is None:
            return b''                  # the handshake failed: the client ends it
        try:
            completed, plain = conn.feed(bytes(data))
        except tls_mod.ssl.SSLError:
            conn.done = None
            self.q[self.b + F_TLS_FAILED] += 1
            return b''
        if completed:
            self.q[self.b + F_TLS_DONE] += 1
        if plain and self.plain_echo:
            out = plain if self.plain_answer is None else self.plain_answer(fd, plain)
            if out:
                conn.send(out)
        return b''

    def orphaned(self):
        """Every half second: publish the CPU time; whether the keeper is gone."""
        publish_cpu(self.q, self.b)
        return os.getppid() != self.parent_pid

    def ask_successor(self):
        if not self.asked:
            self.asked = True
            self.q[self.b + F_WANT] = 1
            try:
                os.write(self.notify_keeper, b'w')
            except OSError:
                pass

    def accept_error(self, err):
        self.q[self.err_base + err_slot(err)] += 1
        if err == errno.EMFILE:
            # this process is out of descriptors (something else holds some): hand over
            self.ask_successor()
            if self.accepting:
                self.stop_accepting()
        elif err in (errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
            time.sleep(0.05)        # the host is out of files/memory: do not spin

    def stop_accepting(self):
        self.accepting = False
        for s in self.mine:
            try:
                self.ep.unregister(s.fileno())
            except (OSError, ValueError):
                pass
            s.close()
        self.listener_of.clear()
        trim_heap()         # what accepting allocated and freed
        self.q[self.b + F_LISTEN] = 0
        self.q[self.b + F_STATE] = ST_HOLDING

    def close_all(self):
        q, b = self.q, self.b
        publish_cpu(q, b)
        if self.accepting:
            for s in self.mine:
                s.close()
        q[b + F_LISTEN] = 0
        close_rst(held_fds(self.epof))
        for i in range(len(self.mine)):
            self.u[self.ubase + i] = 0
        q[b + F_EST] = 0
        q[b + F_STATE] = ST_EXITED


# =========================================================== supervisor

class ServerRun(object):
    """The server supervisor: keepers per endpoint group, progress, status, summary.

    A lost holder or keeper does not stop the half: the keeper replaces a lost
    accepting holder (it keeps the listening sockets), the others keep holding,
    and the loss is reported (status file, summary, exit status 3 at the end).
    """

    def __init__(self, args, plan, exporter=None):
        self.args = args
        self.plan = plan
        self.sup = Supervisor(args, 'server')
        self.exporter = exporter
        if exporter is not None:
            self.sup.export_to(exporter)
        nslots = plan.groups + plan.groups * plan.holders_per_group
        self.shm = Shm(nslots, extra_u32=plan.groups * plan.holders_per_group * plan.group_size)
        self.q = self.shm.q
        self.t0 = self.sup.t0 = time.monotonic()
        self.ready = False
        self.t_ready = None
        self.stop_reason = None
        self.code = EXIT_OK
        self.next_tick = self.t0 + args.progress_interval
        self.last = (0, self.t0)
        self.peak = 0
        self.accepted_seen, self.accepted_at = None, time.monotonic()  # update_watch
        self.reported = set()           # holder slots whose loss is recorded

    def holder_slots(self):
        q, plan = self.q, self.plan
        for g in range(plan.groups):
            base = plan.groups + g * plan.holders_per_group
            for i in range(q[g * SLOT_WORDS + F_NHOLDERS]):
                yield g, base + i

    def field_sum(self, field):
        q = self.q
        return sum(q[s * SLOT_WORDS + field] for _g, s in self.holder_slots())

    def pids(self):
        q = self.q
        out = [self.sup.pid] + list(self.sup.children)
        for _g, s in self.holder_slots():
            p = q[s * SLOT_WORDS + F_PID]
            if p and q[s * SLOT_WORDS + F_STATE] not in (ST_EXITED, ST_LOST):
                out.append(p)
        return out

    def held_total(self):
        return self.field_sum(F_EST)

    def holders(self):
        """One row per holder: name, pid, state and connections held."""
        q, groups = self.q, self.plan.groups
        return [{'worker': 's%d' % (s - groups), 'keeper': g, 'pid': q[s * SLOT_WORDS + F_PID],
                 'state': STATE_NAMES[q[s * SLOT_WORDS + F_STATE]],
                 'held': q[s * SLOT_WORDS + F_EST]} for g, s in self.holder_slots()]

    def per_endpoint(self):
        counts = {}
        q, u, plan = self.q, self.shm.u, self.plan
        for g, s in self.holder_slots():
            if not q[s * SLOT_WORDS + F_EST]:
                continue
            ub = (s - plan.groups) * plan.group_size
            e0 = g * plan.group_size
            for i in range(min(plan.group_size, plan.endpoints - e0)):
                v = u[ub + i]
                if v:
                    counts[e0 + i] = counts.get(e0 + i, 0) + v
        return dict((plan.endpoint_name(e), v) for e, v in sorted(counts.items()))

    def listening(self):
        q = self.q
        return sum(q[g * SLOT_WORDS + F_LISTEN] for g in range(self.plan.groups))

    def errors(self):
        return error_counts(self.q, [s for _g, s in self.holder_slots()])

    def on_lost_keeper(self, pid, group):
        """A keeper died: its holders die with it (PDEATHSIG), so does what they held."""
        q, plan = self.q, self.plan
        base = plan.groups + group * plan.holders_per_group
        held = sum(q[(base + i) * SLOT_WORDS + F_EST]
                   for i in range(q[group * SLOT_WORDS + F_NHOLDERS]))
        return {'worker': 'k%d' % group, 'keeper': group, 'held': held}

    def collect_lost_holders(self):
        q, groups = self.q, self.plan.groups
        for g, s in self.holder_slots():
            b = s * SLOT_WORDS
            if q[b + F_STATE] == ST_LOST and s not in self.reported:
                self.reported.add(s)
                self.sup.record_lost(q[b + F_PID], q[b + F_LOST_STATUS],
                                     {'worker': 's%d' % (s - groups), 'keeper': g,
                                      'held': q[b + F_LOST_HELD]},
                                     at=q[b + F_LOST_NS] / 1e9)

    def listen_failure(self):
        q, plan = self.q, self.plan
        for g in range(plan.groups):
            kb = g * SLOT_WORDS
            if q[kb + F_STATE] == ST_FAILED:
                err = q[kb + F_ERRNO]
                return 'cannot listen on %s: %s' % (plan.endpoint_name(q[kb + F_ERR_INDEX]),
                                                    os.strerror(err) if err else 'error')
        return None

    def check_ready(self, now):
        plan, q = self.plan, self.q
        if self.ready or self.listening() != plan.endpoints or not all(
                q[g * SLOT_WORDS + F_STATE] == ST_ACTIVE for g in range(plan.groups)):
            return
        self.ready = True
        self.t_ready = now
        log('ready: %d endpoints listening (%.2f s)' % (plan.endpoints, now - self.t0))
        if self.args.ready_file:
            write_json_atomic(self.args.ready_file, {'listening': plan.endpoints,
                                                     'pid': self.sup.pid})

    def snapshot(self, final=False):
        plan, sup = self.plan, self.sup
        return {'role': 'server', 'version': VERSION, 'held_total': self.held_total(),
                'held_peak': self.peak, 'held_per_endpoint': self.per_endpoint(),
                'workers': len(list(self.holder_slots())), 'keepers': plan.groups,
                'lanes': plan.lanes, 'endpoints': plan.endpoints, 'listening': self.listening(),
                'ready': self.ready, 'holders': self.holders(),
                'accepted_total': self.field_sum(F_TOTAL),
                'closed_total': self.field_sum(F_DROPPED),
                'watch': {'mode': plan.watch, 'why': plan.watch_why,
                          'interval_s': plan.watch_interval if plan.watch == 'poll' else None,
                          'passes': self.field_sum(F_WATCH_PASSES),
                          'seconds': round(self.field_sum(F_WATCH_US) / 1e6, 3)},
                'echo_bytes': self.field_sum(F_ECHO_BYTES),
                'tls': {'handshakes': self.field_sum(F_TLS_DONE),
                        'failed': self.field_sum(F_TLS_FAILED)} if plan.tls is not None else None,
                'cpu': {'workers_user_s': round(self.field_sum(F_CPU_USER_US) / 1e6, 3),
                        'workers_sys_s': round(self.field_sum(F_CPU_SYS_US) / 1e6, 3)},
                'errors': self.errors(), 'pids': self.pids(), 'lost_workers': sup.lost,
                'limits': {'nofile_soft_before': plan.nofile_before, 'nofile': plan.nofile,
                           'nofile_hard': plan.nofile_hard, 'reserve': RESERVE_FDS,
                           'per_worker': plan.holder_cap},
                'started_at': round(time.time() - (time.monotonic() - self.t0), 3),
                'elapsed_s': round(time.monotonic() - self.t0, 3), 'final': final,
                'timeline': sup.timeline, 'timeline_columns': TIMELINE_COLUMNS}

    def tick(self, now, held):
        sup = self.sup
        pss = sup.pss_total(self.pids())
        kbytes = sup.kernel_bytes()
        t = round(now - self.t0, 3)
        closed = self.field_sum(F_DROPPED)
        errs = self.errors()
        sup.timeline.append([t, held, pss, kbytes, closed, self.field_sum(F_TOTAL),
                             sum(errs.values())])
        if self.exporter is not None:
            self.exporter.publish(self.metrics(held, pss, kbytes, errs))
        rate = (held - self.last[0]) / max(1e-9, now - self.last[1])
        self.last = (held, now)
        log('[%7.1fs] held %d rate %+.0f/s holders %d listening %d user %.1f MB kernel %.1f MB%s%s'
            % (t, held, rate, len(list(self.holder_slots())), self.listening(), pss / 1e6,
               kbytes / 1e6, ' closed by clients %d' % closed if closed else '',
               ' lost workers %d' % len(sup.lost) if sup.lost else ''))
        if self.args.status_file:
            try:
                write_json_atomic(self.args.status_file, self.snapshot())
            except OSError as exc:
                log('cannot write the status file: %s' % exc)
        trim_heap()         # this second's status and samples, freed: not kept dirty
        self.next_tick += self.args.progress_interval
        if self.next_tick < now:
            self.next_tick = now + self.args.progress_interval

    def metrics(self, held, pss, kbytes, errs, running=True):
        """The Prometheus exposition of this half now (metrics.py)."""
        plan, sup = self.plan, self.sup
        m = Exposition('tcpscale_server_')
        m.add('info', 'gauge', 'The engine version and the protocol, as labels.',
              samples=[({'version': VERSION, 'protocol': self.args.protocol,
                         'tls': 'true' if plan.tls is not None else 'false'}, 1)])
        m.add('running', 'gauge', '1 while the server half runs, 0 once it stopped.',
              1 if running else 0)
        m.add('start_time_seconds', 'gauge', 'When the half started (Unix time).',
              round(sup.started_at, 3))
        m.add('held', 'gauge', 'Connections accepted and held now.', held)
        m.add('accepted_total', 'counter', 'Connections accepted since the start.',
              self.field_sum(F_TOTAL))
        m.add('closed_total', 'counter', 'Held connections the clients ended.',
              self.field_sum(F_DROPPED))
        m.add('endpoints', 'gauge', 'Endpoints (address x port) to listen on.', plan.endpoints)
        m.add('listening_endpoints', 'gauge', 'Endpoints listening now.', self.listening())
        m.add('ready', 'gauge', '1 once every endpoint listens.', 1 if self.ready else 0)
        m.add('errors_total', 'counter', 'accept() errors by errno.',
              samples=[({'kind': k}, v) for k, v in sorted(errs.items())])
        m.add('user_memory_bytes', 'gauge', 'PSS of the half\'s processes.', pss)
        m.add('kernel_memory_bytes', 'gauge', 'Growth of slab and TCP memory on the host '
              'since the half started.', kbytes)
        m.add('workers', 'gauge', 'Holder processes.', len(list(self.holder_slots())))
        m.add('workers_lost_total', 'counter', 'Holders or keepers that died unexpectedly.',
              len(sup.lost))
        m.add('cpu_seconds_total', 'counter', 'CPU time of the holders.',
              samples=[({'mode': 'user'}, round(self.field_sum(F_CPU_USER_US) / 1e6, 6)),
                       ({'mode': 'system'}, round(self.field_sum(F_CPU_SYS_US) / 1e6, 6))])
        return m.text()

    def stop_condition(self, now):
        """Why the half stops now (and with which exit code), or None."""
        failure = self.listen_failure()
        if failure:
            log('error: %s' % failure)
            self.code = EXIT_USAGE
            return 'listen_failed'
        if self.sup.signalled:
            return 'signal:%s' % self.sup.signalled
        self.check_ready(now)
        if self.ready and self.args.duration > 0 and now - self.t_ready >= self.args.duration:
            return 'duration'
        return None

    def loop(self):
        sup = self.sup
        while True:
            now = time.monotonic()
            sup.reap(self.on_lost_keeper)
            self.collect_lost_holders()
            self.stop_reason = self.stop_condition(now)
            if self.stop_reason:
                return
            held = self.held_total()
            self.peak = max(self.peak, held)
            self.update_watch(now)
            if now >= self.next_tick:
                self.tick(now, held)
            sup.wait(min(0.2, max(0.0, self.next_tick - time.monotonic())))

    def update_watch(self, now):
        """Watch mode poll: the holders check their connections only while the half is
        quiet, QUIET_S seconds with nothing accepted and no TCP socket of this namespace
        unhashed (a client resetting its connections by the thousand): a pass costs CPU
        that the clients' ramp, or their close, needs. The ones reset are closed here
        once the clients are done."""
        if self.plan.watch != 'poll':
            return
        accepted = (self.field_sum(F_TOTAL), tcp_in_use())
        if accepted != self.accepted_seen:
            self.accepted_seen, self.accepted_at = accepted, now
        quiet = 1 if now - self.accepted_at >= QUIET_S else 0
        q = self.q
        for _g, s in self.holder_slots():
            q[s * SLOT_WORDS + F_WATCH_GO] = quiet

    def run(self):
        plan, sup = self.plan, self.sup
        sup.install_signals()
        for g in range(plan.groups):
            pid = fork_worker(server_keeper, sup.pid, plan, self.args, self.shm, g, sup.notify_w)
            sup.children[pid] = g
        try:
            self.loop()
        except BaseException:
            sup.emergency_kill()
            raise
        return self.stop()

    def stop(self):
        sup = self.sup
        final = self.snapshot(final=True)
        pss = sup.pss_total(self.pids())
        kbytes = sup.kernel_bytes()
        held = final['held_total']
        final.update(user_pss_bytes=pss, kernel_bytes=kbytes,
                     user_bytes_per_conn=round(pss / float(held), 1) if held else None,
                     kernel_bytes_per_conn=round(kbytes / float(held), 1) if held else None)
        errs = self.errors()
        sup.timeline.append([round(time.monotonic() - self.t0, 3), held, pss, kbytes,
                             final['closed_total'], final['accepted_total'], sum(errs.values())])
        log('stopping (%s): closing %d connections' % (self.stop_reason, held))
        t_stop = time.monotonic()
        sup.stop_children(list(sup.children), grace=90.0)
        sup.reap(self.on_lost_keeper)
        self.collect_lost_holders()
        if sup.lost and self.code == EXIT_OK:
            self.code = EXIT_LOST
        final.update(lost_workers=sup.lost, stopped_by=self.stop_reason, exit_code=self.code,
                     close_seconds=round(time.monotonic() - t_stop, 3), pids=[])
        if self.args.status_file:
            try:
                write_json_atomic(self.args.status_file, final)
            except OSError:
                pass
        if self.exporter is not None:
            self.exporter.publish(self.metrics(0, 0, 0, errs, running=False))
            self.exporter.close()
        finish(final, self.args.summary_file)
        if self.code == EXIT_LOST:
            sup.log_lost()
        return self.code


def server_main(args):
    try:
        plan = ServerPlan(args)
        plan.probe()
    except Usage as exc:
        log('error: %s' % exc)
        return EXIT_USAGE
    log('plan: %d endpoints (%d addresses x %d ports) in %d group(s) of <= %d, %d accepting '
        'lane(s) per group%s' % (plan.endpoints, len(plan.addrs), plan.nports, plan.groups,
                                 plan.group_size, plan.lanes,
                                 ' (SO_REUSEPORT)' if plan.lanes > 1 else ''))
    log('nofile: soft limit %d raised to %d (hard %d); %d reserved; a holder holds up to %d '
        'connections; more holders are started as they fill'
        % (plan.nofile_before, plan.nofile, plan.nofile_hard, RESERVE_FDS, plan.holder_cap))
    log(describe(plan))
    if plan.somaxconn < plan.backlog:
        log('note: net.core.somaxconn is %d, the listen backlog %d is capped to it'
            % (plan.somaxconn, plan.backlog))
    try:
        exporter = exporter_of('server', args)
    except Usage as exc:
        log('error: %s' % exc)
        return EXIT_USAGE
    set_name('tcpscale-server')
    return ServerRun(args, plan, exporter).run()
