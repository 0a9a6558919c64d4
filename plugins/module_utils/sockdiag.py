# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one lean reader of NETLINK_SOCK_DIAG (inet_diag) TCP dumps.

Counting a million sockets in about a second rules out building a Python
object per socket (pyroute2's DiagSocket needs ~116 us per socket). This
reader sends one ``inet_diag_req_v2`` per address family with

* the state bitmask (``idiag_states``) so the kernel skips other states,
* no extensions (``idiag_ext = 0``) so the messages stay small,
* an ``INET_DIAG_REQ_BYTECODE`` filter program for ports and networks, so
  the kernel drops non-matching sockets before they are copied to us,

and then walks only the netlink headers and the one state byte of each
message with ``struct.unpack_from`` over a large receive buffer. When every
message of a datagram has the same header (the common case: a million
established sockets), the state bytes are read with one strided slice.

Standard library only (socket, struct, ipaddress). The one exception is
``netns``: entering a named namespace goes through the collection's
netns.enter_netns (pyroute2), imported lazily, so this file can be imported
and used without pyroute2 (benchmarks, the engine tests) when netns is None.

Kernel references: include/uapi/linux/inet_diag.h (structures and op codes),
net/ipv4/inet_diag.c (inet_diag_bc_run, inet_diag_bc_audit) and iproute2's
misc/ss.c (ssfilter_bytecompile) for the jump conventions used here.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct

# --- netlink / sock_diag constants (linux/netlink.h, linux/sock_diag.h) ---
NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_DUMP_INTR = 0x10
NLM_F_ROOT = 0x100
NLM_F_MATCH = 0x200
NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH
NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLMSG_OVERRUN = 4
NLMSG_HDRLEN = 16
TCPDIAG_GETSOCK = 18            # linux/inet_diag.h: the pre-sock_diag TCP request
DIAG_MSG_TYPES = (SOCK_DIAG_BY_FAMILY, TCPDIAG_GETSOCK)

# --- inet_diag (linux/inet_diag.h) ---
INET_DIAG_REQ_BYTECODE = 1
INET_DIAG_BC_NOP = 0
INET_DIAG_BC_JMP = 1
INET_DIAG_BC_S_GE = 2
INET_DIAG_BC_S_LE = 3
INET_DIAG_BC_D_GE = 4
INET_DIAG_BC_D_LE = 5
INET_DIAG_BC_AUTO = 6
INET_DIAG_BC_S_COND = 7
INET_DIAG_BC_D_COND = 8

AF_UNSPEC = 0
AF_INET = 2
AF_INET6 = 10
IPPROTO_TCP = 6

# struct nlmsghdr: len, type, flags, seq, pid
NLMSGHDR = struct.Struct('=IHHII')
# struct inet_diag_req_v2 without the socket id: family, protocol, ext, pad, states
REQ_V2_HEAD = struct.Struct('=BBBxI')
# struct inet_diag_sockid: sport, dport (be16), src[16], dst[16], if, cookie[2]
SOCKID_LEN = 48
REQ_V2_LEN = REQ_V2_HEAD.size + SOCKID_LEN          # 56
# struct inet_diag_req (v1): family, src_len, dst_len, ext, sockid, states, dbs
REQ_V1_HEAD = struct.Struct('=BBBB')
REQ_V1_TAIL = struct.Struct('=II')
REQ_V1_LEN = REQ_V1_HEAD.size + SOCKID_LEN + REQ_V1_TAIL.size   # 60
# struct nlattr: len, type
NLATTR = struct.Struct('=HH')
# struct inet_diag_bc_op: code, yes, no
BC_OP = struct.Struct('=BBH')
# struct inet_diag_hostcond: family, prefix_len, (pad), int port; then addr
HOSTCOND = struct.Struct('=BBxxi')
# struct inet_diag_msg: family, state, timer, retrans, sockid, expires,
# rqueue, wqueue, uid, inode
INET_DIAG_MSG_LEN = 4 + SOCKID_LEN + 20              # 72
MSG_FAMILY_OFF = NLMSG_HDRLEN + 0
MSG_STATE_OFF = NLMSG_HDRLEN + 1
MSG_SPORT_OFF = NLMSG_HDRLEN + 4
MSG_DPORT_OFF = NLMSG_HDRLEN + 6
MSG_SRC_OFF = NLMSG_HDRLEN + 8
MSG_DST_OFF = NLMSG_HDRLEN + 24

# Longest bytecode an attribute can carry (nla_len is 16 bits; op offsets too).
BYTECODE_MAX = 0xffff - NLATTR.size - 4

# TCP states as the kernel numbers them (include/net/tcp_states.h).
TCP_STATES = {
    'established': 1,
    'syn_sent': 2,
    'syn_recv': 3,
    'fin_wait1': 4,
    'fin_wait2': 5,
    'time_wait': 6,
    'close': 7,
    'close_wait': 8,
    'last_ack': 9,
    'listen': 10,
    'closing': 11,
    'new_syn_recv': 12,
}
STATE_NAMES = dict((v, k) for k, v in TCP_STATES.items())
ALL_STATES_MASK = sum(1 << v for v in TCP_STATES.values())

FAMILIES = {'inet': AF_INET, 'inet6': AF_INET6}
_FAMILY_ALIASES = {'inet': 'inet', 'ipv4': 'inet', '4': 'inet', AF_INET: 'inet',
                   'inet6': 'inet6', 'ipv6': 'inet6', '6': 'inet6', AF_INET6: 'inet6'}

RECV_BUFFER = 1 << 20        # one datagram never exceeds 32 KiB; room to spare
SO_RCVBUF_SIZE = 4 << 20
DUMP_RETRIES = 3

_V4_MAPPED_PREFIX = b'\0' * 10 + b'\xff\xff'


class SockDiagError(Exception):
    """A validation or dump error that names the field and the fix.

    Same shape as common.TestbedError (field, message, fix), kept here so this
    file stays a lone standard-library file: the molecule verifier runs its
    source as is inside the containers, where the collection is not installed.
    """

    def __init__(self, field, message, fix=None):
        self.field = field
        self.message = message
        self.fix = fix
        text = '%s: %s' % (field, message)
        if fix:
            text += ' (fix: %s)' % fix
        super(SockDiagError, self).__init__(text)


# ---------------------------------------------------------------------------
# Input validation (pure)
# ---------------------------------------------------------------------------

def parse_states(states, field='states'):
    """Names -> sorted list of unique state names. None or 'all' -> all."""
    if states is None:
        return sorted(TCP_STATES, key=TCP_STATES.get)
    if isinstance(states, str):
        states = [states]
    names = []
    for s in states:
        name = str(s).strip().lower().replace('-', '_')
        if name == 'all':
            return sorted(TCP_STATES, key=TCP_STATES.get)
        if name not in TCP_STATES:
            raise SockDiagError(field, 'unknown TCP state %r' % (s,),
                                'use "all" or some of: %s'
                                % ', '.join(sorted(TCP_STATES, key=TCP_STATES.get)))
        if name not in names:
            names.append(name)
    if not names:
        raise SockDiagError(field, 'no TCP state given', 'give at least one state, or "all"')
    return sorted(names, key=TCP_STATES.get)


def parse_families(families, field='family'):
    """Iterable of 'inet'/'inet6' (or 'ipv4'/'ipv6', 'both') -> tuple."""
    if families is None or families == 'both':
        return ('inet', 'inet6')
    if isinstance(families, (str, int)):
        families = [families]
    out = []
    for f in families:
        if f == 'both':
            key_list = ['inet', 'inet6']
        else:
            key = _FAMILY_ALIASES.get(f.lower() if isinstance(f, str) else f)
            if key is None:
                raise SockDiagError(field, 'unknown address family %r' % (f,),
                                    'use inet/ipv4, inet6/ipv6 or both')
            key_list = [key]
        for key in key_list:
            if key not in out:
                out.append(key)
    if not out:
        raise SockDiagError(field, 'no address family given', 'use inet, inet6 or both')
    return tuple(out)


def parse_port(value, field):
    """One port spec -> (lo, hi). Accepts 80, '80', '1000-2000', (lo, hi)."""
    lo = hi = None
    if isinstance(value, bool):
        pass
    elif isinstance(value, int):
        lo = hi = value
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        lo, hi = value
        if isinstance(lo, bool) or isinstance(hi, bool) or not isinstance(lo, int) \
                or not isinstance(hi, int):
            lo = hi = None
    elif isinstance(value, str):
        text = value.strip()
        parts = text.split('-')
        if len(parts) == 1 and parts[0].isdigit():
            lo = hi = int(parts[0])
        elif len(parts) == 2 and parts[0].strip().isdigit() and parts[1].strip().isdigit():
            lo, hi = int(parts[0]), int(parts[1])
    if lo is None:
        raise SockDiagError(field, 'port %r is neither a port number nor a "lo-hi" range'
                            % (value,), 'write a port as 443 or a range as "8000-8999"')
    for p in (lo, hi):
        if not 0 <= p <= 65535:
            raise SockDiagError(field, 'port %d in %r is out of range' % (p, value),
                                'use ports between 0 and 65535')
    if lo > hi:
        raise SockDiagError(field, 'range %r starts above its end (%d > %d)' % (value, lo, hi),
                            'write the range as "%d-%d"' % (hi, lo))
    return (lo, hi)


def parse_ports(values, field):
    """List of port specs -> merged, sorted list of (lo, hi); None -> None.

    An empty list is refused (it would match nothing, which is never meant).
    A list covering every port returns None (no filter).
    """
    if values is None:
        return None
    if isinstance(values, (str, int)):
        values = [values]
    ranges = sorted(parse_port(v, field) for v in values)
    if not ranges:
        raise SockDiagError(field, 'an empty list of ports matches nothing',
                            'leave the option out, or give ports')
    merged = [list(ranges[0])]
    for lo, hi in ranges[1:]:
        if lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    if merged == [[0, 65535]]:
        return None
    return [tuple(r) for r in merged]


def parse_networks(values, field):
    """List of CIDR strings -> list of ipaddress networks; None -> None.

    A plain address means a single host (/32 or /128). Host bits set after
    the prefix are refused, with the network the user probably meant.
    """
    if values is None:
        return None
    if isinstance(values, str):
        values = [values]
    nets = []
    for v in values:
        if isinstance(v, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
            net = v
        else:
            text = str(v).strip()
            try:
                net = ipaddress.ip_network(text, strict=True)
            except ValueError as exc:
                try:
                    loose = ipaddress.ip_network(text, strict=False)
                except ValueError:
                    raise SockDiagError(field, '%r is not an IPv4/IPv6 address or CIDR (%s)'
                                        % (v, exc), 'write a network as 10.0.0.0/8 or fd00::/64')
                raise SockDiagError(field, '%r has host bits set after the /%d prefix'
                                    % (v, loose.prefixlen), 'did you mean %s?' % loose)
        if net not in nets:
            nets.append(net)
    if not nets:
        raise SockDiagError(field, 'an empty list of networks matches nothing',
                            'leave the option out, or give networks')
    return nets


# ---------------------------------------------------------------------------
# inet_diag bytecode (pure)
# ---------------------------------------------------------------------------
#
# The kernel runs the program in inet_diag_bc_run(): every op either
# succeeds (advance by op.yes) or fails (advance by op.no); the socket is
# reported when the program ends exactly at its end, and dropped when a jump
# lands past it (the convention: "reject" = end + 4). inet_diag_bc_audit()
# walks the program along the "yes" offsets and checks that every "no"
# target lies on that walk, at the end, or at end + 4; so, as in ss, "yes"
# always moves to the next op and skipping forward is done with a JMP op
# (which always takes its "no" offset).
#
# The filter is an AND of clauses, each clause an OR of terms:
#   [term1][JMP -> clause end][term2][JMP -> clause end]...[termN]
# A failing test in term i jumps to term i+1 (after term i's JMP), the last
# term's failures jump to reject.

def _port_tests(lo, hi, local):
    ge, le = (INET_DIAG_BC_S_GE, INET_DIAG_BC_S_LE) if local else \
        (INET_DIAG_BC_D_GE, INET_DIAG_BC_D_LE)
    tests = []
    if lo > 0:
        tests.append((ge, lo))
    if hi < 65535:
        tests.append((le, hi))
    return [('port', code, port) for code, port in tests]


def _net_test(net, local):
    code = INET_DIAG_BC_S_COND if local else INET_DIAG_BC_D_COND
    return [('host', code, net)]


def _test_bytes(test, no):
    """Encode one test whose failure offset is no (relative to its start)."""
    kind, code, arg = test
    if kind == 'port':
        # { code, yes=8, no }, { 0, 0, port } (the port rides in the 2nd op's "no")
        return BC_OP.pack(code, 8, no) + BC_OP.pack(INET_DIAG_BC_NOP, 0, arg)
    family = AF_INET if arg.version == 4 else AF_INET6
    addr = arg.network_address.packed
    size = BC_OP.size + HOSTCOND.size + len(addr)
    return BC_OP.pack(code, size, no) + HOSTCOND.pack(family, arg.prefixlen, -1) + addr


def _test_len(test):
    if test[0] == 'port':
        return 8
    return BC_OP.size + HOSTCOND.size + (4 if test[2].version == 4 else 16)


def assemble(clauses):
    """AND of clauses, each an OR of terms, each an AND of tests -> bytes.

    A test is ('port', code, port) or ('host', code, ip_network). An empty
    term is always true, so a clause holding one is dropped.
    """
    clauses = [c for c in clauses if all(c) and c]
    layout = []          # (offset, kind, payload) with symbolic targets resolved later
    pos = 0
    clause_ends = []
    for ci, clause in enumerate(clauses):
        for ti, term in enumerate(clause):
            last_term = ti == len(clause) - 1
            for test in term:
                layout.append([pos, 'test', test, ci, ti, last_term])
                pos += _test_len(test)
            if not last_term:
                layout.append([pos, 'jmp', None, ci, ti, False])
                pos += BC_OP.size
        clause_ends.append(pos)
    total = pos
    if total > BYTECODE_MAX:
        raise SockDiagError('filter', 'the port/network filter needs %d bytes of inet_diag '
                            'bytecode, more than the %d the kernel accepts' % (total, BYTECODE_MAX),
                            'merge ports into ranges and networks into wider prefixes')
    # where each term starts, to resolve "try the next term"
    term_starts = {}
    for off, kind, _test, ci, ti, _last in layout:
        if kind == 'test':
            term_starts.setdefault((ci, ti), off)
    out = []
    for off, kind, test, ci, ti, last_term in layout:
        if kind == 'jmp':
            out.append(BC_OP.pack(INET_DIAG_BC_JMP, BC_OP.size, clause_ends[ci] - off))
            continue
        if last_term:
            target = total + 4                     # reject
        else:
            target = term_starts[(ci, ti + 1)]     # next alternative
        out.append(_test_bytes(test, target - off))
    return b''.join(out)


def build_clauses(family, local_networks=None, remote_networks=None,
                  local_ports=None, remote_ports=None):
    """Filter clauses for one dump; family 'inet', 'inet6' or 'any' (both).

    Returns None when the filter cannot match anything in that dump (a
    network list with no network that applies): the dump can be skipped.
    IPv4 networks also apply to IPv6 sockets (IPv4-mapped addresses, which
    the kernel's hostcond matches); IPv6 networks never match IPv4 sockets.
    """
    clauses = []
    for nets, local in ((local_networks, True), (remote_networks, False)):
        if nets is None:
            continue
        usable = [n for n in nets if family != 'inet' or n.version == 4]
        if not usable:
            return None
        catch_all = set(n.version for n in usable if n.prefixlen == 0)
        if (family == 'inet' and 4 in catch_all) or (family == 'inet6' and 6 in catch_all) \
                or catch_all == set((4, 6)):
            continue        # 0.0.0.0/0 for IPv4 sockets, ::/0 for IPv6 sockets: everything
        clauses.append([_net_test(n, local) for n in usable])
    for ports, local in ((local_ports, True), (remote_ports, False)):
        if ports is None:
            continue
        terms = [_port_tests(lo, hi, local) for lo, hi in ports]
        if any(not t for t in terms):
            continue
        clauses.append(terms)
    return clauses


def build_bytecode(family, local_networks=None, remote_networks=None,
                   local_ports=None, remote_ports=None):
    """The INET_DIAG_REQ_BYTECODE payload for one dump; b'' means no filter,
    None means nothing in that dump can match."""
    clauses = build_clauses(family, local_networks, remote_networks, local_ports, remote_ports)
    if clauses is None:
        return None
    return assemble(clauses)


def _bytecode_attr(bytecode):
    if not bytecode:
        return b''
    attr_len = NLATTR.size + len(bytecode)
    return NLATTR.pack(attr_len, INET_DIAG_REQ_BYTECODE) + bytecode + b'\0' * (-attr_len % 4)


def build_request(family, states_mask, bytecode=b'', seq=1):
    """One dump request: nlmsghdr + request (+ bytecode attribute).

    family 'inet' or 'inet6': SOCK_DIAG_BY_FAMILY with inet_diag_req_v2.
    family 'any': the older TCPDIAG_GETSOCK request (struct inet_diag_req),
    which the kernel serves as one AF_UNSPEC dump, so both families come
    from a single walk of the socket hash tables instead of two.
    """
    if family == 'any':
        mtype = TCPDIAG_GETSOCK
        payload = REQ_V1_HEAD.pack(AF_UNSPEC, 0, 0, 0) + b'\0' * SOCKID_LEN + \
            REQ_V1_TAIL.pack(states_mask, 0)
    else:
        mtype = SOCK_DIAG_BY_FAMILY
        payload = REQ_V2_HEAD.pack(FAMILIES[family], IPPROTO_TCP, 0, states_mask) + \
            b'\0' * SOCKID_LEN
    payload += _bytecode_attr(bytecode)
    hdr = NLMSGHDR.pack(NLMSGHDR.size + len(payload), mtype, NLM_F_REQUEST | NLM_F_DUMP, seq, 0)
    return hdr + payload


def states_mask(names):
    mask = 0
    for n in names:
        mask |= 1 << TCP_STATES[n]
    return mask


# ---------------------------------------------------------------------------
# Python-side filter (used only when the kernel refuses the bytecode)
# ---------------------------------------------------------------------------

def _addr_in(buf, off, family, nets):
    for net in nets:
        if family == AF_INET:
            if net.version != 4:
                continue
            raw = bytes(buf[off:off + 4])
        elif net.version == 6:
            raw = bytes(buf[off:off + 16])
        else:
            if bytes(buf[off:off + 12]) != _V4_MAPPED_PREFIX:
                continue
            raw = bytes(buf[off + 12:off + 16])
        if int.from_bytes(raw, 'big') & int(net.netmask) == int(net.network_address):
            return True
    return False


def _port_in(port, ranges):
    for lo, hi in ranges:
        if lo <= port <= hi:
            return True
    return False


def make_python_filter(local_networks=None, remote_networks=None,
                       local_ports=None, remote_ports=None):
    """A predicate (buf, msg_offset) -> bool on the fixed inet_diag_msg fields,
    or None when there is nothing to filter."""
    if not (local_networks or remote_networks or local_ports or remote_ports):
        return None
    ports = struct.Struct('>HH')

    def accept(buf, off):
        family = buf[off + MSG_FAMILY_OFF]
        sport, dport = ports.unpack_from(buf, off + MSG_SPORT_OFF)
        if local_ports and not _port_in(sport, local_ports):
            return False
        if remote_ports and not _port_in(dport, remote_ports):
            return False
        if local_networks and not _addr_in(buf, off + MSG_SRC_OFF, family, local_networks):
            return False
        if remote_networks and not _addr_in(buf, off + MSG_DST_OFF, family, remote_networks):
            return False
        return True
    return accept


# ---------------------------------------------------------------------------
# Reading a dump
# ---------------------------------------------------------------------------

class DumpResult(object):
    """What walking one dump's datagrams found."""

    __slots__ = ('tally', 'done', 'interrupted', 'error', 'messages')

    def __init__(self):
        self.tally = [0] * 256      # state byte -> count
        self.done = False
        self.interrupted = False
        self.error = 0              # negative errno from NLMSG_ERROR / NLMSG_DONE
        self.messages = 0


def parse_datagram(buf, n, result, seq=None, accept=None):
    """Walk one datagram of n bytes in buf, adding to result.

    Fast path: when every message in the datagram starts with the same
    length, type, flags and seq (checked with strided slices, so every
    message boundary is verified) and is a sock_diag message, the state
    bytes are taken with one strided slice. Otherwise each header is
    read with struct.unpack_from. Returns result.
    """
    tally = result.tally
    if n >= NLMSG_HDRLEN and accept is None:
        length = NLMSGHDR.unpack_from(buf, 0)[0]
        if length >= NLMSG_HDRLEN + 2 and length % 4 == 0 and n % length == 0:
            count = n // length
            if count > 1:
                hdr = bytes(buf[0:NLMSG_HDRLEN])
                _len, mtype, flags, hseq, _pid = NLMSGHDR.unpack_from(hdr)
                uniform = mtype in DIAG_MSG_TYPES and not flags & NLM_F_DUMP_INTR and \
                    (seq is None or hseq == seq)
                i = 0
                while uniform and i < 12:
                    if buf[i:n:length] != hdr[i:i + 1] * count:
                        uniform = False
                    i += 1
                if uniform:
                    states = buf[MSG_STATE_OFF:n:length]
                    for st in set(states):
                        tally[st] += states.count(st)
                    result.messages += count
                    return result
    unpack = NLMSGHDR.unpack_from
    off = 0
    while off + NLMSG_HDRLEN <= n:
        length, mtype, flags, mseq, _pid = unpack(buf, off)
        if length < NLMSG_HDRLEN or off + length > n:
            raise SockDiagError('dump', 'malformed netlink message (length %d at offset %d '
                                'of %d)' % (length, off, n), 'report this as a bug')
        if seq is not None and mseq != seq:
            off += (length + 3) & ~3
            continue            # a stale answer to an earlier request
        if mtype in DIAG_MSG_TYPES:
            if flags & NLM_F_DUMP_INTR:
                result.interrupted = True
            if accept is None or accept(buf, off):
                tally[buf[off + MSG_STATE_OFF]] += 1
            result.messages += 1
        elif mtype == NLMSG_DONE:
            if flags & NLM_F_DUMP_INTR:
                result.interrupted = True
            if length >= NLMSG_HDRLEN + 4:
                err = struct.unpack_from('=i', buf, off + NLMSG_HDRLEN)[0]
                if err < 0:
                    result.error = err
            result.done = True
            return result
        elif mtype == NLMSG_ERROR:
            err = struct.unpack_from('=i', buf, off + NLMSG_HDRLEN)[0] \
                if length >= NLMSG_HDRLEN + 4 else -1
            if err != 0:            # 0 is an acknowledgement
                result.error = err
                result.done = True
                return result
        elif mtype == NLMSG_OVERRUN:
            result.interrupted = True
        off += (length + 3) & ~3
    return result


def _open_socket(netns):
    if netns is None:
        return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG)
    try:
        from ansible_collections.scalelab.testbed.plugins.module_utils import netns as nsmod
    except ImportError as exc:
        raise SockDiagError('netns', 'entering a namespace needs the collection importable as '
                            'ansible_collections.scalelab.testbed (%s)' % exc,
                            'put the directory holding ansible_collections/ on sys.path, or '
                            'run the caller inside the namespace (ip netns exec) with netns=None')
    if not nsmod.HAS_PYROUTE2:
        raise SockDiagError('netns', 'entering a namespace needs pyroute2 (%s)'
                            % nsmod.PYROUTE2_IMPORT_ERROR, 'install pyroute2')
    try:
        with nsmod.enter_netns(netns):
            return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG)
    except SockDiagError:
        raise
    except Exception as exc:        # TestbedError from require_netns, OSError from setns
        if getattr(exc, 'field', None) == 'netns':
            raise SockDiagError('netns', exc.message, exc.fix)
        raise SockDiagError('netns', 'cannot enter network namespace %r: %s' % (netns, exc),
                            'check that it exists (ip netns list) and that you are root')


