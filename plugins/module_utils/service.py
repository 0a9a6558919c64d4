# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A service under test: what its hosts' limits say before the run.

The testbed reads the hosts of a service it did not deploy (the host itself
on the one-box default, the group ``services`` on a fleet) with kernel_info,
and never changes them unless asked (tuning_services). ``preflight`` turns
those readings into sentences with figures: conntrack that would drop the
connections past its limit, an accept backlog below what a busy service
needs, listening processes that cannot open enough files, nothing listening,
or a host that cannot be reached (its side of the count is then not
verified there). Pure: no I/O.
"""

from __future__ import annotations

SOMAXCONN_LOW = 4096


def fmt(n):
    return '{:,}'.format(int(n))


def _int(value):
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def limit_warnings(sysctls, connections, conntrack_handled, tuned, listener_warnings=()):
    """The sentences for one reachable host (empty: nothing caps it).

    sysctls: {key: value} as kernel_info reads them; connections: the host's share;
    conntrack_handled: tuning sizes conntrack or bypasses it there; tuned: tuning raises
    the backlog there too; listener_warnings: kernel_info's (the nofile of the listeners).
    """
    sysctls = sysctls or {}
    out = []
    cmax = _int(sysctls.get('net.netfilter.nf_conntrack_max'))
    count = _int(sysctls.get('net.netfilter.nf_conntrack_count')) or 0
    if cmax is not None and cmax < connections + count and not conntrack_handled:
        out.append('net.netfilter.nf_conntrack_max is %s with %s tracked: the service\'s %s '
                   'connections are tracked there, and the kernel drops new ones past the limit '
                   '(tuning_conntrack size raises it, notrack bypasses it; on a host of the group '
                   'services only with tuning_services true).' % (fmt(cmax), fmt(count),
                                                                  fmt(connections)))
    somaxconn = _int(sysctls.get('net.core.somaxconn'))
    if somaxconn is not None and somaxconn < SOMAXCONN_LOW and not tuned:
        out.append('net.core.somaxconn is %s: it caps the service\'s accept backlog, and a busy '
                   'service then drops handshakes (raise it, and the backlog in the service\'s '
                   'own listen).' % fmt(somaxconn))
    return out + list(listener_warnings or [])


def preflight(results, hosts, tuned=None, conntrack=None, ports=(), netns=False):
    """One entry per host read: {host, reachable, readable, warnings}.

    results: the registered loop of kernel_info over the hosts (item: the host; unreachable,
    failed, msg, sysctls, listeners, listener_warnings; a result without sysctls failed,
    whatever failed_when said). hosts: {host: {connections}}.
    tuned: {host: bool}, whether the tuning role changes the host (the one-box host itself;
    a host of the group services with tuning_services true); conntrack: {host: its
    tuning_conntrack}: size or notrack handles conntrack on a tuned host. The backlog is
    raised on a tuned fleet host only (netns: the one-box tuning raises it in the
    namespaces, not in the host's own, where the service listens). ports: the service's.
    """
    tuned = tuned or {}
    conntrack = conntrack or {}
    ports = ', '.join(str(p) for p in ports)
    out = []
    for r in results or []:
        host = r.get('item')
        if host is None or r.get('skipped'):
            continue
        share = int((hosts.get(host) or {}).get('connections') or 0)
        if r.get('unreachable'):
            out.append({'host': host, 'reachable': False, 'readable': False, 'warnings': [
                'cannot be reached (%s): the service\'s side of the count will not be verified '
                'there, and the report says so.' % (r.get('msg') or 'unreachable').strip()]})
            continue
        if r.get('failed') or 'sysctls' not in r:
            out.append({'host': host, 'reachable': True, 'readable': False, 'warnings': [
                'its limits could not be read (%s), so nothing caps the run that this preflight '
                'knows of.' % (r.get('msg') or 'failed').strip()]})
            continue
        changed = bool(tuned.get(host))
        warnings = limit_warnings(r.get('sysctls'), share,
                                  changed and conntrack.get(host, 'size') in ('size', 'notrack'),
                                  changed and not netns, r.get('listener_warnings'))
        if r.get('listeners') == []:
            warnings.append('nothing listens on port(s) %s there: every connection to it would be '
                            'refused, unless an address translation in front of it sends them to '
                            'other ports.' % ports)
        out.append({'host': host, 'reachable': True, 'readable': True, 'warnings': warnings})
    return out
