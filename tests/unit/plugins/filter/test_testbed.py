# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The arithmetic of the roles: plan and tuning values (the report: test_report.py)."""

from __future__ import annotations

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.scalelab.testbed.plugins.filter import testbed as tb
from ansible_collections.scalelab.testbed.plugins.filter.testbed import FilterModule, split_total

# imported under other names so that pytest does not collect them as tests
plan_of = tb.testbed_plan
tuning_of = tb.testbed_tuning

CURRENT = '\n'.join(
    [
        'fs.file-max = 2466181',
        'fs.nr_open = 1048576',
        'net.core.netdev_max_backlog = 1000',
        'net.core.somaxconn = 4096',
        'net.ipv4.ip_local_port_range = 32768\t60999',
        'net.ipv4.tcp_child_ehash_entries = 0',
        'net.ipv4.tcp_max_syn_backlog = 1024',
        'net.ipv4.tcp_max_tw_buckets = 131072',
        'net.ipv4.tcp_tw_reuse = 2',
        'net.netfilter.nf_conntrack_max = 262144',
    ]
)
MEMINFO_24G = (
    'MemTotal:       24598604 kB\nMemFree:        23000000 kB\nMemAvailable:   24155572 kB\n'
)


def test_filters_are_registered():
    assert set(FilterModule().filters()) == {'testbed_plan', 'testbed_tuning', 'testbed_report'}


@pytest.mark.parametrize(
    'total, hosts, expected',
    [
        (10, ['a', 'b', 'c'], {'a': 4, 'b': 3, 'c': 3}),
        (1000000, ['a', 'b', 'c'], {'a': 333334, 'b': 333333, 'c': 333333}),
        (2, ['a', 'b', 'c'], {'a': 1, 'b': 1, 'c': 0}),
        (5, [], {}),
    ],
)
def test_split_gives_the_remainder_to_the_first_hosts(total, hosts, expected):
    split = split_total(total, hosts)
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
    assert plan['servers']['localhost'] == {'addresses': ['10.240.0.1'], 'connections': 1000000}
    assert plan['server_ports_arg'] == '5001-5016'
    assert plan['netns']['server'] == 'tb-server' and plan['netns']['veth_client'] == 'tb-cli'


def test_above_one_tuple_range_from_one_namespace():
    plan = plan_of(150000, ['h'], ['h'])
    assert plan['ok']
    # 150,000 > 65,535 from a single source address: the server ports carry it
    assert plan['clients']['h']['source_count'] == 1
    assert plan['clients']['h']['capacity'] == 16 * 16128


def test_fixed_sources_that_cannot_reach_fail_with_the_arithmetic():
    plan = plan_of(1000000, ['h'], ['h'], source_count=1, server_port_count=2)
    assert not plan['ok']
    msg = plan['errors'][0]
    assert (
        '1,000,000' in msg and '1 source address(es) x 1 destination(s) x 2 server port(s)' in msg
    )
    assert '16,128 ports per tuple' in msg and '= 32,256' in msg
    assert 'needs 32 source address(es)' in msg


def test_source_maximum_is_enforced():
    plan = plan_of(1000000, ['h'], ['h'], server_port_count=1, source_max=10)
    assert not plan['ok']
    assert 'needs 63 source address(es)' in plan['errors'][0]
    assert 'offers 10' in plan['errors'][0]


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
    assert not plan['ok']
    assert any('veth link network' in e for e in plan['errors'])
    plan = plan_of(1000, ['a'], ['a'], netns_client_cidr='10.240.0.0/18')
    assert any('overlap' in e for e in plan['errors'])


