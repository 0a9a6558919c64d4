# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Network namespaces with veth pairs, link state, addresses and routes.

Pure part: ``normalize_spec()`` validates the module input into a
:class:`NetnsSpec`; ``plan_netns()`` compares it with the state read from the
kernel (:class:`LinkState` dicts per namespace, routes) and returns a list of
:class:`Change`, or raises TestbedError; ``predict_state()`` gives the state
after a plan (check/diff mode). Kernel part: :class:`Netlink` holds one
pyroute2 ``IPRoute`` per namespace involved (public API only: ``get_links``,
``get_addr``, ``get_routes``, ``link``, ``addr``, ``route``) and
:func:`apply_changes` runs a plan with an undo stack, so a failure half way
puts back what the task had already changed.

Namespaces are referred to by name; None is the namespace the module runs in
(the host).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
from collections import namedtuple

from ansible_collections.scalelab.testbed.plugins.module_utils.common import (
    TestbedError, validate_ifname, validate_name)
from ansible_collections.scalelab.testbed.plugins.module_utils import netns as nsu

try:
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError
    HAS_PYROUTE2 = True
    PYROUTE2_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - reported by the module
    IPRoute = None
    NetlinkError = OSError
    HAS_PYROUTE2 = False
    PYROUTE2_IMPORT_ERROR = exc

HOST_PREFIX = {4: 32, 6: 128}
MTU_MIN, MTU_MAX = 68, 65535
IFF_UP = 0x1
RT_TABLE_MAIN = 254
RTN_UNICAST = 1
LINK_LOCAL6 = ipaddress.ip_network('fe80::/10')

VethSpec = namedtuple('VethSpec', 'name peer peer_netns addresses peer_addresses mtu state')
RouteSpec = namedtuple('RouteSpec', 'dst gateway dev')
NetnsSpec = namedtuple('NetnsSpec', 'name state loopback veths routes')
LinkState = namedtuple('LinkState', 'name index kind up mtu addresses peer_index '
                                    'peer_elsewhere')
RouteState = namedtuple('RouteState', 'dst gateway dev')
Change = namedtuple('Change', 'kind netns ifname detail')


def _where(netns):
    return 'network namespace %r' % netns if netns is not None else 'the host namespace'


# --------------------------------------------------------------------------
# Input validation (pure)

def parse_ifaddress(value, field):
    """'IP/prefix' (or bare IP: host prefix) -> ipaddress.ip_interface."""
    if not isinstance(value, str):
        raise TestbedError(field, '%r is not an address string' % (value,),
                           'give "IP/prefix", e.g. "10.1.0.1/24"')
    text = value.strip()
    try:
        if '/' in text:
            if not text.split('/', 1)[1].isdigit():
                raise ValueError('netmask form')
            iface = ipaddress.ip_interface(text)
        else:
            ip = ipaddress.ip_address(text)
            iface = ipaddress.ip_interface('%s/%d' % (ip, HOST_PREFIX[ip.version]))
    except ValueError:
        raise TestbedError(field, '%r is not a valid IP/prefix' % value,
                           'give "IP/prefix", e.g. "10.1.0.1/24" or "fd00:1::1/64"')
    if iface.ip.is_multicast or iface.ip.is_unspecified:
        raise TestbedError(field, '%r is not a unicast host address' % value,
                           'give a unicast address')
    if iface.network.prefixlen == 0:
        raise TestbedError(field, '%r has prefix length 0' % value,
                           'give a prefix length of at least 1')
    return iface


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
    gw = None
    if gateway is not None:
        try:
            gw = ipaddress.ip_address(gateway)
        except ValueError:
            raise TestbedError(field + '.gateway', '%r is not an IP address' % gateway,
                               'give the next hop address, e.g. "10.1.0.2"')
    if dev is not None:
        validate_ifname(dev, field + '.dev')
    if gw is None and dev is None:
        raise TestbedError(field, 'a route needs a gateway, a dev, or both',
                           'add gateway: or dev:')
    if not isinstance(dst, str) or not dst:
        raise TestbedError(field + '.dst', 'dst is required',
                           'give a network such as "10.2.0.0/16" or "default"')
    if dst == 'default':
        net = ipaddress.ip_network('::/0' if gw is not None and gw.version == 6
                                   else '0.0.0.0/0')
    else:
        try:
            net = ipaddress.ip_network(dst, strict=True)
        except ValueError as exc:
            if 'host bits set' in str(exc):
                raise TestbedError(field + '.dst', '%r has host bits set' % dst,
                                   'give the network address, e.g. %s'
                                   % ipaddress.ip_network(dst, strict=False))
            raise TestbedError(field + '.dst', '%r is not a network' % dst,
                               'give a network such as "10.2.0.0/16" or "default"')
    if gw is not None and gw.version != net.version:
        raise TestbedError(field + '.gateway', 'gateway %s is IPv%d but dst %s is IPv%d'
                           % (gw, gw.version, net, net.version),
                           'use a gateway of the same family as dst')
    return RouteSpec(net, gw, dev)


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
        if r.dst in seen:
            raise TestbedError('routes[%d].dst' % i, 'route to %s is listed twice (also '
                               'routes[%d])' % (r.dst, seen[r.dst]), 'keep one entry per dst')
        seen[r.dst] = i
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
        for link in sorted(links.values(), key=lambda x: x.index):
            if link.kind == 'veth':
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
    current = dict((r.dst, r) for r in routes)
    for i, r in enumerate(spec.routes):
        if r.dev is not None and r.dev not in links and r.dev not in declared:
            raise TestbedError('routes[%d].dev' % i, 'interface %r does not exist in %s'
                               % (r.dev, _where(name)),
                               'declare it under veths or fix the name')
        have = current.get(r.dst)
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
    routes = dict((r['dst'], dict(r)) for r in before.get('routes', []))

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
            routes[str(r.dst)] = {'dst': str(r.dst),
                                  'gateway': str(r.gateway) if r.gateway else None,
                                  'dev': r.dev}
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
            'routes': sorted(routes.values(), key=lambda r: r['dst']),
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
    return LinkState(
        name=msg.get_attr('IFLA_IFNAME'), index=msg['index'], kind=kind,
        up=bool(msg['flags'] & IFF_UP), mtu=msg.get_attr('IFLA_MTU'),
        addresses=addrs.get(msg['index'], []),
        peer_index=msg.get_attr('IFLA_LINK') if kind == 'veth' else None,
        peer_elsewhere=msg.get_attr('IFLA_LINK_NETNSID') is not None)


