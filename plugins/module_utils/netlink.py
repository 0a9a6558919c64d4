# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one netlink codec of the collection: standard library only.

What every netlink user here needs, written once:

* the ABI: message header (``nlmsghdr``), attributes (``nlattr``), flags,
  acknowledgements (``nlmsgerr`` with the extended-ack text), and the
  rtnetlink family headers the collection sends (``ifaddrmsg``,
  ``ifinfomsg``) -- include/uapi/linux/netlink.h, rtnetlink.h, if_addr.h,
  if_link.h;
* :class:`NetlinkSocket`: a bound ``AF_NETLINK`` socket, opened in a named
  network namespace if asked (entered through ``netns.enter_netns``, the one
  place that does it), with

  - :meth:`NetlinkSocket.dump`: one dump request, datagrams walked until
    ``NLMSG_DONE``, repeated when the kernel marks it ``NLM_F_DUMP_INTR``
    (the table changed under it); the walker is pluggable, so the sock_diag
    reader keeps its strided-slice fast path (sockdiag.parse_datagram);
  - :meth:`NetlinkSocket.pipeline`: many requests sent in chunks, the
    acknowledgements of a chunk collected after it (instead of one round
    trip per request), with recovery when the receive buffer overflowed
    (``ENOBUFS``: acknowledgements lost; the caller's settle function reads
    the kernel's state back to tell what took effect);
  - :meth:`NetlinkSocket.request`: one request, one acknowledgement;

* :class:`NetlinkError` (an ``OSError``): the errno, the extended-ack text,
  and the operation that failed, as one readable sentence.

Protocol payloads stay with their users: the address messages in
addresses.py, the inet_diag requests and bytecode in sockdiag.py. Nothing
here imports the rest of the collection except, lazily and only when a
namespace is named, netns.py (which needs pyroute2): the sock_diag reader can
run with the standard library alone.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import sys

# ------------------------------------------------------------------ netlink.h
NETLINK_ROUTE = 0
NETLINK_SOCK_DIAG = 4
PROTOCOL_NAMES = {NETLINK_ROUTE: 'NETLINK_ROUTE', NETLINK_SOCK_DIAG: 'NETLINK_SOCK_DIAG'}

NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLMSG_OVERRUN = 4

NLM_F_REQUEST = 0x01
NLM_F_MULTI = 0x02
NLM_F_ACK = 0x04
NLM_F_DUMP_INTR = 0x10
# GET requests
NLM_F_ROOT = 0x100
NLM_F_MATCH = 0x200
NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH
# NEW requests
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
# in the header of an NLMSG_ERROR message
NLM_F_CAPPED = 0x100
NLM_F_ACK_TLVS = 0x200

NLMSGERR_ATTR_MSG = 1

SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11
SO_RCVBUFFORCE = 33

NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3fff

NLMSGHDR = struct.Struct('=IHHII')      # len, type, flags, seq, pid
NLMSG_HDRLEN = NLMSGHDR.size            # 16
NLATTR = struct.Struct('=HH')           # len, type
NLMSGERR = struct.Struct('=i')          # error, then the request's header
_U32 = struct.Struct('=I')

# --------------------------------------------------------------- rtnetlink.h
RTM_NEWLINK = 16
RTM_GETLINK = 18
RTM_NEWADDR = 20
RTM_DELADDR = 21
RTM_GETADDR = 22

# struct ifinfomsg: family, pad, type, index, flags, change (if_link.h, rtnetlink.h)
IFINFOMSG = struct.Struct('=BxHiII')
IFLA_IFNAME = 3
# struct ifaddrmsg: family, prefixlen, flags, scope, index (if_addr.h)
IFADDRMSG = struct.Struct('=BBBBI')
IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_LABEL = 3
IFA_FLAGS = 8
IFA_PROTO = 11
IFA_F_SECONDARY = 0x01
IFA_F_NODAD = 0x02
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_HOST = 254

# ------------------------------------------------------------------ defaults
RCVBUF = 4 << 20            # receive buffer asked for (SO_RCVBUFFORCE as root)
BUFSIZE = 1 << 20           # user buffer: one datagram is at most 32 KiB here
CHUNK = 256                 # pipelined requests per send(): their acks fit RCVBUF
DUMP_RETRIES = 3            # a dump marked NLM_F_DUMP_INTR is run again this often


def error_name(code):
    """'EINVAL (errno 22: Invalid argument)'."""
    try:
        text = os.strerror(code)
    except (ValueError, OverflowError):
        text = 'unknown error'
    return '%s (errno %d: %s)' % (errno.errorcode.get(code, 'E?'), code, text)


class NetlinkError(OSError):
    """A netlink operation failed: errno, the kernel's extended-ack text, what failed.

    ``errno`` (and ``code``, as pyroute2 names it) is the positive error
    number; ``text`` the extended acknowledgement message or None; ``op`` the
    operation ('socket', 'bind', 'send', 'receive', 'dump', ...) or None for a
    request the kernel refused.
    """

    def __init__(self, code, text=None, op=None):
        super(NetlinkError, self).__init__(code, error_name(code))
        self.code = code
        self.text = text
        self.op = op

    def __str__(self):
        out = error_name(self.errno)
        if self.op:
            out = '%s failed: %s' % (self.op, out)
        if self.text:
            out += ': %s' % self.text
        return out


class DumpInterrupted(NetlinkError):
    """A dump stayed interrupted (NLM_F_DUMP_INTR) however often it was repeated."""


# ------------------------------------------------------------------ encoding

def align(length):
    """Round up to the netlink alignment (4 bytes)."""
    return (length + 3) & ~3


def pack_message(msg_type, flags, seq, payload=b'', pid=0):
    """One message: nlmsghdr + payload (the payload carries its own padding)."""
    return NLMSGHDR.pack(NLMSG_HDRLEN + len(payload), msg_type, flags, seq, pid) + payload


def pack_attr(attr_type, data):
    """One attribute (nlattr + data), padded to 4 bytes."""
    length = NLATTR.size + len(data)
    return NLATTR.pack(length, attr_type) + data + b'\0' * (-length % 4)


def attr_u8(attr_type, value):
    return pack_attr(attr_type, bytes((value,)))


def attr_u32(attr_type, value):
    return pack_attr(attr_type, _U32.pack(value))


def attr_str(attr_type, text):
    """A NUL-terminated string attribute."""
    return pack_attr(attr_type, text.encode('utf-8') + b'\0')


# ------------------------------------------------------------------ decoding

def parse_attrs(buf, start, end):
    """{type: (data start, data end)} of the attributes in buf[start:end].

    The type is masked with NLA_TYPE_MASK (the nested/byte-order flags are
    dropped); of an attribute given twice the last one wins. A truncated
    attribute ends the walk.
    """
    attrs = {}
    unpack = NLATTR.unpack_from
    while start + 4 <= end:
        length, attr_type = unpack(buf, start)
        if length < 4 or start + length > end:
            break
        attrs[attr_type & NLA_TYPE_MASK] = (start + 4, start + length)
        start += (length + 3) & ~3
    return attrs


def attr_bytes(buf, attrs, attr_type):
    span = attrs.get(attr_type)
    return None if span is None else bytes(buf[span[0]:span[1]])


def attr_text(buf, attrs, attr_type):
    """A string attribute without its NUL, or None."""
    raw = attr_bytes(buf, attrs, attr_type)
    return None if raw is None else raw.split(b'\0', 1)[0].decode('utf-8', 'replace')


def attr_int(buf, attrs, attr_type):
    """An unsigned attribute of 1, 2, 4 or 8 bytes (native order), or None."""
    span = attrs.get(attr_type)
    if span is None:
        return None
    return int.from_bytes(bytes(buf[span[0]:span[1]]), sys.byteorder)


def iter_messages(buf, n, start=0):
    """(offset, length, type, flags, seq) of each message in buf[start:n].

    Raises NetlinkError(EBADMSG) for a length that is too short or runs past
    the datagram: the stream cannot be trusted after it.
    """
    unpack = NLMSGHDR.unpack_from
    off = start
    while off + NLMSG_HDRLEN <= n:
        length, msg_type, flags, seq, _pid = unpack(buf, off)
        if length < NLMSG_HDRLEN or off + length > n:
            raise NetlinkError(errno.EBADMSG, 'malformed netlink message (length %d at offset '
                                              '%d of %d)' % (length, off, n), 'receive')
        yield off, length, msg_type, flags, seq
        off += (length + 3) & ~3


def parse_error(buf, off, length, flags):
    """(errno >= 0, seq of the request, extended-ack text or None) of an NLMSG_ERROR.

    errno 0 is a plain acknowledgement. The request is echoed after the
    error code: its header only when the kernel capped it (NLM_F_CAPPED, as
    NETLINK_CAP_ACK asks), else the whole request; the extended-ack
    attributes (NLM_F_ACK_TLVS) follow it.
    """
    if length < NLMSG_HDRLEN + 4:
        return errno.EBADMSG, None, 'truncated error message'
    err = NLMSGERR.unpack_from(buf, off + NLMSG_HDRLEN)[0]
    seq = None
    text = None
    echo = off + NLMSG_HDRLEN + 4
    if length >= NLMSG_HDRLEN + 4 + NLMSG_HDRLEN:
        req_len, _t, _f, seq, _p = NLMSGHDR.unpack_from(buf, echo)
        if flags & NLM_F_ACK_TLVS:
            tlvs = echo + NLMSG_HDRLEN
            if not flags & NLM_F_CAPPED:
                tlvs = echo + align(req_len)
            attrs = parse_attrs(buf, tlvs, off + length)
            text = attr_text(buf, attrs, NLMSGERR_ATTR_MSG) or None
    return -err, seq, text


# ------------------------------------------------------------------ dumps

class Dump(object):
    """What walking a dump's datagrams found; walkers add to it.

    done: NLMSG_DONE (or an error) was seen. interrupted: some message was
    marked NLM_F_DUMP_INTR (or NLMSG_OVERRUN). error, text: a positive errno
    and the extended-ack text when the kernel refused the dump. count: the
    messages of the dump seen. items: the messages kept by collect(), as
    (datagram bytes, offset, length).
    """

    __slots__ = ('done', 'interrupted', 'error', 'text', 'count', 'items')

    def __init__(self):
        self.done = False
        self.interrupted = False
        self.error = 0
        self.text = None
        self.count = 0
        self.items = []


def end_of_dump(buf, off, length, msg_type, flags, state):
    """Handle a control message of a dump (DONE, ERROR, OVERRUN); True when it was one."""
    if msg_type == NLMSG_DONE:
        if flags & NLM_F_DUMP_INTR:
            state.interrupted = True
        if length >= NLMSG_HDRLEN + 4:
            err = NLMSGERR.unpack_from(buf, off + NLMSG_HDRLEN)[0]
            if err < 0:
                state.error = -err
                if flags & NLM_F_ACK_TLVS:      # the error code, then extended-ack TLVs
                    attrs = parse_attrs(buf, off + NLMSG_HDRLEN + 4, off + length)
                    state.text = attr_text(buf, attrs, NLMSGERR_ATTR_MSG) or None
        state.done = True
        return True
    if msg_type == NLMSG_ERROR:
        code, _seq, text = parse_error(buf, off, length, flags)
        if code:                    # 0 is an acknowledgement, not the end
            state.error, state.text = code, text
            state.done = True
        return True
    if msg_type == NLMSG_OVERRUN:
        state.interrupted = True
        return True
    return msg_type == NLMSG_NOOP


def collect(buf, n, state, seq):
    """Default dump walker: keep every message of the dump in state.items."""
    data = bytes(buf[:n])
    items = state.items
    for off, length, msg_type, flags, mseq in iter_messages(data, n):
        if mseq != seq:
            continue                # a stale answer to an earlier request
        if msg_type < 0x10:         # NLMSG_MIN_TYPE: control messages below it
            end_of_dump(data, off, length, msg_type, flags, state)
            if state.done:
                return state
            continue
        if flags & NLM_F_DUMP_INTR:
            state.interrupted = True
        items.append((data, off, length))
        state.count += 1
    return state


# ------------------------------------------------------------------ sockets

def open_socket(protocol, netns=None):
    """A raw AF_NETLINK socket of protocol, in netns (a name) or in our own namespace."""
    if netns is None:
        return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, protocol)
    # Imported here: netns.py needs pyroute2, which callers without a
    # namespace (the sock_diag reader in a container) may not have.
    from ansible_collections.scalelab.testbed.plugins.module_utils import netns as nsmod
    with nsmod.enter_netns(netns):
        return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, protocol)


