# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Network namespaces with veth pairs, link state, addresses and routes.

Pure part: ``normalize_spec()`` validates the module input into a
:class:`NetnsSpec`; ``plan_netns()`` compares it with the state read from the
kernel (:class:`LinkState` dicts per namespace, routes) and returns a list of
:class:`Change`, or raises TestbedError; ``predict_state()`` gives the state
after a plan (check/diff mode). Addresses, networks and gateways follow
ipplan.py.

Kernel part: :class:`Netlink` holds one pyroute2 ``IPRoute`` per namespace
involved, opened with ``IPRoute(netns=name, flags=0)`` (pyroute2's documented
way; flags 0 never creates the namespace), and uses only IPRoute's documented
methods: ``get_links``, ``get_addr``, ``get_routes``, ``link``, ``addr``,
``route``, and ``get_netnsid`` to tell in which namespace a veth's peer
lives. :func:`apply_changes` runs a plan as the steps of a
transaction.Transaction: what it creates is recorded in the journal
(KIND_NETNS, KIND_LINK), every step has an undo (the removals too: a deleted
veth is created again with its peer, addresses, mtu and state; a removed
namespace is created again), so a failure half way puts back everything the
task had done and leaves the journal as it was.

For the restore module: :func:`delete_link` (and netns.remove_netns).

Namespaces are referred to by name; None is the namespace the module runs in
(the host).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
from collections import namedtuple

from ansible_collections.scalelab.testbed.plugins.module_utils import ipplan
from ansible_collections.scalelab.testbed.plugins.module_utils import netlink as nl
from ansible_collections.scalelab.testbed.plugins.module_utils import netns as nsu
from ansible_collections.scalelab.testbed.plugins.module_utils.common import (
    TestbedError, validate_ifname, validate_name)
from ansible_collections.scalelab.testbed.plugins.module_utils.journal import (
    DEFAULT_JOURNAL, KIND_ALIASES, KIND_LINK, KIND_NETNS, KIND_ROUTE, scoped_key, split_scoped_key)
from ansible_collections.scalelab.testbed.plugins.module_utils.transaction import (
    Transaction, error_text)

# pyroute2 is imported once, by netns.py (HAS_PYROUTE2 there says whether it is usable)
if nsu.HAS_PYROUTE2:
    from pyroute2 import IPRoute, NetlinkError
else:  # pragma: no cover - reported by the module
    IPRoute, NetlinkError = None, OSError

HOST_PREFIX = ipplan.HOST_PREFIX
IFA_F_NODAD = 0x02
MTU_MIN, MTU_MAX = 68, 65535
IFF_UP = 0x1
RT_TABLE_MAIN = 254
RT_TABLE_LOCAL = 255
RTN_UNICAST = 1
RTN_LOCAL = 2
RT_SCOPE_HOST = 254
# Route types the module manages: a unicast route of the main table, or a
# local route of the local table (AnyIP: every address of dst is this host's).
ROUTE_TYPES = {'unicast': (RTN_UNICAST, RT_TABLE_MAIN), 'local': (RTN_LOCAL, RT_TABLE_LOCAL)}
LINK_LOCAL6 = ipaddress.ip_network('fe80::/10')

VethSpec = namedtuple('VethSpec', 'name peer peer_netns addresses peer_addresses mtu state')
RouteSpec = namedtuple('RouteSpec', 'dst gateway dev type')
RouteSpec.__new__.__defaults__ = ('unicast',)
NetnsSpec = namedtuple('NetnsSpec', 'name state loopback veths routes')
LinkState = namedtuple('LinkState', 'name index kind up mtu addresses peer_index '
                                    'peer_elsewhere peer_nsid', defaults=(None,))
RouteState = namedtuple('RouteState', 'dst gateway dev type')
RouteState.__new__.__defaults__ = ('unicast',)
Change = namedtuple('Change', 'kind netns ifname detail')


def _where(netns):
    return 'network namespace %r' % netns if netns is not None else 'the host namespace'


# --------------------------------------------------------------------------
# Input validation (pure)

def parse_ifaddress(value, field):
    """'IP/prefix' (or bare IP: host prefix) -> ipaddress.ip_interface (ipplan.address_prefix)."""
    try:
        ip, prefixlen = ipplan.address_prefix(value)
    except ValueError as exc:
        raise TestbedError(field, str(exc), 'give "IP/prefix", e.g. "10.1.0.1/24" or '
                                            '"fd00:1::1/64"')
    return ipaddress.ip_interface('%s/%d' % (ip, prefixlen))


