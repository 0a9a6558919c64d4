# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""IP alias sets: planning (pure) and a pipelined rtnetlink apply (netlink.py).

Planning
    ``desired_aliases()`` turns the module's input (an explicit list, or a CIDR
    plus count and offset) into a list of :class:`Alias`, following the rules
    of ipplan.py (address/prefix parsing, usable hosts); ``plan_aliases()``
    compares it with the addresses the kernel reported (one dump of the whole
    namespace) and returns what to add and what to remove, or raises
    :class:`TestbedError` for every conflict it finds. Nothing here needs root.

Tagging (how "ours" is recognised)
    On kernels >= 6.1 every address this collection adds carries
    ``IFA_PROTO`` = :data:`TAG_PROTO` (211). The kernel stores it and reports
    it back in every dump (``ifa_proto``); values 0-3 belong to the kernel
    (unspec, loopback, router advertisement, link-local), 211 is ours.
    Older kernels ignore the attribute, so there the IPv4 label
    ``<interface>:tb`` is used instead (IPv6 has no labels: purging IPv6
    aliases needs kernel >= 6.1). Both tags are recognised on every kernel.

Apply
    One rtnetlink socket (:class:`AddressSession`, a netlink.NetlinkSocket
    opened inside the target namespace). The requests (``ifaddrmsg`` and
    attributes, encoded here with netlink.py's codec) are pipelined: sent in
    chunks of netlink.CHUNK per ``send()``, the acknowledgements of a chunk
    collected after it, instead of one round trip per address. A batch
    (:func:`add_all`, :func:`remove_all`, :func:`put_back`) is all or nothing:
    when the kernel refuses one request, what the batch already did is undone
    and the TestbedError names the address, the errno and the kernel's text.
    Modules run the batches as steps of a transaction.Transaction, which
    records the change in the journal and undoes earlier steps.

For the restore module: :func:`remove_tagged` removes every tagged address
of an interface (0 when the namespace or the interface is gone).
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
    DEFAULT_JOURNAL, KIND_ALIASES, scoped_key)
from ansible_collections.scalelab.testbed.plugins.module_utils.transaction import Transaction

# --------------------------------------------------------------------------
# Constants

TAG_PROTO = 211          # IFA_PROTO value of the addresses this collection adds
TAG_LABEL_SUFFIX = ':tb'  # IPv4 label suffix used on kernels without IFA_PROTO
MAX_ALIASES = 1000000    # upper bound for one task
DIFF_LINES = 60          # diff text longer than this is summarised
IFA_F_SECONDARY = nl.IFA_F_SECONDARY
IFA_F_NODAD = nl.IFA_F_NODAD

HOST_PREFIX = ipplan.HOST_PREFIX
FAMILY = {4: socket.AF_INET, 6: socket.AF_INET6}
VERSION_OF = {socket.AF_INET: 4, socket.AF_INET6: 6}

_ADDRESS_FIX = 'give addresses such as "10.0.0.1", "10.0.0.1/24" or "fd00::1/64"'


# --------------------------------------------------------------------------
# Data types

class Alias(namedtuple('Alias', 'ip prefixlen')):
    """A desired address: an ipaddress.IPv4Address/IPv6Address and a prefix."""
    __slots__ = ()

    def __str__(self):
        return '%s/%d' % (self.ip, self.prefixlen)


class KernelAddress(namedtuple('KernelAddress', 'ip prefixlen index family flags '
                                                'scope proto label peer')):
    """An address as the kernel reported it.

    ip is the local address (IFA_LOCAL, else IFA_ADDRESS); peer is the raw
    IFA_ADDRESS (equal to ip unless point-to-point); label is the IPv4 label
    or None; flags are the full IFA_FLAGS.
    """
    __slots__ = ()

    def __str__(self):
        return '%s/%d' % (self.ip, self.prefixlen)

    @property
    def secondary(self):
        return bool(self.flags & IFA_F_SECONDARY)


class Tag(namedtuple('Tag', 'method proto label')):
    """How the addresses we add are marked: method 'proto' or 'label'."""
    __slots__ = ()

    def as_dict(self):
        return {'method': self.method,
                'value': self.proto if self.method == 'proto' else self.label}


AliasPlan = namedtuple('AliasPlan', 'add remove unchanged ours_before ours_after '
                                    'before after')


# --------------------------------------------------------------------------
# Pure planning

