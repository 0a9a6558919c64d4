# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure planning of ip_aliases: no root, no kernel changes."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import struct
import subprocess
import uuid

import pytest

from ansible_collections.scalelab.testbed.plugins.module_utils import addresses as al
from ansible_collections.scalelab.testbed.plugins.module_utils.common import TestbedError as SpecError

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
    assert 'offset 10 + count 250 = 260 do not fit' in str(exc.value)
    assert '/23' in str(exc.value)


def test_generate_slash31_slash32_and_ipv6():
    assert strs(al.generate_aliases('10.0.0.0/31', 2)) == ['10.0.0.0/32', '10.0.0.1/32']
    assert strs(al.generate_aliases('10.0.0.7/32', 1)) == ['10.0.0.7/32']
    assert strs(al.generate_aliases('fd00::/120', 2, offset=1)) == ['fd00::2/128',
                                                                    'fd00::3/128']
    # IPv6: only the subnet-router anycast address is skipped, except in a /127
    # (RFC 6164) and a /128: ipplan.usable_hosts, the one rule
    assert len(al.generate_aliases('fd00::/126', 3)) == 3
    with pytest.raises(SpecError):
        al.generate_aliases('fd00::/126', 4)
    assert strs(al.generate_aliases('fd00::/127', 2)) == ['fd00::/128', 'fd00::1/128']
    assert strs(al.generate_aliases('fd00::7/128', 1)) == ['fd00::7/128']


def test_generation_follows_ipplan_for_every_prefix():
    from ansible_collections.scalelab.testbed.plugins.module_utils import ipplan
    for cidr in ('10.0.0.0/24', '10.0.0.0/30', '10.0.0.0/31', '10.0.0.9/32', 'fd00::/120',
                 'fd00::/126', 'fd00::/127', 'fd00::5/128'):
        first, room = ipplan.usable_hosts(cidr)
        got = al.generate_aliases(cidr, room)
        assert [int(a.ip) for a in got] == list(range(first, first + room)), cidr
        with pytest.raises(SpecError):
            al.generate_aliases(cidr, room + 1)


def test_generate_large_count_is_arithmetic_not_iteration():
    got = al.generate_aliases('10.64.0.0/10', 5000, offset=70000)
    assert len(got) == 5000
    assert got[0].ip == IP('10.64.0.1') + 70000
    assert len(set(got)) == 5000


