# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What converge must have left on the two containers and on the host.

Each check looks at the real state (the containers' /proc/sys, their
addresses, the kernel's socket tables through the collection's sock_diag
counter, the host's /proc/sys) and compares it with what converge asked
for (plan.json, tuning-<host>.json) or with the target of the scenario.
Which keys are host-wide and where a key lives under /proc/sys come from the
collection's sysctl.py, as the modules decide them (conftest.py).
"""

import ipaddress
import json
import os
import pathlib

import pytest

HOSTS = ('server', 'client')


def _tokens(value):
    """'1024 65535', '1024\t65535', [1024, 65535], 1 -> ['1024', '65535'] / ['1']."""
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return str(value).split()


def _is_host_wide(sysctl_rules, key):
    """Keys a container shares with its host: the modules' own rule (sysctl.py).

    A container runs in a network namespace of its own, never the initial one.
    """
    return sysctl_rules.is_global_in_container(key, init_netns=False)


# ----------------------------------------------------------------- sysctls

@pytest.mark.parametrize('name', HOSTS)
def test_tuning_ran_inside_a_container(tuning, name):
    assert tuning[name]['in_container'] is True, (
        'the tuning role did not see %s as a container: it would have written host-wide keys'
        % name)


@pytest.mark.parametrize('name', HOSTS)
def test_namespaced_sysctls_are_set_in_the_container(hosts, tuning, sysctl_rules, name):
    host = hosts[name]
    record = tuning[name]
    namespaced = {k: v for k, v in record['asked'].items() if k not in record['unavailable']}
    for key, wanted in sorted(namespaced.items()):
        assert not _is_host_wide(sysctl_rules, key), (
            '%s: the tuning role set the host-wide key %s from inside the container' % (name, key))
        # sysctl.py's mapping: a "/" in the dotted key is a "." in the path (eth0/100)
        path = sysctl_rules.key_path(key)
        actual = host.file(path).content_string
        assert _tokens(actual) == _tokens(wanted), (
            '%s: %s is %r in the container, the tuning role asked for %r' % (name, key, actual, wanted))


def test_some_namespaced_sysctls_were_asked_for(tuning):
    # The client always needs its port range: an empty record would make the
    # check above pass without looking at anything.
    asked = tuning['client']['asked']
    assert 'net.ipv4.ip_local_port_range' in asked, 'client asked for %r' % (asked,)


@pytest.mark.parametrize('name', HOSTS)
def test_host_wide_keys_are_reported_not_set(tuning, sysctl_rules, name):
    record = tuning[name]
    for key, reason in record['unavailable'].items():
        assert reason and isinstance(reason, str), '%s: %s is unavailable without a reason' % (name, key)
    host_wide_asked = [k for k in record['asked'] if _is_host_wide(sysctl_rules, k)]
    missing = [k for k in host_wide_asked if k not in record['unavailable']]
    assert not missing, '%s: host-wide keys asked for but not reported as unavailable: %s' % (name, missing)


def test_some_host_wide_key_was_reported(tuning, sysctl_rules):
    reported = [k for name in HOSTS for k in tuning[name]['unavailable']
                if _is_host_wide(sysctl_rules, k)]
    assert reported, ('no host-wide key was reported as unavailable in the containers '
                      '(the scenario asks for one: tuning_extra_sysctls); got %r'
                      % {n: tuning[n]['unavailable'] for n in HOSTS})


def test_host_values_were_not_changed_from_the_containers(host_baseline):
    # host-globals.json: the host's values after prepare, before converge.
    # The verifier runs on the host, so these reads are the host's own.
    changed = {}
    for path, before in sorted(host_baseline.items()):
        now = pathlib.Path(path).read_text().strip()
        if _tokens(now) != _tokens(before):
            changed[path] = (before, now)
    assert not changed, 'host values changed during converge (before, now): %r' % changed


def test_host_wide_value_seen_in_the_container_is_the_hosts(client, host_baseline):
    # fs.file-max is not per container: the container reads the host's value.
    path = '/proc/sys/fs/file-max'
    assert _tokens(client.file(path).content_string) == _tokens(host_baseline[path])


# ----------------------------------------------------------------- aliases

def test_client_aliases_are_present(client, plan):
    cidr = os.environ.get('SCENARIO_ALIAS_CIDR')
    assert cidr, 'SCENARIO_ALIAS_CIDR must be set by molecule.yml (verifier.env)'
    cidr = ipaddress.ip_network(cidr)
    mine = plan['clients']['client']
    interface = plan['interface']
    family = '-6' if cidr.version == 6 else '-4'
    data = json.loads(client.check_output('ip -j %s address show dev %s', family, interface))
    present = {a['local'] for link in data for a in link.get('addr_info', [])}
    wanted = set(mine['aliases'])
    assert wanted, 'the plan gives the client no aliases'
    assert wanted <= present, 'aliases missing on %s: %s' % (interface, sorted(wanted - present))
    assert all(ipaddress.ip_address(a) in cidr for a in wanted), (
        'aliases outside %s: %s' % (cidr, sorted(wanted)))
    assert set(mine['sources']) <= present


def test_one_source_address_could_not_carry_the_target(plan, target):
    # The point of the scenario: more connections than one (source,
    # destination) pair can carry, from one container.
    mine = plan['clients']['client']
    assert target > 65535
    assert len(mine['sources']) * mine['per_source'] >= mine['connections'] == target
    assert mine['per_source'] < target, 'one source is enough for this plan: %r' % (mine,)


# ----------------------------------------------------------------- server

def test_server_listens_on_every_endpoint(server, plan, sockdiag):
    addresses = plan['servers']['server']['addresses']
    lo, hi = plan['server_ports']
    endpoints = {('[%s]:%d' if ':' in a else '%s:%d') % (a, p)
                 for a in addresses for p in range(lo, hi + 1)}
    counts = sockdiag(server, states=['listen'], local_networks=addresses,
                      local_ports=[[lo, hi]])
    # Several workers may listen on one endpoint (SO_REUSEPORT): at least
    # one socket per endpoint, and ss must see the same sockets.
    assert counts['listen'] >= len(endpoints), (
        'sock_diag: %d listening sockets on %s ports %d-%d, want at least %d'
        % (counts['listen'], addresses, lo, hi, len(endpoints)))
    ss = [line.split()[3] for line in server.check_output('ss -Htln').splitlines()]
    mine = [e for e in ss if e in endpoints]
    assert len(mine) == counts['listen'], 'ss sees %d of them, sock_diag %d' % (len(mine), counts['listen'])
    assert set(mine) == endpoints, 'not listening: %s' % sorted(endpoints - set(mine))


# ----------------------------------------------------------------- the count

def test_report_target_is_the_scenarios(report, target):
    assert report['target'] == target


def test_verified_count_on_both_containers_reaches_the_target(report, target):
    # Counted by scalelab.testbed.tcp_sockets_info (the collection's
    # sock_diag reader) inside each container while every client held.
    server_side = report['servers']['server']['verified_server']
    client_side = report['clients']['client']['verified_client']
    assert server_side >= target, 'server container: %s established, target %d' % (server_side, target)
    assert client_side >= target, 'client container: %s established, target %d' % (client_side, target)
    assert report['verified_ok'] is True, report['reasons']
    assert min(report['verified_server_side'], report['verified_client_side']) >= target


def test_the_count_held_to_the_end_of_the_hold(report, target):
    # Counted again when the hold was over: nothing lost in between, no lost
    # worker, both halves ended cleanly.
    assert report['servers']['server']['verified_server_end'] >= target
    assert report['clients']['client']['verified_client_end'] >= target
    assert report['lost_workers'] == [] and report['dropped'] == 0
    assert report['clients']['client']['held_ok'] is True
    assert report['servers']['server']['running_at_end'] is True


def test_engine_agrees_with_the_kernel_count(report, target):
    # The engine's own view (its summary and the server's status) must match
    # what the kernel counted; a gap means one of them is wrong.
    engine = report['clients']['client']
    assert engine['reached'] is True and engine['rc'] == 0
    assert engine['established_peak'] >= target
    assert report['servers']['server']['held_total'] >= target
    assert not engine['errors'], 'connection errors: %r' % (engine['errors'],)


def test_no_connection_outlived_the_run(server, client, plan, sockdiag):
    # The run stops the client half after counting: nothing is left
    # established between the containers (the server half keeps listening).
    lo, hi = plan['server_ports']
    left = sockdiag(client, states=['established'], remote_ports=[[lo, hi]])['established']
    assert left == 0, '%d connections still established on the client after the run' % left
