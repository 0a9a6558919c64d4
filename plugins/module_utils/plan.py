# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run plan: who connects from where to where, and how many.

``build(variables, servers, clients, host_inputs)`` takes the role variables
by their names (testbed_connections, topology_*, and the others, which
variables.check validates too) and the inventory, and returns the plan every
role follows: the per-host split of the target, the server endpoints, the
client source addresses and the port arithmetic. Pure: no I/O.

Capacity: connect() picks the source port per (source address, destination
address, destination port) tuple (the engine binds sources with
IP_BIND_ADDRESS_NO_PORT), so one client host can hold sources x destinations x
ports x (port range x fill) connections. The fill keeps each tuple well below
the range: Linux searches ports of one parity first, and a search that meets
mostly used ports costs one hash lookup per port tried.

Problems are returned in ``errors`` (sentences naming the variable and the
fix), not raised, so the play fails with all of them before any change.

A service under test (``testbed_service_endpoints``, ADDRESS:PORT or
[ADDRESS]:PORT, names resolved by the caller's ``resolve``) replaces the
server half: the clients connect to those endpoints, spread over them as
over the server endpoints, and the count is verified on the service's ports.
"""

from __future__ import annotations

import ipaddress
import math

from ansible_collections.scalelab.testbed.plugins.module_utils import ipplan
from ansible_collections.scalelab.testbed.plugins.module_utils import variables as checks


def fmt(n):
    return '{:,}'.format(int(n))


def split_total(total, hosts):
    """Split total over hosts; the remainder goes to the first hosts."""
    hosts = list(hosts)
    if not hosts:
        return {}
    base, rest = divmod(int(total), len(hosts))
    return dict((h, base + (1 if i < rest else 0)) for i, h in enumerate(hosts))


class _Plan(object):
    """The state of one plan being built: inputs, errors, arithmetic lines."""

    def __init__(self, v, servers, clients, host_inputs, services=None):
        self.v = v
        self.servers = list(servers or [])
        self.services = list(services or [])
        self.clients = list(clients or [])
        self.inputs = dict(host_inputs or {})
        self.errors = []
        self.arithmetic = []
        self.connections = int(v['testbed_connections'])
        self.shares = split_total(self.connections, self.clients)
        self.first = int(v['topology_server_port_first'])
        self.nports = int(v['topology_server_port_count'])
        lo, hi = ipplan.port_range(v['topology_port_range'])
        self.port_range = [lo, hi]
        self.fill = float(v['topology_port_fill'])
        self.per_tuple = max(1, int((hi - lo + 1) * self.fill))
        self.source_count = int(v['topology_client_source_count'])
        self.source_max = int(v['topology_client_source_max'])
        self.plan_servers = {}
        self.plan_clients = {}
        self.service = None             # [(address text, port)] of a service under test

    def destinations(self, version, addresses):
        """What one family's clients connect to: the service's endpoints of that family
        (as 'ADDRESS:PORT' texts, one port each), else the addresses given (x the server ports)."""
        if self.service is None:
            return list(addresses)
        return [ipplan.endpoint_text(a, port) for a, port in self.service
                if ipaddress.ip_address(a).version == version]

    def input_of(self, host, name):
        return (self.inputs.get(host) or {}).get(name)

    def client_entry(self, host, targets, source_count, room, where, share=None, family=''):
        """Sources needed for host's share (or the part of it given), with the arithmetic;
        an error when short."""
        share = self.shares[host] if share is None else share
        per_source = len(targets) * self.nports * self.per_tuple
        entry = {'connections': share, 'source_count': 0, 'targets': list(targets),
                 'tuples': 0, 'capacity': 0, 'per_source': per_source, 'sources': []}
        if per_source == 0:
            return entry
        needed = int(math.ceil(share / float(per_source))) if share else 0
        if source_count and source_count > room:
            self.errors.append('topology_client_source_count %d does not fit: %s offers %d source '
                               'address(es). Fix: give a larger network, fewer sources, or (aliases) a higher '
                               'topology_client_source_max'
                               % (source_count, where, room))
        count = source_count or (max(1, needed) if share else 0)
        count = min(count, max(room, 0)) if room else 0
        capacity = count * per_source
        self.arithmetic.append(
            'client %s: %s connections%s; %d source(s) x %d destination(s) x %d port(s) x %s ports '
            'per tuple = %s' % (host, fmt(share), family and ' over ' + family, count, len(targets),
                                self.nports, fmt(self.per_tuple), fmt(capacity)))
        if share > capacity:
            self.errors.append(
                'client %s cannot reach %s connections%s: %d source address(es) x %d destination(s) '
                'x %d server port(s) x %s ports per tuple (port range x fill) = %s; it needs %d '
                'source address(es) but %s offers %d. Fix: add server ports '
                '(topology_server_port_count), server addresses, source addresses, or widen '
                'topology_port_range' % (host, fmt(share), family and ' over ' + family, count,
                                         len(targets), self.nports,
                                         fmt(self.per_tuple), fmt(capacity), needed, where, room))
        entry.update(source_count=count, tuples=count * len(targets) * self.nports,
                     capacity=capacity)
        return entry


def _service_endpoints(p, resolve):
    """testbed_service_endpoints as [(address text, port)]; names through resolve(name, versions)."""
    v = p.v
    given = v.get('testbed_service_endpoints') or []
    if not given:
        return None
    versions = families(v)
    out = []
    for i, text in enumerate(given):
        field = 'testbed_service_endpoints[%d]' % i
        try:
            host, port = ipplan.split_endpoint(text)
        except ValueError as exc:
            p.errors.append('%s: %s' % (field, exc))
            continue
        try:
            addr = str(ipplan.address(host))
        except ValueError:
            found = resolve(host, versions) if resolve else []
            if not found:
                p.errors.append('%s: the name %r does not resolve to an IPv%s address (on the '
                                'controller). Fix: give an address, or a name that resolves'
                                % (field, host, ' or IPv'.join(str(x) for x in versions)))
                continue
            addr = found[0]
        version = ipaddress.ip_address(addr).version
        if version not in versions:
            p.errors.append('%s: %s is IPv%d, but testbed_ip_family is %s. Fix: give an IPv%d '
                            'endpoint, or set testbed_ip_family' % (
                                field, text, version, v.get('testbed_ip_family') or 'ipv4',
                                versions[0]))
            continue
        if (addr, port) in out:
            p.errors.append('%s: %s is listed twice' % (field, text))
            continue
        out.append((addr, port))
    missing = [x for x in versions if out and not any(
        ipaddress.ip_address(a).version == x for a, _port in out)]
    if missing:
        p.errors.append('testbed_service_endpoints has no IPv%d endpoint, but testbed_ip_family %s '
                        'splits the target over both families. Fix: add an IPv%d endpoint, or set '
                        'testbed_ip_family to ipv%d' % (missing[0], v.get('testbed_ip_family'),
                                                        missing[0], 10 - missing[0]))
    if v.get('topology_mode') == 'host' and p.servers:
        p.errors.append('testbed_service_endpoints: the server half is not deployed when a service '
                        'is under test, but the group "servers" has %s. Fix: move the service\'s '
                        'hosts to the group "services" (read, never changed unless tuning_services '
                        'is true for them), and leave "servers" empty' % ', '.join(p.servers))
    if v.get('topology_mode') == 'netns' and p.services:
        p.errors.append('the group "services" (%s) is for a fleet (topology_mode host): on the '
                        'one-box default the service listens on this host, and its side is '
                        'counted here. Fix: empty the group, or set topology_mode host'
                        % ', '.join(p.services))
    if v.get('topology_client_sources') == 'anyip':
        p.errors.append('topology_client_sources anyip with testbed_service_endpoints is not '
                        'supported yet (the route back would go into the host\'s own table). '
                        'Fix: use aliases')
    loopback = [ipplan.endpoint_text(a, port) for a, port in out if ipaddress.ip_address(a).is_loopback]
    if loopback and v.get('topology_mode') == 'netns':
        p.errors.append('testbed_service_endpoints %s: a loopback address is the client '
                        'namespace\'s own there, not the host\'s. Fix: use the host\'s end of the '
                        'veth, %s (the service listening on it or on its wildcard address)'
                        % (', '.join(loopback), ipplan.hosts(ipplan.network(
                            v['topology_netns_server_cidr']), 1)[0]))
    return out or None


def _hosts(cidr, count, offset, name):
    try:
        return [str(a) for a in ipplan.hosts(cidr, count, offset)]
    except ValueError as exc:
        raise _PlanError('%s: %s' % (name, exc))


class _PlanError(Exception):
    pass


# The one-box networks of each family: (server cidr, client cidr, link prefix length).
NETNS_FAMILY_VARS = {
    4: ('topology_netns_server_cidr', 'topology_netns_client_cidr', 'topology_netns_prefix_length'),
    6: ('topology_netns_server_cidr6', 'topology_netns_client_cidr6', 'topology_netns_prefix_length6'),
}
FAMILIES = {'ipv4': (4,), 'ipv6': (6,), 'dual': (4, 6)}
ANYIP_SOURCE_MAX = 1 << 20      # sources of one AnyIP prefix the engine is given at most


def families(v):
    """The IP versions of the run (testbed_ip_family; ipv4 when it is not given)."""
    return FAMILIES.get(v.get('testbed_ip_family') or 'ipv4', (4,))


def _netns_family(p, version):
    """Server addresses, link and client network of one family on the one-box default."""
    v = p.v
    srv_name, cli_name, plen_name = NETNS_FAMILY_VARS[version]
    srv_net, cli_net = ipplan.network(v[srv_name]), ipplan.network(v[cli_name])
    for name, net in ((srv_name, srv_net), (cli_name, cli_net)):
        if net.version != version:
            raise _PlanError('%s %s is IPv%d, but testbed_ip_family %s needs an IPv%d network '
                             'there; give one (the default is %s) or change testbed_ip_family'
                             % (name, net, net.version, v.get('testbed_ip_family') or 'ipv4',
                                version, DEFAULT_NETNS[version][name == cli_name]))
    nsrv = int(v['topology_server_address_count'])
    room = ipplan.usable_hosts(srv_net)[1]
    if nsrv > room:
        p.errors.append('topology_server_address_count %d does not fit in %s %s (%d addresses)'
                        % (nsrv, srv_name, srv_net, room))
        nsrv = max(1, room)
    srv_addrs = _hosts(srv_net, nsrv, 0, srv_name)
    prefix = int(v[plen_name])
    link = ipaddress.ip_network('%s/%d' % (srv_addrs[0], prefix), strict=False)
    for name, net in ((srv_name, srv_net), (cli_name, cli_net)):
        if not net.subnet_of(link):
            p.errors.append('%s %s is not inside the veth link network %s (%s %d): the two '
                            'namespaces could not reach each other; widen the prefix or move the '
                            'network' % (name, net, link, plen_name, prefix))
    if srv_net.overlaps(cli_net):
        p.errors.append('%s %s and %s %s overlap' % (srv_name, srv_net, cli_name, cli_net))
    return {'version': version, 'server_addresses': srv_addrs, 'client_net': cli_net,
            'client_cidr_name': cli_name, 'prefix': prefix, 'server_cidr': str(srv_net)}


DEFAULT_NETNS = {4: ('10.240.0.0/17', '10.240.128.0/17'),
                 6: ('fd5c:a1e0:7e57::/64', 'fd5c:a1e0:7e57:1::/64')}


def _with_prefix(addresses, prefix, host_prefix):
    """The first address with the link prefix, the others as host routes (/32, /128)."""
    return ['%s/%d' % (a, prefix if i == 0 else host_prefix) for i, a in enumerate(addresses)]


def _netns_client(p, host, fams, anyip):
    """One one-box client: its sources of every family, the addresses and AnyIP routes."""
    # the share over the families of the run: halves, the remainder to the first
    parts = split_total(p.shares[host], [f['version'] for f in fams])
    entry = {'connections': p.shares[host], 'source_count': 0, 'targets': [], 'tuples': 0,
             'capacity': 0, 'per_source': 0, 'sources': [], 'interface_addresses': [],
             'local_routes': [], 'families': {}}
    for f in fams:
        cli_net, name = f['client_net'], f['client_cidr_name']
        room = ipplan.usable_hosts(cli_net)[1]
        room = min(room, ANYIP_SOURCE_MAX if anyip else p.source_max)
        part = p.client_entry(host, p.destinations(f['version'], f['server_addresses']),
                              p.source_count, room,
                              '%s %s' % (name, cli_net), share=parts[f['version']],
                              family='IPv%d' % f['version'] if len(fams) > 1 else '')
        part['sources'] = _hosts(cli_net, part['source_count'], 0, name) if part['source_count'] else []
        if part['sources']:
            on_link = part['sources'][:1] if anyip else part['sources']
            entry['interface_addresses'] += _with_prefix(on_link, f['prefix'],
                                                         ipplan.HOST_PREFIX[f['version']])
            if anyip:
                entry['local_routes'].append({'dst': str(cli_net), 'dev': 'lo', 'type': 'local'})
        for key in ('source_count', 'tuples', 'capacity'):
            entry[key] += part[key]
        entry['targets'] += part['targets']
        entry['sources'] += part['sources']
        entry['per_source'] = max(entry['per_source'], part['per_source'])
        entry['families']['ipv%d' % f['version']] = {
            'connections': parts[f['version']], 'sources': part['source_count'],
            'capacity': part['capacity'], 'targets': part['targets']}
    return _with_endpoints(p, entry)


def _with_endpoints(p, entry):
    """A client entry of a service run: its endpoints as given, its targets the addresses."""
    if p.service is not None:
        entry['endpoints'] = list(entry['targets'])
        entry['targets'] = sorted(set(t.rsplit(':', 1)[0].strip('[]') for t in entry['targets']))
    return entry


def _netns_plan(p):
    """The one-box default: every host runs both halves in two namespaces."""
    v = p.v
    lonely = [h for h in p.clients if h not in p.servers] + \
        [h for h in p.servers if h not in p.clients]
    if lonely:
        p.errors.append('topology_mode netns runs both halves on each host, so every host must be '
                        'in both groups "servers" and "clients"; not in both: %s (or use '
                        'topology_mode host)' % ', '.join(lonely))
    anyip = v.get('topology_client_sources') == 'anyip'
    fams = [_netns_family(p, version) for version in families(v)]
    srv_addrs = [a for f in fams for a in f['server_addresses']]
    srv_iface = [a for f in fams
                 for a in _with_prefix(f['server_addresses'], f['prefix'], ipplan.HOST_PREFIX[f['version']])]
    for host in p.clients:
        p.plan_servers[host] = {'addresses': list(srv_addrs), 'connections': p.shares[host],
                                'interface_addresses': list(srv_iface), 'routes': []}
        p.plan_clients[host] = entry = _netns_client(p, host, fams, anyip)
        if anyip:
            # the way back to the sources: through the client end's own address
            p.plan_servers[host]['routes'] = [
                {'dst': r['dst'], 'gateway': a.split('/')[0]}
                for r, a in zip(entry['local_routes'], entry['interface_addresses'])]
    for host in p.servers:
        p.plan_servers.setdefault(host, {'addresses': list(srv_addrs), 'connections': 0,
                                         'interface_addresses': list(srv_iface), 'routes': []})
    first = fams[0]
    return {'server': v['topology_netns_server'], 'client': v['topology_netns_client'],
            'veth_server': v['topology_veth_server'], 'veth_client': v['topology_veth_client'],
            'prefix_length': first['prefix'], 'server_cidr': first['server_cidr'],
            'client_cidr': str(first['client_net']),
            'client_cidrs': [str(f['client_net']) for f in fams]}


def _server_endpoints(p):
    """Fleet servers: their listen addresses (given, gathered, or aliases); the target list."""
    targets, owner = [], {}
    for host in p.servers:
        addrs = [str(a) for a in (p.input_of(host, 'server_addresses') or [])]
        alias = p.input_of(host, 'server_aliases') or {}
        aliases = []
        if alias.get('cidr') and int(alias.get('count') or 0):
            aliases = _hosts(alias['cidr'], int(alias['count']), int(alias.get('offset') or 0),
                             'topology_server_alias_cidr')
            addrs += aliases
        if not addrs:
            p.errors.append('server host %s has no listen address: set topology_server_addresses '
                            'for it (or gather facts so its default IPv4 address is used)' % host)
        for a in addrs:
            try:
                ipplan.address(a)
            except ValueError as exc:
                p.errors.append('server host %s: topology_server_addresses: %s' % (host, exc))
                continue
            if a in owner:
                p.errors.append('server address %s is listed for both %s and %s: each server host '
                                'needs its own addresses' % (a, owner[a], host))
                continue
            owner[a] = host
            targets.append(a)
        p.plan_servers[host] = {'addresses': [a for a in addrs if owner.get(a) == host],
                                'aliases': aliases, 'connections': 0}
    return targets


def _fleet_client(p, host, targets, cursor):
    """One fleet client's sources: its own addresses, or a block of topology_client_cidr."""
    v = p.v
    explicit = [str(a) for a in (p.input_of(host, 'client_addresses') or [])]
    cidr = v.get('topology_client_cidr') or ''
    if explicit:
        entry = p.client_entry(host, targets, len(explicit), len(explicit),
                               'the addresses given for it')
        entry['sources'] = explicit
        return entry
    if not cidr:
        p.errors.append('client host %s has no source addresses: set topology_client_cidr (aliases '
                        'are added from it) or topology_client_addresses' % host)
        return {'connections': p.shares[host], 'sources': [], 'source_count': 0,
                'targets': targets, 'tuples': 0, 'capacity': 0, 'per_source': 0}
    room = max(0, ipplan.usable_hosts(ipplan.network(cidr))[1] - cursor[0])
    entry = p.client_entry(host, targets, p.source_count, min(p.source_max, room),
                           'topology_client_cidr %s from offset %d' % (cidr, cursor[0]))
    n = entry['source_count']
    entry['sources'] = _hosts(cidr, n, cursor[0], 'topology_client_cidr') if n else []
    entry['alias_offset'] = cursor[0]
    entry['aliases'] = list(entry['sources'])
    cursor[0] += n
    return entry


def _fleet_families(p, targets):
    """Every address and network a fleet run uses is of the family testbed_ip_family names."""
    v = p.v
    version = families(v)[0]
    family = v.get('testbed_ip_family') or 'ipv4'
    given = [('topology_server_addresses', a) for a in targets]
    given += [('topology_client_addresses', a) for h in p.clients
              for a in (p.input_of(h, 'client_addresses') or [])]
    for name in ('topology_client_cidr', 'topology_server_alias_cidr'):
        if v.get(name):
            given.append((name, v[name]))
    for name, value in given:
        try:
            have = ipaddress.ip_network(str(value), strict=False).version
        except ValueError:
            continue            # reported by the checks of the variable itself
        if have != version:
            p.errors.append('%s %s is IPv%d, but testbed_ip_family is %s: give IPv%d addresses '
                            'and networks, or set testbed_ip_family to ipv%d'
                            % (name, value, have, family, version, have))


def _fleet_plan(p):
    v = p.v
    targets = _server_endpoints(p)
    _fleet_families(p, targets)
    alias_cidrs = [(p.input_of(h, 'server_aliases') or {}).get('cidr') for h in p.servers]
    if not v.get('topology_interface') and (v.get('topology_client_cidr') or any(alias_cidrs)):
        p.errors.append('topology_interface is empty: aliases (topology_client_cidr, '
                        'topology_server_alias_cidr) need the interface that carries them')
    cursor = [int(v.get('topology_client_offset') or 0)]
    dests = p.destinations(families(v)[0], targets)
    for host in p.clients:
        p.plan_clients[host] = _with_endpoints(p, _fleet_client(p, host, dests, cursor))
    both = [h for h in p.clients if h in p.servers]
    lo, hi = p.port_range
    last = p.first + p.nports - 1
    if both and p.first <= hi and last >= lo:
        p.errors.append('topology_server_port_first %d..%d lies inside topology_port_range %d-%d, '
                        'and %s run both halves in one network namespace: the clients\' ephemeral '
                        'ports would take the server ports (fix: move the server ports below %d, '
                        'or narrow topology_port_range)' % (p.first, last, lo, hi, ', '.join(both), lo))
    if targets:
        total = sum(p.shares.values())
        for host in p.servers:
            mine = len(p.plan_servers[host]['addresses'])
            p.plan_servers[host]['connections'] = int(math.ceil(total * float(mine) / len(targets)))


def _service_hosts(p, ports):
    """The hosts of the group services, each with its share of the connections (the
    service is assumed to spread them evenly over its hosts) and the ports it serves."""
    shares = split_total(p.connections, p.services)
    return dict((h, {'connections': shares[h], 'ports': list(ports)}) for h in p.services)


def build(variables, servers, clients, host_inputs=None, resolve=None, services=None):
    """The plan, from the role variables (by name) and the inventory groups.

    host_inputs: {host: {server_addresses, server_aliases: {cidr, offset, count},
    client_addresses}}, what each host publishes of its own variables.
    resolve(name, versions): the addresses of a service endpoint's host name (the
    filter resolves on the controller); without it, names are refused.
    services: the hosts of the group services (a service under test on a fleet: read
    for its limits and counted while the clients hold, never changed unless
    tuning_services is true for them).
    Returns {ok, errors, arithmetic, mode, netns, interface, connections, port_range,
    per_tuple, server_ports, server_ports_arg, server_port_count, servers, clients,
    service: {endpoints, addresses, ports, hosts: {host: {connections, ports}}} or None,
    protocol, tls, watch: {client, server: poll or epoll}}.
    """
    errors = checks.check(variables)
    servers, clients = list(servers or []), list(clients or [])
    service_run = bool(variables.get('testbed_service_endpoints')) \
        and variables.get('topology_mode') == 'host'
    if not servers and not service_run:
        errors.append('the inventory group "servers" is empty: put at least one host in it')
    if not clients:
        errors.append('the inventory group "clients" is empty: put at least one host in it')
    if errors:
        return {'ok': False, 'errors': errors, 'arithmetic': [], 'servers': {}, 'clients': {}}
    p = _Plan(variables, servers, clients, host_inputs, services)
    p.service = _service_endpoints(p, resolve)
    if p.service is not None:
        p.nports = 1            # one port per endpoint
    netns = None
    try:
        if variables['topology_mode'] == 'netns':
            netns = _netns_plan(p)
        else:
            _fleet_plan(p)
    except _PlanError as exc:
        p.errors.append(str(exc))
    last = p.first + p.nports - 1
    service_ports = sorted(set(port for _a, port in p.service or []))
    return {
        'ok': not p.errors, 'errors': p.errors, 'arithmetic': p.arithmetic,
        'mode': variables['topology_mode'], 'netns': netns,
        'ip_family': variables.get('testbed_ip_family') or 'ipv4',
        'alias_prefix_length': int(variables.get('topology_alias_prefix_length') or 0)
        or ipplan.HOST_PREFIX[families(variables)[0]],
        'client_sources': variables.get('topology_client_sources') or 'aliases',
        'interface': variables.get('topology_interface') or '',
        'connections': p.connections, 'port_range': p.port_range,
        'port_range_size': p.port_range[1] - p.port_range[0] + 1, 'port_fill': p.fill,
        'per_tuple': p.per_tuple, 'server_ports': [p.first, last],
        'server_ports_arg': '%d-%d' % (p.first, last),
        'server_port_count': p.nports, 'servers': p.plan_servers, 'clients': p.plan_clients,
        # the ports the connections go to: the service's, or the server half's range
        'port_filter': [str(x) for x in service_ports] or ['%d-%d' % (p.first, last)],
        'service': None if p.service is None else {
            'endpoints': [ipplan.endpoint_text(a, port) for a, port in p.service],
            'addresses': sorted(set(a for a, _port in p.service)), 'ports': service_ports,
            'hosts': _service_hosts(p, service_ports) if variables['topology_mode'] == 'host'
            else {}},
        'protocol': variables.get('client_protocol') or 'tcp',
        'tls': bool(variables.get('client_tls')),
        # how each half watches what it holds (poll or epoll): the memory preflight's
        # epoll items
        'watch': checks.watch_modes(variables),
        # the server half answers what clients send later as it arrives (--echo)
        'server_echo': checks.server_answers_at_once(variables),
    }
