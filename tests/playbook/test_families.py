# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""site.yml on the one-box default over IPv6, dual stack, and AnyIP sources.

In order, on this host (root), under the heavy-run lock like test_site.py:
bad family input fails before any change (an IPv4 network given for IPv6,
IPv6 disabled on the host, AnyIP on a host that refuses IP_FREEBIND binds:
nofreebind.py's seccomp filter); 150,000 over IPv6, then over both families
(each family's count verified; the first over HTTP keep-alive, the second
over WebSocket, each first answer counted by status), then over AnyIP with 4,096 sources (one
local route, no alias per source), each verified on both sides by sock_diag;
teardown leaves no namespace, no route and the host as it was.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys

import pytest

from test_site import HERE, LOCK, differences, ours_present, playbook  # noqa: F401 pylint: disable=unused-import
from test_site import pristine  # noqa: F401 pylint: disable=unused-import

TARGET = 150000
DISABLE_IPV6 = '/proc/sys/net/ipv6/conf/all/disable_ipv6'

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason='needs root (namespaces, sysctls)'),
]


def report(state):
    with open(os.path.join(state['reports'], 'latest', 'report.json')) as f:
        return json.load(f)


def run_site(state, *extra):
    args = ['site.yml', '-e', 'testbed_connections=%d' % TARGET, '-e', 'client_hold=3']
    for e in extra:
        args += ['-e', e]
    return playbook(args, state['reports'])


def netns_json(ns, *argv):
    out = subprocess.run(['ip', '-netns', ns, '-j'] + list(argv), check=True,
                         stdout=subprocess.PIPE).stdout
    return json.loads(out or b'[]')


def assert_verified(r):
    assert r['verified_ok'], r['reasons']
    assert r['verified_server_side'] >= TARGET and r['verified_client_side'] >= TARGET
    assert r['verified_end_server_side'] >= TARGET and r['verified_end_client_side'] >= TARGET


def test_an_ipv4_network_for_ipv6_fails_before_any_change(pristine):
    rc, out = run_site(pristine, 'testbed_ip_family=ipv6', 'topology_netns_client_cidr6=10.9.0.0/16')
    assert rc != 0
    assert 'topology_netns_client_cidr6 10.9.0.0/16 is IPv4' in out
    assert 'PLAY [Provision the testbed]' not in out
    assert differences(pristine['before']) == [] and ours_present() == []


def test_ipv6_disabled_on_the_host_fails_before_any_change(pristine):
    with open(DISABLE_IPV6) as f:
        old = f.read().strip()
    try:
        with open(DISABLE_IPV6, 'w') as f:
            f.write('1')
        rc, out = run_site(pristine, 'testbed_ip_family=ipv6')
    finally:
        with open(DISABLE_IPV6, 'w') as f:
            f.write(old)
    assert rc != 0
    assert 'net.ipv6.conf.all.disable_ipv6 is 1 on this host' in out
    assert 'PLAY [Provision the testbed]' not in out
    assert differences(pristine['before']) == [] and ours_present() == []


def test_anyip_where_freebind_binds_fail_fails_before_any_change(pristine):
    # a host whose kernel refuses IP_FREEBIND: a seccomp filter inherited by the modules
    wrapper = [sys.executable, os.path.join(HERE, 'nofreebind.py')]
    rc, out = playbook(['site.yml', '-e', 'testbed_connections=%d' % TARGET,
                        '-e', 'topology_client_sources=anyip'], pristine['reports'], wrapper=wrapper)
    assert rc != 0
    assert 'topology_client_sources anyip binds source addresses that are on no interface' in out
    assert 'ipv4: Operation not permitted' in out and 'set topology_client_sources to aliases' in out
    assert 'PLAY [Provision the testbed]' not in out
    assert differences(pristine['before']) == [] and ours_present() == []


def assert_answered(r, protocol, status):
    """Every connection's first answer came, with the status the server half gives."""
    proto = r['protocol']
    assert proto['name'] == protocol and proto['errors_total'] == 0, proto
    assert proto['responses_by_status'].get(status, 0) >= TARGET, proto


# The engine against itself speaks each protocol at 150,000 on the way: IPv6 over
# HTTP keep-alive, dual stack over WebSocket (tcp is test_site.py's).
def test_ipv6_reaches_and_verifies_the_target(pristine):
    rc, out = run_site(pristine, 'testbed_ip_family=ipv6', 'client_protocol=http')
    assert rc == 0, out[-5000:]
    r = report(pristine)
    assert_verified(r)
    assert_answered(r, 'http', '200')
    # no heartbeats: each request answered at accept, no epoll item per connection
    assert [s['watch'] for s in r['servers'].values()] == ['poll'], r['servers']
    cli = netns_json('tb-client', 'address', 'show', 'dev', 'tb-cli')
    mine = [a['local'] for link in cli for a in link['addr_info'] if a['family'] == 'inet6'
            and not a['local'].startswith('fe80')]
    assert mine and all(ipaddress.ip_address(a) in ipaddress.ip_network('fd00::/8') for a in mine)


def test_dual_stack_verifies_each_family(pristine):
    # with heartbeats (none is due within the hold here): the server half answers what
    # clients send as it arrives, so the roles pass it --echo and it watches by epoll
    rc, out = run_site(pristine, 'testbed_ip_family=dual', 'client_protocol=websocket',
                       'client_heartbeat_interval=60')
    assert rc == 0, out[-5000:]
    r = report(pristine)
    assert_verified(r)
    assert_answered(r, 'websocket', '101')
    assert [s['watch'] for s in r['servers'].values()] == ['epoll'], r['servers']
    fams = r['verified_by_family']
    assert fams['ipv4'] + fams['ipv6'] >= TARGET
    # split between the families (the engine spreads connections over the tuples of both)
    assert fams['ipv4'] >= TARGET * 0.4 and fams['ipv6'] >= TARGET * 0.4, fams
    assert 'IPv6' in out and 'by family at the start' in out


def test_anyip_holds_the_target_from_4096_sources_without_aliases(pristine):
    rc, out = run_site(pristine, 'topology_client_sources=anyip', 'topology_client_source_count=4096')
    assert rc == 0, out[-5000:]
    assert_verified(report(pristine))
    cli = netns_json('tb-client', 'address', 'show', 'dev', 'tb-cli')
    v4 = [a['local'] for link in cli for a in link['addr_info'] if a['family'] == 'inet']
    assert len(v4) == 1                         # the link address: no alias per source
    local = netns_json('tb-client', 'route', 'show', 'table', 'local', 'dev', 'lo')
    assert any(r.get('dst') == '10.240.128.0/17' and r.get('type') == 'local' for r in local), local
    back = netns_json('tb-server', 'route', 'show')
    assert any(r.get('dst') == '10.240.128.0/17' and r.get('gateway') == v4[0] for r in back), back


def test_teardown_leaves_no_namespace_and_no_route(pristine):
    rc, out = playbook(['teardown.yml'], pristine['reports'])
    assert rc == 0, out[-3000:]
    assert ours_present() == []
    routes = subprocess.run(['ip', '-j', 'route', 'show', 'table', 'all'], check=True,
                            stdout=subprocess.PIPE).stdout.decode()
    assert '10.240.128.0/17' not in routes and 'fd5c:a1e0:7e57' not in routes
    assert differences(pristine['before']) == []
