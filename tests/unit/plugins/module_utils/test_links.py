# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure planning of the netns module: validation, veth plan, routes."""

from __future__ import annotations

import ipaddress

import pytest

from ansible_collections.scalelab.testbed.plugins.module_utils import links as lk
from ansible_collections.scalelab.testbed.plugins.module_utils.common import TestbedError as SpecError

IFACE = ipaddress.ip_interface
NET = ipaddress.ip_network


def link(name, index, kind='veth', up=True, mtu=1500, addresses=(), peer_index=None,
         elsewhere=True):
    return lk.LinkState(name, index, kind, up, mtu, [IFACE(a) for a in addresses],
                        peer_index, elsewhere)


def spec(veths=None, routes=None, state='present', loopback=True, name='tbb-u'):
    return lk.normalize_spec(name, state, loopback, veths, routes)


VETH = {'name': 'tbb-u0', 'peer': 'tbb-u1', 'peer_netns': None,
        'addresses': ['10.5.0.1/24'], 'peer_addresses': ['10.5.0.2/24'], 'mtu': 1400,
        'state': 'up'}


def matching_state():
    links = {'lo': link('lo', 1, kind=None, mtu=65536, addresses=['127.0.0.1/8']),
             'tbb-u0': link('tbb-u0', 2, mtu=1400, addresses=['10.5.0.1/24', 'fe80::1/64'],
                            peer_index=9)}
    others = {None: {'tbb-u1': link('tbb-u1', 9, mtu=1400, addresses=['10.5.0.2/24'],
                                    peer_index=2)}}
    return links, others


def kinds(changes):
    return [(c.kind, c.netns, c.ifname) for c in changes]


# --- validation -----------------------------------------------------------------

@pytest.mark.parametrize('name', ['a;b', 'a b', '$(x)', 'a/b', '', '..', 'x' * 65])
def test_namespace_names_with_metacharacters_rejected(name):
    with pytest.raises(SpecError) as exc:
        spec(name=name)
    assert exc.value.field == 'name'


@pytest.mark.parametrize('veth, field, words', [
    (dict(VETH, name='tbb|x'), 'veths[0].name', 'not allowed'),
    (dict(VETH, peer='a-very-long-interface'), 'veths[0].peer', 'limit is 15'),
    (dict(VETH, peer_netns='ns`x`'), 'veths[0].peer_netns', 'not allowed'),
    (dict(VETH, name='lo'), 'veths[0]', '"lo"'),
    (dict(VETH, mtu=67), 'veths[0].mtu', 'outside'),
    (dict(VETH, state='sideways'), 'veths[0].state', 'up or down'),
    (dict(VETH, addresses=['10.5.0.1/24', '10.5.0.1/25']), 'veths[0].addresses', 'twice'),
    (dict(VETH, peer_addresses=['10.5.0.999/24']), 'veths[0].peer_addresses', 'not an IP address'),
    (dict(VETH, addresses=['224.1.1.1/24']), 'veths[0].addresses', 'unicast'),
])
def test_veth_input_rejected(veth, field, words):
    with pytest.raises(SpecError) as exc:
        spec([veth])
    assert exc.value.field == field
    assert words in str(exc.value)


def test_same_end_twice_rejected_but_same_name_in_other_namespaces_allowed():
    with pytest.raises(SpecError) as exc:
        spec([VETH, dict(VETH, peer='tbb-u2')])
    assert 'used twice' in str(exc.value)
    # the same name inside the namespace and for a host-side peer is fine
    s = spec([dict(VETH, name='tbb-same', peer='tbb-same')])
    assert s.veths[0].name == s.veths[0].peer == 'tbb-same'
    with pytest.raises(SpecError):
        spec([dict(VETH, name='tbb-same', peer='tbb-same', peer_netns='tbb-u')])


