# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""NOTRACK rules that keep the test traffic out of connection tracking.

Two backends, both in the raw hook (before conntrack sees a packet), both
directions (the server ports as destination and as source), IPv4 and IPv6:

* ``nft``: a table of the testbed's own (``inet scalelab_testbed``) with a
  prerouting and an output chain; loaded whole with ``nft -f -`` (atomic) and
  removed whole. Debian's default since 10.
* ``iptables``: rules in the raw table's PREROUTING and OUTPUT chains of
  iptables and ip6tables, tagged with the comment ``scalelab-testbed``.

Pure rule building and parsing here; the module runs the commands as argv
lists (never a shell), from validated integers only.
"""

from __future__ import annotations

import json

from ansible_collections.scalelab.testbed.plugins.module_utils import ipplan

TABLE = 'scalelab_testbed'
COMMENT = 'scalelab-testbed'
CHAINS = ('PREROUTING', 'OUTPUT')
MULTIPORT_MAX = 15          # iptables' multiport takes at most 15 ports (a range counts two)


def port_ranges(values, field='ports'):
    """Sorted, merged [(lo, hi)] of the ports given."""
    try:
        ranges = [ipplan.port_range(v) for v in values]
    except ValueError as exc:
        raise ValueError('%s: %s' % (field, exc))
    if not ranges:
        raise ValueError('%s: no port given' % field)
    return ipplan.merge_port_ranges(ranges)


# ------------------------------------------------------------------ nft

def _nft_set(ranges):
    return '{ %s }' % ', '.join(str(lo) if lo == hi else '%d-%d' % (lo, hi) for lo, hi in ranges)


def nft_script(table, ranges):
    """The whole table, as `nft -f -` reads it (replaces an earlier version of it)."""
    ports = _nft_set(ranges)
    chains = []
    for chain, hook in (('prerouting', 'prerouting'), ('output', 'output')):
        chains.append('  chain %s {\n    type filter hook %s priority raw; policy accept;\n'
                      '    tcp dport %s notrack\n    tcp sport %s notrack\n  }\n'
                      % (chain, hook, ports, ports))
    return ('table inet %s\ndelete table inet %s\ntable inet %s {\n%s}\n'
            % (table, table, table, ''.join(chains)))


def _json_ports(right):
    """Port ranges from the right-hand side of an nft JSON match."""
    items = right['set'] if isinstance(right, dict) and 'set' in right else [right]
    out = []
    for item in items:
        if isinstance(item, dict) and 'range' in item:
            out.append((int(item['range'][0]), int(item['range'][1])))
        elif isinstance(item, int):
            out.append((item, item))
        else:
            raise ValueError('unexpected port expression %r' % (item,))
    return sorted(out)


def nft_rules(listing):
    """{(chain, 'dport'|'sport'): [(lo, hi)]} of the notrack rules in `nft -j list table` output."""
    found = {}
    for obj in json.loads(listing).get('nftables', []):
        rule = obj.get('rule')
        if not rule:
            continue
        exprs = rule.get('expr', [])
        if not any('notrack' in e for e in exprs):
            continue
        for e in exprs:
            match = e.get('match') if isinstance(e, dict) else None
            payload = (match or {}).get('left', {}).get('payload', {})
            if payload.get('protocol') == 'tcp' and payload.get('field') in ('dport', 'sport'):
                found[(rule['chain'], payload['field'])] = _json_ports(match['right'])
    return found


def nft_matches(listing, ranges):
    """Whether the listed table holds exactly our rules for ranges."""
    want = dict(((c, d), sorted(ranges)) for c in ('prerouting', 'output') for d in ('dport', 'sport'))
    return nft_rules(listing) == want


# ------------------------------------------------------------- iptables

def iptables_rules(ranges):
    """[(chain, rule tokens)] for one of iptables/ip6tables, both directions."""
    if sum(1 if lo == hi else 2 for lo, hi in ranges) > MULTIPORT_MAX:
        raise ValueError('ports: %d ranges are more than iptables\' multiport takes; merge them or '
                         'use the nft backend' % len(ranges))
    rules = []
    for chain in CHAINS:
        for option in ('--dport', '--sport'):
            if len(ranges) == 1:
                lo, hi = ranges[0]
                match = [option, str(lo) if lo == hi else '%d:%d' % (lo, hi)]
            else:
                match = ['-m', 'multiport', option + 's',
                         ','.join(str(lo) if lo == hi else '%d:%d' % (lo, hi) for lo, hi in ranges)]
            rules.append((chain, ['-p', 'tcp'] + match + ['-m', 'comment', '--comment', COMMENT,
                                                          '-j', 'NOTRACK']))
    return rules


def journal_key(backend, family, table, chain, rule):
    return '|'.join([backend, family, table, chain, ' '.join(rule)])
