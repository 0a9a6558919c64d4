#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: notrack
short_description: Keep the test traffic out of connection tracking (raw-table NOTRACK)
version_added: 0.2.0
description:
  - Exempts TCP traffic to and from O(ports) from connection tracking, in both directions, for
    IPv4 and IPv6, in the raw hook (before conntrack sees a packet). A connection test that holds
    more connections than C(net.netfilter.nf_conntrack_max) otherwise stops at that number, and
    the kernel logs C(nf_conntrack - table full, dropping packet).
  - With nftables (V(nft), Debian's default) the rules live in a table of their own, O(table) in
    the C(inet) family, loaded and removed whole. With V(iptables) they are rules in the raw table's
    C(PREROUTING) and C(OUTPUT) chains of iptables and ip6tables, tagged with the comment
    C(scalelab-testbed).
  - What it adds is recorded in the O(journal) before it is added; M(scalelab.testbed.restore)
    removes exactly that. A rule that was there before is left alone.
author:
  - scalelab.testbed developers (@scalelab)
extends_documentation_fragment:
  - scalelab.testbed.testbed
  - scalelab.testbed.testbed.netns
  - scalelab.testbed.testbed.journal
options:
  ports:
    description:
      - The server ports of the test, as ports or ranges (V(5001-5016)).
      - Required with O(state=present).
    type: list
    elements: raw
  state:
    description:
      - V(present) adds the exemption.
      - V(absent) removes it (with V(iptables), only the rules the journal says this module added).
    type: str
    choices: [present, absent]
    default: present
  backend:
    description:
      - V(auto) takes V(nft) when the C(nft) command exists, else V(iptables).
    type: str
    choices: [auto, nft, iptables]
    default: auto
  table:
    description: The nftables table (family C(inet)) that holds the rules, with V(nft).
    type: str
    default: scalelab_testbed
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
requirements:
  - the C(nft) command (nftables) or C(iptables) and C(ip6tables) on the target
  - pyroute2 (only with O(netns))
notes:
  - Needs root.
seealso:
  - module: scalelab.testbed.restore
'''

EXAMPLES = r'''
- name: Keep the test ports out of conntrack
  scalelab.testbed.notrack:
    ports: ["5001-5016"]

- name: The same with iptables, inside a namespace
  scalelab.testbed.notrack:
    ports: [5001, 5002]
    backend: iptables
    netns: tb-server
'''

RETURN = r'''
backend:
  description: The backend used, V(nft) or V(iptables).
  returned: always
  type: str
rules:
  description: The rules in place after the task (nft - the table's text; iptables - one line per rule).
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.scalelab.testbed.plugins.module_utils import netns as ns
from ansible_collections.scalelab.testbed.plugins.module_utils import notrack as nt
from ansible_collections.scalelab.testbed.plugins.module_utils.common import (
    TestbedError, run_module, validate_name)
from ansible_collections.scalelab.testbed.plugins.module_utils.journal import (
    DEFAULT_JOURNAL, KIND_NOTRACK, Journal)
from ansible_collections.scalelab.testbed.plugins.module_utils.transaction import Transaction


class Runner(object):
    """Commands as argv lists, inside the namespace when one is given."""

    def __init__(self, module, netns):
        self.module = module
        self.netns = netns

    def binary(self, name, required=True):
        return self.module.get_bin_path(name, required=required)

    def run(self, argv, data=None, check=True):
        with ns.enter_netns(self.netns):
            rc, out, err = self.module.run_command(argv, data=data, binary_data=True)
        if check and rc != 0:
            raise OSError('%s failed (rc %d): %s' % (' '.join(argv), rc, (err or out).strip()))
        return rc, out


def _nft(module, tx, runner, ranges, table):
    nft = runner.binary('nft')
    rc, listing = runner.run([nft, '-j', 'list', 'table', 'inet', table], check=False)
    present = rc == 0
    key = nt.journal_key('nft', 'inet', table, '*', [])
    if module.params['state'] == 'absent':
        if present:
            tx.change(None, None, None, apply=lambda: runner.run([nft, 'delete', 'table', 'inet', table]),
                      what='delete table inet %s' % table, field='state')
            tx.forget(KIND_NOTRACK, key)
        return []
    script = nt.nft_script(table, ranges)
    if not present or not nt.nft_matches(listing, ranges):
        tx.change(KIND_NOTRACK, key, None, apply=lambda: runner.run([nft, '-f', '-'], data=script),
                  undo=lambda: runner.run([nft, 'delete', 'table', 'inet', table], check=False),
                  what='load table inet %s' % table, field='ports', backend='nft', family='inet',
                  table=table, chain='*', rule=[], netns=runner.netns)
    return [script]


def _iptables(module, tx, runner, ranges, recorded):
    lines = []
    for family, name in (('ipv4', 'iptables'), ('ipv6', 'ip6tables')):
        binary = runner.binary(name)
        for chain, rule in nt.iptables_rules(ranges):
            exists = runner.run([binary, '-t', 'raw', '-C', chain] + rule, check=False)[0] == 0
            key = nt.journal_key('iptables', family, 'raw', chain, rule)
            line = '%s -t raw -A %s %s' % (name, chain, ' '.join(rule))
            if module.params['state'] == 'absent':
                if exists and key in recorded:
                    tx.change(None, None, None,
                              apply=lambda b=binary, c=chain, r=rule: runner.run([b, '-t', 'raw', '-D', c] + r),
                              what='delete %s' % line, field='state')
                    tx.forget(KIND_NOTRACK, key)
                continue
            lines.append(line)
            if not exists:
                tx.change(KIND_NOTRACK, key, None,
                          apply=lambda b=binary, c=chain, r=rule: runner.run([b, '-t', 'raw', '-A', c] + r),
                          undo=lambda b=binary, c=chain, r=rule: runner.run([b, '-t', 'raw', '-D', c] + r),
                          what='add %s' % line, field='ports', backend='iptables', family=family,
                          table='raw', chain=chain, rule=rule, netns=runner.netns)
    return lines


def run(module):
    p = module.params
    if p['netns'] is not None:
        ns.fail_without_pyroute2(module)
        ns.require_netns(p['netns'])
    validate_name(p['table'], 'table', what='nftables table name')
    ranges = []
    if p['state'] == 'present':
        try:
            ranges = nt.port_ranges(p['ports'] or [])
        except ValueError as exc:
            raise TestbedError('ports', str(exc), 'give the server ports, e.g. ["5001-5016"]')
    runner = Runner(module, p['netns'])
    backend = p['backend']
    if backend == 'auto':
        backend = 'nft' if runner.binary('nft', required=False) else 'iptables'
    with Transaction(module.check_mode, p['journal']) as tx:
        if backend == 'nft':
            rules = _nft(module, tx, runner, ranges, p['table'])
        else:
            recorded = Journal(p['journal']).load().entries(KIND_NOTRACK)
            rules = _iptables(module, tx, runner, ranges, recorded)
    result = dict(changed=tx.changed, backend=backend, rules=rules)
    if module._diff:
        result['diff'] = {'before': '', 'after': '\n'.join(tx.planned) + '\n' if tx.planned else ''}
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            ports=dict(type='list', elements='raw'),
            state=dict(type='str', choices=['present', 'absent'], default='present'),
            backend=dict(type='str', choices=['auto', 'nft', 'iptables'], default='auto'),
            table=dict(type='str', default=nt.TABLE),
            netns=dict(type='str'),
            journal=dict(type='path', default=DEFAULT_JOURNAL),
        ),
        required_if=[('state', 'present', ('ports',))],
        supports_check_mode=True,
    )
    run_module(module, run, what='nftables/iptables')


if __name__ == '__main__':
    main()
