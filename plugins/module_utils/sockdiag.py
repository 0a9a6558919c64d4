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

Netlink itself (socket, headers, acknowledgements, the dump loop with its
NLM_F_DUMP_INTR retry) is netlink.py's; what is here is the inet_diag
protocol: requests, bytecode, and the per-datagram walker the dump loop
calls. Ports and networks of the filters follow ipplan.py
(``port_range(value, minimum=0)``, ``network``). Standard library only, with
the collection's common.py, ipplan.py and netlink.py: entering a named
namespace goes through netns.enter_netns (pyroute2), imported only when a
namespace is named, so counting in the namespace one runs in needs no
pyroute2 (the molecule verifier copies these files into its containers).

Kernel references: include/uapi/linux/inet_diag.h (structures and op codes),
net/ipv4/inet_diag.c (inet_diag_bc_run, inet_diag_bc_audit) and iproute2's
misc/ss.c (ssfilter_bytecompile) for the jump conventions used here.
"""

from __future__ import annotations

import errno
import struct

from ansible_collections.scalelab.testbed.plugins.module_utils import ipplan
from ansible_collections.scalelab.testbed.plugins.module_utils import netlink as nl
from ansible_collections.scalelab.testbed.plugins.module_utils.common import TestbedError

# --- netlink (netlink.py) and sock_diag (linux/sock_diag.h) ---
NETLINK_SOCK_DIAG = nl.NETLINK_SOCK_DIAG
NLM_F_MULTI = nl.NLM_F_MULTI
NLM_F_DUMP_INTR = nl.NLM_F_DUMP_INTR
NLMSG_ERROR = nl.NLMSG_ERROR
NLMSG_DONE = nl.NLMSG_DONE
NLMSG_OVERRUN = nl.NLMSG_OVERRUN
NLMSG_HDRLEN = nl.NLMSG_HDRLEN
NLMSGHDR = nl.NLMSGHDR
NLATTR = nl.NLATTR
SOCK_DIAG_BY_FAMILY = 20
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

# struct inet_diag_req_v2 without the socket id: family, protocol, ext, pad, states
REQ_V2_HEAD = struct.Struct('=BBBxI')
# struct inet_diag_sockid: sport, dport (be16), src[16], dst[16], if, cookie[2]
SOCKID_LEN = 48
# struct inet_diag_req (v1): family, src_len, dst_len, ext, sockid, states, dbs
REQ_V1_HEAD = struct.Struct('=BBBB')
REQ_V1_TAIL = struct.Struct('=II')
# struct inet_diag_bc_op: code, yes, no
BC_OP = struct.Struct('=BBH')
# struct inet_diag_hostcond: family, prefix_len, (pad), int port; then addr
HOSTCOND = struct.Struct('=BBxxi')
# struct inet_diag_msg: family, state, timer, retrans, sockid, expires,
# rqueue, wqueue, uid, inode
MSG_FAMILY_OFF = NLMSG_HDRLEN + 0
MSG_STATE_OFF = NLMSG_HDRLEN + 1
MSG_SPORT_OFF = NLMSG_HDRLEN + 4
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

RECV_BUFFER = nl.BUFSIZE     # one datagram never exceeds 32 KiB; room to spare
SO_RCVBUF_SIZE = nl.RCVBUF
DUMP_RETRIES = nl.DUMP_RETRIES

_V4_MAPPED_PREFIX = b'\0' * 10 + b'\xff\xff'


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
            raise TestbedError(field, 'unknown TCP state %r' % (s,),
                               'use "all" or some of: %s'
                               % ', '.join(sorted(TCP_STATES, key=TCP_STATES.get)))
        if name not in names:
            names.append(name)
    if not names:
        raise TestbedError(field, 'no TCP state given', 'give at least one state, or "all"')
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
                raise TestbedError(field, 'unknown address family %r' % (f,),
                                   'use inet/ipv4, inet6/ipv6 or both')
            key_list = [key]
        for key in key_list:
            if key not in out:
                out.append(key)
    if not out:
        raise TestbedError(field, 'no address family given', 'use inet, inet6 or both')
    return tuple(out)


def parse_port(value, field):
    """One port spec -> (lo, hi): 80, '80', '1000-2000', (lo, hi); 0 to 65535.

    The rule is ipplan.port_range(value, minimum=0); for a range written
    backwards the fix names the range the right way round.
    """
    try:
        return ipplan.port_range(value, minimum=0)
    except ValueError as exc:
        problem = str(exc)
    fix = 'write a port as 443 or a range as "8000-8999", from 0 to 65535'
    if isinstance(value, (str, list, tuple)) and not isinstance(value, bool):
        swapped = _swapped(value)
        if swapped is not None:
            fix = 'write the range as "%d-%d"' % swapped
    raise TestbedError(field, problem, fix)


def _swapped(value):
    """The range value names backwards, if it is one (by ipplan's rule), else None."""
    try:
        if isinstance(value, str):
            lo, sep, hi = value.strip().partition('-')
            if not sep:
                return None
            value = [hi, lo]
        else:
            value = list(reversed(value))
        lo, hi = ipplan.port_range(value, minimum=0)
    except (TypeError, ValueError):
        return None
    return (lo, hi) if lo < hi else None


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
        raise TestbedError(field, 'an empty list of ports matches nothing',
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
        try:
            net = ipplan.network(v)
        except ValueError as exc:
            raise TestbedError(field, str(exc), 'write a network as 10.0.0.0/8 or fd00::/64 '
                                                '(a plain address is one host)')
        if net not in nets:
            nets.append(net)
    if not nets:
        raise TestbedError(field, 'an empty list of networks matches nothing',
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
        raise TestbedError('filter', 'the port/network filter needs %d bytes of inet_diag '
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


def request_payload(family, states_mask, bytecode=b''):
    """(message type, payload) of one dump request (nlmsghdr not included).

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
    return mtype, payload + _bytecode_attr(bytecode)


def build_request(family, states_mask, bytecode=b'', seq=1):
    """The whole dump request message (as NetlinkSocket.dump sends it)."""
    mtype, payload = request_payload(family, states_mask, bytecode)
    return nl.pack_message(mtype, nl.NLM_F_REQUEST | nl.NLM_F_DUMP, seq, payload)


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

class DumpResult(nl.Dump):
    """What walking one dump's datagrams found: netlink.Dump plus the tally.

    tally[state byte] counts the sockets by TCP state.
    """

    __slots__ = ('tally',)

    def __init__(self):
        super(DumpResult, self).__init__()
        self.tally = [0] * 256


def parse_datagram(buf, n, result, seq=None, accept=None):
    """Walk one datagram of n bytes in buf, adding to result (the dump walker).

    Fast path: when every message in the datagram starts with the same
    length, type, flags and seq (checked with strided slices, so every
    message boundary is verified) and is a sock_diag message, the state
    bytes are taken with one strided slice. Otherwise each header is
    read with struct.unpack_from, and control messages (NLMSG_DONE,
    NLMSG_ERROR, ...) go to netlink.end_of_dump. Returns result.
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
                    result.count += count
                    return result
    unpack = NLMSGHDR.unpack_from
    off = 0
    while off + NLMSG_HDRLEN <= n:
        length, mtype, flags, mseq, _pid = unpack(buf, off)
        if length < NLMSG_HDRLEN or off + length > n:
            raise TestbedError('dump', 'malformed netlink message (length %d at offset %d '
                               'of %d)' % (length, off, n), 'report this as a bug')
        if seq is not None and mseq != seq:
            off += (length + 3) & ~3
            continue            # a stale answer to an earlier request
        if mtype in DIAG_MSG_TYPES:
            if flags & NLM_F_DUMP_INTR:
                result.interrupted = True
            if accept is None or accept(buf, off):
                tally[buf[off + MSG_STATE_OFF]] += 1
            result.count += 1
        elif mtype < 0x10 and nl.end_of_dump(buf, off, length, mtype, flags, result) \
                and result.done:
            return result
        off += (length + 3) & ~3
    return result


def dump_counts(sock, family, mask, bytecode=b'', accept=None):
    """Run one dump on a netlink.NetlinkSocket(NETLINK_SOCK_DIAG) -> DumpResult.

    family 'inet', 'inet6' or 'any' (both, one walk). accept is a Python
    predicate for when the bytecode cannot be used. NetlinkSocket.dump
    repeats a dump marked NLM_F_DUMP_INTR and raises NetlinkError (op
    'dump') when the kernel refuses it.
    """
    mtype, payload = request_payload(family, mask, bytecode)
    if accept is None:
        walk = parse_datagram
    else:
        def walk(buf, n, result, seq):
            return parse_datagram(buf, n, result, seq, accept)
    return sock.dump(mtype, payload, walk, DumpResult)


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


class _Refused(Exception):
    """The kernel refused the combined (TCPDIAG_GETSOCK) dump."""


def _run_dump(sock, fam, bytecode, mask, accept, info):
    try:
        result = dump_counts(sock, fam, mask, bytecode)
        info['requests'].append('%s bytecode=%dB' % (fam, len(bytecode)))
        return result.tally
    except nl.DumpInterrupted:
        raise
    except nl.NetlinkError as exc:
        if exc.op != 'dump':
            raise
        if fam == 'any':
            raise _Refused()
        if not (bytecode and exc.errno == errno.EINVAL and accept is not None):
            raise TestbedError('dump', 'the kernel refused the %s TCP dump: %s'
                               % (fam, nl.error_name(exc.errno)),
                               'check that the tcp_diag and inet_diag kernel modules load')
    # the kernel refused the filter program: dump unfiltered, filter here
    result = dump_counts(sock, fam, mask, b'', accept)
    info['requests'].append('%s python-filter' % fam)
    info['kernel_filtered'] = False
    return result.tally


def _where(netns):
    return ' in network namespace %r' % netns if netns is not None else ''


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
        try:
            with nl.NetlinkSocket(NETLINK_SOCK_DIAG, netns=netns, rcvbuf=SO_RCVBUF_SIZE,
                                  bufsize=RECV_BUFFER) as sock:
                while plan:
                    fam, bytecode = plan.pop(0)
                    try:
                        tally = _run_dump(sock, fam, bytecode, mask, accept, info)
                    except _Refused:
                        # no combined (TCPDIAG_GETSOCK) dump here: one dump per family
                        plan = plan_dumps(fams, lnets, rnets, lports, rports,
                                          combined=False) + plan
                        continue
                    for st in range(256):
                        if tally[st]:
                            totals[st] += tally[st]
        except nl.DumpInterrupted as exc:
            raise TestbedError('dump', 'counting TCP sockets%s: %s' % (_where(netns), exc.text),
                               'count again when the socket table is calmer')
        except nl.NetlinkError as exc:
            raise TestbedError('dump', 'counting TCP sockets%s failed: %s' % (_where(netns), exc),
                               'run the task as root on Linux with sock_diag support '
                               '(the inet_diag and tcp_diag kernel modules)')

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
    Raises TestbedError (field, message, fix) on bad input or failure: a
    namespace that is missing or is none (field netns), a socket, bind or
    receive error, or a refused dump (field dump), each naming the errno.
    """
    return count_tcp_states_detail(netns, states, families, local_networks, remote_networks,
                                   local_ports, remote_ports)['counts']