def _addr_list(values, field):
    if values is None:
        return None
    result = []
    seen = {}
    for value in values:
        iface = parse_ifaddress(value, field)
        if iface.ip in seen:
            raise TestbedError(field, 'address %s is listed twice (%s and %s)'
                               % (iface.ip, seen[iface.ip], iface),
                               'keep one entry per address')
        seen[iface.ip] = iface
        result.append(iface)
    return result


def parse_route(route, index):
    field = 'routes[%d]' % index
    dst = route.get('dst')
    gateway = route.get('gateway')
    dev = route.get('dev')
    kind = route.get('type') or 'unicast'
    if kind not in ROUTE_TYPES:
        raise TestbedError(field + '.type', 'unknown route type %r' % (kind,),
                           'give one of %s' % ', '.join(sorted(ROUTE_TYPES)))
    gw = None
    if gateway is not None:
        try:
            gw = ipplan.address(gateway)
        except ValueError as exc:
            raise TestbedError(field + '.gateway', str(exc),
                               'give the next hop address, e.g. "10.1.0.2"')
    if dev is not None:
        validate_ifname(dev, field + '.dev')
    if gw is None and dev is None:
        raise TestbedError(field, 'a route needs a gateway, a dev, or both',
                           'add gateway: or dev:')
    if kind == 'local' and (gw is not None or dev is None):
        raise TestbedError(field, 'a local route takes a dev (e.g. lo) and no gateway',
                           'give dev: lo and remove gateway:')
    if not isinstance(dst, str) or not dst:
        raise TestbedError(field + '.dst', 'dst is required',
                           'give a network such as "10.2.0.0/16" or "default"')
    if dst == 'default':
        net = ipaddress.ip_network('::/0' if gw is not None and gw.version == 6
                                   else '0.0.0.0/0')
    else:
        try:
            net = ipplan.network(dst)
        except ValueError as exc:
            raise TestbedError(field + '.dst', str(exc),
                               'give a network such as "10.2.0.0/16" or "default"')
    if gw is not None and gw.version != net.version:
        raise TestbedError(field + '.gateway', 'gateway %s is IPv%d but dst %s is IPv%d'
                           % (gw, gw.version, net, net.version),
                           'use a gateway of the same family as dst')
    return RouteSpec(net, gw, dev, kind)


def normalize_spec(name, state='present', loopback=True, veths=None, routes=None):
    """Validate the whole input; returns NetnsSpec (no kernel access)."""
    validate_name(name, 'name', what='network namespace name')
    specs = []
    names = {}   # (netns, ifname) -> field, every end must be unique

    def claim(netns, ifname, field):
        key = (netns, ifname)
        if key in names:
            raise TestbedError(field, 'interface %r in %s is used twice (also %s)'
                               % (ifname, _where(netns), names[key]),
                               'give every veth end a distinct name')
        names[key] = field

    for i, veth in enumerate(veths or []):
        field = 'veths[%d]' % i
        vname = validate_ifname(veth.get('name'), field + '.name')
        peer = validate_ifname(veth.get('peer'), field + '.peer')
        peer_netns = veth.get('peer_netns')
        if peer_netns is not None:
            validate_name(peer_netns, field + '.peer_netns', what='network namespace name')
        if vname == 'lo' or peer == 'lo':
            raise TestbedError(field, '"lo" cannot be a veth end', 'choose another name')
        claim(name, vname, field + '.name')
        claim(peer_netns, peer, field + '.peer')
        mtu = veth.get('mtu')
        if mtu is not None and not MTU_MIN <= mtu <= MTU_MAX:
            raise TestbedError(field + '.mtu', 'mtu %d is outside %d-%d'
                               % (mtu, MTU_MIN, MTU_MAX),
                               'give an mtu from %d to %d' % (MTU_MIN, MTU_MAX))
        vstate = veth.get('state') or 'up'
        if vstate not in ('up', 'down'):
            raise TestbedError(field + '.state', 'state %r is not up or down' % vstate,
                               'use up or down')
        addrs = _addr_list(veth.get('addresses'), field + '.addresses')
        peer_addrs = _addr_list(veth.get('peer_addresses'), field + '.peer_addresses')
        specs.append(VethSpec(vname, peer, peer_netns, addrs, peer_addrs, mtu, vstate))
    route_specs = [parse_route(r, i) for i, r in enumerate(routes or [])]
    seen = {}
    for i, r in enumerate(route_specs):
        if (r.type, r.dst) in seen:
            raise TestbedError('routes[%d].dst' % i, '%s route to %s is listed twice (also '
                               'routes[%d])' % (r.type, r.dst, seen[(r.type, r.dst)]),
                               'keep one entry per type and dst')
        seen[(r.type, r.dst)] = i
    return NetnsSpec(name, state, loopback, specs, route_specs)


# --------------------------------------------------------------------------
# Planning (pure)

