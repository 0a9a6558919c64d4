# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The tuning policy: kernel values for one host's share of the plan.

``compute(plan, host, kernel, variables)`` turns the plan (plan.build), the
host's present kernel values (what scalelab.testbed.kernel_info reads) and the
tuning_* variables into the sysctls for the host and for each namespace, the
nofile limit and fs.nr_open, the conntrack size, and the memory preflight with
its arithmetic. Pure: no I/O.

Capacity keys are only ever raised, never lowered. A key missing from
``kernel['sysctls']`` is absent on the host (nf_conntrack not loaded, a kernel
too old) and is not set.
"""

from __future__ import annotations

import math

from ansible_collections.scalelab.testbed.plugins.module_utils import ipplan

KEYS = (
    'fs.file-max', 'fs.nr_open', 'net.core.netdev_max_backlog', 'net.core.somaxconn',
    'net.ipv4.ip_local_port_range', 'net.ipv4.tcp_child_ehash_entries',
    'net.ipv4.tcp_max_syn_backlog', 'net.ipv4.tcp_max_tw_buckets', 'net.ipv4.tcp_tw_reuse',
    'net.netfilter.nf_conntrack_max',
)
"""The host keys the policy reads (kernel_info reads these)."""

# The boot default of fs.nr_open: a nofile above it in limits.d would break logins
# after a reboot unless fs.nr_open is persisted too.
NR_OPEN_BOOT = 1048576


def fmt(n):
    return '{:,}'.format(int(n))


def pow2_at_least(n):
    n = max(1, int(n))
    return 1 << (n - 1).bit_length()


def current_int(sysctls, key):
    value = (sysctls or {}).get(key)
    try:
        return int(str(value).split()[0])
    except (TypeError, ValueError, IndexError):
        return None


class _Host(object):
    """One host's share of the plan and what it needs."""

    def __init__(self, plan, host):
        names = plan.get('netns') or {}
        self.mode = plan['mode']
        self.netns_server = names.get('server')
        self.netns_client = names.get('client')
        self.srv = plan['servers'][host]['connections'] if host in plan['servers'] else 0
        self.cli = plan['clients'][host]['connections'] if host in plan['clients'] else 0
        self.listeners = (len(plan['servers'][host]['addresses']) * plan['server_port_count']
                          if host in plan['servers'] else 0)
        # a host of the group services (tuning_services): the server end of its share
        service = ((plan.get('service') or {}).get('hosts') or {}).get(host)
        if service:
            self.srv += int(service['connections'])
            self.listeners += len(service['ports'])
        self.sockets = self.srv + self.cli
        self.port_range = plan['port_range']
        # the engine's TLS ends; a service's own TLS state is its own to size
        self.tls = bool(plan.get('tls')) and not service
        # ends the engine keeps in an epoll set (watch mode epoll; a service's are its own)
        watch = plan.get('watch') or {}
        self.epoll_ends = (self.cli if watch.get('client', 'epoll') == 'epoll' else 0) + \
            (self.srv if watch.get('server', 'epoll') == 'epoll' and not service else 0)


class _Values(object):
    """What compute() returns, being filled in."""

    def __init__(self, sysctls):
        self.sysctls = dict(sysctls or {})
        self.host = {}
        self.netns = {}
        self.notes = []
        self.errors = []

    def raise_to(self, key, needed, out=None):
        """Set key to needed unless it is at least that already."""
        have = current_int(self.sysctls, key)
        if have is not None and have >= needed:
            self.notes.append('%s is %s, at least the %s needed: left as is'
                              % (key, fmt(have), fmt(needed)))
            return
        (self.host if out is None else out)[key] = needed