def kernel_has_ifa_proto(release):
    """True when the kernel release string is 6.1 or newer (IFA_PROTO)."""
    parts = []
    for piece in release.split('.')[:2]:
        digits = ''
        for ch in piece:
            if not ch.isdigit():
                break
            digits += ch
        parts.append(int(digits) if digits else 0)
    while len(parts) < 2:
        parts.append(0)
    return tuple(parts) >= (6, 1)


def choose_tag(release, interface):
    """The tag to put on new addresses for this kernel and interface."""
    label = tag_label(interface)
    if kernel_has_ifa_proto(release):
        return Tag('proto', TAG_PROTO, label)
    return Tag('label', None, label)


def tag_label(interface):
    """The IPv4 label used as tag on old kernels (None if it cannot fit)."""
    label = interface + TAG_LABEL_SUFFIX
    return label if len(label) <= ipplan.IFNAME_MAX else None


def is_ours(addr, label):
    """True if the kernel address carries our tag (either kind)."""
    if addr.proto == TAG_PROTO:
        return True
    return label is not None and addr.label == label


def parse_alias(value, prefix_length=None, field='addresses'):
    """'IP' or 'IP/prefix' -> Alias (prefix_length for bare IPs), by ipplan.address_prefix."""
    try:
        ip, prefixlen = ipplan.address_prefix(value, prefix_length)
    except ValueError as exc:
        raise TestbedError(field, str(exc), _ADDRESS_FIX)
    return Alias(ip, prefixlen)


def _check_prefix_length(version, prefix_length):
    top = HOST_PREFIX[version]
    if not 1 <= prefix_length <= top:
        raise TestbedError('prefix_length', 'prefix length %d is out of range for IPv%d (1 to %d)'
                           % (prefix_length, version, top),
                           'use a prefix length from 1 to %d' % top)


def generate_aliases(cidr, count, offset=0, prefix_length=None, field='cidr'):
    """The usable hosts of cidr after offset, count of them (ipplan.hosts)."""
    try:
        network = ipplan.network(cidr)
    except ValueError as exc:
        raise TestbedError(field, str(exc), 'give a network such as "10.10.0.0/16" or '
                                            '"fd00:10::/112"')
    if count is None or count < 1:
        raise TestbedError('count', 'count must be at least 1, got %r' % (count,),
                           'give the number of aliases to generate from cidr')
    if offset is None or offset < 0:
        raise TestbedError('offset', 'offset must be 0 or more, got %r' % (offset,),
                           'give how many usable hosts to skip at the start of cidr')
    if count > MAX_ALIASES:
        raise TestbedError('count', 'count %d is above the limit of %d aliases per task'
                           % (count, MAX_ALIASES), 'split the set over several tasks')
    plen = prefix_length if prefix_length is not None else HOST_PREFIX[network.version]
    _check_prefix_length(network.version, plen)
    try:
        ips = ipplan.hosts(network, count, offset)
    except ValueError as exc:
        raise TestbedError(field, str(exc), 'use a larger network, or lower count or offset')
    # Multicast and the limited broadcast are runs at the top of the address
    # space: a block of at most MAX_ALIASES can only touch one at its ends.
    for ip in (ips[0], ips[-1]):
        try:
            ipplan.address_prefix(str(ip))
        except ValueError as exc:
            raise TestbedError(field, '%s: %s' % (network, exc),
                               'take aliases from a unicast network')
    return [Alias(ip, plen) for ip in ips]


def desired_aliases(addresses=None, cidr=None, count=None, offset=0, prefix_length=None):
    """The desired alias list from the module input, validated.

    Raises TestbedError for invalid entries, duplicates and the same address
    given twice with different prefix lengths.
    """
    if addresses is not None and cidr is not None:
        raise TestbedError('addresses', 'addresses and cidr are mutually exclusive',
                           'give either an explicit list or cidr + count')
    if cidr is not None:
        return generate_aliases(cidr, count, offset or 0, prefix_length)
    if addresses is None:
        return []
    if count is not None or offset:
        raise TestbedError('count', 'count and offset only apply to cidr',
                           'remove count/offset or use cidr instead of addresses')
    if len(addresses) > MAX_ALIASES:
        raise TestbedError('addresses', '%d addresses are above the limit of %d per task'
                           % (len(addresses), MAX_ALIASES),
                           'split the set over several tasks')
    seen = {}
    result = []
    for value in addresses:
        alias = parse_alias(value, prefix_length)
        other = seen.get(alias.ip)
        if other is not None:
            if other.prefixlen == alias.prefixlen:
                raise TestbedError('addresses', 'address %s is listed twice' % (alias,),
                                   'remove the duplicate entry')
            raise TestbedError('addresses', 'address %s is listed twice with different '
                               'prefix lengths (%s and %s)' % (alias.ip, other, alias),
                               'keep one of the two entries')
        seen[alias.ip] = alias
        result.append(alias)
    return result


