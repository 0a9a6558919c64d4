# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""IP alias sets: planning (pure) and a pipelined netlink apply (pyroute2).

Planning
    ``desired_aliases()`` turns the module's input (an explicit list, or a CIDR
    plus count and offset) into a list of :class:`Alias`; ``plan_aliases()``
    compares it with the addresses the kernel reported (one dump of the whole
    namespace) and returns what to add and what to remove, or raises
    :class:`TestbedError` for every conflict it finds. Nothing here needs root.

Tagging (how "ours" is recognised)
    On kernels >= 6.1 every address this collection adds carries
    ``IFA_PROTO`` = :data:`TAG_PROTO` (211). The kernel stores it and reports
    it back in every dump (``ifa_proto``); values 0-3 belong to the kernel
    (unspec, loopback, router advertisement, link-local), 211 is ours. pyroute2
    0.9.7 knows the attribute (``ifaddrmsg.nla_map``: ``IFA_PROTO``, uint8).
    Older kernels ignore the attribute, so there the IPv4 label
    ``<interface>:tb`` is used instead (IPv6 has no labels: purging IPv6
    aliases needs kernel >= 6.1). Both tags are recognised on every kernel.

Apply
    One netlink socket (pyroute2's ``IPRSocket``, opened inside the target
    namespace). Requests are encoded with pyroute2's ``ifaddrmsg`` class once
    per shape (family, prefix length, flags, tag) and the address and sequence
    number are patched into copies of that template; they are sent in chunks
    of :data:`CHUNK` messages per ``send()``, and the acknowledgements of a
    chunk are collected after it, instead of one round trip per address.
    A failed request stops the batch; what the batch already did is undone
    (added addresses removed, removed addresses put back) and the error names
    the address and the errno.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from collections import namedtuple

from ansible_collections.scalelab.testbed.plugins.module_utils.common import (
    TestbedError)

try:
    from pyroute2 import IPRSocket
    from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
    HAS_PYROUTE2 = True
    PYROUTE2_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - reported by the module
    IPRSocket = ifaddrmsg = ifinfmsg = None
    HAS_PYROUTE2 = False
    PYROUTE2_IMPORT_ERROR = exc

# --------------------------------------------------------------------------
# Constants (netlink ABI: linux/netlink.h, linux/rtnetlink.h, linux/if_addr.h)

TAG_PROTO = 211          # IFA_PROTO value of the addresses this collection adds
TAG_LABEL_SUFFIX = ':tb'  # IPv4 label suffix used on kernels without IFA_PROTO
MAX_ALIASES = 1000000    # upper bound for one task
CHUNK = 256              # requests per send(); acks of a chunk fit the rcvbuf
RCVBUF = 4 * 1024 * 1024
DIFF_LINES = 60          # diff text longer than this is summarised

NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP_INTR = 0x10
NLM_F_DUMP = 0x300
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_ACK_TLVS = 0x200   # in the header of an NLMSG_ERROR message
NLMSGERR_ATTR_MSG = 1
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11
SO_RCVBUFFORCE = 33

RTM_NEWLINK = 16
RTM_GETLINK = 18
RTM_NEWADDR = 20
RTM_DELADDR = 21
RTM_GETADDR = 22

IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_LABEL = 3
IFA_FLAGS = 8
IFA_PROTO = 11
IFA_F_SECONDARY = 0x01
IFA_F_NODAD = 0x02

RT_SCOPE_UNIVERSE = 0
RT_SCOPE_HOST = 254

HOST_PREFIX = {4: 32, 6: 128}
FAMILY = {4: socket.AF_INET, 6: socket.AF_INET6}
VERSION_OF = {socket.AF_INET: 4, socket.AF_INET6: 6}

_HDR = struct.Struct('=IHHII')      # nlmsghdr
_IFA = struct.Struct('=BBBBI')      # ifaddrmsg
_NLA = struct.Struct('=HH')


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
    return label if len(label) <= 15 else None


