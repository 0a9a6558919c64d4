# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run plan (module_utils/plan.py), from the roles' real defaults."""

from __future__ import annotations

import pytest

from ansible_collections.scalelab.testbed.plugins.module_utils import plan as pl

from testlib import role_defaults


def plan_of(connections, servers, clients, host_inputs=None, **variables):
    """The plan from the defaults; topology_ may be left out of the variables' names."""
    known = role_defaults()
    names = dict((k if k in known else 'topology_' + k, v) for k, v in variables.items())
    return pl.build(role_defaults(testbed_connections=connections, **names), servers, clients,
                    host_inputs)


@pytest.mark.parametrize('total, hosts, expected', [
    (10, ['a', 'b', 'c'], {'a': 4, 'b': 3, 'c': 3}),
    (1000000, ['a', 'b', 'c'], {'a': 333334, 'b': 333333, 'c': 333333}),
    (2, ['a', 'b', 'c'], {'a': 1, 'b': 1, 'c': 0}),
    (5, [], {}),
])
def test_split_gives_the_remainder_to_the_first_hosts(total, hosts, expected):
    split = pl.split_total(total, hosts)
    assert split == expected
    assert sum(split.values()) == (total if hosts else 0)


def test_one_box_million():
    plan = plan_of(1000000, ['localhost'], ['localhost'])
    assert plan['ok'], plan['errors']
    assert plan['per_tuple'] == 16128  # (65535 - 1024 + 1) x 0.25
    client = plan['clients']['localhost']
    # 1 destination x 16 ports x 16,128 = 258,048 per source: 4 sources
    assert client['source_count'] == 4
    assert client['sources'] == ['10.240.128.1', '10.240.128.2', '10.240.128.3', '10.240.128.4']
    assert client['targets'] == ['10.240.0.1']
    assert client['capacity'] == 4 * 16 * 16128 >= 1000000
    assert plan['servers']['localhost'] == {'addresses': ['10.240.0.1'], 'connections': 1000000,
                                            'interface_addresses': ['10.240.0.1/16'], 'routes': []}
    assert client['interface_addresses'] == ['10.240.128.1/16', '10.240.128.2/32',
                                             '10.240.128.3/32', '10.240.128.4/32']
    assert client['local_routes'] == []
    assert plan['server_ports_arg'] == '5001-5016'
    assert plan['netns']['server'] == 'tb-server' and plan['netns']['veth_client'] == 'tb-cli'


def test_above_one_tuple_range_from_one_namespace():
    plan = plan_of(150000, ['h'], ['h'])
    assert plan['ok']
    # 150,000 > 65,535 from a single source address: the server ports carry it
    assert plan['clients']['h']['source_count'] == 1
    assert plan['clients']['h']['capacity'] == 16 * 16128


def test_fixed_sources_that_cannot_reach_fail_with_the_arithmetic():
    plan = plan_of(1000000, ['h'], ['h'], client_source_count=1, server_port_count=2)
    assert not plan['ok']
    msg = plan['errors'][0]
    assert '1,000,000' in msg and '1 source address(es) x 1 destination(s) x 2 server port(s)' in msg
    assert '16,128 ports per tuple' in msg and '= 32,256' in msg
    assert 'needs 32 source address(es)' in msg


def test_source_maximum_is_enforced():
    plan = plan_of(1000000, ['h'], ['h'], server_port_count=1, client_source_max=10)
    assert not plan['ok']
    assert 'needs 63 source address(es)' in plan['errors'][0] and 'offers 10' in plan['errors'][0]


def test_narrow_client_network_limits_sources():
    plan = plan_of(1000000, ['h'], ['h'], server_port_count=1, netns_client_cidr='10.240.128.0/30')
    assert not plan['ok']
    assert 'offers 2' in plan['errors'][0]


def test_netns_mode_needs_both_halves_on_every_host():
    plan = plan_of(1000, ['a'], ['a', 'b'])
    assert not plan['ok']
    assert 'b' in plan['errors'][0] and 'both groups' in plan['errors'][0]