def test_fleet_split_and_alias_blocks():
    inputs = {
        's1': {'server_addresses': ['10.0.0.11']},
        's2': {
            'server_addresses': ['10.0.0.12'],
            'server_aliases': {'cidr': '10.0.64.0/24', 'offset': 0, 'count': 2},
        },
    }
    plan = plan_of(
        1000001,
        ['s1', 's2'],
        ['c1', 'c2', 'c3'],
        mode='host',
        host_inputs=inputs,
        client_cidr='10.0.128.0/17',
        interface='eth1',
    )
    assert plan['ok'], plan['errors']
    assert [plan['clients'][c]['connections'] for c in ('c1', 'c2', 'c3')] == [
        333334,
        333334,
        333333,
    ]
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
    plan = plan_of(1000, ['s1'], ['c1'], mode='host', host_inputs={'s1': {}})
    assert not plan['ok']
    text = ' '.join(plan['errors'])
    assert 'topology_server_addresses' in text
    assert 'topology_client_cidr' in text
    dup = plan_of(
        10,
        ['s1', 's2'],
        ['c1'],
        mode='host',
        client_cidr='10.1.0.0/24',
        interface='eth0',
        host_inputs={
            's1': {'server_addresses': ['10.0.0.1']},
            's2': {'server_addresses': ['10.0.0.1']},
        },
    )
    assert any('listed for both s1 and s2' in e for e in dup['errors'])
    noif = plan_of(
        10,
        ['s1'],
        ['c1'],
        mode='host',
        client_cidr='10.1.0.0/24',
        host_inputs={'s1': {'server_addresses': ['10.0.0.1']}},
    )
    assert any('topology_interface' in e for e in noif['errors'])


def test_explicit_client_addresses_are_used_as_they_are():
    plan = plan_of(
        10,
        ['s1'],
        ['c1'],
        mode='host',
        host_inputs={
            's1': {'server_addresses': ['10.0.0.1']},
            'c1': {'client_addresses': ['10.0.1.5', '10.0.1.6']},
        },
    )
    assert plan['ok']
    assert plan['clients']['c1']['sources'] == ['10.0.1.5', '10.0.1.6']
    assert 'aliases' not in plan['clients']['c1']


@pytest.mark.parametrize(
    'kwargs, match',
    [
        ({'mode': 'bridge'}, 'topology_mode'),
        ({'port_fill': 0}, 'topology_port_fill'),
        ({'port_range': '60000-1024'}, 'topology_port_range'),
        ({'port_range': [1, 2, 3]}, 'topology_port_range'),
        ({'netns_server_cidr': '10.240.0.1/17'}, 'topology_netns_server_cidr'),
    ],
)
def test_bad_input_raises_with_the_field(kwargs, match):
    with pytest.raises(AnsibleFilterError, match=match):
        plan_of(1000, ['h'], ['h'], **kwargs)


def test_privileged_port_range_is_refused():
    plan = plan_of(1000, ['h'], ['h'], port_range=[500, 65535])
    assert any('below 1024' in e for e in plan['errors'])


def test_tuning_one_box_million():
    plan = plan_of(1000000, ['localhost'], ['localhost'])
    t = tuning_of(plan, 'localhost', current=CURRENT, hashsize='262144\n', meminfo=MEMINFO_24G)
    assert t['ok'], t['errors']
    assert t['sockets'] == 2000000 and t['listeners'] == 16
    host = t['host']
    # capacity keys only ever raised: file-max is already enough
    assert 'fs.file-max' not in host
    assert host['net.ipv4.tcp_child_ehash_entries'] == 2097152  # 2^21 >= 1M x 2
    assert host['net.netfilter.nf_conntrack_max'] == 2265536  # 2M x 1.1 + 65536
    assert t['conntrack'] == {'max': 2265536, 'hashsize': 1048576}
    # nofile: next power of two above the larger half = current nr_open, not raised
    assert t['nofile'] == 1048576 and 'fs.nr_open' not in host
    assert t['netns']['tb-client'] == {
        'net.ipv4.ip_local_port_range': '1024 65535',
        'net.ipv4.tcp_tw_reuse': 1,
        'net.ipv4.tcp_max_tw_buckets': 1000000,
    }
    assert t['netns']['tb-server'] == {
        'net.core.somaxconn': 65535,
        'net.ipv4.tcp_max_syn_backlog': 65535,
    }
    mem = t['memory']
    assert mem['needed_bytes'] == 1000000 * (9700 + 1500)
    assert mem['ok']