def is_ours(addr, label):
    """True if the kernel address carries our tag (either kind)."""
    if addr.proto == TAG_PROTO:
        return True
    return label is not None and addr.label == label


def _check_prefix(version, prefixlen, field, value):
    top = HOST_PREFIX[version]
    if not 1 <= prefixlen <= top:
        raise TestbedError(field, 'prefix length %d of %r is out of range for IPv%d'
                           % (prefixlen, value, version),
                           'use a prefix length from 1 to %d' % top)


def _check_usable(ip, field, value):
    if ip.is_unspecified:
        raise TestbedError(field, '%r is the unspecified address' % value,
                           'give a unicast host address')
    if ip.is_multicast:
        raise TestbedError(field, '%r is a multicast address' % value,
                           'give a unicast host address')
    if ip.version == 4 and ip == ipaddress.IPv4Address('255.255.255.255'):
        raise TestbedError(field, '%r is the limited broadcast address' % value,
                           'give a unicast host address')


def parse_alias(value, prefix_length=None, field='addresses'):
    """Parse 'IP' or 'IP/prefix' into an Alias (prefix_length for bare IPs)."""
    if not isinstance(value, str) or not value.strip():
        raise TestbedError(field, 'entry %r is not an IP address' % (value,),
                           'give strings such as "10.0.0.1" or "10.0.0.1/24"')
    text = value.strip()
    try:
        if '/' in text:
            iface = ipaddress.ip_interface(text)
            ip, prefixlen = iface.ip, iface.network.prefixlen
            if not text.split('/', 1)[1].isdigit():
                raise ValueError('netmask form')
        else:
            ip = ipaddress.ip_address(text)
            prefixlen = (prefix_length if prefix_length is not None
                         else HOST_PREFIX[ip.version])
    except ValueError:
        raise TestbedError(field, '%r is not a valid IP address or IP/prefix' % value,
                           'give an address such as "10.0.0.1", "10.0.0.1/24" or '
                           '"fd00::1/64"')
    _check_prefix(ip.version, prefixlen, field, value)
    _check_usable(ip, field, value)
    return Alias(ip, prefixlen)


def usable_hosts(network):
    """(first host as int, number of usable hosts) of an ip_network.

    IPv4: the network and broadcast addresses are not usable, except in
    /31 and /32. IPv6: the subnet-router anycast address (the network
    address) is not usable, except in /127 and /128 (as ipaddress.hosts()).
    """
    first = int(network.network_address)
    size = network.num_addresses
    if network.version == 4:
        if network.prefixlen >= 31:
            return first, size
        return first + 1, size - 2
    if network.prefixlen >= 127:
        return first, size
    return first + 1, size - 1


def _smallest_prefix_for(version, needed):
    for plen in range(HOST_PREFIX[version], -1, -1):
        net = ipaddress.ip_network('%s/%d' % ('0.0.0.0' if version == 4 else '::', plen))
        if usable_hosts(net)[1] >= needed:
            return plen
    return None