def test_netns_networks_must_share_the_link():
    plan = plan_of(1000, ['a'], ['a'], netns_client_cidr='10.241.0.0/17')
    assert any('veth link network' in e for e in plan['errors'])
    plan = plan_of(1000, ['a'], ['a'], netns_client_cidr='10.240.0.0/18')
    assert any('overlap' in e for e in plan['errors'])


def fleet_inputs():
    return {'s1': {'server_addresses': ['10.0.0.11']},
            's2': {'server_addresses': ['10.0.0.12'],
                   'server_aliases': {'cidr': '10.0.64.0/24', 'offset': 0, 'count': 2}}}


def test_fleet_split_and_alias_blocks():
    plan = plan_of(1000001, ['s1', 's2'], ['c1', 'c2', 'c3'], fleet_inputs(), mode='host',
                   client_cidr='10.0.128.0/17', interface='eth1')
    assert plan['ok'], plan['errors']
    assert [plan['clients'][c]['connections'] for c in ('c1', 'c2', 'c3')] == [333334, 333334, 333333]
    targets = ['10.0.0.11', '10.0.0.12', '10.0.64.1', '10.0.64.2']
    assert plan['clients']['c1']['targets'] == targets
    assert plan['servers']['s2']['aliases'] == ['10.0.64.1', '10.0.64.2']
    # 4 destinations x 16 ports x 16,128 per source: one source each, consecutive blocks
    assert plan['clients']['c1']['sources'] == ['10.0.128.1']
    assert plan['clients']['c2']['sources'] == ['10.0.128.2']
    assert plan['clients']['c3']['alias_offset'] == 2
    # servers share in proportion to their addresses
    assert plan['servers']['s1']['connections'] == 250001
    assert plan['servers']['s2']['connections'] == 750001


def test_fleet_errors_name_the_variable():
    plan = plan_of(1000, ['s1'], ['c1'], {'s1': {}}, mode='host')
    text = ' '.join(plan['errors'])
    assert 'topology_server_addresses' in text and 'topology_client_cidr' in text
    dup = plan_of(10, ['s1', 's2'], ['c1'], {'s1': {'server_addresses': ['10.0.0.1']},
                                             's2': {'server_addresses': ['10.0.0.1']}},
                  mode='host', client_cidr='10.1.0.0/24', interface='eth0')
    assert any('listed for both s1 and s2' in e for e in dup['errors'])
    noif = plan_of(10, ['s1'], ['c1'], {'s1': {'server_addresses': ['10.0.0.1']}}, mode='host',
                   client_cidr='10.1.0.0/24')
    assert any('topology_interface' in e for e in noif['errors'])


def test_explicit_client_addresses_are_used_as_they_are():
    plan = plan_of(10, ['s1'], ['c1'], {'s1': {'server_addresses': ['10.0.0.1']},
                                        'c1': {'client_addresses': ['10.0.1.5', '10.0.1.6']}},
                   mode='host')
    assert plan['ok'], plan['errors']
    assert plan['clients']['c1']['sources'] == ['10.0.1.5', '10.0.1.6']
    assert 'aliases' not in plan['clients']['c1']


def test_server_ports_inside_the_port_range_of_a_host_with_both_halves():
    inputs = {'h': {'server_addresses': ['10.0.0.1']}}
    plan = plan_of(10, ['h'], ['h'], inputs, mode='host', client_cidr='10.1.0.0/24',
                   interface='eth0', server_port_first=40000)
    assert any('lies inside topology_port_range 1024-65535' in e for e in plan['errors'])
    fine = plan_of(10, ['h'], ['h'], inputs, mode='host', client_cidr='10.1.0.0/24',
                   interface='eth0', port_range=[10000, 65535])
    assert fine['ok'], fine['errors']


