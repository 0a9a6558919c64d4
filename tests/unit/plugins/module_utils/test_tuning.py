# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The tuning policy (module_utils/tuning.py), from the roles' real defaults."""

from __future__ import annotations

from ansible_collections.scalelab.testbed.plugins.module_utils import plan as pl
from ansible_collections.scalelab.testbed.plugins.module_utils import tuning as tu

from testlib import role_defaults

# What kernel_info returns on a freshly booted 24 GiB host of this kind.
SYSCTLS = {
    'fs.file-max': '2466181', 'fs.nr_open': '1048576', 'net.core.netdev_max_backlog': '1000',
    'net.core.somaxconn': '4096', 'net.ipv4.ip_local_port_range': '32768 60999',
    'net.ipv4.tcp_child_ehash_entries': '0', 'net.ipv4.tcp_max_syn_backlog': '1024',
    'net.ipv4.tcp_max_tw_buckets': '131072', 'net.ipv4.tcp_tw_reuse': '2',
    'net.netfilter.nf_conntrack_max': '262144',
}


def kernel(mem_kb=24155572, hashsize=262144, drop=()):
    return {'sysctls': dict((k, v) for k, v in SYSCTLS.items() if not any(d in k for d in drop)),
            'mem_available_kb': mem_kb, 'conntrack_hashsize': hashsize}


def tuning_of(plan, host, kern=None, **variables):
    return tu.compute(plan, host, kern or kernel(), role_defaults(**variables))


def plan_of(connections, servers, clients, host_inputs=None, **variables):
    return pl.build(role_defaults(testbed_connections=connections, **variables), servers, clients,
                    host_inputs)


def test_tuning_one_box_million():
    plan = plan_of(1000000, ['localhost'], ['localhost'])
    t = tuning_of(plan, 'localhost')
    assert t['ok'], t['errors']
    assert t['sockets'] == 2000000 and t['listeners'] == 16
    host = t['host']
    # capacity keys only ever raised: file-max is already enough
    assert 'fs.file-max' not in host
    assert host['net.ipv4.tcp_child_ehash_entries'] == 2097152  # 2^21 >= 1M x 2
    assert host['net.netfilter.nf_conntrack_max'] == 2265536  # 2M x 1.1 + 65536
    assert t['conntrack'] == {'max': 2265536, 'hashsize': 1048576}
    # nofile: next power of two above the larger half = current nr_open, not raised
    assert t['nofile'] == 1048576 and 'fs.nr_open' not in host and not t['persist_nr_open']
    assert t['netns']['tb-client'] == {'net.ipv4.ip_local_port_range': '1024 65535',
                                       'net.ipv4.tcp_tw_reuse': 1,
                                       'net.ipv4.tcp_max_tw_buckets': 1000000}
    assert t['netns']['tb-server'] == {'net.core.somaxconn': 65535,
                                       'net.ipv4.tcp_max_syn_backlog': 65535}
    assert t['memory']['needed_bytes'] == 1000000 * (9700 + 400) and t['memory']['ok']
    assert t['memory']['epoll_bytes'] == 0          # tcp, no heartbeats: both halves poll


def test_ends_in_an_epoll_set_add_their_item_to_the_estimate():
    # heartbeats and echo: both halves read as data arrives, so both watch by epoll
    plan = plan_of(1000000, ['h'], ['h'], client_heartbeat_interval=30, server_echo=True)
    assert plan['watch'] == {'client': 'epoll', 'server': 'epoll'}
    t = tuning_of(plan, 'h')
    assert t['memory']['epoll_bytes'] == 2000000 * 500 // 2
    assert t['memory']['needed_bytes'] == 1000000 * (9700 + 400) + 1000000 * 500
    assert '+ 2,000,000 ends in epoll sets x 500 B / 2' in t['memory']['text']
    # only the client: its ends alone
    plan = plan_of(1000000, ['h'], ['h'], client_watch='epoll')
    assert plan['watch'] == {'client': 'epoll', 'server': 'poll'}
    assert tuning_of(plan, 'h')['memory']['epoll_bytes'] == 1000000 * 500 // 2


def test_tuning_raises_nr_open_before_a_larger_nofile():
    plan = plan_of(3000000, ['h'], ['h'], topology_server_port_count=64)
    t = tuning_of(plan, 'h', kernel(mem_kb=999999999))
    assert t['nofile'] == 4194304 and t['host']['fs.nr_open'] == 4194304
    assert t['persist_nr_open']          # above the boot default: persisted with limits.d
    assert t['host']['fs.file-max'] == int(6000000 * 1.05) + 65536


def test_memory_preflight_fails_with_the_arithmetic():
    plan = plan_of(1000000, ['h'], ['h'])
    t = tuning_of(plan, 'h', kernel(mem_kb=8000000))
    assert not t['ok']
    msg = t['errors'][0]
    assert '2,000,000 connection ends x (9,700 kernel + 400 user bytes per connection) / 2' in msg
    assert '9,632 MiB' in msg and 'MemAvailable 7,812 MiB x 0.85 = 6,640 MiB' in msg