def _first(items, limit=5):
    shown = ', '.join(str(x) for x in items[:limit])
    if len(items) > limit:
        shown += ' and %d more' % (len(items) - limit)
    return shown


def plan_aliases(desired, current, ifindex, ifnames, state='present', purge=False,
                 label=None, promote_secondaries=False, interface=None):
    """Compare desired aliases with the kernel's addresses of a namespace.

    desired: list of Alias. current: list of KernelAddress of ALL interfaces
    of the namespace. ifindex: index of the target interface; ifnames maps
    index -> name (for messages). label: our IPv4 tag label (see is_ours).

    Returns AliasPlan(add, remove, unchanged, ours_before, ours_after, before,
    after): add is a list of Alias, remove a list of KernelAddress (ordered:
    secondaries first, so the kernel never drops one of them implicitly),
    before/after the interface's address strings. Raises TestbedError when
    the desired state conflicts with what is there.
    """
    interface = interface or ifnames.get(ifindex, str(ifindex))
    here = [a for a in current if a.index == ifindex]
    here_by_ip = {}
    for a in here:
        here_by_ip.setdefault(a.ip, []).append(a)
    elsewhere = {}
    for a in current:
        if a.index != ifindex:
            elsewhere.setdefault(a.ip, a)
    ours_before = [a for a in here if is_ours(a, label)]

    add, remove = [], []
    unchanged = 0
    conflicts_other_if, conflicts_prefix = [], []
    if state == 'present':
        for alias in desired:
            there = here_by_ip.get(alias.ip, [])
            if any(a.prefixlen == alias.prefixlen for a in there):
                unchanged += 1
                # the same IP may also be there with another prefix: ours goes
                for a in there:
                    if a.prefixlen != alias.prefixlen:
                        if is_ours(a, label):
                            remove.append(a)
                        else:
                            conflicts_prefix.append((alias, a))
                continue
            other = elsewhere.get(alias.ip)
            if other is not None:
                conflicts_other_if.append((alias, other))
                continue
            for a in there:
                if is_ours(a, label):
                    remove.append(a)      # replaced with the new prefix
                else:
                    conflicts_prefix.append((alias, a))
            add.append(alias)
        if purge:
            keep = set((a.ip, a.prefixlen) for a in desired)
            planned = set(remove)
            for a in ours_before:
                if (a.ip, a.prefixlen) not in keep and a not in planned:
                    remove.append(a)
    else:
        for alias in desired:
            for a in here_by_ip.get(alias.ip, []):
                if a.prefixlen == alias.prefixlen:
                    remove.append(a)
        if purge:
            planned = set(remove)
            for a in ours_before:
                if a not in planned:
                    remove.append(a)

    if conflicts_other_if:
        items = ['%s (on %s)' % (alias, ifnames.get(other.index, other.index))
                 for alias, other in conflicts_other_if]
        raise TestbedError('addresses', '%d address(es) are already on another interface '
                           'in the same namespace: %s' % (len(items), _first(items)),
                           'remove them from the other interface or leave them out here')
    if conflicts_prefix:
        items = ['%s (present as %s, not added by this collection)' % (alias, a)
                 for alias, a in conflicts_prefix]
        raise TestbedError('addresses', '%d address(es) are on %s with another prefix '
                           'length: %s' % (len(items), interface, _first(items)),
                           'ask for the prefix length that is there, or remove the '
                           'address by hand first')

    # IPv4: deleting a primary address also deletes the secondaries of its
    # subnet unless promote_secondaries is set. Refuse to take foreign
    # addresses (or ours that stay) down with it.
    removing = set((a.ip, a.prefixlen) for a in remove)
    if not promote_secondaries:
        def subnet(addr):
            mask = (0xffffffff << (32 - addr.prefixlen)) & 0xffffffff
            return addr.prefixlen, int(addr.ip) & mask

        staying = {}
        for b in here:
            if (b.family == socket.AF_INET and b.secondary
                    and (b.ip, b.prefixlen) not in removing):
                staying.setdefault(subnet(b), []).append(b)
        casualties = []
        if staying:
            for a in remove:
                if a.family == socket.AF_INET and not a.secondary:
                    casualties.extend('%s (with %s)' % (b, a)
                                      for b in staying.get(subnet(a), []))
        if casualties:
            raise TestbedError(
                'state', 'removing primary addresses would make the kernel also remove '
                'the secondary addresses %s, because net.ipv4.conf.%s.promote_secondaries '
                'is 0' % (_first(casualties), interface),
                'set net.ipv4.conf.%s.promote_secondaries to 1 in that namespace '
                '(scalelab.testbed.sysctls) or use /32 aliases' % interface)

    remove.sort(key=lambda a: (not a.secondary,))
    removed_keys = set((a.ip, a.prefixlen, a.index) for a in remove)
    after = [a for a in here if (a.ip, a.prefixlen, a.index) not in removed_keys]
    ours_after = len([a for a in after if is_ours(a, label)]) + len(add)
    before_list = [str(a) for a in here]
    after_list = [str(a) for a in after] + [str(a) for a in add]
    return AliasPlan(add, remove, unchanged, len(ours_before), ours_after,
                     before_list, after_list)