@pytest.mark.parametrize('name, value, words', [
    ('mode', 'bridge', 'topology_mode'),
    ('port_fill', 0, 'topology_port_fill: 0 is out of range'),
    ('port_range', '60000-1024', 'topology_port_range'),
    ('port_range', [1, 2, 3], 'topology_port_range'),
    ('port_range', [500, 65535], 'starts below 1024'),
    ('netns_server_cidr', '10.240.0.1/17', 'did you mean 10.240.0.0/17'),
    ('netns_server', 'tb;reboot', 'topology_netns_server'),
    ('veth_client', 'a-very-long-veth-name', 'topology_veth_client'),
    ('veth_client', 'tb-srv', 'the same name as topology_veth_server'),
    ('server_port_count', 70000, 'topology_server_port_count'),
    ('server_port_first', 65530, 'go past port 65535'),
    ('client_workers', 'abc', 'client_workers'),
    ('client_rate', -5, 'client_rate: -5 is out of range'),
    ('client_ramp', 10, 'needs a rate'),
    ('client_hold_tolerance', 1.5, 'client_hold_tolerance'),
    ('client_run_timeout', 100, 'client_run_timeout'),
    ('server_workers', 0, 'server_workers'),
    ('tuning_nofile', 3000000000, 'tuning_nofile'),
    ('tuning_limits_path', '/etc/security/other.conf', 'tuning_limits_path'),
    ('tuning_persist_path', '/tmp/x.conf', 'tuning_persist_path'),
    ('tuning_extra_sysctls', {'net.core.$x': 1}, 'tuning_extra_sysctls'),
    ('tuning_limits_domains', ['root', '*;x'], 'tuning_limits_domains[1]'),
    ('testbed_install_dir', '/opt/with space', 'testbed_install_dir'),
    ('testbed_run_dir', 'relative/dir', 'not an absolute path'),
])
def test_every_variable_a_later_step_would_refuse_fails_in_the_plan(name, value, words):
    plan = plan_of(1000, ['h'], ['h'], **{name: value})
    assert not plan['ok']
    assert any(words in e for e in plan['errors']), plan['errors']


def test_every_message_names_its_variable():
    plan = plan_of(1000, ['h'], ['h'], client_rate=-1, server_backlog=0, netns_client='x y')
    assert plan['errors'][0].startswith(('client_rate', 'server_backlog', 'topology_netns_client'))
    assert len(plan['errors']) == 3 and all(': ' in e for e in plan['errors'])


def test_empty_groups_fail():
    plan = plan_of(1000, [], [])
    assert 'the inventory group "servers" is empty' in plan['errors'][0]


# ------------------------------------------------------- families and AnyIP

def test_one_box_ipv6_takes_the_unique_local_networks():
    plan = plan_of(150000, ['localhost'], ['localhost'], testbed_ip_family='ipv6')
    assert plan['ok'], plan['errors']
    client = plan['clients']['localhost']
    assert client['targets'] == ['fd5c:a1e0:7e57::1']
    assert client['sources'] == ['fd5c:a1e0:7e57:1::1']
    assert client['interface_addresses'] == ['fd5c:a1e0:7e57:1::1/48']
    assert plan['servers']['localhost']['interface_addresses'] == ['fd5c:a1e0:7e57::1/48']
    assert plan['ip_family'] == 'ipv6'


def test_dual_splits_the_target_between_the_families():
    plan = plan_of(150001, ['localhost'], ['localhost'], testbed_ip_family='dual')
    assert plan['ok'], plan['errors']
    client = plan['clients']['localhost']
    assert client['families']['ipv4']['connections'] == 75001
    assert client['families']['ipv6']['connections'] == 75000
    assert client['targets'] == ['10.240.0.1', 'fd5c:a1e0:7e57::1']
    assert client['interface_addresses'] == ['10.240.128.1/16', 'fd5c:a1e0:7e57:1::1/48']
    assert plan['servers']['localhost']['interface_addresses'] == ['10.240.0.1/16', 'fd5c:a1e0:7e57::1/48']
    assert any('over IPv6' in line for line in plan['arithmetic'])