def generate_aliases(cidr, count, offset=0, prefix_length=None, field='cidr'):
    """The first usable hosts of cidr after offset, count of them."""
    try:
        network = ipaddress.ip_network(cidr, strict=True)
    except ValueError as exc:
        if '/' in str(cidr) and 'has host bits set' in str(exc):
            fixed = ipaddress.ip_network(cidr, strict=False)
            raise TestbedError(field, '%r has host bits set' % cidr,
                               'give the network address, e.g. %s' % fixed)
        raise TestbedError(field, '%r is not a valid network in CIDR form' % (cidr,),
                           'give a network such as "10.10.0.0/16" or "fd00:10::/112"')
    if count is None or count < 1:
        raise TestbedError('count', 'count must be at least 1, got %r' % (count,),
                           'give the number of aliases to generate from cidr')
    if offset is None or offset < 0:
        raise TestbedError('offset', 'offset must be 0 or more, got %r' % (offset,),
                           'give how many usable hosts to skip at the start of cidr')
    if count > MAX_ALIASES:
        raise TestbedError('count', 'count %d is above the limit of %d aliases per task'
                           % (count, MAX_ALIASES), 'split the set over several tasks')
    version = network.version
    plen = prefix_length if prefix_length is not None else HOST_PREFIX[version]
    _check_prefix(version, plen, 'prefix_length', plen)
    first, usable = usable_hosts(network)
    needed = offset + count
    if needed > usable:
        better = _smallest_prefix_for(version, needed)
        raise TestbedError(
            field, '%s has %d usable host addresses, but offset %d + count %d = %d '
            '(%d too many)' % (network, usable, offset, count, needed, needed - usable),
            'use a larger network (/%d or shorter) or lower count/offset'
            % better if better is not None else 'lower count/offset')
    cls = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    start = first + offset
    aliases = [Alias(cls(n), plen) for n in range(start, start + count)]
    for alias in (aliases[0], aliases[-1]):
        _check_usable(alias.ip, field, str(alias.ip))
    return aliases


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

def _parse_attrs(data, offset, end):
    attrs = {}
    while offset + 4 <= end:
        alen, atype = _NLA.unpack_from(data, offset)
        if alen < 4:
            break
        attrs[atype & 0x3fff] = (offset + 4, offset + alen)
        offset += (alen + 3) & ~3
    return attrs


def parse_addr_message(data, offset, length):
    """KernelAddress from one RTM_NEWADDR message at data[offset:offset+length]."""
    family, prefixlen, flags, scope, index = _IFA.unpack_from(data, offset + 16)
    attrs = _parse_attrs(data, offset + 24, offset + length)

    def raw(kind):
        span = attrs.get(kind)
        return None if span is None else bytes(data[span[0]:span[1]])

    local = raw(IFA_LOCAL)
    address = raw(IFA_ADDRESS)
    main = local if local is not None else address
    if main is None:
        return None
    ip = ipaddress.ip_address(main)
    peer = ipaddress.ip_address(address) if address is not None else ip
    if IFA_FLAGS in attrs:
        flags = struct.unpack_from('=I', data, attrs[IFA_FLAGS][0])[0]
    proto = data[attrs[IFA_PROTO][0]] if IFA_PROTO in attrs else 0
    label = None
    if IFA_LABEL in attrs:
        label = raw(IFA_LABEL).split(b'\0', 1)[0].decode('utf-8', 'replace')
    return KernelAddress(ip, prefixlen, index, family, flags, scope, proto, label, peer)


class AckError(Exception):
    def __init__(self, code, text=None):
        self.code = code
        self.text = text
        name = errno.errorcode.get(code, 'E?')
        msg = '%s (errno %d: %s)' % (name, code, os.strerror(code))
        if text:
            msg += ': %s' % text
        super(AckError, self).__init__(msg)


def _parse_ack(data, offset, length, hdr_flags):
    """(error code >= 0, seq of the request, ext-ack text or None)."""
    err = struct.unpack_from('=i', data, offset + 16)[0]
    req_len, _t, _f, req_seq, _p = _HDR.unpack_from(data, offset + 20)
    text = None
    if hdr_flags & NLM_F_ACK_TLVS:
        # with NETLINK_CAP_ACK only the request header is echoed
        tlv_start = offset + 20 + 16
        if err and not hdr_flags & 0x100:  # NLM_F_CAPPED not set: payload echoed
            tlv_start = offset + 20 + ((req_len + 3) & ~3)
        attrs = _parse_attrs(data, tlv_start, offset + length)
        if NLMSGERR_ATTR_MSG in attrs:
            s, e = attrs[NLMSGERR_ATTR_MSG]
            text = bytes(data[s:e]).split(b'\0', 1)[0].decode('utf-8', 'replace') or None
    return -err, req_seq, text