@pytest.mark.parametrize('cidr, count, offset, field, words', [
    ('10.0.0.1/24', 1, 0, 'cidr', 'host bits set'),
    ('10.0.0.0/33', 1, 0, 'cidr', 'not a network in CIDR form'),
    ('bogus', 1, 0, 'cidr', 'not a network in CIDR form'),
    ('224.0.0.0/24', 3, 0, 'cidr', 'not a unicast host address'),
    ('255.255.255.254/31', 2, 0, 'cidr', 'not a unicast host address'),
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
    (['10.1.0.300'], "'10.1.0.300' is not an IP address"),
    (['10.1.0.1/255.255.255.0'], 'the prefix must be a number of bits'),
    (['10.1.0.1; rm -rf /'], 'is not an IP address'),
    (['224.0.0.1'], 'not a unicast host address'),
    (['0.0.0.0'], 'not a unicast host address'),
    (['::'], 'not a unicast host address'),
    (['ff02::1'], 'not a unicast host address'),
    (['255.255.255.255'], 'not a unicast host address'),
    (['10.1.0.1/0'], 'prefix length 0 is out of range for IPv4 (1 to 32)'),
    (['fd00::1/129'], 'prefix length 129 is out of range for IPv6 (1 to 128)'),
    ([''], 'is not an address'),
    ([None], 'is not an address'),
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


# --- address messages (netlink.py's codec, no socket) ------------------------------

def test_add_request_layout_by_hand():
    req = al.add_request(al.Alias(IP('10.3.0.1'), 24), 7, al.Tag('proto', al.TAG_PROTO, None))
    msg_type, flags, payload = req.msg
    assert msg_type == al.nl.RTM_NEWADDR
    assert flags == al.nl.NLM_F_CREATE | al.nl.NLM_F_EXCL
    expected = struct.pack('=BBBBI', V4, 24, 0, 0, 7) + \
        struct.pack('=HH', 8, 2) + bytes((10, 3, 0, 1)) + \
        struct.pack('=HH', 8, 1) + bytes((10, 3, 0, 1)) + \
        struct.pack('=HH', 5, 11) + b'\xd3\0\0\0'
    assert payload == expected
    assert req.key == (IP('10.3.0.1'), 24, 7)


def test_add_request_ipv6_nodad_and_label_tag():
    req = al.add_request(al.Alias(IP('fd00::5'), 128), 3, al.Tag('label', None, 'eth0:tb'))
    payload = req.msg[2]
    family, plen, flags8, scope, index = struct.unpack_from('=BBBBI', payload)
    assert (family, plen, flags8, scope, index) == (V6, 128, al.IFA_F_NODAD, 0, 3)
    assert b'eth0:tb' not in payload                       # IPv6 has no labels
    req = al.add_request(al.Alias(IP('10.0.0.5'), 32), 3, al.Tag('label', None, 'eth0:tb'))
    assert b'eth0:tb\0' in req.msg[2] and struct.pack('=HH', 5, 11) not in req.msg[2]
    req = al.add_request(al.Alias(IP('127.0.0.9'), 32), 1, None)
    assert struct.unpack_from('=BBBBI', req.msg[2])[3] == al.nl.RT_SCOPE_HOST


def _as_message(payload, msg_type=al.nl.RTM_NEWADDR):
    return al.nl.pack_message(msg_type, al.nl.NLM_F_MULTI, 9, payload)


def test_parse_addr_message_reads_proto_label_flags():
    packed = IP('10.3.0.1').packed
    payload = al.addr_payload(V4, 24, 7, packed, packed, flags=0x81, proto=al.TAG_PROTO,
                              label='tbb-a:tb')
    data = _as_message(payload)
    addr = al.parse_addr_message(data, 0, len(data))
    assert addr.ip == IP('10.3.0.1') and addr.prefixlen == 24 and addr.index == 7
    assert addr.proto == al.TAG_PROTO and addr.label == 'tbb-a:tb'
    assert addr.flags == 0x81 and addr.secondary


def test_parse_addr_message_ipv6_without_local_and_peer():
    payload = struct.pack('=BBBBI', V6, 64, 0, 0, 4) + al.nl.pack_attr(1, IP('fd00::5').packed)
    data = _as_message(payload)
    addr = al.parse_addr_message(data, 0, len(data))
    assert addr.ip == addr.peer == IP('fd00::5') and addr.proto == 0 and addr.label is None
    # point-to-point: IFA_LOCAL is ours, IFA_ADDRESS the peer
    payload = al.addr_payload(V4, 32, 4, IP('10.0.0.1').packed, IP('10.0.0.2').packed)
    data = _as_message(payload)
    addr = al.parse_addr_message(data, 0, len(data))
    assert (addr.ip, addr.peer) == (IP('10.0.0.1'), IP('10.0.0.2'))


def test_restore_and_inverse_requests():
    gone = ka('10.0.0.2/24', index=5, proto=al.TAG_PROTO, flags=al.IFA_F_SECONDARY | 0x80)
    req = al.restore_request(gone)
    family, plen, flags8, _scope, index = struct.unpack_from('=BBBBI', req.msg[2])
    assert (family, plen, index) == (V4, 24, 5)
    assert flags8 == 0x80                                  # secondary is the kernel's to set
    assert struct.pack('=HH', 5, 11) + b'\xd3' in req.msg[2]
    inverse = al._inverse(al.add_request(al.Alias(IP('10.0.0.9'), 32), 5, None))
    assert inverse.kind == 'del' and inverse.msg[0] == al.nl.RTM_DELADDR


# --- the real kernel (root; a throw-away namespace) -----------------------------------

ROOT = os.geteuid() == 0


@pytest.fixture
def ns():
    if not ROOT:
        pytest.skip('needs root (a network namespace and a veth)')
    name = 'tbb-al-%s' % uuid.uuid4().hex[:8]
    subprocess.run(['ip', 'netns', 'add', name], check=True)
    try:
        subprocess.run(['ip', '-n', name, 'link', 'add', 'tbb-al0', 'type', 'veth', 'peer',
                        'name', 'tbb-al1'], check=True)
        subprocess.run(['ip', '-n', name, 'addr', 'add', '10.66.9.9/32', 'dev', 'tbb-al1'],
                       check=True)
        yield name
    finally:
        subprocess.run(['ip', 'netns', 'delete', name], check=False)


@pytest.fixture
def journal(tmp_path):
    return str(tmp_path / 'state' / 'journal.json')


def kernel(name, dev='tbb-al0'):
    out = subprocess.run(['ip', '-j', '-n', name, 'addr', 'show', 'dev', dev], check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    return sorted('%s/%d' % (a['local'], a['prefixlen'])
                  for a in json.loads(out)[0].get('addr_info', [])
                  if not a['local'].startswith('fe80:'))


def entries(path):
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)['entries']


def sysctl(name, key, value):
    subprocess.run(['ip', 'netns', 'exec', name, 'sysctl', '-q', '-w', '%s=%s' % (key, value)],
                   check=True)


def test_session_dump_agrees_with_ip(ns, journal):
    al.ensure('tbb-al0', ns, addresses=['10.66.0.1', '10.66.0.2/24', 'fd00:66::1'],
              journal=journal)
    with al.AddressSession(ns) as session:
        links = session.links()
        index = al.find_index(links, 'tbb-al0')
        mine = [a for a in session.addresses() if a.index == index
                and a.ip not in ipaddress.ip_network('fe80::/10')]
    assert set(links.values()) >= {'lo', 'tbb-al0', 'tbb-al1'}
    assert sorted(str(a) for a in mine) == kernel(ns)
    assert all(a.proto == al.TAG_PROTO for a in mine)


def test_ensure_records_once_and_forgets_when_none_of_ours_is_left(ns, journal):
    key = '%s|tbb-al0' % ns
    r = al.ensure('tbb-al0', ns, cidr='10.67.0.0/24', count=20, journal=journal)
    assert r['changed'] and r['count'] == 20 and kernel(ns)[0] == '10.67.0.1/32'
    first = entries(journal)['aliases'][key]
    assert first['previous'] is None
    r = al.ensure('tbb-al0', ns, cidr='10.67.0.0/24', count=30, journal=journal)
    assert r['added'] == ['10.67.0.%d/32' % i for i in range(21, 31)]
    assert entries(journal)['aliases'][key] == first          # the first record stays
    # check mode changes and records nothing
    r = al.ensure('tbb-al0', ns, state='absent', purge=True, journal=journal, check_mode=True)
    assert r['changed'] and r['count'] == 0 and len(kernel(ns)) == 30
    assert entries(journal)['aliases'][key] == first
    r = al.ensure('tbb-al0', ns, state='absent', purge=True, journal=journal)
    assert r['changed'] and len(r['removed']) == 30 and kernel(ns) == []
    assert entries(journal) is None and not os.path.exists(os.path.dirname(journal))


def test_failed_addition_leaves_kernel_and_journal_as_they_were(ns, journal):
    sysctl(ns, 'net.ipv6.conf.tbb-al0.disable_ipv6', 1)
    with pytest.raises(SpecError) as exc:
        al.ensure('tbb-al0', ns, addresses=['10.69.0.1', '10.69.0.2', '10.69.0.3', 'fd00:69::1'],
                  journal=journal)
    text = str(exc.value)
    assert exc.value.field == 'addresses'
    assert 'add 4 address(es) to tbb-al0 in netns %s failed: fd00:69::1/128: ' % ns in text
    assert 'errno' in text and 'the 3 address(es) added before it were removed again' in text
    assert kernel(ns) == [] and entries(journal) is None
    assert not os.path.exists(os.path.dirname(journal))


def test_failed_addition_puts_back_what_the_purge_removed(ns, journal):
    al.ensure('tbb-al0', ns, addresses=['10.70.0.1', '10.70.0.2'], journal=journal)
    before = entries(journal)
    sysctl(ns, 'net.ipv6.conf.tbb-al0.disable_ipv6', 1)
    with pytest.raises(SpecError) as exc:
        al.ensure('tbb-al0', ns, addresses=['10.70.0.3', 'fd00:70::1'], purge=True,
                  journal=journal)
    assert 'undid 1 earlier change(s): remove 2 address(es) from tbb-al0' in str(exc.value)
    assert exc.value.rolled_back
    assert kernel(ns) == ['10.70.0.1/32', '10.70.0.2/32'] and entries(journal) == before
    with al.AddressSession(ns) as session:
        assert all(a.proto == al.TAG_PROTO for a in session.addresses()
                   if str(a).startswith('10.70.'))   # still ours: purge finds them again
    r = al.ensure('tbb-al0', ns, state='absent', purge=True, journal=journal)
    assert len(r['removed']) == 2 and entries(journal) is None


def test_remove_tagged_for_restore(ns, journal):
    al.ensure('tbb-al0', ns, cidr='10.71.0.0/24', count=50, journal=journal)
    subprocess.run(['ip', '-n', ns, 'addr', 'add', '10.71.1.1/32', 'dev', 'tbb-al0'], check=True)
    assert al.remove_tagged(ns, 'tbb-al0') == 50
    assert kernel(ns) == ['10.71.1.1/32']                 # not ours: left alone
    assert al.remove_tagged(ns, 'tbb-al0') == 0
    assert al.remove_tagged(ns, 'tbb-al-gone') == 0
    assert al.remove_tagged('tbb-al-no-such-ns', 'tbb-al0') == 0


def test_missing_interface_and_namespace(ns, journal):
    with pytest.raises(SpecError) as exc:
        al.ensure('tbb-al-nope', ns, addresses=['10.72.0.1'], journal=journal)
    assert "interface 'tbb-al-nope' does not exist in network namespace" in str(exc.value)
    with pytest.raises(SpecError) as exc:
        al.ensure('tbb-al0', 'tbb-al-no-such-ns', addresses=['10.72.0.1'], journal=journal)
    assert exc.value.field == 'netns' and 'does not exist' in str(exc.value)
    assert entries(journal) is None