def summarise(addresses, limit=DIFF_LINES):
    """Text lines for a diff: sorted, runs of consecutive addresses folded.

    ['10.0.0.1/32', '10.0.0.2/32', '10.0.0.3/32'] gives
    ['10.0.0.1/32 .. 10.0.0.3/32 (3 addresses)']. Beyond limit lines the
    rest is counted, not listed.
    """
    parsed = []
    for text in addresses:
        ip, plen = text.rsplit('/', 1)
        ip = ipaddress.ip_address(ip)
        parsed.append((ip.version, int(ip), int(plen), text))
    parsed.sort()
    lines = []
    run = []

    def flush():
        if not run:
            return
        if len(run) == 1:
            lines.append(run[0][3])
        else:
            lines.append('%s .. %s (%d addresses)' % (run[0][3], run[-1][3], len(run)))

    for item in parsed:
        if run and (item[0] == run[-1][0] and item[2] == run[-1][2]
                    and item[1] == run[-1][1] + 1):
            run.append(item)
            continue
        flush()
        run = [item]
    flush()
    if len(lines) > limit:
        hidden = lines[limit:]
        lines = lines[:limit] + ['... %d more lines' % len(hidden)]
    return lines


def diff_text(addresses):
    lines = summarise(addresses)
    header = '# %d address(es)' % len(addresses)
    return '\n'.join([header] + lines) + '\n'


# --------------------------------------------------------------------------
# Netlink: lean address dump, pipelined requests

def parse_addr_message(data, offset, length):
    """KernelAddress from one RTM_NEWADDR message at data[offset:offset+length]."""
    family, prefixlen, flags, scope, index = nl.IFADDRMSG.unpack_from(
        data, offset + nl.NLMSG_HDRLEN)
    attrs = nl.parse_attrs(data, offset + nl.NLMSG_HDRLEN + nl.IFADDRMSG.size, offset + length)
    local = nl.attr_bytes(data, attrs, nl.IFA_LOCAL)
    address = nl.attr_bytes(data, attrs, nl.IFA_ADDRESS)
    main = local if local is not None else address
    if main is None or family not in VERSION_OF:
        return None
    ip = ipaddress.ip_address(main)
    peer = ipaddress.ip_address(address) if address is not None else ip
    if nl.IFA_FLAGS in attrs:
        flags = nl.attr_int(data, attrs, nl.IFA_FLAGS)
    proto = nl.attr_int(data, attrs, nl.IFA_PROTO) or 0
    label = nl.attr_text(data, attrs, nl.IFA_LABEL)
    return KernelAddress(ip, prefixlen, index, family, flags, scope, proto, label, peer)