@pytest.mark.parametrize('route, field, words', [
    ({'dst': '10.6.0.1/16', 'gateway': '10.5.0.2'}, 'routes[0].dst', 'host bits'),
    ({'dst': 'nowhere', 'gateway': '10.5.0.2'}, 'routes[0].dst', 'not a network'),
    ({'dst': '10.6.0.0/16', 'gateway': 'fd00::1'}, 'routes[0].gateway', 'same family'),
    ({'dst': '10.6.0.0/16', 'gateway': 'gw'}, 'routes[0].gateway', 'not an IP'),
    ({'dst': '10.6.0.0/16'}, 'routes[0]', 'gateway, a dev'),
    ({'dst': '10.6.0.0/16', 'dev': 'x&y'}, 'routes[0].dev', 'not allowed'),
])
def test_route_input_rejected(route, field, words):
    with pytest.raises(SpecError) as exc:
        spec(routes=[route])
    assert exc.value.field == field
    assert words in str(exc.value)


def test_default_route_family_follows_gateway_and_duplicates_rejected():
    s = spec(routes=[{'dst': 'default', 'gateway': 'fd00::1'},
                     {'dst': 'default', 'gateway': '10.5.0.2'}])
    assert [str(r.dst) for r in s.routes] == ['::/0', '0.0.0.0/0']
    with pytest.raises(SpecError) as exc:
        spec(routes=[{'dst': '10.6.0.0/16', 'dev': 'a'}, {'dst': '10.6.0.0/16', 'dev': 'b'}])
    assert 'listed twice' in str(exc.value)


# --- planning -------------------------------------------------------------------

def test_new_namespace_plan_creates_everything_in_order():
    s = spec([VETH], [{'dst': '10.6.0.0/16', 'gateway': '10.5.0.2'}])
    changes = lk.plan_netns(s, False, {}, {None: {}}, [], [])
    assert kinds(changes) == [
        ('add_ns', 'tbb-u', None), ('set_state', 'tbb-u', 'lo'),
        ('add_veth', 'tbb-u', 'tbb-u0'),
        ('set_mtu', 'tbb-u', 'tbb-u0'), ('set_state', 'tbb-u', 'tbb-u0'),
        ('set_mtu', None, 'tbb-u1'), ('set_state', None, 'tbb-u1'),
        ('addr_add', 'tbb-u', 'tbb-u0'), ('addr_add', None, 'tbb-u1'),
        ('route', 'tbb-u', None)]


def test_matching_namespace_has_no_changes():
    links, others = matching_state()
    routes = [lk.RouteState(NET('10.6.0.0/16'), ipaddress.ip_address('10.5.0.2'), 'tbb-u0')]
    s = spec([VETH], [{'dst': '10.6.0.0/16', 'gateway': '10.5.0.2'}])
    assert lk.plan_netns(s, True, links, others, routes, ['tbb-u']) == []


def test_mismatches_are_fixed():
    links, others = matching_state()
    links['tbb-u0'] = links['tbb-u0']._replace(up=False, addresses=[IFACE('10.5.0.9/24')])
    others[None]['tbb-u1'] = others[None]['tbb-u1']._replace(mtu=1500)
    links['lo'] = links['lo']._replace(up=False)
    changes = lk.plan_netns(spec([VETH]), True, links, others, [], ['tbb-u'])
    assert sorted(lk.describe(c) for c in changes) == sorted([
        'set lo in tbb-u up', 'set tbb-u0 in tbb-u up', 'set mtu of tbb-u1 to 1400',
        'remove 10.5.0.9/24 from tbb-u0 in tbb-u', 'add 10.5.0.1/24 to tbb-u0 in tbb-u'])


def test_addresses_none_means_unmanaged_and_link_local_is_kept():
    links, others = matching_state()
    links['tbb-u0'] = links['tbb-u0']._replace(addresses=[IFACE('10.7.7.7/8'),
                                                          IFACE('fe80::2/64')])
    s = spec([dict(VETH, addresses=None)])
    assert lk.plan_netns(s, True, links, others, [], ['tbb-u']) == []
    s = spec([dict(VETH, addresses=[])])
    assert [lk.describe(c) for c in lk.plan_netns(s, True, links, others, [], ['tbb-u'])] \
        == ['remove 10.7.7.7/8 from tbb-u0 in tbb-u']


def test_loopback_false_brings_lo_down():
    links, others = matching_state()
    changes = lk.plan_netns(spec([VETH], loopback=False), True, links, others, [], ['tbb-u'])
    assert kinds(changes) == [('set_state', 'tbb-u', 'lo')]
    assert changes[0].detail == 'down'