def managed_addresses(link):
    """The addresses of a link that a veth's address list governs.

    IPv6 link-local addresses (fe80::/10, made by the kernel) are left alone.
    """
    return [a for a in link.addresses if a.ip not in LINK_LOCAL6]


def _plan_addresses(changes, netns, ifname, wanted, link):
    if wanted is None:
        return
    have = managed_addresses(link) if link is not None else []
    have_set = set(have)
    want_set = set(wanted)
    for a in have:
        if a not in want_set:
            changes.append(Change('addr_del', netns, ifname, a))
    for a in wanted:
        if a not in have_set:
            changes.append(Change('addr_add', netns, ifname, a))


def _plan_link_attrs(changes, netns, ifname, link, mtu, state):
    up = state == 'up'
    if mtu is not None and (link is None or link.mtu != mtu):
        changes.append(Change('set_mtu', netns, ifname, mtu))
    if link is None or link.up != up:
        changes.append(Change('set_state', netns, ifname, state))


def plan_netns(spec, exists, links, others, routes, namespaces):
    """Changes that bring the kernel to spec.

    exists: whether the namespace exists. links: {ifname: LinkState} inside it
    ({} if it does not exist). others: {netns-or-None: {ifname: LinkState}}
    for every peer namespace involved. routes: [RouteState] of the main
    table inside. namespaces: names of the existing named namespaces.
    Raises TestbedError on any conflict; nothing has changed at that point.
    """
    name = spec.name
    changes = []
    if spec.state == 'absent':
        if not exists:
            return changes
        deleted = set()
        for link in sorted(links.values(), key=lambda x: x.index):
            if link.kind != 'veth':
                continue
            if not link.peer_elsewhere and link.peer_index in deleted:
                continue            # went with its peer, deleted just before
            deleted.add(link.index)
            changes.append(Change('del_link', name, link.name, 'veth'))
        changes.append(Change('del_ns', name, None, None))
        return changes

    if not exists:
        changes.append(Change('add_ns', name, None, None))
    lo = links.get('lo')
    want_lo = 'up' if spec.loopback else 'down'
    if lo is None or lo.up != (want_lo == 'up'):
        changes.append(Change('set_state', name, 'lo', want_lo))

    for i, v in enumerate(spec.veths):
        field = 'veths[%d]' % i
        if v.peer_netns is not None and v.peer_netns != name and v.peer_netns not in namespaces:
            raise TestbedError(field + '.peer_netns', 'network namespace %r does not exist'
                               % v.peer_netns,
                               'create it first (another scalelab.testbed.netns task) or '
                               'set peer_netns to null for the host')
        peer_ns = v.peer_netns
        peer_links = links if peer_ns == name else others.get(peer_ns, {})
        me = links.get(v.name)
        peer = peer_links.get(v.peer)
        if me is None:
            if peer is not None:
                raise TestbedError(field + '.peer', 'interface %r already exists in %s '
                                   '(kind %s)' % (v.peer, _where(peer_ns), peer.kind or 'none'),
                                   'choose another peer name or remove that interface')
            changes.append(Change('add_veth', name, v.name, v))
        else:
            if me.kind != 'veth':
                raise TestbedError(field + '.name', 'interface %r in %s is a %s link, not '
                                   'a veth' % (v.name, _where(name), me.kind or 'plain'),
                                   'choose another veth name or remove that interface')
            same_ns = peer_ns == name
            if (peer is None or peer.kind != 'veth' or peer.index != me.peer_index
                    or me.index != peer.peer_index or me.peer_elsewhere == same_ns):
                raise TestbedError(field, 'veth %r exists in %s but its peer is not %r in %s'
                                   % (v.name, _where(name), v.peer, _where(peer_ns)),
                                   'fix name/peer/peer_netns to match, or remove that veth')
        _plan_link_attrs(changes, name, v.name, me, v.mtu, v.state)
        _plan_link_attrs(changes, peer_ns, v.peer, peer, v.mtu, v.state)
        _plan_addresses(changes, name, v.name, v.addresses, me)
        _plan_addresses(changes, peer_ns, v.peer, v.peer_addresses, peer)

    declared = set(v.name for v in spec.veths)
    current = dict(((r.type, r.dst), r) for r in routes)
    for i, r in enumerate(spec.routes):
        if r.dev is not None and r.dev not in links and r.dev not in declared:
            raise TestbedError('routes[%d].dev' % i, 'interface %r does not exist in %s'
                               % (r.dev, _where(name)),
                               'declare it under veths or fix the name')
        have = current.get((r.type, r.dst))
        if have is None or have.gateway != r.gateway or (
                r.dev is not None and have.dev != r.dev):
            changes.append(Change('route', name, r.dev, r))
    return changes