def test_anyip_uses_one_route_for_any_number_of_sources():
    plan = plan_of(150000, ['localhost'], ['localhost'], client_sources='anyip', client_source_count=65536,
                   testbed_ip_family='ipv6')
    assert plan['ok'], plan['errors']
    client = plan['clients']['localhost']
    assert client['source_count'] == 65536 and len(client['sources']) == 65536
    assert client['interface_addresses'] == ['fd5c:a1e0:7e57:1::1/48']   # the link address only
    assert client['local_routes'] == [{'dst': 'fd5c:a1e0:7e57:1::/64', 'dev': 'lo', 'type': 'local'}]
    plan = plan_of(150000, ['localhost'], ['localhost'], client_sources='anyip', client_source_count=4096)
    assert plan['ok'], plan['errors']
    client = plan['clients']['localhost']
    assert client['interface_addresses'] == ['10.240.128.1/16']
    assert client['local_routes'] == [{'dst': '10.240.128.0/17', 'dev': 'lo', 'type': 'local'}]
    assert plan['servers']['localhost']['routes'] == [{'dst': '10.240.128.0/17', 'gateway': '10.240.128.1'}]


def test_anyip_over_both_families_routes_each_network():
    plan = plan_of(150000, ['localhost'], ['localhost'], client_sources='anyip', testbed_ip_family='dual')
    assert plan['ok'], plan['errors']
    routes = plan['servers']['localhost']['routes']
    assert routes == [{'dst': '10.240.128.0/17', 'gateway': '10.240.128.1'},
                      {'dst': 'fd5c:a1e0:7e57:1::/64', 'gateway': 'fd5c:a1e0:7e57:1::1'}]


def test_an_ipv4_network_with_ipv6_is_refused_naming_the_variable():
    plan = plan_of(1000, ['localhost'], ['localhost'], testbed_ip_family='ipv6',
                   netns_client_cidr6='10.9.0.0/16')
    assert not plan['ok']
    assert any(e.startswith('topology_netns_client_cidr6 10.9.0.0/16 is IPv4') and 'fd5c:a1e0:7e57:1::/64' in e
               for e in plan['errors']), plan['errors']


def test_an_ipv6_prefix_too_small_for_the_sources_is_refused():
    plan = plan_of(150000, ['localhost'], ['localhost'], testbed_ip_family='ipv6', client_sources='anyip',
                   client_source_count=4096, netns_client_cidr6='fd5c:a1e0:7e57:1::/120')
    assert not plan['ok']
    assert any('topology_netns_client_cidr6' in e for e in plan['errors']), plan['errors']


def test_a_fleet_address_of_the_other_family_is_refused():
    inputs = {'s1': {'server_addresses': ['10.20.0.11']}}
    plan = plan_of(1000, ['s1'], ['c1'], inputs, mode='host', interface='eth1',
                   client_cidr='fd00:20::/64', testbed_ip_family='ipv6')
    assert not plan['ok']
    assert any(e.startswith('topology_server_addresses 10.20.0.11 is IPv4, but testbed_ip_family is ipv6')
               for e in plan['errors']), plan['errors']


def test_anyip_and_dual_are_refused_on_a_fleet():
    inputs = {'s1': {'server_addresses': ['10.20.0.11']}}
    plan = plan_of(1000, ['s1'], ['c1'], inputs, mode='host', interface='eth1', client_cidr='10.20.128.0/17',
                   client_sources='anyip')
    assert any(e.startswith('topology_client_sources') for e in plan['errors']), plan['errors']
    plan = plan_of(1000, ['s1'], ['c1'], inputs, mode='host', interface='eth1', client_cidr='10.20.128.0/17',
                   testbed_ip_family='dual')
    assert any(e.startswith('testbed_ip_family') for e in plan['errors']), plan['errors']


def service_plan(connections, endpoints, resolve=None, **variables):
    known = role_defaults()
    names = dict((k if k in known else 'topology_' + k, v) for k, v in variables.items())
    return pl.build(role_defaults(testbed_connections=connections, testbed_service_endpoints=endpoints,
                                  **names), ['h'], ['h'], None, resolve=resolve)


def test_a_service_replaces_the_server_half_on_one_box():
    plan = service_plan(30000, ['10.240.0.1:8080'], client_protocol='http')
    assert plan['ok'], plan['errors']
    client = plan['clients']['h']
    assert client['endpoints'] == ['10.240.0.1:8080'] and client['targets'] == ['10.240.0.1']
    # one endpoint x 16,128 per tuple: two sources for 30,000
    assert client['source_count'] == 2 and client['capacity'] == 2 * 16128
    assert plan['service'] == {'endpoints': ['10.240.0.1:8080'], 'addresses': ['10.240.0.1'],
                               'ports': [8080], 'hosts': {}}
    assert plan['port_filter'] == ['8080'] and plan['protocol'] == 'http'
    # the host's end of the veth still carries the server address
    assert plan['servers']['h']['interface_addresses'] == ['10.240.0.1/16']