class _Template(object):
    """A request encoded once by pyroute2's ifaddrmsg, with slots to patch."""

    SENTINELS = {socket.AF_INET: ('192.0.2.201', '198.51.100.202'),
                 socket.AF_INET6: ('2001:db8::c9', '2001:db8::ca')}

    def __init__(self, msg_type, msg_flags, family, prefixlen, index, scope=0,
                 flags=0, proto=0, label=None):
        self.family = family
        s_local, s_addr = self.SENTINELS[family]
        data = self._encode(msg_type, msg_flags, family, prefixlen, index, scope,
                            flags, proto, label, s_local, s_addr)
        packed_local = socket.inet_pton(family, s_local)
        packed_addr = socket.inet_pton(family, s_addr)
        if data.count(packed_local) != 1 or data.count(packed_addr) != 1:
            raise RuntimeError('pyroute2 ifaddrmsg encoding is not as expected')
        self.local_at = data.index(packed_local)
        self.addr_at = data.index(packed_addr)
        self.size = len(packed_local)
        self.data = data
        # check once that a patched copy decodes to what we meant
        probe = bytearray(data)
        self.patch(probe, 0, ipaddress.ip_address(s_addr).packed,
                   ipaddress.ip_address(s_local).packed, 7)
        msg = ifaddrmsg(bytes(probe))
        msg.decode()
        if (msg.get_attr('IFA_LOCAL') != s_addr or msg.get_attr('IFA_ADDRESS') != s_local
                or msg['header']['sequence_number'] != 7):
            raise RuntimeError('pyroute2 ifaddrmsg template does not round-trip')

    @staticmethod
    def _encode(msg_type, msg_flags, family, prefixlen, index, scope, flags, proto,
                label, local, address):
        msg = ifaddrmsg()
        msg['family'] = family
        msg['prefixlen'] = prefixlen
        msg['flags'] = flags & 0xff
        msg['scope'] = scope
        msg['index'] = index
        attrs = [('IFA_LOCAL', local), ('IFA_ADDRESS', address)]
        if label:
            attrs.append(('IFA_LABEL', label))
        if flags:
            attrs.append(('IFA_FLAGS', flags))
        if proto:
            attrs.append(('IFA_PROTO', proto))
        msg['attrs'] = attrs
        msg['header']['type'] = msg_type
        msg['header']['flags'] = msg_flags
        msg['header']['sequence_number'] = 0
        msg['header']['pid'] = 0
        msg.encode()
        return bytes(msg.data)

    def patch(self, buf, at, local, address, seq):
        struct.pack_into('=I', buf, at + 8, seq)
        buf[at + self.local_at:at + self.local_at + self.size] = local
        buf[at + self.addr_at:at + self.addr_at + self.size] = address


Request = namedtuple('Request', 'kind what template local address key')


