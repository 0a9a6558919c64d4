#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: ip_aliases
short_description: Ensure thousands of IP aliases on an interface in one task
version_added: 0.1.0
description:
  - Ensures a set of IPv4/IPv6 addresses on one interface, on the host or inside
    a named network namespace, given as an explicit list (O(addresses)) or as the
    first usable hosts of a network (O(cidr) + O(count) + O(offset)).
  - Everything goes through one rtnetlink socket (the collection's own netlink
    codec, standard library only), with one dump of the namespace's addresses,
    then the requests are pipelined (sent in chunks, acknowledgements collected
    per chunk) instead of one round trip per address, so ten thousand aliases
    take about as long as C(ip -batch).
  - Every address the module adds is tagged so that O(purge) removes only
    addresses this collection added. On kernels 6.1 and newer the tag is the
    address protocol C(IFA_PROTO) = V(211) (the kernel keeps and reports it;
    0-3 are the kernel's own values). On older kernels the IPv4 label
    C(<interface>:tb) is used instead, and IPv6 aliases cannot be tagged.
  - All input and all conflicts are checked before anything changes. If one
    request fails, what the task already changed is undone and the task fails
    naming the address, the errno and the kernel's message.
  - The first time it adds tagged addresses to an interface, the task records
    that in the O(journal) (kind C(aliases), key C(<netns or ->|<interface>)), so
    M(scalelab.testbed.restore) can remove them; the entry is forgotten when a
    task (O(purge) or O(state=absent)) leaves none of the tagged addresses there.
    A task that fails leaves the addresses and the journal as they were.
  - IPv6 aliases are added with C(nodad) so they are usable at once.
author:
  - scalelab.testbed developers (@scalelab)
requirements:
  - pyroute2 >= 0.9.7, < 0.10 on the target, only to enter O(netns)
  - Linux; root (CAP_NET_ADMIN), and CAP_SYS_ADMIN to enter a namespace
extends_documentation_fragment:
  - scalelab.testbed.testbed
  - scalelab.testbed.testbed.netns
  - scalelab.testbed.testbed.journal
options:
  interface:
    description:
      - Name of the interface (exact name) that carries the aliases.
      - Letters, digits, C(.), C(_), C(@) and C(-) only, at most 15 characters.
    type: str
    required: true
  addresses:
    description:
      - Explicit addresses, each C(IP) or C(IP/prefix) (the prefix as a number of
        bits). A bare C(IP) gets O(prefix_length).
      - Duplicates, the same IP with two prefix lengths, multicast and
        unspecified addresses are refused.
      - Mutually exclusive with O(cidr).
    type: list
    elements: str
  cidr:
    description:
      - Network (with no host bits set) to take aliases from, for example
        V(10.10.0.0/16) or V(fd00:10::/112).
      - The aliases are the usable hosts of the network (IPv4 without the
        network and broadcast address, IPv6 without the subnet-router anycast
        address), skipping the first O(offset), O(count) of them.
      - The task fails, with the arithmetic, when the network is too small.
    type: str
  count:
    description:
      - Number of aliases to take from O(cidr) (1 to 1000000).
    type: int
  offset:
    description:
      - Number of usable hosts of O(cidr) to skip first. Defaults to V(0).
    type: int
  prefix_length:
    description:
      - Prefix length given to the aliases generated from O(cidr) and to bare
        addresses in O(addresses). Defaults to V(32) for IPv4 and V(128) for
        IPv6 (host addresses, so no prefix route and each one primary).
    type: int
  state:
    description:
      - V(present) adds the missing addresses; V(absent) removes the listed
        addresses from O(interface) whoever added them.
    type: str
    choices: [present, absent]
    default: present
  purge:
    description:
      - Also remove the addresses on O(interface) that carry this collection's
        tag and are not in the desired set (with O(state=absent), every tagged
        address). Addresses added by anyone else are never purged.
      - With O(purge=true) the desired set may be empty (no O(addresses) or
        O(cidr)), which removes every tagged address of O(interface).
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    details: Reports what would be added and removed; changes nothing, records nothing.
  diff_mode:
    support: full
    details: >-
      Before and after address lists of O(interface), sorted; runs of
      consecutive addresses are folded into ranges and long lists summarised.
notes:
  - Needs root.
  - An address already on another interface of the same namespace, or on
    O(interface) with another prefix length and not added by this collection,
    is an error.
  - Removing a primary IPv4 address makes the kernel drop the secondary addresses
    of its subnet unless C(net.ipv4.conf.<interface>.promote_secondaries) is 1;
    the module refuses a removal that would take other addresses with it.
  - Speed. The kernel's own work grows with the number of addresses already on the
    interface (measured on kernel 6.18, 10,000 /32 aliases on an up veth take
    about 1.6 s of kernel time, as with C(ip -batch)). IPv4 aliases that share one
    prefix (for example O(cidr=10.100.0.0/16) with O(prefix_length=16)) become
    secondaries of one primary whose local routes share their routing data; they
    took about half the kernel time. Any address can still be used as a source
    address with an explicit bind.
seealso:
  - module: scalelab.testbed.netns
'''

EXAMPLES = r'''
- name: Ten thousand source addresses on the client's veth end
  scalelab.testbed.ip_aliases:
    interface: tb-cli
    netns: tb-client
    cidr: 10.100.0.0/16
    count: 10000

- name: The same set moved up by 10, removing the aliases no longer wanted
  scalelab.testbed.ip_aliases:
    interface: tb-cli
    netns: tb-client
    cidr: 10.100.0.0/16
    offset: 10
    count: 10000
    purge: true

- name: A few explicit addresses, IPv4 and IPv6
  scalelab.testbed.ip_aliases:
    interface: eth1
    addresses:
      - 192.0.2.10
      - 192.0.2.11/24
      - fd00:5::10/64

- name: Remove every alias this collection added on the interface
  scalelab.testbed.ip_aliases:
    interface: tb-cli
    netns: tb-client
    state: absent
    purge: true
'''

RETURN = r'''
added:
  description: Addresses added (C(IP/prefix)); in check mode, those that would be.
  returned: always
  type: list
  elements: str
  sample: ["10.100.0.1/32", "10.100.0.2/32"]
removed:
  description: Addresses removed (C(IP/prefix)); in check mode, those that would be.
  returned: always
  type: list
  elements: str
  sample: ["10.100.0.9/32"]
count:
  description: Number of addresses on O(interface) that carry this collection's tag
    after the task (in check mode, after the planned change).
  returned: always
  type: int
  sample: 10000
unchanged:
  description: Number of desired addresses that were already present.
  returned: always
  type: int
  sample: 0
interface:
  description: The interface.
  returned: always
  type: str
  sample: tb-cli
netns:
  description: The namespace, or null for the module's own.
  returned: always
  type: str
  sample: tb-client
tag:
  description: How the added addresses are tagged, C(method) V(proto) (value is the
    C(IFA_PROTO) number) or V(label) (value is the IPv4 label).
  returned: always
  type: dict
  sample: {"method": "proto", "value": 211}
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.scalelab.testbed.plugins.module_utils import addresses as al
from ansible_collections.scalelab.testbed.plugins.module_utils import netns as ns
from ansible_collections.scalelab.testbed.plugins.module_utils.common import run_module
from ansible_collections.scalelab.testbed.plugins.module_utils.journal import DEFAULT_JOURNAL


def run(module):
    """The task: the module's parameters in, its result out (TestbedError on failure)."""
    return al.ensure(check_mode=module.check_mode, diff=module._diff, warn=module.warn,
                     **module.params)


def build_module():
    return AnsibleModule(
        argument_spec=dict(
            interface=dict(type='str', required=True),
            netns=dict(type='str'),
            addresses=dict(type='list', elements='str'),
            cidr=dict(type='str'),
            count=dict(type='int'),
            offset=dict(type='int'),
            prefix_length=dict(type='int'),
            state=dict(type='str', choices=['present', 'absent'], default='present'),
            purge=dict(type='bool', default=False),
            journal=dict(type='path', default=DEFAULT_JOURNAL),
        ),
        mutually_exclusive=[('addresses', 'cidr')],
        required_together=[('cidr', 'count')],
        required_by={'offset': 'cidr'},
        supports_check_mode=True,
    )


def main():
    module = build_module()
    ns.fail_without_pyroute2(module, module.params['netns'] is not None)
    run_module(module, run, what='rtnetlink')


if __name__ == '__main__':
    main()
