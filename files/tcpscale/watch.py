# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connections watched without epoll: poll(2) over arrays of descriptors.

An epoll set costs, for every connection in it, an epoll_ctl() call on the way
in, an item in the kernel (the eventpoll_epi slab and a wait-queue entry) and a
wake-up at every state change; /proc/PID/fdinfo of the epoll descriptor lists
every item, so whatever walks the processes' open files pays per connection
too. A worker that reads nothing as it arrives once a connection is made needs
none of it (watch mode ``poll``): its in-flight handshakes, and every
--watch-interval seconds its held connections, are checked with one poll() call
over a pollfd array built at C speed from the descriptors it keeps anyway. The
array lives for the call only: the kernel keeps nothing per held connection but
the socket.

That is tcp without heartbeats or echo, and http or websocket without them too:
the client's first answers (an http response, the upgrade's 101) are polled
with the handshakes, each connection until its answer is in; the server half
answers each request or upgrade when it accepts the connection (the engine's
client sends it with the handshake's last ACK), and what a client sends later
at the next pass. Measured at 300,000 connections here (benchmarks/protocols.py
--reference-engine, 8 paired rounds in two runs), the two halves without epoll
opened websocket connections 1.065x as fast as with it (median; 0.96x to 1.14x),
with less CPU per connection in 7 rounds of 8; http 1.06x.

``epoll`` (every connection in the worker's epoll set) stays for what needs to
read as data arrives: heartbeats, echo, TLS.
"""

import array
import ctypes
import errno
import select
import sys

from .system import libc

WATCH_MODES = ('auto', 'epoll', 'poll')

POLLIN = select.POLLIN
POLLOUT = select.POLLOUT
POLLRDHUP = getattr(select, 'POLLRDHUP', 0x2000)
POLLERR, POLLHUP = select.POLLERR, select.POLLHUP
# what a held connection is watched for (POLLERR and POLLHUP come unasked)
HELD_EVENTS = POLLIN | POLLRDHUP
# what poll() says of a held connection the peer reset (the error is set, the socket
# closed) and of one it closed (FIN: its side shut down): no read needed to tell
RESET_EVENTS = POLLERR
ENDED_EVENTS = POLLERR | POLLHUP | POLLRDHUP

_LITTLE = sys.byteorder == 'little'


def events_word(events):
    """The second int of a struct pollfd {int fd; short events; short revents}, revents 0."""
    return events if _LITTLE else events << 16


def revents_of(word):
    """The revents half of that int."""
    return (word >> 16) & 0xffff if _LITTLE else word & 0xffff


_POLL = None


def libc_poll():
    """libc's poll(), or None where ctypes cannot reach libc."""
    global _POLL
    if _POLL is None:
        lib = libc()
        fn = getattr(lib, 'poll', None) if lib else None
        if fn is not None:
            fn.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int]
            fn.restype = ctypes.c_int
        _POLL = fn or False
    return _POLL or None


def resolve(mode, needs_data, half):
    """The watch mode a half runs with: (mode, why).

    needs_data: what makes this half read data as it arrives (heartbeats, echo,
    TLS), or '' when it reads nothing after a connection's first words.
    """
    if mode == 'epoll':
        return 'epoll', 'asked for'
    if needs_data:
        if mode == 'poll':
            raise ValueError('--watch poll: the %s half reads data as it arrives (%s), which '
                             'needs --watch epoll (or auto)' % (half, needs_data))
        return 'epoll', needs_data
    if libc_poll() is None:
        if mode == 'poll':
            raise ValueError('--watch poll: libc poll() is not reachable through ctypes here; '
                             'use --watch epoll')
        return 'epoll', 'no libc poll() through ctypes'
    return 'poll', 'asked for' if mode == 'poll' else 'only holds'


def describe(plan):
    """The log line of a half's watch mode."""
    return 'watch: %s (%s)%s' % (plan.watch, plan.watch_why,
                                 ', held connections checked every %g s' % plan.watch_interval
                                 if plan.watch == 'poll' else '')


class Poller(object):
    """One poll() over the descriptors of an array('i') (or any iterable of them)."""

    def __init__(self):
        self.fn = libc_poll()

    def ready(self, fds, events, timeout_ms=0, first=None, more=None):
        """[(fd, revents)] of the descriptors that report something within timeout_ms.

        fds: the descriptors, each watched for events; first: an (fd, events) pair
        put before them (a worker's wake-up pipe); more: (descriptors, events), a
        second group after them, watched for other events (a client's connections
        waiting for their first answer, beside its handshakes). An interrupted call
        reports nothing.
        """
        if more is not None and len(more[0]):
            return self.ready_groups(fds, events, timeout_ms, first, more)
        n = len(fds)
        k = 1 if first is not None else 0
        pf = array.array('i', bytes(8 * (n + k)))
        if k:
            pf[0] = first[0]
            pf[1] = events_word(first[1])
        if n:
            word = events_word(events)
            pf[2 * k::2] = fds if isinstance(fds, array.array) else array.array('i', fds)
            pf[2 * k + 1::2] = array.array('i', [word]) * n
        got = self.call(pf, n + k, timeout_ms)
        out = []
        if got <= 0:
            return out
        revs = pf[1::2]
        if k and revs[0] != events_word(first[1]):
            out.append((first[0], revents_of(revs[0])))
        if len(out) < got:
            word = events_word(events)
            for i in range(k, n + k):
                w = revs[i]
                if w != word:
                    out.append((pf[2 * i], revents_of(w)))
                    if len(out) >= got:
                        break
        return out

    def ready_groups(self, fds, events, timeout_ms, first, more):
        """ready() with a second group: the same, each group watched for its events (kept
        apart so that the one-group call, every pass of a worker's loop, costs no more)."""
        groups = [(fds, events), more]
        if first is not None:
            groups.insert(0, ((first[0],), first[1]))
        spans = []              # (first index, end, the events word unchanged)
        at = 0
        for group, group_events in groups:
            end = at + len(group)
            spans.append((at, end, events_word(group_events)))
            at = end
        pf = array.array('i', bytes(8 * at))
        for (lo, hi, word), (group, _e) in zip(spans, groups):
            if hi > lo:
                pf[2 * lo:2 * hi:2] = group if isinstance(group, array.array) \
                    else array.array('i', group)
                pf[2 * lo + 1:2 * hi:2] = array.array('i', [word]) * (hi - lo)
        got = self.call(pf, at, timeout_ms)
        out = []
        if got <= 0:
            return out
        revs = pf[1::2]
        for lo, hi, word in spans:
            for i in range(lo, hi):
                w = revs[i]
                if w != word:
                    out.append((pf[2 * i], revents_of(w)))
                    if len(out) >= got:
                        return out
        return out

    def call(self, pf, n, timeout_ms):
        """poll() over the n pollfds of pf: how many reported (0 when interrupted)."""
        got = self.fn(pf.buffer_info()[0], n, int(timeout_ms))
        if got < 0 and ctypes.get_errno() not in (errno.EINTR, errno.EAGAIN):
            raise OSError(ctypes.get_errno(), 'poll')
        return got
