#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: netns
short_description: Named network namespaces with veth pairs, addresses and routes
version_added: 0.1.0
description:
  - Creates or removes a named network namespace (C(/var/run/netns/<name>)), the
    way C(ip netns add) does, and manages inside it the loopback state, veth pairs
    (to the host or to another named namespace), their addresses, MTU and link
    state, and routes.
  - Namespaces are matched by exact name, never by substring. An existing
    namespace whose links already match reports no change.
  - Everything is validated and every conflict detected before anything changes.
    Every step has an undo. If a step fails, the steps the task already took are
    undone in reverse order, removals included (a deleted veth is created again
    with its peer, addresses, MTU and state; a removed namespace is created
    again), and the O(journal) is left as it was.
  - What it creates is recorded in the O(journal) for M(scalelab.testbed.restore), a
    namespace (kind C(netns), key its name) and a veth (kind C(link), key
    C(<netns>|<veth name>)). O(state=absent) forgets the entries of what it removed.
  - Uses pyroute2's documented API (C(IPRoute(netns=...)) for each namespace); no
    C(ip) commands.
author:
  - scalelab.testbed developers (@scalelab)
requirements:
  - pyroute2 >= 0.9.7, < 0.10 on the target
  - Linux; root (CAP_SYS_ADMIN and CAP_NET_ADMIN)
extends_documentation_fragment:
  - scalelab.testbed.testbed
  - scalelab.testbed.testbed.journal
options:
  name:
    description:
      - Name of the namespace. Letters, digits, C(.), C(_), C(@) and C(-) only.
    type: str
    required: true
  state:
    description:
      - V(present) creates the namespace if needed and makes its links match.
      - V(absent) deletes every veth inside it (which also deletes the peer end,
        in the host or in another namespace, at once), then removes the
        namespace. Other virtual links die with the namespace and cannot be put
        back if a later step fails.
    type: str
    choices: [present, absent]
    default: present
  loopback:
    description:
      - V(true) brings C(lo) up inside the namespace, V(false) keeps it down.
    type: bool
    default: true
  veths:
    description:
      - Veth pairs with one end (O(veths[].name)) inside the namespace and the
        other end (O(veths[].peer)) in O(veths[].peer_netns).
      - Links of the namespace that are not listed are left alone.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Name of the end inside the namespace (at most 15 characters).
        type: str
        required: true
      peer:
        description: Name of the other end.
        type: str
        required: true
      peer_netns:
        description:
          - Named namespace of the other end; it must exist. Null (the default)
            means the namespace the module runs in (the host). May be O(name)
            itself for a pair inside one namespace.
        type: str
      addresses:
        description:
          - Addresses (C(IP/prefix); a bare IP is a host address) of the end
            inside the namespace. When given, the list is exact; other
            addresses on that end are removed, except IPv6 link-local ones.
            Omit it to leave the addresses alone.
        type: list
        elements: str
      peer_addresses:
        description: Like O(veths[].addresses), for the peer end, in its namespace.
        type: list
        elements: str
      mtu:
        description: MTU of both ends (68-65535). Omit to leave it alone.
        type: int
      state:
        description: Link state of both ends.
        type: str
        choices: [up, down]
        default: up
  routes:
    description:
      - Routes inside the namespace. Each listed route is
        ensured (added, or replaced when its gateway or device differs);
        routes not listed are left alone.
    type: list
    elements: dict
    default: []
    suboptions:
      dst:
        description: Destination network (no host bits), or V(default).
        type: str
        required: true
      gateway:
        description: Next hop address, same family as O(routes[].dst).
        type: str
      dev:
        description: Output interface inside the namespace (existing, or a veth of O(veths)).
        type: str
      type:
        description:
          - V(unicast) - a route of the main table.
          - V(local) - a local route of the local table over the whole of O(routes[].dst)
            (C(ip route add local DST dev lo), "AnyIP"), with O(routes[].dev) and no gateway. Every
            address of the prefix is then this namespace's own, and a socket may bind any of them
            with C(IP_FREEBIND), without an address per source.
        type: str
        choices: [unicast, local]
        default: unicast
attributes:
  check_mode:
    support: full
    details: Reports the changes it would make (RV(changes)) and the predicted state; changes and
      records nothing.
  diff_mode:
    support: full
    details: Before and after state of the namespace (links, addresses, routes).
notes:
  - Needs root.
  - In check mode a O(veths[].peer_netns) that another task of the same play would
    create does not exist yet, and is reported as an error.
seealso:
  - module: scalelab.testbed.ip_aliases
