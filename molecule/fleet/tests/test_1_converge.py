# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What converge did on the fleet, read on the hosts themselves (over SSH)
and in the report it wrote. The files run in name order: this one first
(read only), then the faults and teardown, which change the fleet.
"""

import functools
import ipaddress
import json
import os
import subprocess
import sys

import pytest

from conftest import CLIENT_UNIT, CLIENTS, HOSTS, SERVER_UNIT, SERVERS, inventory, scratch

# A few connections of the hosts' own (the controller's SSH sessions) are
# tracked; the test connections must not be.
CONNTRACK_NEAR_ZERO = 50


@functools.lru_cache(maxsize=None)
def _inventory_host(name):
    """The host's variables as molecule's inventory gives them (not templated)."""
    out = subprocess.run([os.path.join(os.path.dirname(sys.executable), 'ansible-inventory'),
                          '-i', inventory(), '--host', name],
                         stdout=subprocess.PIPE, check=True).stdout
    return json.loads(out)


def _platforms():
    import yaml  # pylint: disable=import-outside-toplevel
    with open(os.environ['MOLECULE_FILE']) as f:
        return dict((p['name'], p) for p in yaml.safe_load(f)['platforms'])


# ------------------------------------------------------------- transport

@pytest.mark.parametrize('name', HOSTS)
def test_ansible_reaches_the_host_over_ssh_at_its_address(name):
    hostvars = _inventory_host(name)
    assert hostvars['ansible_connection'] == 'ssh'
    assert hostvars['ansible_host'] == _platforms()[name]['ip']
    assert hostvars['ansible_private_key_file'] == str(scratch() / 'id_ed25519')


@pytest.mark.parametrize('name', HOSTS)
def test_sshd_logged_the_runs_key(hosts, name):
    # sshd of the container accepted the run's key from the controller (the
    # bridge's address): that is how every task got there. Ansible keeps one
    # master connection per host (ControlPersist), so one login may carry
    # the whole play.
    bridge = str(next(ipaddress.ip_network(_inventory_host(name)['scenario_subnet']).hosts()))
    fingerprint = subprocess.run(
        ['ssh-keygen', '-l', '-f', str(scratch() / 'id_ed25519.pub')],
        check=True, capture_output=True, text=True).stdout.split()[1]
    log = hosts[name].check_output('journalctl --identifier sshd --no-pager --output cat')
    accepted = [line for line in log.splitlines()
                if line.startswith('Accepted publickey for root from %s ' % bridge)
                and line.rstrip().endswith(fingerprint)]
    assert accepted, 'no login with the run\'s key %s in:\n%s' % (fingerprint, log[-3000:])


@pytest.mark.parametrize('name', HOSTS)
def test_systemd_is_pid_1_and_running(hosts, name):
    host = hosts[name]
    assert host.file('/proc/1/comm').content_string.strip() == 'systemd'
    assert host.run('systemctl is-system-running').stdout.strip() == 'running'


# ------------------------------------------------------- production paths

@pytest.mark.parametrize('name', SERVERS)
def test_server_half_runs_as_its_unit_with_the_planned_limit(hosts, tuning, name):
    host = hosts[name]
    show = dict(line.split('=', 1) for line in host.check_output(
        'systemctl show %s --property ActiveState --property LimitNOFILE --property MainPID',
        SERVER_UNIT).splitlines())
    assert show['ActiveState'] == 'active'
    nofile = tuning[name]['nofile']
    assert int(show['LimitNOFILE']) == nofile
    limits = host.file('/proc/%s/limits' % show['MainPID']).content_string
    line = next(x for x in limits.splitlines() if x.startswith('Max open files'))
    assert line.split()[3:5] == [str(nofile), str(nofile)], line
    assert 'server' in host.file('/proc/%s/cmdline' % show['MainPID']).content_string


@pytest.mark.parametrize('name', HOSTS)
def test_the_default_limits_drop_in_took_effect(hosts, tuning, name):
    # DefaultLimitNOFILE is read by the manager: the tuning role re-executed
    # it, and the journal says teardown must do the same.
    host = hosts[name]
    nofile = str(tuning[name]['nofile'])
    show = host.check_output('systemctl show --property DefaultLimitNOFILE --property DefaultLimitNOFILESoft')
    assert sorted(show.split()) == ['DefaultLimitNOFILE=' + nofile, 'DefaultLimitNOFILESoft=' + nofile]
    journal = json.loads(host.file('/var/lib/scalelab_testbed/journal.json').content_string)
    dropin = journal['entries']['file']['/etc/systemd/system.conf.d/90-scalelab-testbed.conf']
    assert dropin['reload'] == 'daemon-reexec' and dropin['previous'] is None


@pytest.mark.parametrize('name', CLIENTS)
def test_client_half_ran_under_systemd_with_its_log_in_the_journal(hosts, report, target, name):
    host = hosts[name]
    share = target // len(CLIENTS)
    assert report['clients'][name]['manager'] == 'systemd'
    log = host.check_output('journalctl --unit %s --no-pager --output cat', CLIENT_UNIT)
    assert 'established {0}/{0} (100.0%)'.format(share) in log, log[-2000:]
    assert '"reached": true' in log
    # a transient unit, collected once it ended: nothing of it is left
    assert host.run('systemctl is-active %s', CLIENT_UNIT).stdout.strip() in ('inactive', 'unknown')


@pytest.mark.parametrize('name', HOSTS)
def test_notrack_exempts_the_test_ports_in_nftables(hosts, plan, name):
    host = hosts[name]
    lo, hi = plan['server_ports']
    ports = str(lo) if lo == hi else '%d-%d' % (lo, hi)
    table = host.check_output('nft list table inet scalelab_testbed')
    for rule in ('tcp dport %s notrack' % ports, 'tcp sport %s notrack' % ports):
        assert table.count(rule) == 2, table          # prerouting and output
    # the host's own stateful firewall is still there, so conntrack runs
    assert host.run('nft list table inet scalelab_fleet_firewall').rc == 0


@pytest.mark.parametrize('name', HOSTS)
def test_conntrack_stayed_near_zero_while_the_connections_were_held(hosts, report, name):
    entry = report['servers'][name] if name in SERVERS else report['clients'][name]
    held = entry['verified_server'] if name in SERVERS else entry['verified_client']
    assert held >= 80000
    assert entry['conntrack'] is not None and entry['conntrack'] <= CONNTRACK_NEAR_ZERO, entry
    # and connection tracking is on there: the SSH session of this check is tracked
    assert int(hosts[name].file('/proc/sys/net/netfilter/nf_conntrack_count').content_string) >= 1


# --------------------------------------------------------------- the split

def test_the_target_is_split_evenly_over_the_clients(plan, target):
    shares = dict((name, plan['clients'][name]['connections']) for name in CLIENTS)
    assert sum(shares.values()) == target
    assert set(shares.values()) == {target // len(CLIENTS)}
    assert min(shares.values()) > 65535


@pytest.mark.parametrize('name', CLIENTS)
def test_each_client_uses_its_aliases_against_both_servers(hosts, plan, name):
    client = plan['clients'][name]
    cidr = ipaddress.ip_network(_inventory_host(name)['topology_client_cidr'])
    sources = client['sources']
    assert len(sources) >= 3 and all(ipaddress.ip_address(s) in cidr for s in sources)
    others = set().union(*(plan['clients'][c]['sources'] for c in CLIENTS if c != name))
    assert not set(sources) & others, 'clients share source addresses'
    servers = sorted(a for s in SERVERS for a in _inventory_host(s)['topology_server_addresses'])
    assert sorted(client['targets']) == servers
    present = set(str(a) for a in hosts[name].interface('eth0').addresses)
    assert set(sources) <= present


@pytest.mark.parametrize('name', CLIENTS)
def test_each_client_verified_its_share_on_itself(report, target, name):
    entry = report['clients'][name]
    share = target // len(CLIENTS)
    assert entry['verified_client'] == share and entry['verified_client_end'] == share
    assert entry['held_ok'] is True and entry['rc'] == 0


def test_the_servers_verified_the_whole_target_between_them(report, target):
    counts = [report['servers'][name]['verified_server'] for name in SERVERS]
    assert sum(counts) == target and min(counts) > 0, counts
    assert sum(report['servers'][name]['verified_server_end'] for name in SERVERS) == target
    assert report['verified_server_side'] == target and report['verified_ok'] is True, report['reasons']


def test_the_clients_started_within_seconds_of_each_other(report):
    launched = [report['clients'][name]['launched_at'] for name in CLIENTS]
    assert all(launched), launched
    assert report['start_spread_seconds'] is not None and report['start_spread_seconds'] <= 5.0


def test_the_report_has_a_row_per_host_and_a_timeline_that_sums_them(report, target):
    assert sorted(report['clients']) == list(CLIENTS) and sorted(report['servers']) == list(SERVERS)
    html = (scratch() / 'report' / 'report.html').read_text()
    for name in HOSTS:
        assert html.count('<tr><td class="l">%s</td>' % name) == 1, name
    assert max(point[1] for point in report['timeline']) == target


@pytest.mark.parametrize('name', CLIENTS)
def test_no_connection_outlived_the_run(plan, sockdiag, name):
    lo, hi = plan['server_ports']
    assert sockdiag(name, states=['established'], remote_ports=[[lo, hi]])['established'] == 0