def predict_state(before, spec, changes):
    """The namespace state (as state_dict) after changes (for check/diff)."""
    if spec.state == 'absent':
        return {'name': spec.name, 'exists': False, 'links': [], 'routes': [],
                'peers': []}
    links = dict(((spec.name, l['name']), dict(l)) for l in before.get('links', []))
    peers = dict(((p['netns'], p['name']), dict(p)) for p in before.get('peers', []))
    routes = dict(((r.get('type', 'unicast'), r['dst']), dict(r)) for r in before.get('routes', []))

    for c in changes:
        if c.kind == 'add_veth':
            v = c.detail
            new = {'kind': 'veth', 'state': 'down', 'mtu': 1500, 'addresses': []}
            links[(spec.name, v.name)] = dict(new, name=v.name, peer=v.peer,
                                              peer_netns=v.peer_netns)
            peer = dict(new, name=v.peer)
            if v.peer_netns == spec.name:
                links[(spec.name, v.peer)] = peer
            peers[(v.peer_netns, v.peer)] = dict(peer, netns=v.peer_netns)
            continue
        if c.kind == 'route':
            r = c.detail
            routes[(r.type, str(r.dst))] = {'dst': str(r.dst),
                                            'gateway': str(r.gateway) if r.gateway else None,
                                            'dev': r.dev, 'type': r.type}
            continue
        if c.kind == 'set_state' and c.ifname == 'lo' and c.netns == spec.name:
            links.setdefault((spec.name, 'lo'), {'name': 'lo', 'kind': None,
                                                 'mtu': 65536, 'addresses': []})
        targets = [t for t in (links.get((c.netns, c.ifname)),
                               peers.get((c.netns, c.ifname))) if t is not None]
        for link in targets:
            if c.kind == 'set_state':
                link['state'] = c.detail
            elif c.kind == 'set_mtu':
                link['mtu'] = c.detail
            elif c.kind == 'addr_add':
                link['addresses'] = sorted(set(link['addresses']) | set([str(c.detail)]))
            elif c.kind == 'addr_del':
                link['addresses'] = [a for a in link['addresses'] if a != str(c.detail)]
    return {'name': spec.name, 'exists': True,
            'links': sorted(links.values(), key=lambda l: (l['name'] != 'lo', l['name'])),
            'routes': sorted(routes.values(), key=lambda r: (r['dst'], r['type'])),
            'peers': [peers[(v.peer_netns, v.peer)] for v in spec.veths
                      if (v.peer_netns, v.peer) in peers]}


def describe(change):
    """One human line per change (returned as `changes`)."""
    where = '' if change.netns is None else ' in %s' % change.netns
    d = change.detail
    if change.kind == 'add_ns':
        return 'create network namespace %s' % change.netns
    if change.kind == 'del_ns':
        return 'remove network namespace %s' % change.netns
    if change.kind == 'add_veth':
        return 'create veth %s%s with peer %s in %s' % (
            change.ifname, where, d.peer, d.peer_netns or 'the host namespace')
    if change.kind == 'del_link':
        return 'delete %s %s%s (and its peer)' % (d, change.ifname, where)
    if change.kind == 'set_state':
        return 'set %s%s %s' % (change.ifname, where, d)
    if change.kind == 'set_mtu':
        return 'set mtu of %s%s to %d' % (change.ifname, where, d)
    if change.kind == 'addr_add':
        return 'add %s to %s%s' % (d, change.ifname, where)
    if change.kind == 'addr_del':
        return 'remove %s from %s%s' % (d, change.ifname, where)
    if change.kind == 'route':
        return 'route %s%s%s%s' % (d.dst, ' via %s' % d.gateway if d.gateway else '',
                                   ' dev %s' % d.dev if d.dev else '', where)
    return '%s %s%s' % (change.kind, change.ifname, where)


# --------------------------------------------------------------------------
# Kernel access (pyroute2 public API)

def link_state(msg, addrs):
    kind = msg.get_nested('IFLA_LINKINFO', 'IFLA_INFO_KIND')
    nsid = msg.get_attr('IFLA_LINK_NETNSID')
    return LinkState(
        name=msg.get_attr('IFLA_IFNAME'), index=msg['index'], kind=kind,
        up=bool(msg['flags'] & IFF_UP), mtu=msg.get_attr('IFLA_MTU'),
        addresses=addrs.get(msg['index'], []),
        peer_index=msg.get_attr('IFLA_LINK') if kind == 'veth' else None,
        peer_elsewhere=nsid is not None, peer_nsid=nsid)


def _pyroute2_error_code(exc):
    code = getattr(exc, 'code', None)
    return code if isinstance(code, int) else getattr(exc, 'errno', None)


