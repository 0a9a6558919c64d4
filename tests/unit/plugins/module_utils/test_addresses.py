# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure planning of ip_aliases: no root, no kernel changes."""

from __future__ import annotations

import ipaddress
import socket
import struct

import pytest

from ansible_collections.scalelab.testbed.plugins.module_utils import addresses as al
from ansible_collections.scalelab.testbed.plugins.module_utils.common import TestbedError as SpecError

from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg

IP = ipaddress.ip_address
V4 = socket.AF_INET
V6 = socket.AF_INET6


def ka(text, index=2, proto=0, label=None, flags=0, family=None):
    ip, plen = text.split('/')
    ip = IP(ip)
    fam = family or (V4 if ip.version == 4 else V6)
    return al.KernelAddress(ip, int(plen), index, fam, flags, 0, proto, label, ip)


def strs(items):
    return [str(x) for x in items]


# --- address generation -----------------------------------------------------

def test_generate_skips_network_address_and_applies_offset():
    got = al.generate_aliases('10.0.0.0/24', 3)
    assert strs(got) == ['10.0.0.1/32', '10.0.0.2/32', '10.0.0.3/32']
    got = al.generate_aliases('10.0.0.0/24', 2, offset=10, prefix_length=24)
    assert strs(got) == ['10.0.0.11/24', '10.0.0.12/24']


def test_generate_uses_every_usable_host_and_not_broadcast():
    got = al.generate_aliases('10.0.0.0/29', 6)
    assert strs(got)[-1] == '10.0.0.6/32'
    with pytest.raises(SpecError) as exc:
        al.generate_aliases('10.0.0.0/29', 7)
    text = str(exc.value)
    assert '6 usable host addresses' in text
    assert 'offset 0 + count 7 = 7' in text
    assert '/28' in text    # the smallest network that fits


def test_generate_too_small_with_offset_names_the_arithmetic():
    with pytest.raises(SpecError) as exc:
        al.generate_aliases('192.168.0.0/24', 250, offset=10)
    assert exc.value.field == 'cidr'
    assert '254 usable host addresses' in str(exc.value)
    assert 'offset 10 + count 250 = 260 (6 too many)' in str(exc.value)
    assert '/23' in str(exc.value)


def test_generate_slash31_slash32_and_ipv6():
    assert strs(al.generate_aliases('10.0.0.0/31', 2)) == ['10.0.0.0/32', '10.0.0.1/32']
    assert strs(al.generate_aliases('10.0.0.7/32', 1)) == ['10.0.0.7/32']
    assert strs(al.generate_aliases('fd00::/120', 2, offset=1)) == ['fd00::2/128',
                                                                    'fd00::3/128']
    # IPv6: only the subnet-router anycast address is skipped
    assert len(al.generate_aliases('fd00::/126', 3)) == 3
    with pytest.raises(SpecError):
        al.generate_aliases('fd00::/126', 4)


def test_generate_large_count_is_arithmetic_not_iteration():
    got = al.generate_aliases('10.64.0.0/10', 5000, offset=70000)
    assert len(got) == 5000
    assert got[0].ip == IP('10.64.0.1') + 70000
    assert len(set(got)) == 5000


@pytest.mark.parametrize('cidr, count, offset, field, words', [
    ('10.0.0.1/24', 1, 0, 'cidr', 'host bits set'),
    ('10.0.0.0/33', 1, 0, 'cidr', 'not a valid network'),
    ('bogus', 1, 0, 'cidr', 'not a valid network'),
    ('10.0.0.0/24', 0, 0, 'count', 'at least 1'),
    ('10.0.0.0/24', 1, -1, 'offset', '0 or more'),
    ('10.0.0.0/8', al.MAX_ALIASES + 1, 0, 'count', 'limit'),
])
def test_generate_rejects(cidr, count, offset, field, words):
    with pytest.raises(SpecError) as exc:
        al.generate_aliases(cidr, count, offset)
    assert exc.value.field == field
    assert words in str(exc.value)


def test_generate_rejects_bad_prefix_length():
    with pytest.raises(SpecError) as exc:
        al.generate_aliases('10.0.0.0/24', 1, prefix_length=33)
    assert exc.value.field == 'prefix_length'


# --- explicit lists ---------------------------------------------------------