class AddressSession(object):
    """One rtnetlink session in the current network namespace.

    Create it inside netns.enter_netns(): the socket is opened by the
    constructor and keeps its namespace afterwards.
    """

    def __init__(self):
        self.ipr = IPRSocket()
        self.sock = self.ipr.socket     # opened now, in the current netns
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        for opt in (NETLINK_EXT_ACK, NETLINK_CAP_ACK):
            try:
                self.sock.setsockopt(SOL_NETLINK, opt, 1)
            except OSError:
                pass
        self.seq = 1000
        self.chunk = CHUNK
        self.buf = bytearray(1 << 18)
        self.templates = {}

    def close(self):
        self.ipr.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _next_seq(self):
        self.seq = (self.seq + 1) & 0xffffffff or 1
        return self.seq

    def _dump(self, msg_type, body_size):
        """Raw messages of a dump: a list of (buffer, offset, length).

        body_size is the size of the (all-zero: every family, no filter)
        family header of the request (ifaddrmsg 8, ifinfomsg 16).
        """
        for _attempt in range(5):
            seq = self._next_seq()
            req = bytearray(_HDR.size + body_size)
            _HDR.pack_into(req, 0, len(req), msg_type, NLM_F_REQUEST | NLM_F_DUMP, seq, 0)
            self.sock.send(req)
            messages, interrupted = [], False
            done = False
            while not done:
                n = self.sock.recv_into(self.buf)
                data = bytes(self.buf[:n])
                off = 0
                while off + 16 <= n:
                    length, mtype, mflags, mseq, _pid = _HDR.unpack_from(data, off)
                    if length < 16:
                        break
                    if mseq == seq:
                        if mflags & NLM_F_DUMP_INTR:
                            interrupted = True
                        if mtype == NLMSG_DONE:
                            done = True
                        elif mtype == NLMSG_ERROR:
                            code, _s, text = _parse_ack(data, off, length, mflags)
                            raise AckError(code, text)
                        else:
                            messages.append((data, off, length))
                    off += (length + 3) & ~3
            if not interrupted:
                return messages
        raise OSError(errno.EAGAIN, 'the address dump kept being interrupted by changes')

    def links(self):
        """{index: name} of the links in this namespace (pyroute2's parser)."""
        result = {}
        for data, off, length in self._dump(RTM_GETLINK, 16):
            msg = ifinfmsg(data[off:off + length])
            msg.decode()
            result[msg['index']] = msg.get_attr('IFLA_IFNAME')
        return result

    def addresses(self):
        """Every address of the namespace: ONE dump, parsed leanly."""
        result = []
        for data, off, length in self._dump(RTM_GETADDR, _IFA.size):
            _l, mtype = _HDR.unpack_from(data, off)[:2]
            if mtype != RTM_NEWADDR:
                continue
            addr = parse_addr_message(data, off, length)
            if addr is not None:
                result.append(addr)
        return result

    def template(self, *key):
        tpl = self.templates.get(key)
        if tpl is None:
            tpl = self.templates[key] = _Template(*key)
        return tpl

    def run(self, requests):
        """Send requests pipelined; stop after the first failing chunk.

        Returns (done, failure): done is the list of requests the kernel
        carried out, failure None or (request, AckError). Should the receive
        buffer overflow anyway (acknowledgements dropped, ENOBUFS), the
        kernel's state is read back, what took effect counts as done, and
        the rest is sent again in smaller chunks.
        """
        done = []
        failure = None
        queue = list(requests)
        while queue and failure is None:
            part, queue = queue[:self.chunk], queue[self.chunk:]
            size = sum(len(r.template.data) for r in part)
            out = bytearray(size)
            by_seq = {}
            at = 0
            for req in part:
                seq = self._next_seq()
                tpl = req.template
                out[at:at + len(tpl.data)] = tpl.data
                tpl.patch(out, at, req.local, req.address, seq)
                by_seq[seq] = req
                at += len(tpl.data)
            self.sock.send(out)
            try:
                acked = self._collect(by_seq)
            except OSError as exc:
                if exc.errno != errno.ENOBUFS or self.chunk <= 1:
                    raise
                took = self._settle(part)
                done.extend(took)
                took_ids = set(id(r) for r in took)
                queue = [r for r in part if id(r) not in took_ids] + queue
                self.chunk = max(1, self.chunk // 4)
                continue
            for seq, req in by_seq.items():
                code, text = acked[seq]
                if code:
                    if failure is None:
                        failure = (req, AckError(code, text))
                else:
                    done.append(req)
        return done, failure

    def _collect(self, by_seq):
        """{seq: (errno, ext-ack text)} once every request of by_seq is acked."""
        pending = len(by_seq)
        acked = {}
        while pending:
            n = self.sock.recv_into(self.buf)
            off = 0
            while off + 16 <= n:
                length, mtype, mflags, _mseq, _pid = _HDR.unpack_from(self.buf, off)
                if length < 16:
                    break
                if mtype == NLMSG_ERROR:
                    code, req_seq, text = _parse_ack(self.buf, off, length, mflags)
                    if req_seq in by_seq and req_seq not in acked:
                        acked[req_seq] = (code, text)
                        pending -= 1
                off += (length + 3) & ~3
        return acked

    def _settle(self, part):
        """After lost acknowledgements: the requests of part that took effect."""
        self.sock.setblocking(False)
        try:
            while True:
                self.sock.recv_into(self.buf)
        except OSError:
            pass
        finally:
            self.sock.setblocking(True)
        present = set((a.ip, a.prefixlen, a.index) for a in self.addresses())
        return [r for r in part if (r.key in present) == (r.kind == 'add')]


def _add_request(session, alias, ifindex, tag, scope=None, flags=None, proto=None,
                 label=None):
    family = FAMILY[alias.ip.version]
    if scope is None:
        scope = RT_SCOPE_HOST if (alias.ip.version == 4 and alias.ip.is_loopback) \
            else RT_SCOPE_UNIVERSE
    if flags is None:
        flags = IFA_F_NODAD if family == socket.AF_INET6 else 0
    if proto is None and label is None:
        proto = tag.proto if tag.method == 'proto' else 0
        label = tag.label if (tag.method == 'label' and family == socket.AF_INET) else None
    tpl = session.template(RTM_NEWADDR, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
                           family, alias.prefixlen, ifindex, scope, flags, proto or 0, label)
    return Request('add', alias, tpl, alias.ip.packed, alias.ip.packed,
                   (alias.ip, alias.prefixlen, ifindex))


def _del_request(session, addr):
    tpl = session.template(RTM_DELADDR, NLM_F_REQUEST | NLM_F_ACK, addr.family,
                           addr.prefixlen, addr.index, 0, 0, 0, None)
    return Request('del', addr, tpl, addr.ip.packed, addr.peer.packed,
                   (addr.ip, addr.prefixlen, addr.index))


def _restore_request(session, addr):
    """Put back an address we removed, as it was (flags, proto, label)."""
    keep_flags = addr.flags & ~IFA_F_SECONDARY
    alias = Alias(addr.ip, addr.prefixlen)
    req = _add_request(session, alias, addr.index, None, scope=addr.scope,
                       flags=keep_flags, proto=addr.proto or 0, label=addr.label)
    return req._replace(address=addr.peer.packed)


def apply_plan(session, plan, ifindex, tag):
    """Remove then add, pipelined. On failure undo and raise TestbedError."""
    removals = [_del_request(session, a) for a in plan.remove]
    done_del, failure = session.run(removals)
    done_add = []
    if failure is None:
        additions = [_add_request(session, a, ifindex, tag) for a in plan.add]
        done_add, failure = session.run(additions)
    if failure is None:
        return
    req, err = failure
    undo = [_del_request(session, KernelAddress(r.what.ip, r.what.prefixlen, ifindex,
                                                FAMILY[r.what.ip.version], 0, 0, 0, None,
                                                r.what.ip))
            for r in done_add]
    undo += [_restore_request(session, r.what) for r in done_del]
    _undone, undo_failure = session.run(undo)
    verb = 'adding' if req.kind == 'add' else 'removing'
    message = '%s %s failed: %s' % (verb, req.what, err)
    if done_add or done_del:
        message += '; rolled back %d addition(s) and %d removal(s)' % (
            len(done_add), len(done_del))
    if undo_failure is not None:
        message += '; ROLLBACK INCOMPLETE: %s %s' % (undo_failure[0].what, undo_failure[1])
    fix = 'check the address and the interface'
    if err.code == errno.EEXIST:
        fix = 'the address appeared meanwhile; run the task again'
    elif err.code == errno.EADDRNOTAVAIL:
        fix = 'the address vanished meanwhile; run the task again'
    raise TestbedError('addresses', message, fix)


def read_promote_secondaries(interface):
    """net.ipv4.conf.<interface>.promote_secondaries in the current netns."""
    path = '/proc/sys/net/ipv4/conf/%s/promote_secondaries' % interface
    try:
        with open(path) as f:
            return f.read().strip() == '1'
    except OSError:
        return False