def test_service_endpoints_spread_over_ports_and_families():
    plan = service_plan(100000, ['10.240.0.1:8080', '10.240.0.1:8081', '[fd5c:a1e0:7e57::1]:8080'],
                        testbed_ip_family='dual')
    assert plan['ok'], plan['errors']
    fams = plan['clients']['h']['families']
    assert fams['ipv4']['targets'] == ['10.240.0.1:8080', '10.240.0.1:8081']
    assert fams['ipv6']['targets'] == ['[fd5c:a1e0:7e57::1]:8080']
    assert plan['port_filter'] == ['8080', '8081']


@pytest.mark.parametrize('endpoint, message', [
    ('10.240.0.1', "testbed_service_endpoints[0]: '10.240.0.1' has no port: write it as 10.240.0.1:PORT"),
    ('10.240.0.1:0', 'testbed_service_endpoints[0]: \'10.240.0.1:0\': the port must be a number from 1 to 65535'),
    ('10.240.0.1:65536', 'the port must be a number from 1 to 65535'),
    ('no-such-host.invalid:80', "testbed_service_endpoints[0]: the name 'no-such-host.invalid' does not resolve"),
    ('127.0.0.1:80', "a loopback address is the client namespace's own there"),
    ('[fd00::1]:80', 'is IPv6, but testbed_ip_family is ipv4'),
])
def test_bad_service_endpoints_name_the_variable(endpoint, message):
    plan = service_plan(1000, [endpoint], resolve=lambda name, versions: [])
    assert not plan['ok']
    assert any(message in e for e in plan['errors']), plan['errors']


def test_a_service_name_resolves_through_the_resolver():
    seen = []

    def resolve(name, versions):
        seen.append((name, tuple(versions)))
        return ['10.240.0.1']
    plan = service_plan(1000, ['svc.example:8080'], resolve=resolve)
    assert plan['ok'], plan['errors']
    assert seen == [('svc.example', (4,))]
    assert plan['clients']['h']['endpoints'] == ['10.240.0.1:8080']


@pytest.mark.parametrize('variables, message', [
    ({'client_protocol': 'bogus'}, "client_protocol: 'bogus' is not one of tcp, http, websocket"),
    ({'client_http_method': 'get'}, "client_http_method: 'get' is not an HTTP method"),
    ({'client_http_path': 'health'}, "client_http_path: 'health' does not start with /"),
    ({'client_http_headers': {'X-A': 'one\r\nX-B: two'}}, 'client_http_headers'),
    ({'client_http_headers': {'bad name': 'x'}}, 'is not a header name'),
    ({'client_protocol': 'websocket', 'client_heartbeat_size': 200},
     'client_heartbeat_size: 200 bytes do not fit in a WebSocket ping'),
    ({'testbed_service_endpoints': '10.0.0.1:80'}, 'testbed_service_endpoints: is not a list'),
])
def test_bad_protocol_variables_name_the_variable(variables, message):
    plan = pl.build(role_defaults(**variables), ['h'], ['h'])
    assert not plan['ok']
    assert any(message in e for e in plan['errors']), plan['errors']


