# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The netlink codec: encoding and decoding by hand-built bytes (no root), then
real sockets: a link dump, a refused bind, a refused dump and request (no
root), and pipelined requests with a failure and with lost acknowledgements
(ENOBUFS) in a throw-away namespace (root; skipped otherwise)."""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
import subprocess
import uuid

import pytest

from ansible_collections.scalelab.testbed.plugins.module_utils import netlink as nl

HDR = struct.Struct('=IHHII')
NLA = struct.Struct('=HH')
ROOT = os.geteuid() == 0


# ---------------------------------------------------------------- encoding

def test_pack_message_header_and_payload():
    msg = nl.pack_message(nl.RTM_GETLINK, nl.NLM_F_REQUEST | nl.NLM_F_DUMP, 77, b'\1' * 16)
    assert HDR.unpack_from(msg) == (32, 18, 0x301, 77, 0)
    assert msg[16:] == b'\1' * 16


@pytest.mark.parametrize('data, length, padded', [
    (b'', 4, 4), (b'\x07', 5, 8), (b'abcd', 8, 8), (b'abcde', 9, 12),
])
def test_pack_attr_length_and_padding(data, length, padded):
    attr = nl.pack_attr(11, data)
    assert NLA.unpack_from(attr) == (length, 11)
    assert len(attr) == padded and attr[4:4 + len(data)] == data
    assert attr[4 + len(data):] == b'\0' * (padded - length)


def test_typed_attrs():
    assert nl.attr_u8(11, 211) == NLA.pack(5, 11) + b'\xd3\0\0\0'
    assert nl.attr_u32(8, 0x102) == NLA.pack(8, 8) + struct.pack('=I', 0x102)
    assert nl.attr_str(3, 'eth0:tb') == NLA.pack(12, 3) + b'eth0:tb\0'


# ---------------------------------------------------------------- decoding

def test_parse_attrs_spans_flags_and_truncation():
    buf = nl.attr_u8(11, 5) + nl.pack_attr(3 | nl.NLA_F_NESTED, b'xyz') + nl.attr_u32(8, 9)
    attrs = nl.parse_attrs(buf, 0, len(buf))
    assert sorted(attrs) == [3, 8, 11]                   # the nested flag is masked off
    assert nl.attr_bytes(buf, attrs, 3) == b'xyz'
    assert nl.attr_int(buf, attrs, 11) == 5 and nl.attr_int(buf, attrs, 8) == 9
    assert nl.attr_int(buf, attrs, 99) is None and nl.attr_bytes(buf, attrs, 99) is None
    # an attribute that claims more than there is ends the walk
    bad = nl.attr_u8(11, 5) + NLA.pack(200, 3) + b'abcd'
    assert sorted(nl.parse_attrs(bad, 0, len(bad))) == [11]
    assert nl.attr_text(nl.attr_str(3, 'lo'), {3: (4, 7)}, 3) == 'lo'


def test_iter_messages_alignment_and_malformed():
    one = nl.pack_message(20, 2, 1, b'\0' * 9)           # 25 bytes, padded to 28 in a stream
    two = nl.pack_message(3, 2, 1, struct.pack('=i', 0))
    stream = one + b'\0' * 3 + two
    got = list(nl.iter_messages(stream, len(stream)))
    assert got == [(0, 25, 20, 2, 1), (28, 20, 3, 2, 1)]
    broken = bytearray(stream)
    struct.pack_into('=I', broken, 28, 400)
    with pytest.raises(nl.NetlinkError) as exc:
        list(nl.iter_messages(broken, len(broken)))
    assert exc.value.errno == errno.EBADMSG and 'offset 28' in str(exc.value)


def _ack(err, seq, flags=0, echo=None, tlvs=b''):
    echo = echo if echo is not None else HDR.pack(40, 20, 5, seq, 0)
    body = struct.pack('=i', err) + echo + tlvs
    return HDR.pack(16 + len(body), nl.NLMSG_ERROR, flags, seq, 0) + body


def test_parse_error_capped_with_ext_ack_text():
    tlv = nl.attr_str(nl.NLMSGERR_ATTR_MSG, 'Invalid prefix') + nl.attr_u32(2, 24)
    msg = _ack(-22, 77, nl.NLM_F_ACK_TLVS | nl.NLM_F_CAPPED, tlvs=tlv)
    assert nl.parse_error(msg, 0, len(msg), nl.NLM_F_ACK_TLVS | nl.NLM_F_CAPPED) == \
        (22, 77, 'Invalid prefix')


def test_parse_error_uncapped_skips_the_echoed_request():
    request = nl.pack_message(20, 5, 78, b'\xee' * 22)     # 38 bytes, 40 aligned
    tlv = nl.attr_str(nl.NLMSGERR_ATTR_MSG, 'Device not found')
    msg = _ack(-19, 78, nl.NLM_F_ACK_TLVS, echo=request + b'\0\0', tlvs=tlv)
    assert nl.parse_error(msg, 0, len(msg), nl.NLM_F_ACK_TLVS) == (19, 78, 'Device not found')


def test_parse_error_plain_ack_and_truncated():
    msg = _ack(0, 5)
    assert nl.parse_error(msg, 0, len(msg), 0) == (0, 5, None)
    short = HDR.pack(18, nl.NLMSG_ERROR, 0, 5, 0) + b'\0\0'
    assert nl.parse_error(short, 0, len(short), 0)[0] == errno.EBADMSG


def test_netlink_error_text():
    err = nl.NetlinkError(errno.EEXIST, 'ipv4: Address already assigned')
    assert isinstance(err, OSError) and err.errno == err.code == errno.EEXIST
    assert str(err) == 'EEXIST (errno 17: File exists): ipv4: Address already assigned'
    assert str(nl.NetlinkError(errno.EPERM, op='bind')) == \
        'bind failed: EPERM (errno 1: Operation not permitted)'


def _walk(chunks, seq=7):
    state = nl.Dump()
    for chunk in chunks:
        assert not state.done
        nl.collect(bytearray(chunk) + bytearray(32), len(chunk), state, seq)
    return state


def _done(seq=7, err=0, flags=nl.NLM_F_MULTI):
    return HDR.pack(20, nl.NLMSG_DONE, flags, seq, 0) + struct.pack('=i', err)


def test_collect_keeps_messages_of_the_dump_until_done():
    item = nl.pack_message(nl.RTM_NEWLINK, nl.NLM_F_MULTI, 7, b'\0' * 16)
    stale = nl.pack_message(nl.RTM_NEWLINK, nl.NLM_F_MULTI, 3, b'\0' * 16)
    state = _walk([item * 2 + stale, item + _done()])
    assert state.done and not state.error and not state.interrupted
    assert state.count == 3 and len(state.items) == 3
    data, off, length = state.items[2]
    assert (off, length) == (0, 32) and data[:32] == item


def test_collect_intr_error_overrun_and_acks():
    intr = nl.pack_message(nl.RTM_NEWADDR, nl.NLM_F_MULTI | nl.NLM_F_DUMP_INTR, 7, b'\0' * 8)
    assert _walk([intr + _done()]).interrupted
    assert _walk([_done(flags=nl.NLM_F_MULTI | nl.NLM_F_DUMP_INTR)]).interrupted
    state = _walk([_done(err=-16)])
    assert state.done and state.error == 16
    state = _walk([_ack(-95, 7)])
    assert state.done and state.error == 95
    state = _walk([_ack(0, 7), _done()])          # an acknowledgement does not end a dump
    assert state.done and not state.error
    overrun = HDR.pack(16, nl.NLMSG_OVERRUN, 0, 7, 0)
    assert _walk([overrun + _done()]).interrupted


def test_collect_done_with_an_error_and_ext_ack_text():
    tlv = nl.attr_str(nl.NLMSGERR_ATTR_MSG, 'bad filter')
    msg = HDR.pack(20 + len(tlv), nl.NLMSG_DONE, nl.NLM_F_MULTI | nl.NLM_F_ACK_TLVS, 7, 0) + \
        struct.pack('=i', -22) + tlv
    state = _walk([msg])
    assert state.done and state.error == 22 and state.text == 'bad filter'


# ---------------------------------------------------------------- real sockets, no root

def _link_names(sock):
    names = {}
    payload = nl.IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    for data, off, length in sock.dump(nl.RTM_GETLINK, payload).items:
        index = nl.IFINFOMSG.unpack_from(data, off + 16)[2]
        attrs = nl.parse_attrs(data, off + 16 + nl.IFINFOMSG.size, off + length)
        names[index] = nl.attr_text(data, attrs, nl.IFLA_IFNAME)
    return names


def test_real_link_dump_has_loopback():
    with nl.NetlinkSocket(nl.NETLINK_ROUTE) as sock:
        assert 'lo' in _link_names(sock).values()
        assert sock.seq >= 1


def test_real_bind_refused_is_a_clean_error():
    with nl.NetlinkSocket(nl.NETLINK_SOCK_DIAG) as first:     # port ids are per protocol
        taken = first.sock.getsockname()[0]
        with pytest.raises(nl.NetlinkError) as exc:
            nl.NetlinkSocket(nl.NETLINK_SOCK_DIAG, pid=taken)
    assert exc.value.errno == errno.EADDRINUSE
    assert 'binding the NETLINK_SOCK_DIAG socket' in str(exc.value)


def test_real_dump_and_request_refused():
    with nl.NetlinkSocket(nl.NETLINK_ROUTE) as sock:
        with pytest.raises(nl.NetlinkError) as exc:
            sock.dump(9999, b'\0' * 16)
        assert exc.value.op == 'dump' and exc.value.errno == errno.EOPNOTSUPP
        # an address on an interface index that does not exist: ENODEV, with the kernel's text
        payload = nl.IFADDRMSG.pack(socket.AF_INET, 32, 0, 0, 0x7ffffff0) + \
            nl.pack_attr(nl.IFA_LOCAL, bytes((10, 9, 9, 9)))
        with pytest.raises(nl.NetlinkError) as exc:
            sock.request(nl.RTM_NEWADDR, nl.NLM_F_CREATE | nl.NLM_F_EXCL, payload)
        assert exc.value.errno in (errno.ENODEV, errno.EPERM)
        if exc.value.errno == errno.ENODEV:
            assert exc.value.text and 'not found' in exc.value.text


# ---------------------------------------------------------------- real pipelines, root

@pytest.fixture
def namespace():
    if not ROOT:
        pytest.skip('needs root (a network namespace and a veth)')
    name = 'tbb-nl-%s' % uuid.uuid4().hex[:8]
    subprocess.run(['ip', 'netns', 'add', name], check=True)
    try:
        subprocess.run(['ip', '-n', name, 'link', 'add', 'tbb-nl0', 'type', 'veth', 'peer',
                        'name', 'tbb-nl1'], check=True)
        yield name
    finally:
        subprocess.run(['ip', 'netns', 'delete', name], check=False)


def _index(sock, name):
    return [i for i, n in _link_names(sock).items() if n == name][0]


def _add(index, ip):
    packed = ipaddress.ip_address(ip).packed
    payload = nl.IFADDRMSG.pack(socket.AF_INET, 32, 0, 0, index) + \
        nl.pack_attr(nl.IFA_LOCAL, packed) + nl.pack_attr(nl.IFA_ADDRESS, packed)
    return (nl.RTM_NEWADDR, nl.NLM_F_CREATE | nl.NLM_F_EXCL, payload)


def _present(name):
    out = subprocess.run(['ip', '-n', name, '-4', '-o', 'addr', 'show', 'dev', 'tbb-nl0'],
                         check=True, stdout=subprocess.PIPE, text=True).stdout
    return set(line.split()[3].split('/')[0] for line in out.splitlines())


def test_pipeline_reports_the_first_refusal_and_stops_after_its_chunk(namespace):
    with nl.NetlinkSocket(nl.NETLINK_ROUTE, netns=namespace) as sock:
        index = _index(sock, 'tbb-nl0')
        ips = ['10.201.%d.%d' % (i // 250, i % 250 + 1) for i in range(600)]
        requests = [_add(index, ip) for ip in ips]
        requests[300] = _add(index, ips[10])            # a duplicate: EEXIST
        sock.chunk = 256
        done, failure = sock.pipeline(requests)
    assert failure is not None and failure[0] == 300
    assert failure[1].errno == errno.EEXIST
    # the chunk holding it (256..511) ran to its end, the last chunk was not sent
    assert done == [i for i in range(512) if i != 300]
    assert _present(namespace) == set(ips[:300] + ips[301:512])


def test_pipeline_recovers_lost_acknowledgements(namespace):
    # A receive buffer far too small for a chunk of acknowledgements: the
    # kernel drops them (ENOBUFS) although the addresses are added.
    with nl.NetlinkSocket(nl.NETLINK_ROUTE, netns=namespace, rcvbuf=1) as sock:
        index = _index(sock, 'tbb-nl0')
        ips = ['10.202.%d.%d' % (i // 250, i % 250 + 1) for i in range(400)]
        requests = [_add(index, ip) for ip in ips]
        asked = []

        def settle(indices):
            asked.append(len(indices))
            there = _present(namespace)
            return [i for i in indices if ips[i] in there]
        done, failure = sock.pipeline(requests, settle)
    assert failure is None
    assert sorted(done) == list(range(400))
    assert asked and sock.chunk < nl.CHUNK
    assert _present(namespace) == set(ips)