'''

EXAMPLES = r'''
- name: Server namespace joined to the host by a veth pair
  scalelab.testbed.netns:
    name: tb-server
    veths:
      - name: tb-srv
        peer: tb-srv-host
        addresses: [10.90.0.1/24]
        peer_addresses: [10.90.0.2/24]
        mtu: 9000
    routes:
      - dst: default
        gateway: 10.90.0.2

- name: Client namespace, wired to the server namespace directly
  scalelab.testbed.netns:
    name: tb-client
    veths:
      - name: tb-cli
        peer: tb-srv
        peer_netns: tb-server
        addresses: [10.91.0.2/24]
        peer_addresses: [10.91.0.1/24]

- name: Every address of fd00:5ca1:ab:2::/64 is the client namespace's own (AnyIP)
  scalelab.testbed.netns:
    name: tb-client
    routes:
      - dst: fd00:5ca1:ab:2::/64
        dev: lo
        type: local

- name: Remove the namespace, its veths and their peers
  scalelab.testbed.netns:
    name: tb-client
    state: absent
'''

RETURN = r'''
namespace:
  description: State of the namespace after the task (predicted in check mode).
  returned: always
  type: dict
  contains:
    name:
      description: Namespace name.
      type: str
    exists:
      description: Whether the namespace exists.
      type: bool
    links:
      description: Every link inside, with C(name), C(kind), C(state), C(mtu),
        C(addresses) (without IPv6 link-local ones), and for declared veths C(peer)
        and C(peer_netns).
      type: list
      elements: dict
    routes:
      description: Unicast routes of the main table and local routes over a prefix (C(dst), C(gateway),
        C(dev), C(type)).
      type: list
      elements: dict
    peers:
      description: The peer ends of the declared veths, in O(veths) order, with
        C(name), C(netns), C(kind), C(state) (V(absent) if missing), C(mtu) and
        C(addresses).
      type: list
      elements: dict
  sample:
    name: tb-server
    exists: true
    links:
      - {name: lo, kind: null, state: up, mtu: 65536, addresses: ["127.0.0.1/8", "::1/128"]}
      - {name: tb-srv, kind: veth, state: up, mtu: 1500, addresses: ["10.90.0.1/24"],
         peer: tb-srv-host, peer_netns: null}
    routes:
      - {dst: 0.0.0.0/0, gateway: 10.90.0.2, dev: tb-srv}
      - {dst: 10.90.0.0/24, gateway: null, dev: tb-srv}
    peers:
      - {name: tb-srv-host, netns: null, kind: veth, state: up, mtu: 1500,
         addresses: ["10.90.0.2/24"]}
changes:
  description: One line per change made (or that would be made in check mode).
  returned: always
  type: list
  elements: str
  sample: ["create network namespace tb-server", "set lo in tb-server up"]
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.scalelab.testbed.plugins.module_utils import links as lk
from ansible_collections.scalelab.testbed.plugins.module_utils import netns as nsu
from ansible_collections.scalelab.testbed.plugins.module_utils.common import run_module
from ansible_collections.scalelab.testbed.plugins.module_utils.journal import DEFAULT_JOURNAL


def run(module):
    """The task: the module's parameters in, its result out (TestbedError on failure)."""
    return lk.ensure(check_mode=module.check_mode, diff=module._diff, warn=module.warn,
                     **module.params)


def build_module():
    veth_options = dict(
        name=dict(type='str', required=True),
        peer=dict(type='str', required=True),
        peer_netns=dict(type='str'),
        addresses=dict(type='list', elements='str'),
        peer_addresses=dict(type='list', elements='str'),
        mtu=dict(type='int'),
        state=dict(type='str', choices=['up', 'down'], default='up'),
    )
    route_options = dict(
        dst=dict(type='str', required=True),
        gateway=dict(type='str'),
        dev=dict(type='str'),
        type=dict(type='str', choices=['unicast', 'local'], default='unicast'),
    )
    return AnsibleModule(
        argument_spec=dict(
            name=dict(type='str', required=True),
            state=dict(type='str', choices=['present', 'absent'], default='present'),
            loopback=dict(type='bool', default=True),
            veths=dict(type='list', elements='dict', options=veth_options, default=[]),
            routes=dict(type='list', elements='dict', options=route_options, default=[],
                        required_one_of=[('gateway', 'dev')]),
            journal=dict(type='path', default=DEFAULT_JOURNAL),
        ),
        supports_check_mode=True,
    )


def main():
    module = build_module()
    nsu.fail_without_pyroute2(module, reason='for namespaces and links')
    run_module(module, run, what='rtnetlink')


if __name__ == '__main__':
    main()