class Netlink(object):
    """pyroute2 IPRoute sockets, one per namespace (None = host)."""

    def __init__(self):
        self.sockets = {}
        self.host_fd = os.open('/proc/self/ns/net', os.O_RDONLY)

    def ipr(self, netns):
        if netns not in self.sockets:
            with nsu.enter_netns(netns):
                self.sockets[netns] = IPRoute(groups=0)
        return self.sockets[netns]

    def forget(self, netns):
        sock = self.sockets.pop(netns, None)
        if sock is not None:
            sock.close()

    def close(self):
        for netns in list(self.sockets):
            self.forget(netns)
        os.close(self.host_fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

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
        names = dict((l.index, l.name) for l in links.values())
        result = []
        for msg in self.ipr(netns).get_routes(table=RT_TABLE_MAIN):
            if msg['type'] != RTN_UNICAST or msg.get_attr('RTA_MULTIPATH'):
                continue
            if msg.get_attr('RTA_TABLE', RT_TABLE_MAIN) != RT_TABLE_MAIN:
                continue
            family = msg['family']
            zero = '0.0.0.0' if family == socket.AF_INET else '::'
            dst = ipaddress.ip_network('%s/%d' % (msg.get_attr('RTA_DST') or zero,
                                                  msg['dst_len']), strict=False)
            gw = msg.get_attr('RTA_GATEWAY')
            oif = msg.get_attr('RTA_OIF')
            result.append(RouteState(dst, ipaddress.ip_address(gw) if gw else None,
                                     names.get(oif)))
        return result

    def index(self, netns, ifname):
        found = self.ipr(netns).link_lookup(ifname=ifname)
        if not found:
            raise TestbedError('veths', 'interface %r vanished from %s'
                               % (ifname, _where(netns)), 'run the task again')
        return found[0]


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
            'dev': r.dev} for r in sorted(routes, key=lambda r: str(r.dst))]
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
    return nl.host_fd if netns is None else nsu.netns_path(netns)


def error_text(exc):
    """'ENETUNREACH (errno 101: Network is unreachable)' for netlink/OS errors."""
    code = getattr(exc, 'code', None) if isinstance(exc, NetlinkError) else getattr(
        exc, 'errno', None)
    if isinstance(code, int) and code > 0:
        return '%s (errno %d: %s)' % (errno.errorcode.get(code, 'E?'), code,
                                      os.strerror(code))
    return str(exc)