@pytest.mark.parametrize('variables, message', [
    ({'client_watch': 'select'}, "client_watch: 'select' is not one of auto, epoll, poll"),
    ({'client_watch': 'poll', 'client_heartbeat_interval': 30},
     'client_watch: poll cannot watch a half that reads data as it arrives '
     '(client_heartbeat_interval 30) (fix: give auto (epoll where it reads) or epoll)'),
    ({'client_watch': 'poll', 'client_protocol': 'http', 'client_tls': True}, '(client_tls)'),
    ({'server_watch': 'poll', 'client_protocol': 'websocket', 'client_heartbeat_interval': 10},
     'server_watch: poll cannot watch a half that reads data as it arrives '
     '(client_protocol websocket with client_heartbeat_interval 10)'),
    ({'server_watch': 'poll', 'server_echo': True},
     'server_watch: poll cannot watch a half that reads data as it arrives (server_echo)'),
    ({'server_watch': 'poll', 'client_tls': True}, 'server_watch: poll cannot watch'),
    ({'client_watch_interval': 0}, 'client_watch_interval: 0 is out of range: it must be above 0'),
    ({'server_watch_interval': 'often'}, "server_watch_interval: 'often' is not a number"),
])
def test_bad_watch_variables_name_the_variable(variables, message):
    plan = pl.build(role_defaults(**variables), ['h'], ['h'])
    assert not plan['ok']
    assert any(message in e for e in plan['errors']), plan['errors']


def test_watch_poll_where_nothing_is_read_and_auto_anywhere_pass():
    for variables in ({'client_watch': 'poll', 'server_watch': 'poll'},
                      {'client_watch': 'poll', 'server_watch': 'poll', 'client_protocol': 'http'},
                      {'client_protocol': 'http', 'client_heartbeat_interval': 30,
                       'server_echo': True}):
        plan = pl.build(role_defaults(**variables), ['h'], ['h'])
        assert plan['ok'], (variables, plan['errors'])


@pytest.mark.parametrize('variables, watch, echo', [
    ({}, {'client': 'poll', 'server': 'poll'}, False),
    # a protocol alone: the first answers polled, each request answered at accept
    ({'client_protocol': 'http'}, {'client': 'poll', 'server': 'poll'}, False),
    ({'client_protocol': 'websocket'}, {'client': 'poll', 'server': 'poll'}, False),
    # its heartbeats are requests or pings the server half answers as they arrive
    ({'client_protocol': 'websocket', 'client_heartbeat_interval': 30},
     {'client': 'epoll', 'server': 'epoll'}, True),
    # raw tcp heartbeats are echoed only with server_echo (as before)
    ({'client_heartbeat_interval': 30}, {'client': 'epoll', 'server': 'poll'}, False),
    ({'client_protocol': 'http', 'client_tls': True}, {'client': 'epoll', 'server': 'epoll'}, False),
    ({'server_echo': True}, {'client': 'poll', 'server': 'epoll'}, True),
])
def test_what_each_half_reads_as_it_arrives_decides_its_watch_and_echo(variables, watch, echo):
    plan = pl.build(role_defaults(**variables), ['h'], ['h'])
    assert plan['ok'], plan['errors']
    assert plan['watch'] == watch and plan['server_echo'] is echo


def fleet_service_plan(connections, endpoints, servers=(), services=('svc1', 'svc2'), **variables):
    return pl.build(role_defaults(testbed_connections=connections, testbed_service_endpoints=endpoints,
                                  topology_mode='host', topology_interface='eth1',
                                  topology_client_cidr='10.20.128.0/17', **variables),
                    list(servers), ['c1', 'c2'], {}, services=list(services))


def test_a_fleet_service_needs_no_server_half_and_shares_over_its_hosts():
    plan = fleet_service_plan(100001, ['10.20.0.11:8080', '10.20.0.12:8080'])
    assert plan['ok'], plan['errors']
    assert plan['servers'] == {}
    assert plan['clients']['c1']['endpoints'] == ['10.20.0.11:8080', '10.20.0.12:8080']
    assert plan['clients']['c1']['targets'] == ['10.20.0.11', '10.20.0.12']
    # 50,001 over 2 endpoints x 16,128 per tuple: two sources each, consecutive blocks
    assert plan['clients']['c1']['sources'] == ['10.20.128.1', '10.20.128.2']
    assert plan['clients']['c2']['sources'] == ['10.20.128.3', '10.20.128.4']
    assert plan['service']['hosts'] == {'svc1': {'connections': 50001, 'ports': [8080]},
                                        'svc2': {'connections': 50000, 'ports': [8080]}}
    assert plan['port_filter'] == ['8080']


def test_a_fleet_service_without_a_services_group_plans_the_client_side_alone():
    plan = fleet_service_plan(1000, ['10.20.0.11:8080'], services=())
    assert plan['ok'], plan['errors']
    assert plan['service']['hosts'] == {}