def addr_payload(family, prefixlen, index, local, address, scope=0, flags=0, proto=0,
                 label=None):
    """ifaddrmsg + attributes of an RTM_NEWADDR/RTM_DELADDR request.

    local and address are packed addresses; flags the full IFA_F_* set (the
    low 8 bits also go in the header, the rest needs IFA_FLAGS).
    """
    payload = nl.IFADDRMSG.pack(family, prefixlen, flags & 0xff, scope, index) + \
        nl.pack_attr(nl.IFA_LOCAL, local) + nl.pack_attr(nl.IFA_ADDRESS, address)
    if label:
        payload += nl.attr_str(nl.IFA_LABEL, label)
    if flags:
        payload += nl.attr_u32(nl.IFA_FLAGS, flags)
    if proto:
        payload += nl.attr_u8(nl.IFA_PROTO, proto)
    return payload


class Request(namedtuple('Request', 'kind what msg key')):
    """One address request: kind 'add' or 'del', what (Alias or KernelAddress),
    msg (msg_type, flags, payload) for NetlinkSocket.pipeline, key
    (ip, prefixlen, index) to find it in a dump."""
    __slots__ = ()


class AddressSession(nl.Closing):
    """One rtnetlink socket in netns (None: the namespace we run in)."""

    def __init__(self, netns=None):
        self.netns = netns
        self.sock = nl.NetlinkSocket(nl.NETLINK_ROUTE, netns=netns)

    def close(self):
        self.sock.close()

    def links(self):
        """{index: name} of the links in this namespace."""
        result = {}
        payload = nl.IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        for data, off, length in self.sock.dump(nl.RTM_GETLINK, payload).items:
            if nl.NLMSGHDR.unpack_from(data, off)[1] != nl.RTM_NEWLINK:
                continue
            index = nl.IFINFOMSG.unpack_from(data, off + nl.NLMSG_HDRLEN)[2]
            attrs = nl.parse_attrs(data, off + nl.NLMSG_HDRLEN + nl.IFINFOMSG.size, off + length)
            result[index] = nl.attr_text(data, attrs, nl.IFLA_IFNAME)
        return result

    def addresses(self):
        """Every address of the namespace: ONE dump, parsed leanly."""
        result = []
        payload = nl.IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        for data, off, length in self.sock.dump(nl.RTM_GETADDR, payload).items:
            if nl.NLMSGHDR.unpack_from(data, off)[1] != nl.RTM_NEWADDR:
                continue
            addr = parse_addr_message(data, off, length)
            if addr is not None:
                result.append(addr)
        return result

    def run(self, requests):
        """Carry out requests pipelined -> (done, failure).

        done: the requests the kernel carried out; failure: None or
        (request, NetlinkError) of the first refused one. Lost
        acknowledgements (ENOBUFS) are settled by reading the addresses back.
        """
        def settle(indices):
            present = set((a.ip, a.prefixlen, a.index) for a in self.addresses())
            return [i for i in indices
                    if (requests[i].key in present) == (requests[i].kind == 'add')]

        done, failure = self.sock.pipeline([r.msg for r in requests], settle)
        done = [requests[i] for i in done]
        if failure is not None:
            failure = (requests[failure[0]], failure[1])
        return done, failure


_ADD_FLAGS = nl.NLM_F_CREATE | nl.NLM_F_EXCL


def add_request(alias, ifindex, tag, scope=None, flags=None, proto=None, label=None,
                peer=None):
    """The request that adds alias to ifindex, tagged (or as given)."""
    version = alias.ip.version
    family = FAMILY[version]
    if scope is None:
        scope = nl.RT_SCOPE_HOST if (version == 4 and alias.ip.is_loopback) \
            else nl.RT_SCOPE_UNIVERSE
    if flags is None:
        flags = IFA_F_NODAD if version == 6 else 0
    if proto is None and label is None and tag is not None:
        proto = tag.proto if tag.method == 'proto' else 0
        label = tag.label if (tag.method == 'label' and version == 4) else None
    packed = alias.ip.packed
    payload = addr_payload(family, alias.prefixlen, ifindex, packed,
                           packed if peer is None else peer.packed, scope, flags, proto or 0,
                           label)
    return Request('add', alias, (nl.RTM_NEWADDR, _ADD_FLAGS, payload),
                   (alias.ip, alias.prefixlen, ifindex))


def del_request(addr):
    """The request that removes a KernelAddress."""
    payload = addr_payload(addr.family, addr.prefixlen, addr.index, addr.ip.packed,
                           addr.peer.packed)
    return Request('del', addr, (nl.RTM_DELADDR, 0, payload),
                   (addr.ip, addr.prefixlen, addr.index))