def test_veth_name_taken_by_other_kind_is_an_error():
    links, others = matching_state()
    links['tbb-u0'] = link('tbb-u0', 2, kind='bridge')
    with pytest.raises(SpecError) as exc:
        lk.plan_netns(spec([VETH]), True, links, others, [], ['tbb-u'])
    assert exc.value.field == 'veths[0].name'
    assert 'bridge link, not a veth' in str(exc.value)


def test_veth_with_other_peer_is_an_error():
    links, others = matching_state()
    others[None]['tbb-u1'] = others[None]['tbb-u1']._replace(peer_index=5)
    with pytest.raises(SpecError) as exc:
        lk.plan_netns(spec([VETH]), True, links, others, [], ['tbb-u'])
    assert 'its peer is not' in str(exc.value)
    # the peer really is in the same namespace, but it was asked in the host
    links, others = matching_state()
    links['tbb-u0'] = links['tbb-u0']._replace(peer_elsewhere=False)
    with pytest.raises(SpecError):
        lk.plan_netns(spec([VETH]), True, links, others, [], ['tbb-u'])


def test_peer_name_taken_when_creating_is_an_error():
    links, others = matching_state()
    del links['tbb-u0']
    others[None]['tbb-u1'] = link('tbb-u1', 9, kind=None)
    with pytest.raises(SpecError) as exc:
        lk.plan_netns(spec([VETH]), True, links, others, [], ['tbb-u'])
    assert exc.value.field == 'veths[0].peer'


def test_missing_peer_namespace_is_an_error():
    with pytest.raises(SpecError) as exc:
        lk.plan_netns(spec([dict(VETH, peer_netns='tbb-nope')]), False, {}, {}, [], ['x'])
    assert exc.value.field == 'veths[0].peer_netns'
    assert "'tbb-nope' does not exist" in str(exc.value)


def test_pair_inside_one_namespace():
    s = spec([dict(VETH, peer_netns='tbb-u')])
    links = {'lo': link('lo', 1, kind=None),
             'tbb-u0': link('tbb-u0', 2, mtu=1400, addresses=['10.5.0.1/24'], peer_index=3,
                            elsewhere=False),
             'tbb-u1': link('tbb-u1', 3, mtu=1400, addresses=['10.5.0.2/24'], peer_index=2,
                            elsewhere=False)}
    assert lk.plan_netns(s, True, links, {}, [], ['tbb-u']) == []


def test_routes_replaced_when_gateway_differs_and_dev_checked():
    links, others = matching_state()
    routes = [lk.RouteState(NET('10.6.0.0/16'), ipaddress.ip_address('10.5.0.3'), 'tbb-u0')]
    s = spec([VETH], [{'dst': '10.6.0.0/16', 'gateway': '10.5.0.2'}])
    changes = lk.plan_netns(s, True, links, others, routes, ['tbb-u'])
    assert [lk.describe(c) for c in changes] == ['route 10.6.0.0/16 via 10.5.0.2 in tbb-u']
    s = spec([VETH], [{'dst': '10.6.0.0/16', 'dev': 'tbb-zz'}])
    with pytest.raises(SpecError) as exc:
        lk.plan_netns(s, True, links, others, routes, ['tbb-u'])
    assert exc.value.field == 'routes[0].dev'


def test_absent_deletes_veths_then_namespace_and_nothing_if_missing():
    links, _others = matching_state()
    links['tbb-other'] = link('tbb-other', 4, kind='bridge')
    s = spec(state='absent')
    assert kinds(lk.plan_netns(s, True, links, {}, [], ['tbb-u'])) == [
        ('del_link', 'tbb-u', 'tbb-u0'), ('del_ns', 'tbb-u', None)]
    assert lk.plan_netns(s, False, {}, {}, [], []) == []