def test_desired_list_bare_ip_takes_prefix_length_or_host_prefix():
    got = al.desired_aliases(['10.1.0.1', '10.1.0.2/24', 'fd00::1'])
    assert strs(got) == ['10.1.0.1/32', '10.1.0.2/24', 'fd00::1/128']
    got = al.desired_aliases(['10.1.0.1'], prefix_length=16)
    assert strs(got) == ['10.1.0.1/16']


@pytest.mark.parametrize('addresses, words', [
    (['10.1.0.1', '10.1.0.1'], 'listed twice'),
    (['10.1.0.1/24', '10.1.0.1/32'], 'different prefix lengths'),
    (['10.1.0.300'], 'not a valid IP'),
    (['10.1.0.1/255.255.255.0'], 'not a valid IP'),
    (['10.1.0.1; rm -rf /'], 'not a valid IP'),
    (['224.0.0.1'], 'multicast'),
    (['0.0.0.0'], 'unspecified'),
    (['::'], 'unspecified'),
    (['255.255.255.255'], 'broadcast'),
    (['10.1.0.1/0'], 'out of range'),
    ([''], 'not an IP address'),
])
def test_desired_list_rejects(addresses, words):
    with pytest.raises(SpecError) as exc:
        al.desired_aliases(addresses)
    assert exc.value.field == 'addresses'
    assert words in str(exc.value)


def test_desired_count_without_cidr_and_both_forms_rejected():
    with pytest.raises(SpecError) as exc:
        al.desired_aliases(['10.0.0.1'], count=3)
    assert exc.value.field == 'count'
    with pytest.raises(SpecError):
        al.desired_aliases(['10.0.0.1'], '10.0.0.0/24', 1)
    assert al.desired_aliases() == []


# --- tags -------------------------------------------------------------------

@pytest.mark.parametrize('release, expected', [
    ('6.1.0-13-amd64', True), ('6.18.44-fc-v769', True), ('7.0', True),
    ('6.0.19', False), ('5.15.0-91-generic', False), ('4.19.0', False),
])
def test_kernel_has_ifa_proto(release, expected):
    assert al.kernel_has_ifa_proto(release) is expected


def test_choose_tag_and_label_fallback():
    assert al.choose_tag('6.1.0', 'eth0') == al.Tag('proto', al.TAG_PROTO, 'eth0:tb')
    assert al.choose_tag('5.10.0', 'eth0') == al.Tag('label', None, 'eth0:tb')
    assert al.tag_label('a-very-long-if0') is None       # 15 + 3 > 15


def test_is_ours_by_proto_or_label_only():
    assert al.is_ours(ka('10.0.0.1/32', proto=al.TAG_PROTO), 'eth0:tb')
    assert al.is_ours(ka('10.0.0.1/32', label='eth0:tb'), 'eth0:tb')
    assert not al.is_ours(ka('10.0.0.1/32', label='eth0'), 'eth0:tb')
    assert not al.is_ours(ka('10.0.0.1/32', proto=3), 'eth0:tb')


# --- planning ---------------------------------------------------------------

NAMES = {1: 'lo', 2: 'tbb-a', 3: 'tbb-b'}


def plan(desired, current, **kw):
    kw.setdefault('label', 'tbb-a:tb')
    return al.plan_aliases(al.desired_aliases(desired), current, 2, NAMES, **kw)


def test_plan_adds_only_missing_and_counts_ours():
    current = [ka('10.0.0.1/32', proto=al.TAG_PROTO), ka('10.0.0.2/32')]
    p = plan(['10.0.0.1', '10.0.0.2', '10.0.0.3'], current)
    assert strs(p.add) == ['10.0.0.3/32']
    assert p.remove == []
    assert p.unchanged == 2
    # the foreign 10.0.0.2 is present but not ours: not counted
    assert (p.ours_before, p.ours_after) == (1, 2)
    assert sorted(p.after) == ['10.0.0.1/32', '10.0.0.2/32', '10.0.0.3/32']


def test_plan_nothing_to_do_is_empty():
    current = [ka('10.0.0.1/32', proto=al.TAG_PROTO)]
    p = plan(['10.0.0.1'], current)
    assert (p.add, p.remove, p.unchanged) == ([], [], 1)