class DumpRefused(Exception):
    """The kernel answered a dump request with an error (errno)."""

    def __init__(self, family, errno_):
        self.family = family
        self.errno = errno_
        super(DumpRefused, self).__init__('%s dump refused: errno %d' % (family, errno_))


def _dump_once(sock, buf, family, mask, bytecode, seq, accept):
    sock.sendto(build_request(family, mask, bytecode, seq), (0, 0))
    result = DumpResult()
    recv_into = sock.recv_into
    while not result.done:
        n = recv_into(buf)
        if n == 0:
            raise SockDiagError('dump', 'the kernel closed the sock_diag dump early',
                                'retry; report it if it persists')
        parse_datagram(buf, n, result, seq, accept)
    return result


def dump_counts(sock, family, mask, bytecode=b'', accept=None, buf=None, seq=1):
    """Run one dump on an open NETLINK_SOCK_DIAG socket -> DumpResult.

    family 'inet', 'inet6' or 'any' (both, one walk). accept is a Python
    predicate for when the bytecode cannot be used. A dump marked
    NLM_F_DUMP_INTR (the tables changed under it) is repeated; DumpRefused
    is raised when the kernel answers with an error.
    """
    if buf is None:
        buf = bytearray(RECV_BUFFER)
    for attempt in range(DUMP_RETRIES + 1):
        result = _dump_once(sock, buf, family, mask, bytecode, seq + attempt, accept)
        if result.error:
            raise DumpRefused(family, -result.error)
        if not result.interrupted:
            return result
    raise SockDiagError('dump', 'the %s TCP dump was interrupted by concurrent changes %d times '
                        'in a row (NLM_F_DUMP_INTR)' % (family, DUMP_RETRIES + 1),
                        'count again when the socket table is calmer')