class Closing(object):
    """A context manager that calls close() on the way out."""

    def close(self):
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class NetlinkSocket(Closing):
    """A bound netlink socket of protocol, in netns (a name; None: where we are).

    The namespace is entered only to open the socket, which keeps it. Every
    failure of the socket itself is a NetlinkError naming the operation
    (socket, bind, send, receive); entering a namespace that is missing or
    is not one raises netns.enter_netns's TestbedError (field netns).
    """

    def __init__(self, protocol, netns=None, rcvbuf=RCVBUF, bufsize=BUFSIZE, pid=0):
        self.protocol = protocol
        self.netns = netns
        self.chunk = CHUNK
        self.seq = 0
        what = PROTOCOL_NAMES.get(protocol, 'netlink protocol %d' % protocol)
        try:
            self.sock = open_socket(protocol, netns)
        except OSError as exc:
            if isinstance(exc, NetlinkError):
                raise
            raise NetlinkError(exc.errno or errno.EIO, None, 'opening a %s socket' % what)
        try:
            if rcvbuf:
                try:
                    self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
                except OSError:     # not root: the ordinary option, capped by rmem_max
                    self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            for option in (NETLINK_EXT_ACK, NETLINK_CAP_ACK):
                try:
                    self.sock.setsockopt(SOL_NETLINK, option, 1)
                except OSError:     # older kernels: plain acknowledgements
                    pass
            try:
                self.sock.bind((pid, 0))
            except OSError as exc:
                raise NetlinkError(exc.errno or errno.EIO, None,
                                   'binding the %s socket (port id %d)' % (what, pid))
        except BaseException:
            self.sock.close()
            raise
        self.buf = bytearray(bufsize)

    # --- plumbing
    def fileno(self):
        return self.sock.fileno()

    def close(self):
        self.sock.close()

    def next_seq(self):
        self.seq = (self.seq + 1) & 0xffffffff or 1
        return self.seq

    def send(self, data):
        try:
            self.sock.send(data)
        except OSError as exc:
            raise NetlinkError(exc.errno or errno.EIO, None, 'send')

    def recv(self):
        """Receive one datagram into self.buf; its length."""
        try:
            n = self.sock.recv_into(self.buf)
        except OSError as exc:
            raise NetlinkError(exc.errno or errno.EIO, None, 'receive')
        if n == 0:
            raise NetlinkError(errno.EPIPE, 'the kernel sent an empty datagram', 'receive')
        return n

    def drain(self):
        """Discard whatever is queued on the socket."""
        self.sock.setblocking(False)
        try:
            while True:
                self.sock.recv_into(self.buf)
        except OSError:
            pass
        finally:
            self.sock.setblocking(True)

    # --- dumps
    def dump(self, msg_type, payload=b'', walk=collect, new_state=Dump, flags=NLM_F_DUMP,
             retries=DUMP_RETRIES):
        """Run one dump; returns the state its walker filled.

        walk(buf, n, state, seq) is called on every datagram until it sets
        state.done. A dump the kernel marked interrupted (NLM_F_DUMP_INTR) is
        run again with a fresh state, up to retries times; a refused dump
        raises NetlinkError(errno, text, 'dump').
        """
        buf = self.buf
        recv_into = self.sock.recv_into
        for _attempt in range(retries + 1):
            seq = self.next_seq()
            self.send(pack_message(msg_type, NLM_F_REQUEST | flags, seq, payload))
            state = new_state()
            while not state.done:
                try:
                    n = recv_into(buf)
                except OSError as exc:
                    raise NetlinkError(exc.errno or errno.EIO, None, 'receive')
                if n == 0:
                    raise NetlinkError(errno.EPIPE, 'the kernel ended the dump early', 'receive')
                walk(buf, n, state, seq)
            if state.error:
                raise NetlinkError(state.error, state.text, 'dump')
            if not state.interrupted:
                return state
        raise DumpInterrupted(errno.EAGAIN, 'the dump was interrupted by concurrent changes %d '
                                            'times in a row (NLM_F_DUMP_INTR)' % (retries + 1),
                              'dump')

    # --- requests
    def pipeline(self, requests, settle=None):
        """Carry out requests, pipelined; returns (done, failure).

        requests: a list of (msg_type, flags, payload); NLM_F_REQUEST and
        NLM_F_ACK are added. They are sent self.chunk at a time in one
        send(), and the acknowledgements of a chunk are collected before the
        next one is sent. done lists the indices (into requests) the kernel
        carried out, in order; failure is None, or (index, NetlinkError) of
        the first one it refused: the rest of that chunk was still tried
        (the kernel goes on after an error), later chunks are not sent.

        Should the receive buffer overflow anyway (acknowledgements dropped:
        ENOBUFS), what is queued is discarded and settle(indices) is asked
        which requests of that chunk took effect (it reads the kernel's state
        back); they count as done and the others are sent again, in chunks a
        quarter the size. Without settle (or when even one request at a time
        overflows it), that NetlinkError is raised.
        """
        done = []
        failure = None
        chunk = self.chunk
        queue = list(range(len(requests)))
        pack = NLMSGHDR.pack
        add = NLM_F_REQUEST | NLM_F_ACK
        while queue and failure is None:
            part, queue = queue[:chunk], queue[chunk:]
            sent = []
            out = []
            for i in part:
                msg_type, flags, payload = requests[i]
                seq = self.next_seq()
                out.append(pack(NLMSG_HDRLEN + len(payload), msg_type, flags | add, seq, 0))
                out.append(payload)
                sent.append((seq, i))
            self.send(b''.join(out))
            try:
                acked = self._collect(set(seq for seq, _i in sent))
            except NetlinkError as exc:
                if exc.errno != errno.ENOBUFS or settle is None or chunk == 1:
                    raise
                self.drain()
                took = set(settle(part))
                done.extend(i for i in part if i in took)
                queue = [i for i in part if i not in took] + queue
                chunk = max(1, chunk // 4)
                continue
            for seq, i in sent:
                code, text = acked[seq]
                if not code:
                    done.append(i)
                elif failure is None:
                    failure = (i, NetlinkError(code, text))
        self.chunk = chunk
        return done, failure

    def _collect(self, pending):
        """{seq: (errno, text)} once every seq of pending is acknowledged."""
        acked = {}
        buf = self.buf
        while pending:
            n = self.recv()
            for off, length, msg_type, flags, seq in iter_messages(buf, n):
                if msg_type == NLMSG_ERROR and seq in pending:
                    code, req_seq, text = parse_error(buf, off, length, flags)
                    if req_seq == seq or req_seq is None:
                        acked[seq] = (code, text)
                        pending.discard(seq)
        return acked

    def request(self, msg_type, flags, payload):
        """One request and its acknowledgement; raises NetlinkError when refused."""
        _done, failure = self.pipeline([(msg_type, flags, payload)])
        if failure is not None:
            raise failure[1]