def test_missing_keys_are_not_set():
    plan = plan_of(1000, ['h'], ['h'])
    t = tuning_of(plan, 'h', kernel(hashsize=None, drop=('conntrack', 'child_ehash', 'netdev')))
    assert 'net.netfilter.nf_conntrack_max' not in t['host']
    assert 'net.ipv4.tcp_child_ehash_entries' not in t['host']
    assert 'net.core.netdev_max_backlog' not in t['host']
    assert t['conntrack'] is None
    assert any('not loaded' in n for n in t['notes']) and any('6.1+' in n for n in t['notes'])


def test_fleet_tuning_puts_every_key_on_the_host():
    plan = plan_of(500000, ['s1'], ['c1'], {'s1': {'server_addresses': ['10.0.0.11']}},
                   topology_mode='host', topology_client_cidr='10.0.128.0/17',
                   topology_interface='eth1')
    client = tuning_of(plan, 'c1', tuning_conntrack='notrack')
    assert client['netns'] == {} and client['conntrack'] is None
    assert client['host']['net.ipv4.ip_local_port_range'] == '1024 65535'
    assert 'net.core.somaxconn' not in client['host']
    assert 'net.ipv4.tcp_child_ehash_entries' not in client['host']
    server = tuning_of(plan, 's1', tuning_time_wait='leave')
    assert server['host']['net.core.somaxconn'] == 32768  # 500,000 / 16 endpoints -> 2^15
    assert 'net.ipv4.tcp_tw_reuse' not in server['host']
    assert server['memory']['ends'] == 500000


def test_backlog_follows_the_share_per_endpoint():
    assert tuning_of(plan_of(20000, ['h'], ['h']), 'h')['backlog'] == 4096    # 1,250 -> floor
    assert tuning_of(plan_of(150000, ['h'], ['h']), 'h')['backlog'] == 16384  # 9,375 -> 2^14


def test_leave_keeps_conntrack_alone():
    t = tuning_of(plan_of(1000000, ['h'], ['h']), 'h', tuning_conntrack='leave')
    assert t['conntrack'] is None and 'net.netfilter.nf_conntrack_max' not in t['host']


def test_the_keys_read_are_the_keys_used():
    t = tuning_of(plan_of(3000000, ['h'], ['h'], topology_server_port_count=64), 'h',
                  kernel(mem_kb=999999999))
    assert set(t['host']) <= set(tu.KEYS)


def test_nofile_is_capped_where_the_host_cannot_raise_a_hard_limit():
    """A container's hard limit of 20,000: a higher nofile would break logins (pam_limits)."""
    plan = plan_of(240000, ['h'], ['h'])
    kern = dict(kernel(), nofile={'soft': 20000, 'hard': 20000, 'cap_sys_resource': False})
    t = tuning_of(plan, 'h', kern)
    assert t['nofile'] == 20000 and 'fs.nr_open' not in t['host']
    assert any('capped at 20,000' in n and 'CAP_SYS_RESOURCE' in n for n in t['notes'])
    # with the capability the computed value stands
    kern['nofile']['cap_sys_resource'] = True
    assert tuning_of(plan, 'h', kern)['nofile'] == 262144


def test_tls_adds_its_measured_bytes_per_end_to_the_memory_preflight():
    plain = tuning_of(plan_of(100000, ['h'], ['h']), 'h')
    tls = tuning_of(plan_of(100000, ['h'], ['h'], client_tls=True), 'h')
    assert plain['memory']['tls_bytes'] == 0
    assert tls['memory']['tls_bytes'] == 100000 * 32000 + 100000 * 18000
    # TLS is read as it arrives: both halves keep their ends in epoll sets, with their items
    assert tls['memory']['epoll_bytes'] == 200000 * 500 // 2
    assert tls['memory']['needed_bytes'] == plain['memory']['needed_bytes'] + 5000000000 \
        + tls['memory']['epoll_bytes']
    assert ' + TLS (100,000 client ends x 32,000 B + 100,000 server ends x 18,000 B)' \
        in tls['memory']['text']
    # 1,000,000 over TLS does not fit in 24 GiB: the preflight says so with the arithmetic
    big = tuning_of(plan_of(1000000, ['h'], ['h'], client_tls=True), 'h')
    assert not big['ok'] and 'TLS (1,000,000 client ends' in big['errors'][0]


def test_a_tuned_host_of_the_service_is_sized_as_the_server_end_of_its_share():
    plan = pl.build(role_defaults(testbed_connections=200000, testbed_service_endpoints=['10.0.0.11:8080'],
                                  topology_mode='host', topology_interface='eth1',
                                  topology_client_cidr='10.0.128.0/17', client_tls=True),
                    [], ['c1'], {}, services=['svc1', 'svc2'])
    assert plan['ok'], plan['errors']
    t = tuning_of(plan, 'svc1')
    assert t['server_connections'] == 100000 and t['client_connections'] == 0
    assert t['listeners'] == 1
    # 100,000 on one port: the backlog at its ceiling; no client-side keys
    assert t['host']['net.core.somaxconn'] == 65535
    assert 'net.ipv4.ip_local_port_range' not in t['host']
    # the service's own TLS state is not the engine's to size
    assert t['memory']['tls_bytes'] == 0
    # the clients hold the engine's TLS ends
    assert tuning_of(plan, 'c1')['memory']['tls_bytes'] > 0