def restore_request(addr):
    """The request that puts back a KernelAddress as it was (flags, proto, label)."""
    return add_request(Alias(addr.ip, addr.prefixlen), addr.index, None, scope=addr.scope,
                       flags=addr.flags & ~IFA_F_SECONDARY, proto=addr.proto or 0,
                       label=addr.label, peer=addr.peer)


def _inverse(req):
    if req.kind == 'add':
        ip, prefixlen, index = req.key
        return del_request(KernelAddress(ip, prefixlen, index, FAMILY[ip.version], 0, 0, 0,
                                         None, ip))
    return restore_request(req.what)


def _run_all(session, requests):
    """Carry out every request or none: on a refusal undo the done ones and raise."""
    done, failure = session.run(requests)
    if failure is None:
        return len(done)
    req, err = failure
    undone, undo_failure = session.run([_inverse(r) for r in reversed(done)])
    message = '%s: %s' % (req.what, err)
    if done and req.kind == 'add':
        message += '; the %d address(es) added before it were removed again' % len(done)
    elif done:
        message += '; the %d address(es) removed before it were put back' % len(done)
    if undo_failure is not None:
        message += '; UNDO INCOMPLETE: %s: %s (%d of %d undone)' % (
            undo_failure[0].what, undo_failure[1], len(undone), len(done))
    fix = 'check the address and the interface'
    if err.errno == errno.EEXIST:
        fix = 'the address appeared meanwhile; run the task again'
    elif err.errno == errno.EADDRNOTAVAIL:
        fix = 'the address vanished meanwhile; run the task again'
    elif err.errno == errno.EACCES:
        fix = 'the interface refuses addresses of that family (IPv6 disabled on it?)'
    raise TestbedError('addresses', message, fix)


def add_all(session, aliases, ifindex, tag):
    """Add aliases to ifindex, tagged; all or none (TestbedError). Returns the count."""
    return _run_all(session, [add_request(a, ifindex, tag) for a in aliases])


def remove_all(session, addrs):
    """Remove KernelAddresses (secondaries first, as plan_aliases orders them); all or none."""
    return _run_all(session, [del_request(a) for a in addrs])


def put_back(session, addrs):
    """Put back KernelAddresses removed by remove_all (primaries first)."""
    return _run_all(session, [restore_request(a) for a in reversed(addrs)])


def delete_added(session, aliases, ifindex):
    """Undo add_all: remove those aliases from ifindex (the ones still there)."""
    present = set((a.ip, a.prefixlen) for a in session.addresses() if a.index == ifindex)
    return _run_all(session, [_inverse(add_request(a, ifindex, None)) for a in aliases
                              if (a.ip, a.prefixlen) in present])


def find_index(links, interface):
    for index, name in links.items():
        if name == interface:
            return index
    return None


def read_promote_secondaries(interface, netns=None):
    """net.ipv4.conf.<interface>.promote_secondaries in netns (None: here)."""
    path = '/proc/sys/net/ipv4/conf/%s/promote_secondaries' % interface
    with nsu.enter_netns(netns):
        try:
            with open(path) as f:
                return f.read().strip() == '1'
        except OSError:
            return False


def remove_tagged(netns, interface):
    """Remove every address carrying our tag from interface in netns; how many.

    For scalelab.testbed.restore (the KIND_ALIASES journal entries). netns is
    a namespace name or None for the namespace we run in. Tagged means
    IFA_PROTO 211 or the IPv4 label ``<interface>:tb``; other addresses are
    left alone. Returns the number removed, 0 when the namespace or the
    interface no longer exists (no error). Raises TestbedError when a removal
    would make the kernel drop foreign secondary addresses along
    (promote_secondaries 0), or when the kernel refuses one (what this call
    removed before it is put back).
    """
    if netns is not None and not nsu.netns_exists(netns):
        return 0
    try:
        session = AddressSession(netns)
    except TestbedError:
        if netns is not None and not nsu.netns_exists(netns):
            return 0                # gone between the check and the entry
        raise
    with session:
        links = session.links()
        ifindex = find_index(links, interface)
        if ifindex is None:
            return 0
        promote = read_promote_secondaries(interface, netns)
        plan = plan_aliases([], session.addresses(), ifindex, links, 'absent', True,
                            tag_label(interface), promote, interface)
        if plan.remove:
            remove_all(session, plan.remove)
        return len(plan.remove)