def _strerror(errno_):
    try:
        return os.strerror(errno_)
    except ValueError:
        return 'error'


def plan_dumps(families, local_networks=None, remote_networks=None,
               local_ports=None, remote_ports=None, combined=True):
    """Which dumps to run: list of (family, bytecode). Pure.

    Both families are read in one combined dump ('any') when combined is
    true; a family whose filter cannot match anything is left out.
    """
    if combined and set(families) == set(('inet', 'inet6')):
        families = ('any',)
    plan = []
    for fam in families:
        bytecode = build_bytecode(fam, local_networks, remote_networks, local_ports, remote_ports)
        if bytecode is not None:
            plan.append((fam, bytecode))
    return plan


def _run_dump(sock, buf, fam, bytecode, mask, accept, seq, info):
    try:
        result = dump_counts(sock, fam, mask, bytecode, None, buf, seq)
        info['requests'].append('%s bytecode=%dB' % (fam, len(bytecode)))
        return result.tally
    except DumpRefused as exc:
        if fam == 'any':
            raise
        if not (bytecode and exc.errno == errno.EINVAL and accept is not None):
            raise SockDiagError('dump', 'the kernel refused the %s TCP dump: %s (errno %d)'
                                % (fam, _strerror(exc.errno), exc.errno),
                                'check that the tcp_diag and inet_diag kernel modules load')
    # the kernel refused the filter program: dump unfiltered, filter here
    result = dump_counts(sock, fam, mask, b'', accept, buf, seq + 500)
    info['requests'].append('%s python-filter' % fam)
    info['kernel_filtered'] = False
    return result.tally