def test_plan_address_on_another_interface_is_an_error():
    current = [ka('10.0.0.9/32', index=3)]
    with pytest.raises(SpecError) as exc:
        plan(['10.0.0.1', '10.0.0.9'], current)
    assert '10.0.0.9/32 (on tbb-b)' in str(exc.value)


def test_plan_foreign_address_with_other_prefix_is_an_error():
    current = [ka('10.0.0.5/24')]
    with pytest.raises(SpecError) as exc:
        plan(['10.0.0.5'], current)
    assert 'present as 10.0.0.5/24' in str(exc.value)


def test_plan_ours_with_other_prefix_is_replaced():
    current = [ka('10.0.0.5/24', proto=al.TAG_PROTO)]
    p = plan(['10.0.0.5'], current)
    assert strs(p.add) == ['10.0.0.5/32']
    assert strs(p.remove) == ['10.0.0.5/24']


def test_purge_selects_only_ours_both_tag_kinds():
    current = [ka('10.0.0.1/32', proto=al.TAG_PROTO),
               ka('10.0.0.2/32', proto=al.TAG_PROTO),
               ka('10.0.0.3/32', label='tbb-a:tb'),
               ka('10.0.0.4/32'),                               # foreign
               ka('10.0.0.6/32', proto=al.TAG_PROTO, index=3)]  # ours, other if
    p = plan(['10.0.0.1'], current, purge=True)
    assert sorted(strs(p.remove)) == ['10.0.0.2/32', '10.0.0.3/32']
    assert p.add == []
    assert p.ours_after == 1
    assert '10.0.0.4/32' in p.after


def test_without_purge_nothing_is_removed():
    current = [ka('10.0.0.2/32', proto=al.TAG_PROTO)]
    assert plan(['10.0.0.1'], current).remove == []


def test_absent_removes_listed_whoever_added_them_and_purge_ours():
    current = [ka('10.0.0.1/32'), ka('10.0.0.2/32', proto=al.TAG_PROTO),
               ka('10.0.0.3/32', proto=al.TAG_PROTO), ka('10.0.0.4/32'),
               ka('10.0.0.9/32', index=3)]
    p = plan(['10.0.0.1', '10.0.0.9', '10.0.0.8'], current, state='absent')
    assert strs(p.remove) == ['10.0.0.1/32']     # 10.0.0.9 is on tbb-b: untouched
    p = plan(['10.0.0.1'], current, state='absent', purge=True)
    assert sorted(strs(p.remove)) == ['10.0.0.1/32', '10.0.0.2/32', '10.0.0.3/32']
    assert p.ours_after == 0
    assert p.add == []


def test_primary_removal_that_would_drop_foreign_secondaries_is_refused():
    current = [ka('10.0.0.1/24', proto=al.TAG_PROTO),
               ka('10.0.0.2/24', flags=al.IFA_F_SECONDARY)]   # foreign secondary
    with pytest.raises(SpecError) as exc:
        plan([], current, purge=True)
    assert 'promote_secondaries' in str(exc.value)
    assert '10.0.0.2/24' in str(exc.value)
    p = plan([], current, purge=True, promote_secondaries=True)
    assert strs(p.remove) == ['10.0.0.1/24']


def test_removals_order_secondaries_before_primaries():
    current = [ka('10.0.0.1/24', proto=al.TAG_PROTO),
               ka('10.0.0.2/24', proto=al.TAG_PROTO, flags=al.IFA_F_SECONDARY),
               ka('10.0.0.3/24', proto=al.TAG_PROTO, flags=al.IFA_F_SECONDARY)]
    p = plan([], current, purge=True)
    assert strs(p.remove)[-1] == '10.0.0.1/24'
    assert len(p.remove) == 3