class Netlink(nl.Closing):
    """pyroute2 IPRoute sockets, one per namespace (None: the one the module runs in).

    A named namespace gets ``IPRoute(netns=name, flags=0)`` (flags 0: never
    create it); every call goes through IPRoute's documented methods.
    """

    def __init__(self):
        self.sockets = {}
        self.host_fd = os.open('/proc/self/ns/net', os.O_RDONLY)

    def ipr(self, netns):
        if netns not in self.sockets:
            if netns is None:
                self.sockets[None] = IPRoute(groups=0)
            else:
                nsu.require_netns(netns)
                try:
                    self.sockets[netns] = IPRoute(netns=netns, flags=0, groups=0)
                except (OSError, NetlinkError) as exc:
                    raise TestbedError('netns', 'cannot open a netlink socket in network '
                                       'namespace %r: %s' % (netns, error_text(exc)),
                                       'check that it exists (ip netns list) and is a network '
                                       'namespace')
        return self.sockets[netns]

    def forget(self, netns):
        sock = self.sockets.pop(netns, None)
        if sock is not None:
            sock.close()

    def close(self):
        for netns in list(self.sockets):
            self.forget(netns)
        os.close(self.host_fd)

    def read_links(self, netns):
        ipr = self.ipr(netns)
        addrs = {}
        for msg in ipr.get_addr():
            ip = msg.get_attr('IFA_LOCAL') or msg.get_attr('IFA_ADDRESS')
            if ip is None:
                continue
            addrs.setdefault(msg['index'], []).append(
                ipaddress.ip_interface('%s/%d' % (ip, msg['prefixlen'])))
        return dict((l.name, l) for l in (link_state(m, addrs) for m in ipr.get_links()))

    def read_routes(self, netns, links):
        """Unicast routes of the main table and local routes of the local table.

        The local table also holds the kernel's own routes for every address
        and broadcast; only local routes over more than one address (AnyIP
        prefixes) are returned, and those the kernel made for an address are not.
        """
        names = dict((l.index, l.name) for l in links.values())
        own = set()
        for l in links.values():
            own.update(a.network for a in l.addresses)
            own.update(ipaddress.ip_network(a.ip) for a in l.addresses)
        result = []
        for kind, (rtype, table) in sorted(ROUTE_TYPES.items()):
            for msg in self.ipr(netns).get_routes(table=table):
                if msg['type'] != rtype or msg.get_attr('RTA_MULTIPATH'):
                    continue
                if msg.get_attr('RTA_TABLE', table) != table:
                    continue
                family = msg['family']
                zero = '0.0.0.0' if family == socket.AF_INET else '::'
                dst = ipaddress.ip_network('%s/%d' % (msg.get_attr('RTA_DST') or zero,
                                                      msg['dst_len']), strict=False)
                if kind == 'local' and (dst.num_addresses == 1 or dst in own):
                    continue
                gw = msg.get_attr('RTA_GATEWAY')
                oif = msg.get_attr('RTA_OIF')
                result.append(RouteState(dst, ipaddress.ip_address(gw) if gw else None,
                                         names.get(oif), kind))
        return result

    def lookup(self, netns, ifname):
        """Index of ifname in netns, or None."""
        try:
            found = self.ipr(netns).link('get', ifname=ifname)
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:
                return None
            raise
        return found[0]['index'] if found else None

    def index(self, netns, ifname):
        found = self.lookup(netns, ifname)
        if found is None:
            raise TestbedError('veths', 'interface %r vanished from %s'
                               % (ifname, _where(netns)), 'run the task again')
        return found

    def find_peer(self, netns, link):
        """(namespace, LinkState) of the other end of veth link in netns, or None.

        The peer is in the same namespace, in the module's own one (None) or
        in a named one; which, is told by the link's IFLA_LINK_NETNSID and
        the namespace ids netns gives the candidates (get_netnsid).
        """
        if link.kind != 'veth' or link.peer_index is None:
            return None
        candidates = [netns] if not link.peer_elsewhere else \
            [ns for ns in [None] + nsu.list_netns() if ns != netns]
        for cand in candidates:
            if link.peer_elsewhere:
                fd = self.host_fd if cand is None else os.open(nsu.netns_path(cand), os.O_RDONLY)
                try:
                    info = self.ipr(netns).get_netnsid(fd=fd)
                except (OSError, NetlinkError):
                    continue
                finally:
                    if cand is not None:
                        os.close(fd)
                if not info or info.get('nsid') != link.peer_nsid:
                    continue
            for other in self.read_links(cand).values():
                if other.index == link.peer_index and other.kind == 'veth' and \
                        other.peer_index == link.index:
                    return cand, other
        return None


def _link_dict(link):
    return {'name': link.name, 'kind': link.kind, 'state': 'up' if link.up else 'down',
            'mtu': link.mtu,
            'addresses': sorted(str(a) for a in managed_addresses(link))}