def _memory(h, kernel, v, values, host):
    """The memory preflight: the estimate against MemAvailable, with the arithmetic."""
    kbpc = int(v['tuning_kernel_bytes_per_connection'])
    ubpc = int(v['tuning_user_bytes_per_connection'])
    ebpc = int(v.get('tuning_epoll_bytes_per_connection') or 0)
    # an end in an epoll set costs its item and wait-queue entry on top (watch mode epoll)
    epoll_bytes = int(h.epoll_ends * ebpc / 2.0)
    kernel_bytes = int(h.sockets * kbpc / 2.0) + epoll_bytes
    user_bytes = int(h.sockets * ubpc / 2.0)
    tls_bytes = 0
    tls_text = ''
    if h.tls:
        # TLS in Python: the SSLObject and OpenSSL's state of each end, measured apart
        cli_b = int(v.get('tuning_tls_client_bytes_per_connection') or 0)
        srv_b = int(v.get('tuning_tls_server_bytes_per_connection') or 0)
        tls_bytes = h.cli * cli_b + h.srv * srv_b
        tls_text = ' + TLS (%s client ends x %s B + %s server ends x %s B)' % (
            fmt(h.cli), fmt(cli_b), fmt(h.srv), fmt(srv_b))
    needed = kernel_bytes + user_bytes + tls_bytes
    memory = {'ends': h.sockets, 'kernel_bytes': kernel_bytes, 'user_bytes': user_bytes,
              'tls_bytes': tls_bytes, 'epoll_bytes': epoll_bytes,
              'needed_bytes': needed, 'available_bytes': None, 'limit_bytes': None, 'ok': True}
    epoll_text = (' + %s ends in epoll sets x %s B / 2' % (fmt(h.epoll_ends), fmt(ebpc))
                  if epoll_bytes else '')
    text = ('%s connection ends x (%s kernel + %s user bytes per connection) / 2%s%s = %s MiB'
            % (fmt(h.sockets), fmt(kbpc), fmt(ubpc), epoll_text, tls_text,
               fmt(needed / 1048576)))
    available_kb = kernel.get('mem_available_kb')
    if available_kb is not None:
        avail = int(available_kb) * 1024
        fraction = float(v['tuning_memory_fraction'])
        limit = int(avail * fraction)
        memory.update(available_bytes=avail, limit_bytes=limit, ok=needed <= limit)
        text += ('; MemAvailable %s MiB x %s = %s MiB allowed'
                 % (fmt(avail / 1048576), fraction, fmt(limit / 1048576)))
        if needed > limit:
            values.errors.append(
                'host %s cannot hold the target in memory: %s. Fix: lower testbed_connections, add '
                'client/server hosts, or free memory (tuning_memory_fraction raises the share '
                'allowed)' % (host, text))
    memory['text'] = text
    return memory


def _nofile(h, v, values, own):
    """nofile for the halves, and fs.nr_open raised first when it is below it.

    own: this host's nofile limits as kernel_info reads them. Where the host
    cannot raise a hard limit (no CAP_SYS_RESOURCE: a container, a restricted
    VM), a higher nofile in limits.d would make pam_limits fail every new login
    (ssh included) and units would not get it either: it is capped at what the
    host can give, and the engine spreads its sockets over more processes.
    """
    nofile = int(v['tuning_nofile'])
    if not nofile:
        # One process could hold its whole half on a host that lets it raise its
        # limit; the engine fans out over workers where it cannot.
        nofile = max(min(pow2_at_least(max(h.srv, h.cli) + 1024 + h.listeners), ipplan.NR_OPEN_MAX),
                     65536)
    hard = (own or {}).get('hard')
    if hard and not own.get('cap_sys_resource') and nofile > hard:
        values.notes.append(
            'nofile %s capped at %s: this host cannot raise a hard limit above %s (no '
            'CAP_SYS_RESOURCE, as in a container), so new logins, services and the engine get at '
            'most that; the engine spreads its sockets over processes of %s descriptors each'
            % (fmt(nofile), fmt(hard), fmt(hard), fmt(hard)))
        nofile = hard
    have = current_int(values.sysctls, 'fs.nr_open')
    if have is None or have < nofile:
        values.host['fs.nr_open'] = nofile      # written first by sysctls, before the limits
        return nofile, nofile
    return nofile, have


def _halves(h, v, values):
    """Backlog (server side) and port range / TIME_WAIT (client side) keys."""
    backlog = int(v['tuning_backlog'])
    if not backlog:
        per_endpoint = int(math.ceil(h.srv / float(max(1, h.listeners))))
        backlog = min(65535, max(4096, pow2_at_least(per_endpoint)))
    server_side = {'net.core.somaxconn': backlog, 'net.ipv4.tcp_max_syn_backlog': backlog}
    client_side = {'net.ipv4.ip_local_port_range': '%d %d' % tuple(h.port_range)}
    if v['tuning_time_wait'] == 'reuse':
        client_side['net.ipv4.tcp_tw_reuse'] = 1
        # Keep every TIME_WAIT of a closing run instead of an overflow message per
        # socket; tcp_tw_reuse lets the next run use their ports at once.
        client_side['net.ipv4.tcp_max_tw_buckets'] = max(h.cli, 262144)
    return backlog, server_side, client_side


