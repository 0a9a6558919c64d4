# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure arithmetic behind the roles: the plan, the tuning values, the report.

Three filters, all pure functions of their inputs (no I/O), so the numbers a
play uses are unit-tested without root (tests/unit/plugins/filter/):

* ``testbed_plan``   -- target + inventory + topology knobs -> per-host split,
  server endpoints, client source addresses, port-capacity arithmetic.
* ``testbed_tuning`` -- plan + one host + current kernel values -> sysctls for
  the host and for each namespace, nofile/nr_open, conntrack size, and the
  kernel-memory preflight with its arithmetic.
* ``testbed_report`` -- per-host summaries and verified counts -> the
  aggregated report (totals, merged timeline, plot geometry).

Errors are returned in ``errors`` (a list of sentences that carry the
arithmetic and the variable to change) rather than raised, so the roles can
fail with a readable message before anything changes.
"""

from __future__ import annotations

import ipaddress
import math

from ansible.errors import AnsibleFilterError
from ansible_collections.scalelab.testbed.plugins.module_utils.report import report_from_records

# Per-netns ehash tables are capped by the kernel (tcp_child_ehash_entries).
EHASH_MAX = 1 << 24
# fs.nr_open cannot exceed this on 64-bit kernels (sysctl_nr_open_max).
NR_OPEN_MAX = 1073741816


def _int(value, field, minimum=None):
    try:
        if isinstance(value, bool):
            raise ValueError
        number = int(value)
    except (TypeError, ValueError):
        raise AnsibleFilterError('%s: %r is not an integer' % (field, value))
    if minimum is not None and number < minimum:
        raise AnsibleFilterError('%s: %d is below the minimum %d' % (field, number, minimum))
    return number


def _pow2_at_least(n):
    n = max(1, int(n))
    return 1 << (n - 1).bit_length()


def _fmt(n):
    return '{:,}'.format(int(n))


def _port_pair(value, field):
    """[lo, hi] from "lo-hi", "lo hi", [lo, hi] or (lo, hi)."""
    if isinstance(value, str):
        parts = value.replace('-', ' ').replace('\t', ' ').split()
    else:
        parts = list(value)
    if len(parts) != 2:
        raise AnsibleFilterError('%s: %r is not a port range "LO-HI"' % (field, value))
    lo = _int(parts[0], field, 1)
    hi = _int(parts[1], field, 1)
    if lo > hi or hi > 65535:
        raise AnsibleFilterError('%s: %r is not a port range with 1 <= LO <= HI <= 65535'
                                 % (field, value))
    return [lo, hi]


def split_total(total, hosts):
    """Split total over hosts; the remainder goes to the first hosts."""
    total = _int(total, 'total', 0)
    hosts = list(hosts)
    if not hosts:
        return {}
    base, rest = divmod(total, len(hosts))
    return dict((h, base + (1 if i < rest else 0)) for i, h in enumerate(hosts))


def _usable(cidr, field):
    """(first usable host as int, number of usable hosts) of cidr.

    Same convention as scalelab.testbed.ip_aliases: IPv4 without the network
    and broadcast address (except /31 and /32), IPv6 without the
    subnet-router anycast address.
    """
    try:
        net = ipaddress.ip_network(cidr, strict=True)
    except (TypeError, ValueError) as exc:
        raise AnsibleFilterError('%s: %r is not a network with no host bits set (%s)'
                                 % (field, cidr, exc))
    base = int(net.network_address)
    if net.version == 4 and net.prefixlen >= 31:
        return base, net.num_addresses
    if net.version == 4:
        return base + 1, net.num_addresses - 2
    if net.prefixlen == 128:
        return base, 1
    return base + 1, net.num_addresses - 1


def _addresses(cidr, offset, count, field):
    """count usable host addresses of cidr, after skipping offset of them."""
    first, room = _usable(cidr, field)
    if offset < 0 or offset + count > room:
        raise AnsibleFilterError(
            '%s: %s has %s usable addresses; offset %d + %d addresses do not fit'
            % (field, cidr, _fmt(room), offset, count))
    version = ipaddress.ip_network(cidr).version
    make = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    return [str(make(first + offset + i)) for i in range(count)]


def _usable_in(cidr, offset, field='cidr'):
    return max(0, _usable(cidr, field)[1] - offset)


def testbed_plan(connections, servers, clients, mode='netns', server_port_first=5001,
                 server_port_count=16, server_address_count=1, host_inputs=None,
                 port_range=(1024, 65535), port_fill=0.25, source_count=0, source_max=4096,
                 netns_server='tb-server', netns_client='tb-client', veth_server='tb-srv',
                 veth_client='tb-cli', netns_server_cidr='10.240.0.0/17',
                 netns_client_cidr='10.240.128.0/17', netns_prefix_length=16,
                 client_cidr='', client_offset=0, interface=''):
    """The plan of a run: who connects from where to where, and how many.

    Capacity arithmetic: connect() picks the source port per (source address,
    destination address, destination port) tuple (the engine binds sources
    with IP_BIND_ADDRESS_NO_PORT), so one client host can hold
    sources x destinations x ports x (port range x fill) connections. The
    fill keeps each tuple well below the range: Linux searches ports of one
    parity first, and a search that meets mostly used ports costs one hash
    lookup per port tried.
    """
    connections = _int(connections, 'testbed_connections', 1)
    servers = list(servers or [])
    clients = list(clients or [])
    errors = []
    arithmetic = []
    if mode not in ('netns', 'host'):
        raise AnsibleFilterError('topology_mode: %r is not one of netns, host' % (mode,))
    if not servers:
        errors.append('the inventory group "servers" is empty: put at least one host in it')
    if not clients:
        errors.append('the inventory group "clients" is empty: put at least one host in it')
    port_lo, port_hi = _port_pair(port_range, 'topology_port_range')
    if port_lo < 1024:
        errors.append('topology_port_range %d-%d starts below 1024: the ephemeral range must '
                      'leave the privileged ports alone' % (port_lo, port_hi))
    try:
        port_fill = float(port_fill)
    except (TypeError, ValueError):
        raise AnsibleFilterError('topology_port_fill: %r is not a number' % (port_fill,))
    if not 0 < port_fill <= 1:
        raise AnsibleFilterError('topology_port_fill: %r must be in (0, 1]' % (port_fill,))
    first = _int(server_port_first, 'topology_server_port_first', 1)
    nports = _int(server_port_count, 'topology_server_port_count', 1)
    if first + nports - 1 > 65535:
        errors.append('topology_server_port_first %d + topology_server_port_count %d go past '
                      'port 65535' % (first, nports))
    last = first + nports - 1
    range_size = port_hi - port_lo + 1
    per_tuple = int(range_size * port_fill)
    if per_tuple < 1:
        errors.append('topology_port_range %d-%d x topology_port_fill %s leaves no port per tuple'
                      % (port_lo, port_hi, port_fill))
        per_tuple = 1
    source_count = _int(source_count, 'topology_client_source_count', 0)
    source_max = _int(source_max, 'topology_client_source_max', 1)
    host_inputs = dict(host_inputs or {})
    server_addresses = dict((h, (v or {}).get('server_addresses') or []) for h, v in host_inputs.items())
    server_aliases = dict((h, (v or {}).get('server_aliases') or {}) for h, v in host_inputs.items())
    client_addresses = dict((h, (v or {}).get('client_addresses') or []) for h, v in host_inputs.items())
    netns = None

    shares = split_total(connections, clients)
    plan_servers = {}
    plan_clients = {}

    if mode == 'netns':
        # Every box runs both halves; its client connects to its own server.
        lonely = [h for h in clients if h not in servers] + [h for h in servers if h not in clients]
        if lonely:
            errors.append('topology_mode netns runs both halves on each host, so every host must '
                          'be in both groups "servers" and "clients"; not in both: %s '
                          '(or use topology_mode host)' % ', '.join(lonely))
        nsrv = _int(server_address_count, 'topology_server_address_count', 1)
        srv_room = _usable_in(netns_server_cidr, 0, 'topology_netns_server_cidr')
        if nsrv > srv_room:
            errors.append('topology_server_address_count %d does not fit in '
                          'topology_netns_server_cidr %s (%d addresses)'
                          % (nsrv, netns_server_cidr, srv_room))
            nsrv = max(1, min(nsrv, srv_room))
        srv_addrs = _addresses(netns_server_cidr, 0, nsrv, 'topology_netns_server_cidr')
        prefix = _int(netns_prefix_length, 'topology_netns_prefix_length', 1)
        link = ipaddress.ip_network('%s/%d' % (srv_addrs[0], prefix), strict=False)
        for name, cidr in (('topology_netns_server_cidr', netns_server_cidr),
                           ('topology_netns_client_cidr', netns_client_cidr)):
            net = ipaddress.ip_network(cidr)
            if net.version != link.version or not net.subnet_of(link):
                errors.append('%s %s is not inside the veth link network %s '
                              '(topology_netns_prefix_length %d): the two namespaces could not '
                              'reach each other; widen the prefix or move the network'
                              % (name, cidr, link, prefix))
        if ipaddress.ip_network(netns_server_cidr).overlaps(ipaddress.ip_network(netns_client_cidr)):
            errors.append('topology_netns_server_cidr %s and topology_netns_client_cidr %s overlap'
                          % (netns_server_cidr, netns_client_cidr))
        netns = {'server': netns_server, 'client': netns_client, 'veth_server': veth_server,
                 'veth_client': veth_client, 'prefix_length': prefix,
                 'server_cidr': netns_server_cidr, 'client_cidr': netns_client_cidr}
        cli_room = _usable_in(netns_client_cidr, 0, 'topology_netns_client_cidr')
        for host in clients:
            share = shares[host]
            plan_servers[host] = {'addresses': list(srv_addrs), 'connections': share}
            entry = _client_entry(host, share, srv_addrs, nports, per_tuple, source_count,
                                  min(source_max, cli_room), errors, arithmetic,
                                  'topology_netns_client_cidr %s' % netns_client_cidr)
            entry['sources'] = _addresses(netns_client_cidr, 0, entry['source_count'],
                                          'topology_netns_client_cidr') if entry['source_count'] else []
            plan_clients[host] = entry
        for host in servers:
            plan_servers.setdefault(host, {'addresses': list(srv_addrs), 'connections': 0})
    else:
        targets = []
        owner = {}
        for host in servers:
            addrs = [str(a) for a in (server_addresses.get(host) or [])]
            alias = server_aliases.get(host) or {}
            aliases = []
            if alias.get('cidr') and _int(alias.get('count', 0), 'topology_server_alias_count', 0):
                aliases = _addresses(
                    alias['cidr'], _int(alias.get('offset', 0), 'topology_server_alias_offset', 0),
                    _int(alias['count'], 'topology_server_alias_count', 0),
                    'topology_server_alias_cidr')
                addrs += aliases
            if not addrs:
                errors.append('server host %s has no listen address: set topology_server_addresses '
                              'for it (or gather facts so its default IPv4 address is used)' % host)
            for a in addrs:
                try:
                    ipaddress.ip_address(a)
                except ValueError:
                    errors.append('server host %s: %r in topology_server_addresses is not an IP '
                                  'address' % (host, a))
                    continue
                if a in owner:
                    errors.append('server address %s is listed for both %s and %s: each server '
                                  'host needs its own addresses' % (a, owner[a], host))
                    continue
                owner[a] = host
                targets.append(a)
            plan_servers[host] = {'addresses': [a for a in addrs if owner.get(a) == host],
                                  'aliases': aliases, 'connections': 0}
        if not interface and (client_cidr or any(
                (server_aliases.get(h) or {}).get('cidr') for h in servers)):
            errors.append('topology_interface is empty: aliases (topology_client_cidr, '
                          'topology_server_alias_cidr) need the interface that carries them')
        next_offset = _int(client_offset, 'topology_client_offset', 0)
        room_left = _usable_in(client_cidr, next_offset, 'topology_client_cidr') if client_cidr else 0
        for host in clients:
            share = shares[host]
            explicit = [str(a) for a in (client_addresses.get(host) or [])]
            if explicit:
                entry = _client_entry(host, share, targets, nports, per_tuple, len(explicit),
                                      len(explicit), errors, arithmetic,
                                      'the addresses given for it')
                entry['sources'] = explicit
            elif client_cidr:
                entry = _client_entry(host, share, targets, nports, per_tuple, source_count,
                                      min(source_max, room_left), errors, arithmetic,
                                      'topology_client_cidr %s from offset %d'
                                      % (client_cidr, next_offset))
                n = entry['source_count']
                entry['sources'] = _addresses(client_cidr, next_offset, n,
                                              'topology_client_cidr') if n else []
                entry['alias_offset'] = next_offset
                entry['aliases'] = list(entry['sources'])
                next_offset += n
                room_left -= n
            else:
                errors.append('client host %s has no source addresses: set topology_client_cidr '
                              '(aliases are added from it) or topology_client_addresses' % host)
                entry = {'connections': share, 'sources': [], 'source_count': 0,
                         'targets': targets, 'tuples': 0, 'capacity': 0}
            plan_clients[host] = entry
        # Each client spreads its connections evenly over every (address, port).
        if targets:
            for host in servers:
                mine = len(plan_servers[host]['addresses'])
                plan_servers[host]['connections'] = int(math.ceil(
                    sum(shares.values()) * float(mine) / len(targets)))

    return {
        'ok': not errors,
        'errors': errors,
        'arithmetic': arithmetic,
        'mode': mode,
        'netns': netns,
        'interface': interface,
        'connections': connections,
        'port_range': [port_lo, port_hi],
        'port_range_size': range_size,
        'port_fill': port_fill,
        'per_tuple': per_tuple,
        'server_ports': [first, last],
        'server_ports_arg': '%d-%d' % (first, last),
        'server_port_count': nports,
        'servers': plan_servers,
        'clients': plan_clients,
    }


def _client_entry(host, share, targets, nports, per_tuple, source_count, source_room,
                  errors, arithmetic, where):
    ndst = len(targets)
    per_source = ndst * nports * per_tuple
    if per_source == 0:
        return {'connections': share, 'source_count': 0, 'targets': list(targets),
                'tuples': 0, 'capacity': 0, 'per_source': 0}
    needed = int(math.ceil(share / float(per_source))) if share else 0
    if source_count:
        count = source_count
    else:
        count = max(1, needed) if share else 0
    count = min(count, max(source_room, 0)) if source_room else 0
    capacity = count * per_source
    line = ('client %s: %s connections; %d source(s) x %d destination(s) x %d port(s) x %s '
            'ports per tuple = %s' % (host, _fmt(share), count, ndst, nports, _fmt(per_tuple),
                                      _fmt(capacity)))
    arithmetic.append(line)
    if share > capacity:
        errors.append(
            'client %s cannot reach %s connections: %d source address(es) x %d destination(s) x '
            '%d server port(s) x %s ports per tuple (port range x fill) = %s; it needs %d source '
            'address(es) but %s offers %d. Fix: add server ports (topology_server_port_count), '
            'server addresses, source addresses, or widen topology_port_range'
            % (host, _fmt(share), count, ndst, nports, _fmt(per_tuple), _fmt(capacity), needed,
               where, source_room))
    return {'connections': share, 'source_count': count, 'targets': list(targets),
            'tuples': count * ndst * nports, 'capacity': capacity, 'per_source': per_source}


def _current_int(current, key):
    value = (current or {}).get(key)
    if value is None:
        return None
    try:
        return int(str(value).split()[0])
    except (ValueError, IndexError):
        return None


def _raise_to(current, key, needed, out, notes):
    """Put key=needed into out unless the current value is already higher."""
    have = _current_int(current, key)
    if have is not None and have >= needed:
        notes.append('%s is %s, at least the %s needed: left as is' % (key, _fmt(have), _fmt(needed)))
        return
    out[key] = needed


def _parse_current(current):
    """{key: value} from a dict or from the output of `sysctl -e KEY...`."""
    if isinstance(current, dict):
        return dict((k, str(v)) for k, v in current.items())
    out = {}
    for line in str(current or '').splitlines():
        if ' = ' in line:
            key, value = line.split(' = ', 1)
            out[key.strip()] = ' '.join(value.split())
    return out


def _mem_available(meminfo):
    for line in str(meminfo or '').splitlines():
        if line.startswith('MemAvailable:'):
            return int(line.split()[1])
    return None


def testbed_tuning(plan, host, current=None, hashsize=None, meminfo=None, mem_available_kb=None,
                   kernel_bytes_per_connection=9700, user_bytes_per_connection=1500,
                   memory_fraction=0.85, conntrack='size', nofile=0, backlog=0,
                   time_wait='reuse', ehash_factor=2.0):
    """Kernel values for one host of the plan.

    current holds the host's present values ({key: "value"}, or the text that
    `sysctl -e KEY...` prints); keys missing from it are absent on the host (nf_conntrack not loaded, kernel too old) and are
    not set. Capacity keys are only ever raised, never lowered.
    """
    if not isinstance(plan, dict) or 'clients' not in plan:
        raise AnsibleFilterError('testbed_tuning expects the output of testbed_plan')
    current = _parse_current(current)
    if hashsize not in (None, ''):
        current['hashsize'] = str(hashsize).strip()
    if mem_available_kb is None and meminfo:
        mem_available_kb = _mem_available(meminfo)
    mode = plan['mode']
    names = plan.get('netns') or {}
    netns_server = names.get('server', 'tb-server')
    netns_client = names.get('client', 'tb-client')
    srv = plan['servers'].get(host, {}).get('connections', 0) if host in plan['servers'] else 0
    cli = plan['clients'].get(host, {}).get('connections', 0) if host in plan['clients'] else 0
    sockets = srv + cli
    listeners = (len(plan['servers'].get(host, {}).get('addresses', [])) * plan['server_port_count']
                 if host in plan['servers'] else 0)
    errors = []
    notes = []
    host_keys = {}
    netns_keys = {}

    # --- memory preflight -------------------------------------------------
    # The per-connection figures cover both ends of one connection; a host
    # holding one end of n connections needs half, the one-box both halves.
    kbpc = _int(kernel_bytes_per_connection, 'tuning_kernel_bytes_per_connection', 0)
    ubpc = _int(user_bytes_per_connection, 'tuning_user_bytes_per_connection', 0)
    kernel_bytes = int(sockets * kbpc / 2.0)
    user_bytes = int(sockets * ubpc / 2.0)
    needed = kernel_bytes + user_bytes
    memory = {'ends': sockets, 'kernel_bytes': kernel_bytes, 'user_bytes': user_bytes,
              'needed_bytes': needed, 'available_bytes': None, 'limit_bytes': None, 'ok': True}
    text = ('%s connection ends x (%s kernel + %s user bytes per connection) / 2 = %s MiB'
            % (_fmt(sockets), _fmt(kbpc), _fmt(ubpc), _fmt(needed / 1048576)))
    if mem_available_kb is not None:
        avail = _int(mem_available_kb, 'MemAvailable', 0) * 1024
        limit = int(avail * float(memory_fraction))
        memory.update(available_bytes=avail, limit_bytes=limit, ok=needed <= limit)
        text += ('; MemAvailable %s MiB x %s = %s MiB allowed'
                 % (_fmt(avail / 1048576), memory_fraction, _fmt(limit / 1048576)))
        if needed > limit:
            errors.append('host %s cannot hold the target in memory: %s. Fix: lower '
                          'testbed_connections, add client/server hosts, or free memory '
                          '(tuning_memory_fraction raises the share allowed)' % (host, text))
    memory['text'] = text

    # --- values -------------------------------------------------------------
    nofile = _int(nofile, 'tuning_nofile', 0)
    if not nofile:
        # One process could hold its whole half on a host that lets it raise
        # its limit; the engine fans out over workers where it cannot.
        nofile = min(_pow2_at_least(max(srv, cli) + 1024 + listeners), NR_OPEN_MAX)
        nofile = max(nofile, 65536)
    nr_open_have = _current_int(current, 'fs.nr_open')
    nr_open = nofile if nr_open_have is None or nr_open_have < nofile else nr_open_have
    if nr_open_have is None or nr_open_have < nofile:
        # raised before the nofile limits (sysctls writes fs.nr_open first)
        host_keys['fs.nr_open'] = nofile

    _raise_to(current, 'fs.file-max', int(math.ceil(sockets * 1.05)) + 65536, host_keys, notes)

    backlog = _int(backlog, 'tuning_backlog', 0)
    endpoints = max(1, listeners)
    if not backlog:
        backlog = min(65535, max(4096, _pow2_at_least(int(math.ceil(srv / float(endpoints))))))
    server_side = {'net.core.somaxconn': backlog, 'net.ipv4.tcp_max_syn_backlog': backlog}
    client_side = {'net.ipv4.ip_local_port_range': '%d %d' % tuple(plan['port_range'])}
    if time_wait == 'reuse':
        client_side['net.ipv4.tcp_tw_reuse'] = 1
        # Keep every TIME_WAIT of a closing run instead of an overflow message
        # per socket; tcp_tw_reuse lets the next run use their ports at once.
        client_side['net.ipv4.tcp_max_tw_buckets'] = max(cli, 262144)
    elif time_wait != 'leave':
        raise AnsibleFilterError('tuning_time_wait: %r is not one of reuse, leave' % (time_wait,))

    ehash_entries = None
    if mode == 'netns':
        if srv:
            netns_keys[netns_server] = server_side
        if cli:
            netns_keys[netns_client] = client_side
        if 'net.ipv4.tcp_child_ehash_entries' in current:
            want = min(EHASH_MAX, _pow2_at_least(int(max(srv, cli) * float(ehash_factor)) or 1))
            ehash_entries = max(want, _current_int(current, 'net.ipv4.tcp_child_ehash_entries') or 0)
            _raise_to(current, 'net.ipv4.tcp_child_ehash_entries', want, host_keys, notes)
        else:
            notes.append('net.ipv4.tcp_child_ehash_entries is not in this kernel (6.1+): the '
                         'namespaces share the host\'s established-connections hash')
        # veth delivers through the per-CPU backlog queue, bounded by this key (it
        # exists only in the host's namespace, not inside a container's)
        if 'net.core.netdev_max_backlog' in current:
            _raise_to(current, 'net.core.netdev_max_backlog', 16384, host_keys, notes)
    else:
        merged = {}
        if srv:
            merged.update(server_side)
        if cli:
            merged.update(client_side)
        for key, value in merged.items():
            if key in ('net.core.somaxconn', 'net.ipv4.tcp_max_syn_backlog',
                       'net.ipv4.tcp_max_tw_buckets'):
                _raise_to(current, key, value, host_keys, notes)
            else:
                host_keys[key] = value

    conntrack_plan = None
    if conntrack == 'size':
        if 'net.netfilter.nf_conntrack_max' in current:
            want = int(math.ceil(sockets * 1.1)) + 65536
            have = _current_int(current, 'net.netfilter.nf_conntrack_max') or 0
            cmax = max(want, have)
            hashsize = _pow2_at_least(int(math.ceil(cmax / 4.0)))
            have_hash = _current_int(current, 'hashsize') or 0
            conntrack_plan = {'max': cmax, 'hashsize': max(hashsize, have_hash)}
            if have >= want:
                notes.append('net.netfilter.nf_conntrack_max is %s, at least the %s needed: left '
                             'as is' % (_fmt(have), _fmt(want)))
            else:
                host_keys['net.netfilter.nf_conntrack_max'] = cmax
            if have_hash >= hashsize:
                conntrack_plan['hashsize'] = None
        else:
            notes.append('nf_conntrack is not loaded: no connection is tracked, nothing to size')
    elif conntrack == 'notrack':
        if mode == 'netns':
            notes.append('tuning_conntrack notrack: the namespaces carry no firewall rules, so '
                         'conntrack never sees the test traffic; no rule is needed')
    elif conntrack != 'leave':
        raise AnsibleFilterError('tuning_conntrack: %r is not one of size, notrack, leave'
                                 % (conntrack,))

    return {
        'ok': not errors,
        'errors': errors,
        'notes': notes,
        'server_connections': srv,
        'client_connections': cli,
        'sockets': sockets,
        'listeners': listeners,
        'host': host_keys,
        'netns': netns_keys,
        'nofile': nofile,
        'nr_open': nr_open,
        'backlog': backlog,
        'ehash_entries': ehash_entries,
        'conntrack': conntrack_plan,
        'memory': memory,
    }


def testbed_report(records, clients, servers, target, missing=None, finished=None):
    """Adapter: the report and its verdict come from module_utils/report.py."""
    return report_from_records(records, clients, servers, target, missing=missing,
                               finished=finished)


class FilterModule(object):

    def filters(self):
        return {
            'testbed_plan': testbed_plan,
            'testbed_tuning': testbed_tuning,
            'testbed_report': testbed_report,
        }
