"""The fleet scenario tests the inventory users are told to write.

molecule/fleet/inventory/hosts.yml must keep the shape of
inventory/fleet.example.yml: the same groups, the same variables at the same
level, and hosts reached at the address molecule gives the container. When
the example changes, the scenario follows, so the example is what runs.
"""
import os

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(ROOT, 'inventory', 'fleet.example.yml')
SCENARIO = os.path.join(ROOT, 'molecule', 'fleet', 'inventory', 'hosts.yml')
MOLECULE = os.path.join(ROOT, 'molecule', 'fleet', 'molecule.yml')

# The example shows optional extras on one host; the scenario needs none.
OPTIONAL_HOST_VARS = {'topology_server_alias_cidr', 'topology_server_alias_count'}


def load(path):
    with open(path) as f:
        return yaml.safe_load(f)


def groups(inv):
    return inv['all']['children']


def test_same_groups():
    assert set(groups(load(SCENARIO))) == set(groups(load(EXAMPLE))) == {'servers', 'clients'}


def test_same_play_wide_variables():
    example = set(load(EXAMPLE)['all']['vars'])
    scenario = set(load(SCENARIO)['all']['vars'])
    assert scenario == example, (
        'only in the example: %s; only in the scenario: %s'
        % (sorted(example - scenario), sorted(scenario - example)))


def test_same_host_variables_per_group():
    example, scenario = load(EXAMPLE), load(SCENARIO)
    for group in ('servers', 'clients'):
        want = set()
        for hostvars in groups(example)[group]['hosts'].values():
            want |= set(hostvars or {})
        for name, hostvars in groups(scenario)[group]['hosts'].items():
            have = set(hostvars or {})
            missing = want - OPTIONAL_HOST_VARS - have
            extra = have - want
            assert not missing and not extra, (
                '%s in %s: missing %s, not in the example %s'
                % (name, group, sorted(missing), sorted(extra)))


def test_hosts_are_the_platforms_at_their_addresses():
    platforms = {p['name']: p for p in load(MOLECULE)['platforms']}
    scenario = load(SCENARIO)
    seen = set()
    for group in ('servers', 'clients'):
        for name, hostvars in groups(scenario)[group]['hosts'].items():
            seen.add(name)
            assert name in platforms, '%s is not a platform of molecule/fleet' % name
            assert hostvars['ansible_host'] == platforms[name]['ip']
            assert group in platforms[name]['groups']
    assert seen == set(platforms)


def test_split_needs_aliases():
    """Each client's share is above one source address's 4-tuples, so the
    scenario exercises the aliases and both servers, as the issue asks."""
    scenario = load(SCENARIO)
    play = scenario['all']['vars']
    clients = groups(scenario)['clients']['hosts']
    servers = groups(scenario)['servers']['hosts']
    share = play['testbed_connections'] // len(clients)
    assert share > 65535
    assert len(servers) >= 2