def apply_changes(nl, spec, changes, before_links, others):
    """Run changes in order; on error undo the done ones and raise."""
    undo = []
    current = {spec.name: before_links}
    current.update(others)

    def old_link(netns, ifname):
        return current.get(netns, {}).get(ifname)

    try:
        for c in changes:
            _apply_one(nl, spec, c, undo, old_link)
    except (NetlinkError, OSError, TestbedError) as exc:
        failed = c
        problems = []
        for step in reversed(undo):
            try:
                step()
            except Exception as uexc:  # keep undoing the rest
                problems.append(str(uexc))
        msg = '%s failed: %s' % (describe(failed), error_text(exc))
        if undo:
            msg += '; undid %d earlier change(s)' % len(undo)
        if problems:
            msg += '; UNDO INCOMPLETE: %s' % '; '.join(problems)
        raise TestbedError('netns', msg, 'fix the cause above and run the task again')


def _apply_one(nl, spec, c, undo, old_link):
    name = spec.name
    if c.kind == 'add_ns':
        nsu.create_netns(name)

        def drop_ns():
            # veths first: deleting one end takes the peer (wherever it is)
            # with it at once, instead of when the namespace is reaped
            for l in nl.read_links(name).values():
                if l.kind == 'veth':
                    nl.ipr(name).link('del', index=l.index)
            nl.forget(name)
            nsu.remove_netns(name)
        undo.append(drop_ns)
        return
    if c.kind == 'del_link':
        nl.ipr(c.netns).link('del', index=nl.index(c.netns, c.ifname))
        return
    if c.kind == 'del_ns':
        nl.forget(name)
        nsu.remove_netns(name)
        return
    ipr = nl.ipr(c.netns)
    if c.kind == 'add_veth':
        v = c.detail
        peer = {'ifname': v.peer}
        if v.peer_netns != name:
            peer['net_ns_fd'] = _netns_arg(nl, v.peer_netns)
        ipr.link('add', ifname=v.name, kind='veth', peer=peer)
        undo.append(lambda: ipr.link('del', index=nl.index(c.netns, v.name)))
        return
    if c.kind == 'route':
        _apply_route(nl, c, undo)
        return
    index = nl.index(c.netns, c.ifname)
    old = old_link(c.netns, c.ifname)
    if c.kind == 'set_state':
        ipr.link('set', index=index, state=c.detail)
        if old is not None:
            prev = 'up' if old.up else 'down'
            undo.append(lambda: ipr.link('set', index=index, state=prev))
    elif c.kind == 'set_mtu':
        ipr.link('set', index=index, mtu=c.detail)
        if old is not None:
            prev_mtu = old.mtu
            undo.append(lambda: ipr.link('set', index=index, mtu=prev_mtu))
    elif c.kind in ('addr_add', 'addr_del'):
        a = c.detail
        kw = dict(index=index, address=str(a.ip), prefixlen=a.network.prefixlen)
        if a.version == 6:
            kw['IFA_FLAGS'] = 0x02   # IFA_F_NODAD: usable at once
        if c.kind == 'addr_add':
            ipr.addr('add', **kw)
            undo.append(lambda: ipr.addr('del', index=index, address=str(a.ip),
                                         prefixlen=a.network.prefixlen))
        else:
            ipr.addr('del', index=index, address=str(a.ip), prefixlen=a.network.prefixlen)
            undo.append(lambda: ipr.addr('add', **kw))


def _route_kwargs(nl, netns, dst, gateway, dev):
    kw = dict(dst=str(dst.network_address), dst_len=dst.prefixlen,
              family=socket.AF_INET if dst.version == 4 else socket.AF_INET6,
              table=RT_TABLE_MAIN)
    if gateway is not None:
        kw['gateway'] = str(gateway)
    if dev is not None:
        kw['oif'] = nl.index(netns, dev)
    return kw


def _apply_route(nl, c, undo):
    r = c.detail
    ipr = nl.ipr(c.netns)
    links = nl.read_links(c.netns)
    old = [x for x in nl.read_routes(c.netns, links) if x.dst == r.dst]
    ipr.route('replace', **_route_kwargs(nl, c.netns, r.dst, r.gateway, r.dev))
    if old:
        prev = _route_kwargs(nl, c.netns, old[0].dst, old[0].gateway, old[0].dev)
        undo.append(lambda: ipr.route('replace', **prev))
    else:
        new = _route_kwargs(nl, c.netns, r.dst, r.gateway, r.dev)
        undo.append(lambda: ipr.route('del', **new))
