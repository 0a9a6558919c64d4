# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rules of addresses, ports and kernel limits, written once.

Every part of the collection follows these: the run plan, the modules
(ip_aliases, netns, tcp_sockets_info, sysctls, fd_limits) and the load
engine. The engine runs on targets that have only the Python standard
library, so it carries a copy of this file (files/tcpscale/ipplan.py);
tests/unit/plugins/module_utils/test_ipplan.py proves the copy identical.
Hence the rules here: standard library only, no import from the collection,
and errors are ValueError with a sentence that says what is wrong and how to
fix it; callers prefix the name of the field (the module option, the role
variable, the engine's option).
"""

from __future__ import annotations

import ipaddress
import re

# ------------------------------------------------------------ kernel limits
# Measured on this kernel and read in its sources (values on 64-bit Linux).
LIMITS = {
    # fs/file.c: sysctl_nr_open_min = BITS_PER_LONG,
    # sysctl_nr_open_max = min(INT_MAX, ~0 / sizeof(void *)) & -BITS_PER_LONG
    'fs.nr_open': (64, 2147483584),
    'fs.file-max': (0, 2 ** 63 - 1),
    'net.core.somaxconn': (0, 2 ** 31 - 1),
    'net.ipv4.tcp_max_syn_backlog': (0, 2 ** 31 - 1),
    'net.netfilter.nf_conntrack_max': (0, 2 ** 31 - 1),
    'net.nf_conntrack_max': (0, 2 ** 31 - 1),
    'net.netfilter.nf_conntrack_buckets': (1, 2 ** 31 - 1),
    # net/ipv4/sysctl_net_ipv4.c: tcp_child_ehash_entries_max = 16M
    'net.ipv4.tcp_child_ehash_entries': (0, 16 * 1024 * 1024),
    'net.ipv4.ip_unprivileged_port_start': (0, 65535),
    'net.ipv4.ip_local_port_range': (1, 65535),
}
NR_OPEN_MIN, NR_OPEN_MAX = LIMITS['fs.nr_open']
EHASH_MAX = LIMITS['net.ipv4.tcp_child_ehash_entries'][1]
PORT_MAX = 65535
IFNAME_MAX = 15                 # IFNAMSIZ is 16 with the terminating NUL
NETNS_NAME_MAX = 64             # ours: ip(8) allows NAME_MAX, 64 keeps paths and units short
HOST_PREFIX = {4: 32, 6: 128}


# ---------------------------------------------------------------- networks

def network(text):
    """An ipaddress network from 'ADDRESS/PREFIX' with no host bits set."""
    if isinstance(text, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
        return text
    text = str(text).strip()
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError:
        pass
    try:
        loose = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError('%r is not a network in CIDR form (write it like 10.10.0.0/16 or '
                         'fd00:10::/112)' % text)
    raise ValueError('%r has host bits set after the /%d prefix (did you mean %s?)'
                     % (text, loose.prefixlen, loose))


def usable_hosts(net):
    """(first usable host as an int, number of usable hosts) of a network.

    IPv4: the network and broadcast addresses are not usable, except in /31
    and /32 (RFC 3021). IPv6: the subnet-router anycast address (the network
    address) is not usable, except in /127 (RFC 6164) and /128.
    """
    net = network(net)
    first = int(net.network_address)
    size = net.num_addresses
    if net.prefixlen >= HOST_PREFIX[net.version] - 1:
        return first, size
    if net.version == 4:
        return first + 1, size - 2
    return first + 1, size - 1


def smallest_prefix_for(version, needed):
    """The longest prefix length whose network has at least needed usable hosts."""
    for plen in range(HOST_PREFIX[version], -1, -1):
        size = 1 << (HOST_PREFIX[version] - plen)
        usable = size if plen >= HOST_PREFIX[version] - 1 else size - (2 if version == 4 else 1)
        if usable >= needed:
            return plen
    return None


def hosts(net, count, offset=0):
    """count usable hosts of net, after skipping offset of them (as addresses)."""
    net = network(net)
    if count < 0 or offset < 0:
        raise ValueError('count and offset must be 0 or more (got %d and %d)' % (count, offset))
    first, room = usable_hosts(net)
    if offset + count > room:
        better = smallest_prefix_for(net.version, offset + count)
        raise ValueError(
            '%s has %s usable host addresses, but offset %d + count %d = %d do not fit (use a '
            '/%s or shorter network, or fewer addresses)'
            % (net, '{:,}'.format(room), offset, count, offset + count, better))
    make = ipaddress.IPv4Address if net.version == 4 else ipaddress.IPv6Address
    return [make(first + offset + i) for i in range(count)]


# --------------------------------------------------------------- addresses

def address(text):
    """An ipaddress address from its text."""
    if isinstance(text, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return text
    try:
        return ipaddress.ip_address(str(text).strip())
    except ValueError:
        raise ValueError('%r is not an IP address (write it like 10.0.0.1 or fd00::1)' % (text,))


def address_prefix(text, default_prefix=None):
    """(address, prefix length) from 'ADDRESS' or 'ADDRESS/PREFIX'.

    The prefix is a number (no netmask form); a bare address takes
    default_prefix, or the host prefix (/32, /128) when that is None. The
    address must be a unicast host address.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError('%r is not an address (write it like 10.0.0.1 or 10.0.0.1/24)'
                         % (text,))
    raw, sep, plen = text.strip().partition('/')
    ip = address(raw)
    if sep:
        if not plen.isdigit():
            raise ValueError('%r: the prefix must be a number of bits, like /24 or /64' % text)
        prefix = int(plen)
    else:
        prefix = HOST_PREFIX[ip.version] if default_prefix is None else int(default_prefix)
    if not 1 <= prefix <= HOST_PREFIX[ip.version]:
        raise ValueError('%r: prefix length %d is out of range for IPv%d (1 to %d)'
                         % (text, prefix, ip.version, HOST_PREFIX[ip.version]))
    if ip.is_unspecified or ip.is_multicast or (ip.version == 4 and int(ip) == 0xffffffff):
        raise ValueError('%r is not a unicast host address' % text)
    return ip, prefix


# ------------------------------------------------------------------- ports

# '80', '1000-2000', '1000 2000' or '1000<TAB>2000' (the sysctl form), nothing else
_PORT_TEXT = re.compile(r'^\s*(\d+)\s*(?:(?:-|\s)\s*(\d+)\s*)?$')


def port_range(value, minimum=1):
    """(lo, hi) from 80, '80', '1000-2000', '1000 2000' (sysctl form) or [lo, hi].

    Ports go from minimum (1 for endpoints and port ranges, 0 for filters)
    to 65535, with lo <= hi.
    """
    parts = None
    if isinstance(value, bool):
        parts = None
    elif isinstance(value, int):
        parts = [value, value]
    elif isinstance(value, (list, tuple)) and len(value) == 2:
        parts = list(value)
    elif isinstance(value, str):
        match = _PORT_TEXT.match(value)
        if match:
            parts = [match.group(1), match.group(2) or match.group(1)]
    try:
        if parts is None or len(parts) != 2 or any(isinstance(p, bool) for p in parts):
            raise ValueError
        lo, hi = int(parts[0]), int(parts[1])
    except (TypeError, ValueError):
        raise ValueError('%r is not a port or a port range (write 443, or a range like '
                         '8000-8999)' % (value,))
    if not minimum <= lo <= PORT_MAX or not minimum <= hi <= PORT_MAX:
        raise ValueError('%r: ports go from %d to %d' % (value, minimum, PORT_MAX))
    if lo > hi:
        raise ValueError('%r starts above its end (write it as %d-%d)' % (value, hi, lo))
    return lo, hi


def merge_port_ranges(ranges):
    """Sorted (lo, hi) ranges with overlapping and adjacent ones merged."""
    merged = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return [tuple(r) for r in merged]


def port_range_text(lo, hi):
    """'LO-HI', or the port alone when the range holds one."""
    return str(lo) if lo == hi else '%d-%d' % (lo, hi)


def endpoint_text(ip, port):
    """'10.0.0.1:80', or '[fd00::1]:80' for IPv6."""
    ip = address(ip)
    return ('[%s]:%d' if ip.version == 6 else '%s:%d') % (ip, port)


def split_endpoint(text):
    """(host, port) from 'HOST:PORT' or '[IPV6]:PORT' (host: an address or a name).

    The port must be 1 to 65535; an IPv6 address needs the brackets.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError('%r is not an endpoint (write it like 10.0.0.1:80 or [fd00::1]:80)'
                         % (text,))
    raw = text.strip()
    if raw.startswith('['):
        host, sep, rest = raw[1:].partition(']')
        if not sep or (rest and not rest.startswith(':')):
            raise ValueError('%r: an IPv6 endpoint is written [ADDRESS]:PORT' % text)
        port = rest[1:] if rest else ''
        address(host)
    else:
        host, sep, port = raw.rpartition(':')
        if ':' in host:
            raise ValueError('%r: write an IPv6 address in brackets, like [%s]:80' % (text, host))
        if not sep:
            host, port = raw, ''
    if not port:
        raise ValueError('%r has no port: write it as %s:PORT' % (text, raw.strip('[]')
                         if not raw.startswith('[') else '[%s]' % host))
    if not port.isdigit() or not 1 <= int(port) <= PORT_MAX:
        raise ValueError('%r: the port must be a number from 1 to %d' % (text, PORT_MAX))
    if not host or any(c.isspace() for c in host):
        raise ValueError('%r has no host before the port' % text)
    return host, int(port)