def state_dict(name, exists, links, routes, spec=None, others=None):
    """The namespace state as returned by the module.

    links/routes: inside the namespace; others: {netns: {ifname: LinkState}}
    of the peer namespaces, for the `peers` list of declared veths.
    """
    if not exists:
        return {'name': name, 'exists': False, 'links': [], 'routes': [], 'peers': []}
    peers = {}
    out_peers = []
    for v in (spec.veths if spec else []):
        peers[v.name] = (v.peer, v.peer_netns)
        where = links if v.peer_netns == name else (others or {}).get(v.peer_netns, {})
        link = where.get(v.peer)
        item = _link_dict(link) if link is not None else {'name': v.peer, 'kind': None,
                                                          'state': 'absent', 'mtu': None,
                                                          'addresses': []}
        item['netns'] = v.peer_netns
        out_peers.append(item)
    out = []
    for l in sorted(links.values(), key=lambda x: (x.name != 'lo', x.name)):
        item = _link_dict(l)
        if l.name in peers:
            item['peer'], item['peer_netns'] = peers[l.name]
        out.append(item)
    rts = [{'dst': str(r.dst), 'gateway': str(r.gateway) if r.gateway else None,
            'dev': r.dev, 'type': r.type} for r in sorted(routes, key=lambda r: (str(r.dst), r.type))]
    return {'name': name, 'exists': True, 'links': out, 'routes': rts, 'peers': out_peers}


def read_current(nl, spec):
    """(exists, links, others, routes, namespaces) for plan_netns()."""
    namespaces = nsu.list_netns()
    exists = spec.name in namespaces
    links, routes = {}, []
    if exists:
        links = nl.read_links(spec.name)
        routes = nl.read_routes(spec.name, links)
    others = {}
    if spec.state == 'present':
        for v in spec.veths:
            p = v.peer_netns
            if p == spec.name or p in others:
                continue
            if p is None or p in namespaces:
                others[p] = nl.read_links(p)
    return exists, links, others, routes, namespaces


def _netns_arg(nl, netns):
    """net_ns_fd of a veth peer: the namespace's name, or our own namespace's fd."""
    return nl.host_fd if netns is None else netns


# --------------------------------------------------------------------------
# Applying a plan: every change a step of a transaction.Transaction

_FIELDS = {'add_ns': 'name', 'del_ns': 'name', 'route': 'routes'}


def apply_changes(nl, spec, changes, before_links, others, journal=DEFAULT_JOURNAL):
    """Run changes in order as the steps of one Transaction; on error undo and raise.

    The journal gets KIND_NETNS (key: name) for a namespace created and
    KIND_LINK (key: scoped_key(netns, veth name)) for a veth created, and
    KIND_ROUTE (key: scoped_key(netns, 'TYPE DST')) for a route added or
    replaced, with the route it replaced; a state=absent plan forgets the
    entries of what it removed, once every step succeeded. On failure the steps made are undone in reverse (a veth
    deleted is created again with its peer, addresses, mtu and state, a
    namespace removed is created again), the journal is left as it was, and
    TestbedError names the step and the error.
    """
    current = {spec.name: before_links}
    current.update(others)
    forget = []
    with Transaction(False, journal) as tx:
        for c in changes:
            _apply_one(nl, spec, c, tx, current, forget)
        for kind, key in forget:
            tx.forget(kind, key)
        if any(c.kind == 'del_ns' for c in changes):
            for kind in (KIND_ALIASES, KIND_ROUTE):
                for key in list(tx.journal().entries(kind)):
                    if split_scoped_key(key)[0] == spec.name:
                        tx.forget(kind, key)         # they went with the namespace