def test_plan_twenty_thousand_each_way_with_purge():
    desired = ['10.%d.%d.%d' % (1, i // 250, i % 250 + 1) for i in range(20000)]
    current = [ka('10.2.%d.%d/32' % (i // 250, i % 250 + 1), proto=al.TAG_PROTO)
               for i in range(20000)]
    p = plan(desired, current, purge=True)
    assert len(p.add) == 20000 and len(p.remove) == 20000


# --- diff summary -------------------------------------------------------------

def test_summarise_folds_runs_and_limits_lines():
    addrs = ['10.0.0.%d/32' % i for i in range(1, 101)]
    addrs += ['10.0.1.5/32', 'fd00::1/128', 'fd00::2/128', '10.0.0.200/24']
    lines = al.summarise(addrs)
    assert lines[0] == '10.0.0.1/32 .. 10.0.0.100/32 (100 addresses)'
    assert '10.0.1.5/32' in lines and '10.0.0.200/24' in lines
    assert lines[-1] == 'fd00::1/128 .. fd00::2/128 (2 addresses)'
    many = ['10.0.%d.1/32' % i for i in range(200)]
    lines = al.summarise(many, limit=10)
    assert len(lines) == 11 and lines[-1] == '... 190 more lines'
    assert al.diff_text([]).startswith('# 0 address(es)')


# --- netlink encoding/decoding (no socket) ----------------------------------------

def encoded(attrs, family=V4, prefixlen=32, index=7, flags=0):
    msg = ifaddrmsg()
    msg['family'] = family
    msg['prefixlen'] = prefixlen
    msg['index'] = index
    msg['flags'] = flags
    msg['attrs'] = attrs
    msg['header']['type'] = al.RTM_NEWADDR
    msg.encode()
    return bytes(msg.data)


def test_parse_addr_message_reads_proto_label_flags():
    data = encoded([('IFA_ADDRESS', '10.3.0.1'), ('IFA_LOCAL', '10.3.0.1'),
                    ('IFA_LABEL', 'tbb-a:tb'), ('IFA_FLAGS', 0x81),
                    ('IFA_PROTO', al.TAG_PROTO)], prefixlen=24)
    addr = al.parse_addr_message(data, 0, len(data))
    assert addr.ip == IP('10.3.0.1') and addr.prefixlen == 24 and addr.index == 7
    assert addr.proto == al.TAG_PROTO and addr.label == 'tbb-a:tb'
    assert addr.flags == 0x81 and addr.secondary


def test_parse_addr_message_ipv6_without_local():
    data = encoded([('IFA_ADDRESS', 'fd00::5')], family=V6, prefixlen=64)
    addr = al.parse_addr_message(data, 0, len(data))
    assert addr.ip == IP('fd00::5') and addr.proto == 0 and addr.label is None


@pytest.mark.parametrize('family, ip', [(V4, '10.9.8.7'), (V6, 'fd00:1::77')])
def test_template_patches_address_and_seq_round_trip(family, ip):
    tpl = al._Template(al.RTM_NEWADDR, al.NLM_F_REQUEST | al.NLM_F_ACK, family, 30,
                       5, 0, al.IFA_F_NODAD if family == V6 else 0, al.TAG_PROTO, None)
    buf = bytearray(tpl.data * 2)
    packed = IP(ip).packed
    tpl.patch(buf, len(tpl.data), packed, packed, 4242)
    msg = ifaddrmsg(bytes(buf[len(tpl.data):]))
    msg.decode()
    assert msg.get_attr('IFA_LOCAL') == ip and msg.get_attr('IFA_ADDRESS') == ip
    assert msg.get_attr('IFA_PROTO') == al.TAG_PROTO
    assert msg['header']['sequence_number'] == 4242
    assert msg['prefixlen'] == 30 and msg['index'] == 5
    # the first copy is untouched
    assert bytes(buf[:len(tpl.data)]) == tpl.data


def test_parse_ack_error_with_ext_ack_message():
    text = b'Invalid prefix\0'
    tlv = struct.pack('=HH', 4 + len(text), al.NLMSGERR_ATTR_MSG) + text
    tlv += b'\0' * (-len(tlv) % 4)
    request_hdr = struct.pack('=IHHII', 40, al.RTM_NEWADDR, 5, 77, 0)
    body = struct.pack('=i', -22) + request_hdr + tlv
    msg = struct.pack('=IHHII', 16 + len(body), al.NLMSG_ERROR,
                      al.NLM_F_ACK_TLVS | 0x100, 77, 0) + body
    code, seq, message = al._parse_ack(msg, 0, len(msg), al.NLM_F_ACK_TLVS | 0x100)
    assert (code, seq, message) == (22, 77, 'Invalid prefix')
    assert 'EINVAL' in str(al.AckError(code, message))
