# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for the lean sock_diag reader (no root needed).

* input validation (states, families, ports, networks),
* the inet_diag bytecode: exact byte layouts assembled by hand from the
  kernel structures, and a transcription of the kernel's own
  inet_diag_bc_audit()/inet_diag_bc_run() that every generated program must
  pass and that must agree with the Python-side filter on random sockets,
* request layouts (inet_diag_req_v2, the combined TCPDIAG_GETSOCK request),
* parsing of synthetic dump datagrams: uniform (fast path) and mixed,
  multi-part, NLMSG_DONE with and without an error, NLMSG_ERROR,
  NLM_F_DUMP_INTR, foreign sequence numbers, malformed lengths,
* one real dump of this process's own loopback sockets (unprivileged).
"""

from __future__ import annotations

import errno
import ipaddress
import random
import socket
import struct

import pytest

from ansible_collections.scalelab.testbed.plugins.module_utils import sockdiag as sd
from ansible_collections.scalelab.testbed.plugins.module_utils.common import TestbedError as SpecError

OP = struct.Struct('=BBH')
HC = struct.Struct('=BBxxi')


# ---------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------

def test_parse_states_all_and_order():
    every = sd.parse_states(None)
    assert every == sorted(sd.TCP_STATES, key=sd.TCP_STATES.get)
    assert len(every) == 12
    assert sd.parse_states(['all']) == every
    assert sd.parse_states(['listen', 'established', 'listen', 'TIME-WAIT']) == \
        ['established', 'time_wait', 'listen']


@pytest.mark.parametrize('bad', [['establised'], ['bogus', 'listen'], []])
def test_parse_states_rejects(bad):
    with pytest.raises(SpecError) as exc:
        sd.parse_states(bad)
    assert exc.value.field == 'states'
    assert exc.value.fix


def test_parse_families():
    assert sd.parse_families(None) == ('inet', 'inet6')
    assert sd.parse_families('both') == ('inet', 'inet6')
    assert sd.parse_families(['ipv6']) == ('inet6',)
    assert sd.parse_families(('inet', 'inet', socket.AF_INET6)) == ('inet', 'inet6')
    with pytest.raises(SpecError) as exc:
        sd.parse_families(['ipx'], 'family')
    assert exc.value.field == 'family'


@pytest.mark.parametrize('value,expected', [
    (80, (80, 80)), ('443', (443, 443)), ('1000-2000', (1000, 2000)),
    (' 7 - 9 ', (7, 9)), ((0, 65535), (0, 65535)), ([5, 6], (5, 6)), (0, (0, 0)),
])
def test_parse_port_ok(value, expected):
    assert sd.parse_port(value, 'local_ports') == expected


@pytest.mark.parametrize('value,needle', [
    (70000, 'ports go from 0 to 65535'), ('65536', 'ports go from 0 to 65535'),
    (-1, 'ports go from 0 to 65535'), ((1, 70000), 'ports go from 0 to 65535'),
    ('2000-1000', 'write the range as "1000-2000"'), ((9, 3), 'write the range as "3-9"'),
    ('a-b', 'not a port'), ('1-2-3', 'not a port'), ('', 'not a port'),
    (True, 'not a port'), (1.5, 'not a port'), ((1, 'x'), 'not a port'), ('80;rm', 'not a port'),
])
def test_parse_port_rejects(value, needle):
    with pytest.raises(SpecError) as exc:
        sd.parse_port(value, 'remote_ports')
    assert exc.value.field == 'remote_ports'
    assert needle in str(exc.value)


def test_parse_ports_merges_and_drops_full_range():
    assert sd.parse_ports(None, 'x') is None
    assert sd.parse_ports([(6, 10), 3, '1-2', 4, (20, 30), 12], 'x') == \
        [(1, 4), (6, 10), (12, 12), (20, 30)]
    assert sd.parse_ports([(5, 100), (50, 60)], 'x') == [(5, 100)]
    assert sd.parse_ports(['0-40000', '40001-65535'], 'x') is None
    assert sd.parse_ports(8080, 'x') == [(8080, 8080)]
    with pytest.raises(SpecError):
        sd.parse_ports([], 'x')


def test_parse_networks():
    nets = sd.parse_networks(['10.0.0.0/8', '192.0.2.7', 'fd00::/64', '10.0.0.0/8'], 'n')
    assert [str(n) for n in nets] == ['10.0.0.0/8', '192.0.2.7/32', 'fd00::/64']
    assert sd.parse_networks(None, 'n') is None
    with pytest.raises(SpecError) as exc:
        sd.parse_networks(['10.1.2.3/8'], 'local_networks')
    assert exc.value.field == 'local_networks' and '10.0.0.0/8' in str(exc.value)
    for bad in (['10.0.0.0/33'], ['nope'], ['10.0.0.0/8; reboot'], []):
        with pytest.raises(SpecError):
            sd.parse_networks(bad, 'remote_networks')


# ---------------------------------------------------------------------------
# bytecode: hand-assembled layouts
# ---------------------------------------------------------------------------

def _nets(*cidrs):
    return [ipaddress.ip_network(c) for c in cidrs]


def test_bytecode_single_local_port():
    # sport >= 80 (yes -> next op, no -> reject at 16+4) and sport <= 80
    expected = OP.pack(sd.INET_DIAG_BC_S_GE, 8, 20) + OP.pack(0, 0, 80) + \
        OP.pack(sd.INET_DIAG_BC_S_LE, 8, 12) + OP.pack(0, 0, 80)
    assert sd.build_bytecode('inet', local_ports=[(80, 80)]) == expected


def test_bytecode_open_ended_ranges_need_one_op():
    assert sd.build_bytecode('inet', remote_ports=[(1024, 65535)]) == \
        OP.pack(sd.INET_DIAG_BC_D_GE, 8, 12) + OP.pack(0, 0, 1024)
    assert sd.build_bytecode('inet', remote_ports=[(0, 1023)]) == \
        OP.pack(sd.INET_DIAG_BC_D_LE, 8, 12) + OP.pack(0, 0, 1023)


def test_bytecode_two_ports_or():
    # [GE 80][LE 80][JMP -> end][GE 443][LE 443]; 36 bytes, reject = 40
    expected = b''.join([
        OP.pack(sd.INET_DIAG_BC_S_GE, 8, 20), OP.pack(0, 0, 80),      # fail -> 20 (2nd term)
        OP.pack(sd.INET_DIAG_BC_S_LE, 8, 12), OP.pack(0, 0, 80),      # at 8: fail -> 20
        OP.pack(sd.INET_DIAG_BC_JMP, 4, 20),                          # at 16: -> 36 (accept)
        OP.pack(sd.INET_DIAG_BC_S_GE, 8, 20), OP.pack(0, 0, 443),     # at 20: fail -> 40
        OP.pack(sd.INET_DIAG_BC_S_LE, 8, 12), OP.pack(0, 0, 443),     # at 28: fail -> 40
    ])
    assert sd.build_bytecode('inet', local_ports=[(80, 80), (443, 443)]) == expected


def test_bytecode_hostconds():
    v4 = OP.pack(sd.INET_DIAG_BC_S_COND, 16, 20) + HC.pack(socket.AF_INET, 8, -1) + \
        bytes([10, 0, 0, 0])
    assert sd.build_bytecode('inet', local_networks=_nets('10.0.0.0/8')) == v4
    v6 = OP.pack(sd.INET_DIAG_BC_D_COND, 28, 32) + HC.pack(socket.AF_INET6, 64, -1) + \
        ipaddress.ip_address('fd00::').packed
    assert sd.build_bytecode('inet6', remote_networks=_nets('fd00::/64')) == v6


def test_bytecode_and_of_network_and_port():
    # local 10.0.0.0/8 AND remote port 5000: hostcond (16) + GE/LE (16) = 32, reject = 36
    expected = OP.pack(sd.INET_DIAG_BC_S_COND, 16, 36) + HC.pack(socket.AF_INET, 8, -1) + \
        bytes([10, 0, 0, 0]) + \
        OP.pack(sd.INET_DIAG_BC_D_GE, 8, 20) + OP.pack(0, 0, 5000) + \
        OP.pack(sd.INET_DIAG_BC_D_LE, 8, 12) + OP.pack(0, 0, 5000)
    assert sd.build_bytecode('any', local_networks=_nets('10.0.0.0/8'),
                             remote_ports=[(5000, 5000)]) == expected


def test_bytecode_family_planning():
    v6only = _nets('fd00::/64')
    assert sd.build_bytecode('inet', local_networks=v6only) is None       # cannot match
    assert sd.build_bytecode('inet6', local_networks=v6only)
    # IPv4 networks stay in the IPv6 dump (IPv4-mapped addresses)
    assert sd.build_bytecode('inet6', local_networks=_nets('10.0.0.0/8'))
    # catch-all prefixes need no program
    assert sd.build_bytecode('inet', local_networks=_nets('0.0.0.0/0', 'fd00::/8')) == b''
    assert sd.build_bytecode('inet6', remote_networks=_nets('::/0')) == b''
    assert sd.build_bytecode('any', remote_networks=_nets('::/0')) != b''
    assert sd.build_bytecode('any', remote_networks=_nets('::/0', '0.0.0.0/0')) == b''
    assert sd.build_bytecode('inet') == b''
    assert sd.plan_dumps(('inet', 'inet6')) == [('any', b'')]
    assert sd.plan_dumps(('inet', 'inet6'), combined=False) == [('inet', b''), ('inet6', b'')]
    assert sd.plan_dumps(('inet',), local_networks=v6only) == []
    plan = sd.plan_dumps(('inet', 'inet6'), local_networks=v6only, combined=False)
    assert [fam for fam, _bc in plan] == ['inet6']


def test_bytecode_too_large_is_refused():
    ports = [(p, p) for p in range(1, 8000, 2)]
    with pytest.raises(SpecError) as exc:
        sd.build_bytecode('inet', local_ports=ports)
    assert exc.value.field == 'filter'


# ---------------------------------------------------------------------------
# bytecode: the kernel's audit and interpreter, transcribed from
# net/ipv4/inet_diag.c (inet_diag_bc_audit, valid_cc, inet_diag_bc_run)
# ---------------------------------------------------------------------------

def kernel_valid_cc(bc, length, cc):
    pos = 0
    while length >= 0:
        if cc > length:
            return False
        if cc == length:
            return True
        _code, yes, _no = OP.unpack_from(bc, pos)
        if yes < 4 or yes & 3:
            return False
        length -= yes
        pos += yes
    return False


def kernel_audit(bc):
    total = length = len(bc)
    if length < 4:
        return False
    pos = 0
    while length > 0:
        min_len = 4
        code, yes, no = OP.unpack_from(bc, pos)
        if code in (sd.INET_DIAG_BC_S_COND, sd.INET_DIAG_BC_D_COND):
            min_len += HC.size
            if length < min_len:
                return False
            family, prefix, _port = HC.unpack_from(bc, pos + 4)
            addr_len = {0: 0, socket.AF_INET: 4, socket.AF_INET6: 16}.get(family)
            if addr_len is None:
                return False
            min_len += addr_len
            if length < min_len or prefix > 8 * addr_len:
                return False
        elif code in (sd.INET_DIAG_BC_S_GE, sd.INET_DIAG_BC_S_LE,
                      sd.INET_DIAG_BC_D_GE, sd.INET_DIAG_BC_D_LE):
            min_len += 4
            if length < min_len:
                return False
        elif code not in (sd.INET_DIAG_BC_AUTO, sd.INET_DIAG_BC_JMP, sd.INET_DIAG_BC_NOP):
            return False
        if code != sd.INET_DIAG_BC_NOP:
            if no < min_len or no > length + 4 or no & 3:
                return False
            if no < length and not kernel_valid_cc(bc, total, length - no):
                return False
        if yes < min_len or yes > length + 4 or yes & 3:
            return False
        pos += yes
        length -= yes
    return length == 0


def _bitstring_match(a, b, bits):
    words, bits = bits >> 5, bits & 0x1f
    if words and a[:4 * words] != b[:4 * words]:
        return False
    if bits:
        w1 = int.from_bytes(a[4 * words:4 * words + 4], 'big')
        w2 = int.from_bytes(b[4 * words:4 * words + 4], 'big')
        mask = (0xffffffff << (32 - bits)) & 0xffffffff
        if (w1 ^ w2) & mask:
            return False
    return True


def kernel_run(bc, entry):
    """entry: dict family, saddr, daddr (16 bytes, v4 in the first 4), sport, dport."""
    length = len(bc)
    pos = 0
    while length > 0:
        yes = True
        code, op_yes, op_no = OP.unpack_from(bc, pos)
        if code == sd.INET_DIAG_BC_JMP:
            yes = False
        elif code in (sd.INET_DIAG_BC_S_GE, sd.INET_DIAG_BC_S_LE,
                      sd.INET_DIAG_BC_D_GE, sd.INET_DIAG_BC_D_LE):
            port = OP.unpack_from(bc, pos + 4)[2]
            value = entry['sport'] if code in (sd.INET_DIAG_BC_S_GE, sd.INET_DIAG_BC_S_LE) \
                else entry['dport']
            yes = value >= port if code in (sd.INET_DIAG_BC_S_GE, sd.INET_DIAG_BC_D_GE) \
                else value <= port
        elif code in (sd.INET_DIAG_BC_S_COND, sd.INET_DIAG_BC_D_COND):
            family, prefix, cport = HC.unpack_from(bc, pos + 4)
            caddr = bc[pos + 12:pos + 12 + (4 if family == socket.AF_INET else 16)]
            addr = entry['saddr'] if code == sd.INET_DIAG_BC_S_COND else entry['daddr']
            if cport != -1 and cport != (entry['sport'] if code == sd.INET_DIAG_BC_S_COND
                                         else entry['dport']):
                yes = False
            elif family != 0 and family != entry['family']:
                yes = (entry['family'] == socket.AF_INET6 and family == socket.AF_INET and
                       addr[:12] == b'\0' * 10 + b'\xff\xff' and
                       _bitstring_match(addr[12:], caddr, prefix))
            elif prefix == 0:
                yes = True
            else:
                yes = _bitstring_match(addr, caddr, prefix)
        step = op_yes if yes else op_no
        length -= step
        pos += step
    return length == 0


def _msg(entry, state=1, mtype=sd.SOCK_DIAG_BY_FAMILY, seq=7, flags=sd.NLM_F_MULTI, extra=52):
    """A synthetic inet_diag_msg netlink message for entry."""
    body = struct.pack('=BBBB', entry['family'], state, 0, 0) + \
        struct.pack('>HH', entry['sport'], entry['dport']) + entry['saddr'] + entry['daddr'] + \
        b'\0' * 12 + b'\0' * 20 + b'\x05' * extra
    return sd.NLMSGHDR.pack(16 + len(body), mtype, flags, seq, 4242) + body


def _random_entry(rng):
    family = rng.choice((socket.AF_INET, socket.AF_INET6, socket.AF_INET6))
    pool4 = ['10.0.0.1', '10.0.0.200', '10.1.2.3', '192.168.1.1', '127.0.0.1', '172.16.5.4']
    pool6 = ['fd00::1', 'fd00::abcd', 'fd01::1', '::1', '2001:db8::5']

    def addr():
        if family == socket.AF_INET:
            return ipaddress.ip_address(rng.choice(pool4)).packed + b'\0' * 12
        if rng.random() < 0.4:      # IPv4-mapped
            return b'\0' * 10 + b'\xff\xff' + ipaddress.ip_address(rng.choice(pool4)).packed
        return ipaddress.ip_address(rng.choice(pool6)).packed
    return {'family': family, 'saddr': addr(), 'daddr': addr(),
            'sport': rng.choice((0, 22, 80, 443, 1024, 5000, 5001, 5099, 5100, 40000, 65535)),
            'dport': rng.choice((0, 22, 80, 443, 1024, 5000, 5001, 5099, 5100, 40000, 65535))}


def _random_filter(rng):
    nets4 = ['10.0.0.0/8', '10.0.0.0/24', '10.0.0.1/32', '192.168.0.0/16', '0.0.0.0/0',
             '127.0.0.0/8', '10.0.0.128/25']
    nets6 = ['fd00::/16', 'fd00::1/128', '::1/128', '::/0', '2001:db8::/32', '::ffff:0:0/96']
    ports = [(80, 80), (443, 443), (5000, 5099), (0, 1023), (1024, 65535), (22, 22),
             (40000, 40000)]

    def some(pool):
        if rng.random() < 0.4:
            return None
        return rng.sample(pool, rng.randint(1, 3))
    lnets = some(nets4 + nets6)
    rnets = some(nets4 + nets6)
    return (sd.parse_networks(lnets, 'l') if lnets else None,
            sd.parse_networks(rnets, 'r') if rnets else None,
            sd.parse_ports(some(ports), 'lp') if rng.random() < 0.6 else None,
            sd.parse_ports(some(ports), 'rp') if rng.random() < 0.6 else None)


def test_bytecode_agrees_with_kernel_semantics_and_python_filter():
    rng = random.Random(20240611)
    checked = 0
    for _i in range(400):
        filt = _random_filter(rng)
        accept = sd.make_python_filter(*filt)
        for fam in ('inet', 'inet6', 'any'):
            bc = sd.build_bytecode(fam, *filt)
            if bc:
                assert kernel_audit(bc), (fam, filt, bc.hex())
            for _i in range(25):
                entry = _random_entry(rng)
                if fam == 'inet' and entry['family'] != socket.AF_INET or \
                        fam == 'inet6' and entry['family'] != socket.AF_INET6:
                    continue
                msg = _msg(entry)
                expected = accept is None or accept(msg, 0)
                if bc is None:
                    got = False
                elif bc == b'':
                    got = True
                else:
                    got = kernel_run(bc, entry)
                assert got == expected, (fam, filt, entry)
                checked += 1
    assert checked > 10000


def test_python_filter_ipv4_mapped():
    accept = sd.make_python_filter(local_networks=_nets('10.0.0.0/8'))
    mapped = {'family': socket.AF_INET6, 'sport': 1, 'dport': 2,
              'saddr': b'\0' * 10 + b'\xff\xff' + bytes([10, 9, 8, 7]), 'daddr': b'\0' * 16}
    native = dict(mapped, saddr=ipaddress.ip_address('fd00::1').packed)
    v4 = dict(mapped, family=socket.AF_INET, saddr=bytes([10, 1, 1, 1]) + b'\0' * 12)
    other = dict(v4, saddr=bytes([11, 1, 1, 1]) + b'\0' * 12)
    assert accept(_msg(mapped), 0)
    assert not accept(_msg(native), 0)
    assert accept(_msg(v4), 0)
    assert not accept(_msg(other), 0)


# ---------------------------------------------------------------------------
# requests
# ---------------------------------------------------------------------------

def test_request_v2_layout():
    bc = sd.build_bytecode('inet', local_ports=[(80, 80)])
    req = sd.build_request('inet', 1 << 1 | 1 << 10, bc, seq=99)
    length, mtype, flags, seq, pid = sd.NLMSGHDR.unpack_from(req, 0)
    assert (length, mtype, flags, seq, pid) == (len(req), 20, 0x301, 99, 0)
    assert struct.unpack_from('=BBBBI', req, 16) == (socket.AF_INET, 6, 0, 0, 0x402)
    assert req[24:72] == b'\0' * 48                     # inet_diag_sockid: no exact match
    assert struct.unpack_from('=HH', req, 72) == (4 + len(bc), sd.INET_DIAG_REQ_BYTECODE)
    assert req[76:] == bc
    assert len(req) == 16 + 56 + 4 + 16


def test_request_combined_layout():
    req = sd.build_request('any', 1 << 1, b'')
    length, mtype, flags, _seq, _pid = sd.NLMSGHDR.unpack_from(req, 0)
    assert (length, mtype, flags) == (16 + 60, sd.TCPDIAG_GETSOCK, 0x301)
    assert struct.unpack_from('=BBBB', req, 16) == (0, 0, 0, 0)
    assert struct.unpack_from('=II', req, 16 + 52) == (2, 0)


def test_states_mask():
    assert sd.states_mask(['established']) == 2
    assert sd.states_mask(sd.parse_states(None)) == sd.ALL_STATES_MASK == 0x1ffe


# ---------------------------------------------------------------------------
# parsing synthetic datagrams
# ---------------------------------------------------------------------------

V4 = {'family': socket.AF_INET, 'saddr': bytes([10, 0, 0, 1]) + b'\0' * 12,
      'daddr': bytes([10, 0, 0, 2]) + b'\0' * 12, 'sport': 5000, 'dport': 40000}


def _done(seq=7, error=0, flags=sd.NLM_F_MULTI):
    return sd.NLMSGHDR.pack(20, sd.NLMSG_DONE, flags, seq, 4242) + struct.pack('=i', error)


def _error(seq=7, error=-22):
    return sd.NLMSGHDR.pack(36, sd.NLMSG_ERROR, 0, seq, 4242) + struct.pack('=i', error) + \
        sd.NLMSGHDR.pack(76, 20, 0x301, seq, 0)


def _parse(chunks, seq=7, accept=None):
    result = sd.DumpResult()
    for chunk in chunks:
        buf = bytearray(chunk) + bytearray(64)      # trailing garbage beyond n is ignored
        assert not result.done
        sd.parse_datagram(buf, len(chunk), result, seq, accept)
    return result


def _states(result):
    return dict((sd.STATE_NAMES[i], n) for i, n in enumerate(result.tally) if n)


def test_parse_uniform_fast_path_multipart_then_done():
    d1 = b''.join(_msg(V4, state=1) for _i in range(200)) + _msg(V4, state=8) * 3
    d2 = _msg(V4, state=1) * 50 + _done()
    result = _parse([d1, d2])
    assert result.done and not result.error and not result.interrupted
    assert _states(result) == {'established': 250, 'close_wait': 3}
    assert result.count == 253


def test_parse_mixed_lengths_slow_path_matches_fast_path():
    rng = random.Random(5)
    msgs = [_msg(V4, state=rng.choice((1, 6, 10)), extra=rng.choice((52, 60))) for _i in range(300)]
    result = _parse([b''.join(msgs), _done()])
    forced = _parse([b''.join(msgs), _done()], accept=lambda buf, off: True)
    assert result.tally == forced.tally
    assert sum(result.tally) == 300


def test_parse_combined_dump_message_type():
    result = _parse([_msg(V4, mtype=sd.TCPDIAG_GETSOCK) * 10 + _done()])
    assert _states(result) == {'established': 10}


def test_parse_done_with_error_and_nlmsg_error():
    result = _parse([_msg(V4) * 2 + _done(error=-16)])
    assert result.done and result.error == 16
    result = _parse([_error(error=-22)])
    assert result.done and result.error == 22
    # an acknowledgement (error 0) is not an error and does not end the dump
    result = _parse([_error(error=0) + _msg(V4) * 2, _done()])
    assert result.done and not result.error and result.count == 2


def test_parse_dump_intr_flag():
    intr = sd.NLM_F_MULTI | sd.NLM_F_DUMP_INTR
    assert _parse([_msg(V4, flags=intr) * 5 + _done()]).interrupted
    assert _parse([_msg(V4) * 5, _done(flags=intr)]).interrupted
    assert not _parse([_msg(V4) * 5, _done()]).interrupted


def test_parse_ignores_foreign_sequence_numbers():
    result = _parse([_msg(V4, seq=3) * 4 + _msg(V4, seq=7) * 2 + _done(seq=3), _done()])
    assert result.done and result.count == 2


def test_parse_malformed_length():
    bad = bytearray(_msg(V4) * 2)
    struct.pack_into("=I", bad, len(_msg(V4)), 9999)
    with pytest.raises(SpecError) as exc:
        _parse([bytes(bad)])
    assert exc.value.field == 'dump'


def test_parse_python_filter_applies():
    other = dict(V4, sport=22)
    accept = sd.make_python_filter(local_ports=[(5000, 5000)])
    result = _parse([_msg(V4) * 3 + _msg(other) * 4 + _done()], accept=accept)
    assert _states(result) == {'established': 3}


# ---------------------------------------------------------------------------
# a real dump of our own sockets (no root: sock_diag dumps are unprivileged)
# ---------------------------------------------------------------------------

def test_real_dump_counts_own_loopback_connections():
    lst = socket.socket()
    lst.bind(('127.0.0.1', 0))
    lst.listen(64)
    port = lst.getsockname()[1]
    clients, servers = [], []
    try:
        for _i in range(25):
            c = socket.create_connection(('127.0.0.1', port))
            clients.append(c)
            servers.append(lst.accept()[0])
        c = sd.count_tcp_states
        assert c(states=['listen'], local_ports=[(port, port)]) == {'listen': 1}
        assert c(states=['established'], local_ports=[(port, port)]) == {'established': 25}
        assert c(states=['established'], remote_ports=[port]) == {'established': 25}
        assert c(states=['established'], families=['inet'], remote_ports=[port],
                 remote_networks=['127.0.0.0/8']) == {'established': 25}
        assert c(states=['established'], remote_ports=[port],
                 remote_networks=['fd00::/8']) == {'established': 0}
        assert c(states=['established'], families=['inet6'], remote_ports=[port]) == \
            {'established': 0}
        detail = sd.count_tcp_states_detail(states=['established', 'listen'],
                                            local_ports=[port], local_networks=['127.0.0.1'])
        assert detail['counts'] == {'established': 25, 'listen': 1}
        assert detail['kernel_filtered'] is True
        for s in clients[:5]:
            s.close()
        # the active closers move to fin_wait2/time_wait, their peers to close_wait
        counts = c(states=None, local_ports=[port])
        assert counts['close_wait'] + counts['established'] == 25 and counts['listen'] == 1
    finally:
        for s in clients + servers + [lst]:
            s.close()


# ---------------------------------------------------------------------------
# failures of the socket itself end in a TestbedError naming the cause
# ---------------------------------------------------------------------------

def test_a_namespace_that_vanished_is_a_clean_error():
    import os
    import subprocess
    import uuid
    if os.geteuid() != 0:
        pytest.skip('needs root (a network namespace)')
    name = 'tbc-sd-%s' % uuid.uuid4().hex[:8]
    subprocess.run(['ip', 'netns', 'add', name], check=True)
    try:
        subprocess.run(['umount', '/var/run/netns/' + name], check=True)   # listed, no namespace
        with pytest.raises(SpecError) as exc:
            sd.count_tcp_states(netns=name)
        assert exc.value.field == 'netns'
        assert 'EINVAL (errno 22' in str(exc.value)
    finally:
        subprocess.run(['ip', 'netns', 'delete', name], check=False)
    with pytest.raises(SpecError) as exc:
        sd.count_tcp_states(netns=name)
    assert exc.value.field == 'netns' and 'does not exist' in str(exc.value)


def test_dump_errors_become_testbed_errors():
    # a real NETLINK_SOCK_DIAG socket, asked for a dump the kernel refuses
    # (a family sock_diag has no handler for): the NetlinkError names it
    from ansible_collections.scalelab.testbed.plugins.module_utils import netlink as nl
    with nl.NetlinkSocket(nl.NETLINK_SOCK_DIAG) as sock:
        payload = sd.REQ_V2_HEAD.pack(250, sd.IPPROTO_TCP, 0, 2) + b'\0' * sd.SOCKID_LEN
        with pytest.raises(nl.NetlinkError) as exc:
            sock.dump(sd.SOCK_DIAG_BY_FAMILY, payload, sd.parse_datagram, sd.DumpResult)
    assert exc.value.op == 'dump' and exc.value.errno == errno.EINVAL