def count_tcp_states_detail(netns=None, states=None, families=('inet', 'inet6'),
                            local_networks=None, remote_networks=None,
                            local_ports=None, remote_ports=None):
    """count_tcp_states() plus how it was done.

    Returns {'counts': {...}, 'kernel_filtered': bool, 'requests': [...]}.
    """
    names = parse_states(states)
    fams = parse_families(families, 'families')
    lnets = parse_networks(local_networks, 'local_networks')
    rnets = parse_networks(remote_networks, 'remote_networks')
    lports = parse_ports(local_ports, 'local_ports')
    rports = parse_ports(remote_ports, 'remote_ports')
    mask = states_mask(names)
    if 'new_syn_recv' in names or 'syn_recv' in names:
        mask |= states_mask(['syn_recv', 'new_syn_recv'])
    plan = plan_dumps(fams, lnets, rnets, lports, rports)
    accept = make_python_filter(lnets, rnets, lports, rports)
    info = {'kernel_filtered': True, 'requests': []}

    totals = [0] * 256
    if plan:
        sock = _open_socket(netns)
        try:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SO_RCVBUF_SIZE)
            except OSError:
                pass
            sock.bind((0, 0))
            buf = bytearray(RECV_BUFFER)
            seq = 1000
            while plan:
                fam, bytecode = plan.pop(0)
                seq += 1000
                try:
                    tally = _run_dump(sock, buf, fam, bytecode, mask, accept, seq, info)
                except DumpRefused:
                    # no combined (TCPDIAG_GETSOCK) dump here: one dump per family
                    plan = plan_dumps(fams, lnets, rnets, lports, rports, combined=False) + plan
                    continue
                for st in range(256):
                    if tally[st]:
                        totals[st] += tally[st]
        finally:
            sock.close()

    counts = dict((n, 0) for n in names)
    for st in range(256):
        if not totals[st]:
            continue
        name = STATE_NAMES.get(st)
        if name in counts:
            counts[name] += totals[st]
        elif name == 'syn_recv' and 'new_syn_recv' in counts:
            counts['new_syn_recv'] += totals[st]
    info['counts'] = counts
    return info


def count_tcp_states(netns=None, states=None, families=('inet', 'inet6'),
                     local_networks=None, remote_networks=None,
                     local_ports=None, remote_ports=None):
    """Count TCP sockets by state through NETLINK_SOCK_DIAG.

    states: None for all, or TCP state names (TCP_STATES). families: 'inet',
    'inet6'. networks: CIDR strings (IPv4 networks also match IPv4-mapped
    addresses of IPv6 sockets). ports: (lo, hi) inclusive tuples (or ints,
    or "lo-hi" strings). Filters of different kinds are ANDed, entries of
    one list ORed. Returns {state_name: count} with every requested state.
    netns: a named network namespace, entered only to open the socket.

    The kernel reports pending connection requests (internally
    NEW_SYN_RECV) with the state syn_recv; they are counted under
    'syn_recv', or under 'new_syn_recv' when only that one was asked for.
    Raises SockDiagError (field, message, fix) on bad input or failure.
    """
    return count_tcp_states_detail(netns, states, families, local_networks, remote_networks,
                                   local_ports, remote_ports)['counts']