def test_predict_state_applies_changes_to_links_peers_and_routes():
    s = spec([VETH], [{'dst': '10.6.0.0/16', 'gateway': '10.5.0.2'}])
    before = lk.state_dict('tbb-u', False, {}, [])
    changes = lk.plan_netns(s, False, {}, {None: {}}, [], [])
    after = lk.predict_state(before, s, changes)
    names = dict((l['name'], l) for l in after['links'])
    assert names['lo']['state'] == 'up'
    assert names['tbb-u0']['mtu'] == 1400 and names['tbb-u0']['addresses'] == ['10.5.0.1/24']
    assert after['peers'] == [{'name': 'tbb-u1', 'netns': None, 'kind': 'veth', 'state': 'up',
                               'mtu': 1400, 'addresses': ['10.5.0.2/24']}]
    assert after['routes'] == [{'dst': '10.6.0.0/16', 'gateway': '10.5.0.2', 'dev': None, 'type': 'unicast'}]
    assert lk.predict_state(before, spec(state='absent'), [])['exists'] is False


def test_state_dict_lists_links_peers_routes():
    links, others = matching_state()
    routes = [lk.RouteState(NET('0.0.0.0/0'), ipaddress.ip_address('10.5.0.2'), 'tbb-u0')]
    st = lk.state_dict('tbb-u', True, links, routes, spec([VETH]), others)
    assert [l['name'] for l in st['links']] == ['lo', 'tbb-u0']
    assert st['links'][1]['addresses'] == ['10.5.0.1/24']   # link-local hidden
    assert st['links'][1]['peer'] == 'tbb-u1'
    assert st['peers'][0]['name'] == 'tbb-u1' and st['peers'][0]['state'] == 'up'
    assert st['routes'] == [{'dst': '0.0.0.0/0', 'gateway': '10.5.0.2', 'dev': 'tbb-u0', 'type': 'unicast'}]


def test_absent_deletes_a_pair_inside_the_namespace_once():
    links = {'lo': link('lo', 1, kind=None),
             'tbb-p0': link('tbb-p0', 2, peer_index=3, elsewhere=False),
             'tbb-p1': link('tbb-p1', 3, peer_index=2, elsewhere=False),
             'tbb-h0': link('tbb-h0', 4, peer_index=9)}
    assert kinds(lk.plan_netns(spec(state='absent'), True, links, {}, [], ['tbb-u'])) == [
        ('del_link', 'tbb-u', 'tbb-p0'), ('del_link', 'tbb-u', 'tbb-h0'),
        ('del_ns', 'tbb-u', None)]


@pytest.mark.parametrize('value, words', [
    ('10.5.0.1/255.255.255.0', 'number of bits'),
    ('10.5.0.1/33', 'out of range'),
    ('::/64', 'not a unicast host address'),
    (7, 'is not an address'),
])
def test_addresses_follow_ipplan(value, words):
    with pytest.raises(SpecError) as exc:
        lk.parse_ifaddress(value, 'veths[0].addresses')
    assert words in str(exc.value)
    assert str(lk.parse_ifaddress('fd00::1', 'x')) == 'fd00::1/128'


def test_a_local_route_is_planned_beside_a_unicast_route_to_the_same_prefix():
    spec = lk.normalize_spec('tbb-a', routes=[
        {'dst': 'fd00:5ca1:ab:2::/64', 'dev': 'lo', 'type': 'local'},
        {'dst': 'fd00:5ca1:ab:2::/64', 'gateway': 'fd00:5ca1:ab::1'}])
    assert [r.type for r in spec.routes] == ['local', 'unicast']
    have = [lk.RouteState(NET('fd00:5ca1:ab:2::/64'), ipaddress.ip_address('fd00:5ca1:ab::1'), None)]
    links = {"lo": link("lo", 1, kind=None, mtu=65536)}
    changes = lk.plan_netns(spec, True, links, {}, have, ['tbb-a'])
    assert [(c.kind, c.detail.type) for c in changes] == [('route', 'local')]


def test_a_local_route_needs_a_dev_and_no_gateway():
    with pytest.raises(SpecError) as exc:
        lk.normalize_spec('tbb-a', routes=[{'dst': '10.9.0.0/16', 'gateway': '10.5.0.2', 'type': 'local'}])
    assert exc.value.field == 'routes[0]' and 'dev: lo' in exc.value.fix
    with pytest.raises(SpecError) as exc:
        lk.normalize_spec('tbb-a', routes=[{'dst': '10.9.0.0/16', 'dev': 'lo', 'type': 'blackhole'}])
    assert exc.value.field == 'routes[0].type'