# --------------------------------------------------------------------------
# The task

def ensure(interface, netns=None, addresses=None, cidr=None, count=None, offset=None,
           prefix_length=None, state='present', purge=False, journal=DEFAULT_JOURNAL,
           check_mode=False, diff=False, warn=None):
    """What scalelab.testbed.ip_aliases does: validate, plan, apply, record; its result.

    The removals and the additions run as the two steps of one
    transaction.Transaction: the additions record KIND_ALIASES with key
    scoped_key(netns, interface) (previous None) the first time tagged
    addresses are added there; once the task leaves none of ours there the
    entry is forgotten. A failure undoes the steps already made and leaves
    the journal as it was; it raises TestbedError.
    """
    validate_ifname(interface, 'interface')
    if netns is not None:
        validate_name(netns, 'netns', what='network namespace name')
    desired = desired_aliases(addresses, cidr, count, offset or 0, prefix_length)
    if addresses is None and cidr is None and not purge:
        raise TestbedError('addresses', 'no addresses given',
                           'give addresses, or cidr + count, or purge: true to remove '
                           'every address this collection added on the interface')
    if netns is not None:
        nsu.require_netns(netns)
    tag = choose_tag(os.uname().release, interface)
    if tag.method == 'label' and tag.label is None and (purge or desired):
        raise TestbedError('interface', 'this kernel has no IFA_PROTO (6.1+) and the '
                           'label tag %r would be longer than 15 characters'
                           % (interface + TAG_LABEL_SUFFIX),
                           'use an interface name of at most 12 characters')
    if tag.method == 'label' and state == 'present' and any(
            a.ip.version == 6 for a in desired):
        (warn or _ignore)('this kernel (%s) has no IFA_PROTO: IPv6 aliases cannot be '
                          'tagged and will never be purged' % os.uname().release)

    where = '%s%s' % (interface, ' in netns %s' % netns if netns else '')
    try:
        plan = _apply(interface, netns, desired, state, purge, tag, journal, check_mode, where)
    except nl.NetlinkError as exc:        # a socket, bind, receive error or a refused dump
        raise TestbedError('netns' if netns else 'interface',
                           'rtnetlink%s: %s' % (' in network namespace %r' % netns if netns
                                                else '', exc),
                           'check that the task runs as root on Linux')
    result = dict(changed=bool(plan.add or plan.remove), added=[str(a) for a in plan.add],
                  removed=[str(a) for a in plan.remove], count=plan.ours_after,
                  unchanged=plan.unchanged, interface=interface, netns=netns,
                  tag=tag.as_dict())
    if diff:
        header = 'addresses of %s%s' % (interface, ' (netns %s)' % netns if netns else '')
        result['diff'] = dict(before=diff_text(plan.before), after=diff_text(plan.after),
                              before_header=header, after_header=header)
    return result


def _apply(interface, netns, desired, state, purge, tag, journal, check_mode, where):
    """Read, plan and (unless check_mode) apply in one transaction; the plan."""
    promote = read_promote_secondaries(interface, netns)
    with AddressSession(netns) as session:
        links = session.links()
        ifindex = find_index(links, interface)
        if ifindex is None:
            raise TestbedError('interface', 'interface %r does not exist in %s'
                               % (interface, 'network namespace %r' % netns if netns
                                  else 'this network namespace'),
                               'create it first (scalelab.testbed.netns) or fix the name')
        plan = plan_aliases(desired, session.addresses(), ifindex, links, state, purge,
                            tag.label, promote, interface)
        key = scoped_key(netns, interface)
        with Transaction(check_mode, journal) as tx:
            if plan.remove:
                tx.step(lambda: remove_all(session, plan.remove),
                        lambda: put_back(session, plan.remove),
                        what='remove %d address(es) from %s' % (len(plan.remove), where),
                        field='addresses')
            if plan.add:
                tx.change(KIND_ALIASES, key, None,
                          lambda: add_all(session, plan.add, ifindex, tag),
                          lambda: delete_added(session, plan.add, ifindex),
                          what='add %d address(es) to %s' % (len(plan.add), where),
                          field='addresses')
            if (plan.ours_after == 0 and not check_mode
                    and os.path.exists(journal)
                    and tx.journal().get(KIND_ALIASES, key) is not None):
                tx.forget(KIND_ALIASES, key)     # none of ours left there
    return plan


def _ignore(_message):
    pass