def _netns_keys(h, v, values, server_side, client_side):
    """One-box: per-namespace keys, and the host keys the namespaces inherit."""
    if h.srv:
        values.netns[h.netns_server] = server_side
    if h.cli:
        values.netns[h.netns_client] = client_side
    ehash = None
    if 'net.ipv4.tcp_child_ehash_entries' in values.sysctls:
        want = min(ipplan.EHASH_MAX,
                   pow2_at_least(int(max(h.srv, h.cli) * float(v['tuning_ehash_factor'])) or 1))
        ehash = max(want, current_int(values.sysctls, 'net.ipv4.tcp_child_ehash_entries') or 0)
        values.raise_to('net.ipv4.tcp_child_ehash_entries', want)
    else:
        values.notes.append('net.ipv4.tcp_child_ehash_entries is not in this kernel (6.1+): the '
                            'namespaces share the host\'s established-connections hash')
    # veth delivers through the per-CPU backlog queue, bounded by this key (it
    # exists only in the host's namespace, not inside a container's)
    if 'net.core.netdev_max_backlog' in values.sysctls:
        values.raise_to('net.core.netdev_max_backlog', 16384)
    return ehash


def _host_keys(h, values, server_side, client_side):
    """Fleet: both halves' keys on the host itself."""
    merged = dict(server_side if h.srv else {})
    merged.update(client_side if h.cli else {})
    for key, value in merged.items():
        if key in ('net.core.somaxconn', 'net.ipv4.tcp_max_syn_backlog',
                   'net.ipv4.tcp_max_tw_buckets'):
            values.raise_to(key, value)
        else:
            values.host[key] = value


def _conntrack(h, kernel, v, values):
    """size: raise nf_conntrack_max and the hash; notrack: rules (fleet); leave."""
    mode = v['tuning_conntrack']
    if mode == 'notrack':
        if h.mode == 'netns':
            values.notes.append('tuning_conntrack notrack: the namespaces carry no firewall rules, '
                                'so conntrack never sees the test traffic; no rule is needed')
        return None
    if mode != 'size':
        return None
    if 'net.netfilter.nf_conntrack_max' not in values.sysctls:
        values.notes.append('nf_conntrack is not loaded: no connection is tracked, nothing to size')
        return None
    want = int(math.ceil(h.sockets * 1.1)) + 65536
    have = current_int(values.sysctls, 'net.netfilter.nf_conntrack_max') or 0
    cmax = max(want, have)
    hashsize = pow2_at_least(int(math.ceil(cmax / 4.0)))
    have_hash = int(kernel.get('conntrack_hashsize') or 0)
    if have >= want:
        values.notes.append('net.netfilter.nf_conntrack_max is %s, at least the %s needed: left as '
                            'is' % (fmt(have), fmt(want)))
    else:
        values.host['net.netfilter.nf_conntrack_max'] = cmax
    return {'max': cmax, 'hashsize': None if have_hash >= hashsize else hashsize}


def compute(plan, host, kernel, variables):
    """Kernel values for host's share.

    kernel: {sysctls: {key: value}, mem_available_kb, conntrack_hashsize, nofile} (kernel_info).
    variables: the tuning_* role variables by name.
    """
    h = _Host(plan, host)
    values = _Values((kernel or {}).get('sysctls'))
    memory = _memory(h, kernel or {}, variables, values, host)
    nofile, nr_open = _nofile(h, variables, values, (kernel or {}).get('nofile'))
    values.raise_to('fs.file-max', int(math.ceil(h.sockets * 1.05)) + 65536)
    backlog, server_side, client_side = _halves(h, variables, values)
    ehash = None
    if h.mode == 'netns':
        ehash = _netns_keys(h, variables, values, server_side, client_side)
    else:
        _host_keys(h, values, server_side, client_side)
    conntrack = _conntrack(h, kernel or {}, variables, values)
    return {
        'ok': not values.errors, 'errors': values.errors, 'notes': values.notes,
        'server_connections': h.srv, 'client_connections': h.cli, 'sockets': h.sockets,
        'listeners': h.listeners, 'host': values.host, 'netns': values.netns,
        'nofile': nofile, 'nr_open': nr_open, 'persist_nr_open': nofile > NR_OPEN_BOOT,
        'backlog': backlog, 'ehash_entries': ehash, 'conntrack': conntrack, 'memory': memory,
    }