def _apply_one(nl, spec, c, tx, current, forget):
    name = spec.name
    what = describe(c)
    field = _FIELDS.get(c.kind, 'veths')
    if c.kind == 'add_ns':
        tx.change(KIND_NETNS, name, None, lambda: nsu.create_netns(name),
                  lambda: _drop_ns(nl, name), what, field)
        return
    if c.kind == 'del_ns':
        def remove():
            nl.forget(name)
            nsu.remove_netns(name)

        def recreate():
            if not nsu.netns_exists(name):
                nsu.create_netns(name)
        tx.step(remove, recreate, what, field)
        forget.append((KIND_NETNS, name))
        return
    if c.kind == 'del_link':
        link = current.get(c.netns, {}).get(c.ifname)
        pair = nl.find_peer(c.netns, link) if link is not None else None
        if pair is not None and pair[0] == c.netns and \
                any(k == (KIND_LINK, scoped_key(c.netns, pair[1].name)) for k in forget):
            return                      # the other end of a pair already deleted here
        tx.step(lambda: nl.ipr(c.netns).link('del', index=nl.index(c.netns, c.ifname)),
                lambda: _recreate_pair(nl, c.netns, link, pair), what, field)
        forget.append((KIND_LINK, scoped_key(c.netns, c.ifname)))
        if pair is not None:
            forget.append((KIND_LINK, scoped_key(pair[0], pair[1].name)))
        return
    if c.kind == 'add_veth':
        v = c.detail
        peer = {'ifname': v.peer}
        if v.peer_netns != name:
            peer['net_ns_fd'] = _netns_arg(nl, v.peer_netns)
        tx.change(KIND_LINK, scoped_key(c.netns, v.name), None,
                  lambda: nl.ipr(c.netns).link('add', ifname=v.name, kind='veth', peer=peer),
                  lambda: _delete(nl, c.netns, v.name), what, field)
        return
    if c.kind == 'route':
        _apply_route(nl, c, tx, what)
        return
    old = current.get(c.netns, {}).get(c.ifname)
    if c.kind == 'set_state':
        prev = None if old is None else ('up' if old.up else 'down')
        tx.step(lambda: _set(nl, c.netns, c.ifname, state=c.detail),
                None if prev is None else lambda: _set(nl, c.netns, c.ifname, state=prev),
                what, field)
    elif c.kind == 'set_mtu':
        prev_mtu = None if old is None else old.mtu
        tx.step(lambda: _set(nl, c.netns, c.ifname, mtu=c.detail),
                None if prev_mtu is None else lambda: _set(nl, c.netns, c.ifname, mtu=prev_mtu),
                what, field)
    elif c.kind == 'addr_add':
        tx.step(lambda: _addr(nl, 'add', c.netns, c.ifname, c.detail),
                lambda: _addr(nl, 'del', c.netns, c.ifname, c.detail), what, field)
    elif c.kind == 'addr_del':
        tx.step(lambda: _addr(nl, 'del', c.netns, c.ifname, c.detail),
                lambda: _addr(nl, 'add', c.netns, c.ifname, c.detail), what, field)


def _set(nl, netns, ifname, **kw):
    nl.ipr(netns).link('set', index=nl.index(netns, ifname), **kw)


def _addr(nl, command, netns, ifname, iface):
    kw = dict(index=nl.index(netns, ifname), address=str(iface.ip),
              prefixlen=iface.network.prefixlen)
    if command == 'add' and iface.version == 6:
        kw['IFA_FLAGS'] = IFA_F_NODAD      # usable at once
    nl.ipr(netns).addr(command, **kw)


def _delete(nl, netns, ifname):
    index = nl.lookup(netns, ifname)
    if index is not None:
        nl.ipr(netns).link('del', index=index)


def _drop_ns(nl, name):
    # veths first: deleting one end takes the peer (wherever it is) with it
    # at once, instead of when the namespace is reaped
    for l in nl.read_links(name).values():
        if l.kind == 'veth':
            _delete(nl, name, l.name)
    nl.forget(name)
    nsu.remove_netns(name)


def _recreate_pair(nl, netns, link, pair):
    """Create the veth link (in netns) and its peer again, as they were."""
    if link is None or pair is None:
        raise TestbedError('veths', 'the other end of the deleted veth was not found (a '
                           'namespace without a name?), so it cannot be created again',
                           'create the veth again by hand')
    peer_ns, peer = pair
    spec = {'ifname': peer.name}
    if peer_ns != netns:
        spec['net_ns_fd'] = _netns_arg(nl, peer_ns)
    nl.ipr(netns).link('add', ifname=link.name, kind='veth', peer=spec)
    ends = [(netns, link)] + ([(peer_ns, peer)] if peer is not None else [])
    for where, end in ends:
        if end.mtu:
            _set(nl, where, end.name, mtu=end.mtu)
        for iface in managed_addresses(end):
            _addr(nl, 'add', where, end.name, iface)
    for where, end in ends:
        if end.up:
            _set(nl, where, end.name, state='up')


def _route_kwargs(nl, netns, dst, gateway, dev, kind='unicast'):
    rtype, table = ROUTE_TYPES[kind]
    kw = dict(dst=str(dst.network_address), dst_len=dst.prefixlen,
              family=socket.AF_INET if dst.version == 4 else socket.AF_INET6,
              table=table, type=rtype)
    if kind == 'local':
        kw['scope'] = RT_SCOPE_HOST
    if gateway is not None:
        kw['gateway'] = str(gateway)
    if dev is not None:
        kw['oif'] = nl.index(netns, dev)
    return kw


def _route_key(netns, r):
    return scoped_key(netns, '%s %s' % (r.type, r.dst))