def test_a_fleet_service_refuses_a_server_half():
    plan = fleet_service_plan(1000, ['10.20.0.11:8080'], servers=['s1'])
    assert not plan['ok']
    assert any('the group "servers" has s1' in e and 'move the service\'s hosts to the group '
               '"services"' in e for e in plan['errors']), plan['errors']


def test_the_services_group_is_for_a_fleet():
    plan = pl.build(role_defaults(testbed_connections=1000, testbed_service_endpoints=['10.240.0.1:80']),
                    ['h'], ['h'], None, services=['svc1'])
    assert not plan['ok']
    assert any(e.startswith('the group "services" (svc1) is for a fleet') for e in plan['errors'])


def test_dual_stack_needs_a_service_endpoint_of_each_family():
    plan = service_plan(1000, ['10.240.0.1:8080'], testbed_ip_family='dual')
    assert not plan['ok']
    assert any('testbed_service_endpoints has no IPv6 endpoint, but testbed_ip_family dual' in e
               and 'set testbed_ip_family to ipv4' in e for e in plan['errors']), plan['errors']


@pytest.mark.parametrize('variables, message', [
    ({'client_metrics_listen': '127.0.0.1'}, "client_metrics_listen: '127.0.0.1' has no port"),
    ({'server_metrics_listen': 'localhost:9464'}, "server_metrics_listen: 'localhost' is not an IP address"),
    ({'client_metrics_listen': '[fd00::1]:70000'}, 'the port must be a number from 1 to 65535'),
    ({'client_metrics_dir': 'metrics'}, "client_metrics_dir: 'metrics' is not an absolute path"),
    ({'server_metrics_dir': '/var/lib/a b'}, 'server_metrics_dir'),
    ({'client_metrics_listen': '127.0.0.1:9464', 'server_metrics_listen': '0.0.0.0:9464'},
     "client_metrics_listen: port 9464 is also server_metrics_listen's"),
])
def test_bad_metrics_variables_name_the_variable_and_the_fix(variables, message):
    plan = pl.build(role_defaults(**variables), ['h'], ['h'])
    assert not plan['ok']
    assert any(message in e and 'fix:' in e for e in plan['errors']), plan['errors']


def test_metrics_variables_that_are_fine_pass():
    plan = pl.build(role_defaults(client_metrics_listen='127.0.0.1:9465',
                                  server_metrics_listen='[::1]:9464',
                                  client_metrics_dir='/var/lib/node_exporter'), ['h'], ['h'])
    assert plan['ok'], plan['errors']


@pytest.mark.parametrize('variables, message', [
    ({'client_tls': True, 'client_tls_verify': True},
     'client_tls_verify: verification needs the CA certificates to verify against'),
    ({'client_tls_verify': True}, 'client_tls_verify: is on but client_tls is off'),
    ({'client_tls': True, 'client_tls_verify': True, 'client_tls_ca_file': '/nonexistent/ca.pem'},
     "client_tls_ca_file: '/nonexistent/ca.pem' is not a file on the controller"),
    ({'client_tls': True, 'client_tls_server_name': 'a b'},
     "client_tls_server_name: 'a b' is not a host name or an address"),
])
def test_bad_tls_variables_name_the_variable_and_the_fix(variables, message):
    plan = pl.build(role_defaults(**variables), ['h'], ['h'])
    assert not plan['ok']
    assert any(message in e and 'fix:' in e for e in plan['errors']), plan['errors']


def test_tls_variables_that_are_fine_pass_and_the_plan_carries_tls(tmp_path):
    ca = tmp_path / 'ca.pem'
    ca.write_text('-----BEGIN CERTIFICATE-----\n')
    plan = pl.build(role_defaults(client_tls='yes', client_tls_verify=True,
                                  client_tls_ca_file=str(ca), client_tls_server_name='www.example.com'),
                    ['h'], ['h'])
    assert plan['ok'], plan['errors']
    assert plan['tls'] is True
    assert pl.build(role_defaults(), ['h'], ['h'])['tls'] is False