def test_tuning_raises_nr_open_before_a_larger_nofile():
    plan = plan_of(3000000, ['h'], ['h'], server_port_count=64)
    t = tuning_of(plan, 'h', current=CURRENT, meminfo='MemAvailable: 999999999 kB')
    assert t['nofile'] == 4194304
    assert t['host']['fs.nr_open'] == 4194304
    assert t['host']['fs.file-max'] == int(6000000 * 1.05) + 65536


def test_memory_preflight_fails_with_the_arithmetic():
    plan = plan_of(1000000, ['h'], ['h'])
    t = tuning_of(plan, 'h', current=CURRENT, meminfo='MemAvailable:    8000000 kB\n')
    assert not t['ok']
    msg = t['errors'][0]
    assert '2,000,000 connection ends x (9,700 kernel + 1,500 user bytes per connection) / 2' in msg
    assert '10,681 MiB' in msg and 'MemAvailable 7,812 MiB x 0.85 = 6,640 MiB' in msg


def test_missing_keys_are_not_set():
    plan = plan_of(1000, ['h'], ['h'])
    current = '\n'.join(
        line
        for line in CURRENT.splitlines()
        if 'conntrack' not in line and 'child_ehash' not in line and 'netdev' not in line
    )
    t = tuning_of(plan, 'h', current=current)
    assert 'net.netfilter.nf_conntrack_max' not in t['host']
    assert 'net.ipv4.tcp_child_ehash_entries' not in t['host']
    assert 'net.core.netdev_max_backlog' not in t['host']
    assert t['conntrack'] is None
    assert any('not loaded' in n for n in t['notes'])
    assert any('6.1+' in n for n in t['notes'])


def test_fleet_tuning_puts_every_key_on_the_host():
    inputs = {'s1': {'server_addresses': ['10.0.0.11']}}
    plan = plan_of(
        500000,
        ['s1'],
        ['c1'],
        mode='host',
        host_inputs=inputs,
        client_cidr='10.0.128.0/17',
        interface='eth1',
    )
    client = tuning_of(plan, 'c1', current=CURRENT, conntrack='notrack')
    assert client['netns'] == {}
    assert client['host']['net.ipv4.ip_local_port_range'] == '1024 65535'
    assert 'net.core.somaxconn' not in client['host']
    assert 'net.ipv4.tcp_child_ehash_entries' not in client['host']
    assert client['conntrack'] is None
    server = tuning_of(plan, 's1', current=CURRENT, time_wait='leave')
    assert server['host']['net.core.somaxconn'] == 32768  # 500,000 / 16 endpoints -> 2^15
    assert 'net.ipv4.tcp_tw_reuse' not in server['host']
    assert server['memory']['ends'] == 500000


def test_backlog_follows_the_share_per_endpoint():
    plan = plan_of(20000, ['h'], ['h'])
    t = tuning_of(plan, 'h', current=CURRENT)
    assert t['backlog'] == 4096  # 20,000 / 16 endpoints -> floor 4096
    plan = plan_of(150000, ['h'], ['h'])
    assert tuning_of(plan, 'h', current=CURRENT)['backlog'] == 16384  # 9,375 -> 2^14


@pytest.mark.parametrize('kwargs', [{'conntrack': 'off'}, {'time_wait': 'kill'}])
def test_tuning_refuses_unknown_choices(kwargs):
    plan = plan_of(1000, ['h'], ['h'])
    with pytest.raises(AnsibleFilterError):
        tuning_of(plan, 'h', current=CURRENT, **kwargs)