def _apply_route(nl, c, tx, what):
    """Add or replace one route, recording what it replaced (KIND_ROUTE)."""
    r = c.detail
    links = nl.read_links(c.netns)
    old = [x for x in nl.read_routes(c.netns, links) if x.dst == r.dst and x.type == r.type]
    previous = ({'gateway': str(old[0].gateway) if old[0].gateway else None, 'dev': old[0].dev}
                if old else None)

    def put():
        nl.ipr(c.netns).route('replace', **_route_kwargs(nl, c.netns, r.dst, r.gateway, r.dev,
                                                         r.type))

    def undo():
        if old:
            nl.ipr(c.netns).route('replace', **_route_kwargs(nl, c.netns, old[0].dst,
                                                             old[0].gateway, old[0].dev, r.type))
        else:
            nl.ipr(c.netns).route('del', **_route_kwargs(nl, c.netns, r.dst, r.gateway, r.dev,
                                                         r.type))
    tx.change(KIND_ROUTE, _route_key(c.netns, r), previous, put, undo, what, 'routes')


def put_back_route(netns, kind, dst, previous):
    """Restore: the route of kind to dst as it was before the testbed (previous: {gateway,
    dev} or None for none). Whether anything changed."""
    dst = ipaddress.ip_network(dst)
    with Netlink() as nl:
        links = nl.read_links(netns)
        now = [x for x in nl.read_routes(netns, links) if x.dst == dst and x.type == kind]
        if previous is None:
            if not now:
                return False
            nl.ipr(netns).route('del', **_route_kwargs(nl, netns, dst, now[0].gateway, now[0].dev,
                                                       kind))
            return True
        gateway = ipaddress.ip_address(previous['gateway']) if previous.get('gateway') else None
        if now and now[0].gateway == gateway and now[0].dev == previous.get('dev'):
            return False
        nl.ipr(netns).route('replace', **_route_kwargs(nl, netns, dst, gateway, previous.get('dev'),
                                                       kind))
        return True


# --------------------------------------------------------------------------
# The task, and the helper for restore

def ensure(name, state='present', loopback=True, veths=None, routes=None,
           journal=DEFAULT_JOURNAL, check_mode=False, diff=False, warn=None):
    """What scalelab.testbed.netns does: validate, read, plan, apply, record; its result.

    Raises TestbedError: bad input or a conflict (nothing changed), a step
    that failed (what the task did was undone, see apply_changes), or a read
    the kernel refused.
    """
    spec = normalize_spec(name, state, loopback, veths, routes)
    try:
        return _ensure(spec, journal, check_mode, diff, warn)
    except NetlinkError as exc:           # pyroute2's, from a read outside the transaction
        raise TestbedError('name', 'rtnetlink: %s' % error_text(exc),
                           'check that the task runs as root on Linux')


def _ensure(spec, journal, check_mode, diff, warn):
    with Netlink() as nl:
        exists, links, others, routes_now, namespaces = read_current(nl, spec)
        before = state_dict(spec.name, exists, links, routes_now, spec, others)
        changes = plan_netns(spec, exists, links, others, routes_now, namespaces)
        if changes and spec.state == 'absent' and warn is not None:
            pids = nsu.netns_pids(spec.name)
            if pids:
                warn('processes %s still run in network namespace %s: it is unnamed now '
                     'but lives on until they exit'
                     % (', '.join(str(x) for x in pids[:10]), spec.name))
        if check_mode or not changes:
            after = predict_state(before, spec, changes) if changes else before
        else:
            apply_changes(nl, spec, changes, links, others, journal)
            exists, links, others, routes_now, _ns = read_current(nl, spec)
            after = state_dict(spec.name, exists, links, routes_now, spec, others)
    result = dict(changed=bool(changes), namespace=after,
                  changes=[describe(c) for c in changes])
    if diff:
        result['diff'] = dict(before=before, after=after)
    return result


def delete_link(netns, name):
    """Delete the link name in netns (None: the namespace we run in); True if it did.

    For scalelab.testbed.restore (KIND_LINK journal entries). Deleting one
    end of a veth deletes its peer too, wherever it is. Returns True when it
    deleted the link, False when there was none by that name or the
    namespace is gone. A refusal of the kernel raises OSError (errno and
    text; pyroute2's own exception never leaves this file), a name under
    /var/run/netns that is no namespace raises TestbedError (field netns).
    """
    if netns is not None and not nsu.netns_exists(netns):
        return False
    with Netlink() as nl:
        try:
            index = nl.lookup(netns, name)
            if index is None:
                return False
            nl.ipr(netns).link('del', index=index)
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:
                return False                # deleted meanwhile (with its peer?)
            raise OSError(exc.code, 'deleting %s in %s: %s' % (name, _where(netns),
                                                               error_text(exc)))
    return True
