#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: tcp_sockets_info
short_description: Count TCP sockets by state through sock_diag netlink, fast
version_added: 0.1.0
description:
  - Counts the TCP sockets of a host, or of a named network namespace, by state,
    optionally only those whose local or remote address lies in given networks
    and whose local or remote port lies in given ranges.
  - Reads the kernel's C(NETLINK_SOCK_DIAG) (inet_diag) dump directly; it never
    runs or parses C(ss). The kernel filters by state, and by port and network
    through an inet_diag bytecode program, so sockets that do not match are
    never copied to user space. Only message headers and the state byte of
    each socket are read, so a million sockets are counted in about a second.
  - This is how the collection proves a connection count, see O(expect_at_least).
  - Filters of different options are combined with AND; the entries of one
    list with OR.
author:
  - scalelab.testbed developers (@scalelab)
extends_documentation_fragment:
  - scalelab.testbed.testbed
  - scalelab.testbed.testbed.netns
options:
  states:
    description:
      - TCP states to count. V(all) counts every state.
      - The default counts only established connections, which is what a
        connection test proves (and the kernel then skips every other socket).
      - The kernel reports pending connection requests with the state
        V(syn_recv); they are counted there, or under V(new_syn_recv) when
        only that one is asked for.
    type: list
    elements: str
    default: [established]
    choices:
      - all
      - established
      - syn_sent
      - syn_recv
      - fin_wait1
      - fin_wait2
      - time_wait
      - close
      - close_wait
      - last_ack
      - listen
      - closing
      - new_syn_recv
  family:
    description:
      - Which socket families to dump.
      - IPv4 connections made on IPv6 sockets (IPv4-mapped addresses such as
        C(::ffff:10.0.0.1)) belong to V(ipv6); IPv4 networks in
        O(local_networks) and O(remote_networks) still match them.
    type: str
    choices: [ipv4, ipv6, both]
    default: both
  local_networks:
    description:
      - Count only sockets whose local address lies in one of these networks
        (CIDR such as V(10.0.0.0/8), V(fd00::/64); a plain address means one host).
      - Host bits set after the prefix are refused.
    type: list
    elements: str
  remote_networks:
    description:
      - Count only sockets whose remote (peer) address lies in one of these
        networks. Listening sockets have the remote address V(0.0.0.0) or V(::).
    type: list
    elements: str
  local_ports:
    description:
      - Count only sockets whose local port is one of these, each a port
        number (V(443)) or an inclusive range V("8000-8999") (0 to 65535).
    type: list
    elements: raw
  remote_ports:
    description:
      - Count only sockets whose remote port is one of these, each a port
        number or an inclusive range V("lo-hi"). Listening sockets have the
        remote port V(0).
    type: list
    elements: raw
  expect_at_least:
    description:
      - Fail when RV(total), the number of sockets counted over all
        O(states), is lower than this. The result is still returned.
      - Convenient for verifying that a test reached its connection count.
    type: int
attributes:
  check_mode:
    support: full
    details: It only reads, so it does the same in check mode.
  diff_mode:
    support: none
    details: It only reads; there is never a diff.
notes:
  - O(netns) is entered only to open the netlink socket; the module returns to its own
    namespace at once. Entering it needs root and the Python library C(pyroute2); counting
    in the module's own namespace needs only the Python standard library (and no root).
  - A socket, bind or receive error, a refused dump, or a namespace that vanished (its
    name is still listed but is no namespace any more) fails the task with the errno;
    nothing is ever changed.
  - A time_wait count is capped by the kernel's C(net.ipv4.tcp_max_tw_buckets).
seealso:
  - name: sock_diag(7)
    description: The netlink interface this module reads.
    link: https://man7.org/linux/man-pages/man7/sock_diag.7.html
"""

EXAMPLES = r"""
- name: Count established connections on the host
  scalelab.testbed.tcp_sockets_info:
  register: tcp

- name: Prove that the client namespace holds a million connections to the server ports
  scalelab.testbed.tcp_sockets_info:
    netns: tb-client
    remote_networks: [10.10.0.0/16]
    remote_ports: ["5000-5099"]
    expect_at_least: 1000000

- name: Count every state, IPv4 only
  scalelab.testbed.tcp_sockets_info:
    states: [all]
    family: ipv4
  register: tcp_all

- name: Show listeners and sockets left in TIME_WAIT on port 8080
  scalelab.testbed.tcp_sockets_info:
    states: [listen, time_wait]
    local_ports: [8080]
  register: tcp_8080

- name: Use the counts
  ansible.builtin.debug:
    msg: "{{ tcp_8080.counts.listen }} listening, {{ tcp_8080.counts.time_wait }} in TIME_WAIT"
"""

RETURN = r"""
counts:
  description: Number of matching sockets for each requested state (0 when none).
  returned: always
  type: dict
  sample: {"established": 1000000, "time_wait": 12}
total:
  description: Sum of RV(counts), the value O(expect_at_least) is compared with.
  returned: always
  type: int
  sample: 1000012
seconds:
  description: Time taken by the netlink dump (opening the socket, dumping, counting), in seconds.
  returned: always
  type: float
  sample: 0.83
states:
  description: The states that were counted (O(states) with V(all) expanded).
  returned: always
  type: list
  elements: str
  sample: [established, time_wait]
kernel_filtered:
  description:
    - Whether the kernel applied the port and network filters (inet_diag bytecode).
    - V(false) only when the kernel refused the filter program; the sockets were
      then filtered by the module, with the same result but more work.
  returned: always
  type: bool
  sample: true
"""

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.scalelab.testbed.plugins.module_utils import netns as nsu
from ansible_collections.scalelab.testbed.plugins.module_utils import sockdiag as sd
from ansible_collections.scalelab.testbed.plugins.module_utils.common import (
    TestbedError, run_module)

FAMILIES = {'ipv4': ('inet',), 'ipv6': ('inet6',), 'both': ('inet', 'inet6')}


def run(module):
    """Count; the result (module.fail_json when expect_at_least is not met)."""
    p = module.params
    if p['netns'] is not None:
        nsu.require_netns(p['netns'], 'netns')
    states = sd.parse_states(p['states'], 'states')
    if p['expect_at_least'] is not None and p['expect_at_least'] < 0:
        raise TestbedError('expect_at_least', 'must not be negative (got %d)'
                           % p['expect_at_least'], 'give 0 or more')
    start = time.monotonic()
    detail = sd.count_tcp_states_detail(
        netns=p['netns'], states=states, families=FAMILIES[p['family']],
        local_networks=p['local_networks'], remote_networks=p['remote_networks'],
        local_ports=p['local_ports'], remote_ports=p['remote_ports'])
    seconds = round(time.monotonic() - start, 6)
    counts = detail['counts']
    total = sum(counts.values())
    result = dict(changed=False, counts=counts, total=total, seconds=seconds, states=states,
                  kernel_filtered=detail['kernel_filtered'])
    expected = p['expect_at_least']
    if expected is not None and total < expected:
        where = ' in network namespace %s' % p['netns'] if p['netns'] else ''
        module.fail_json(
            msg='expect_at_least: counted %d TCP sockets in state(s) %s%s, expected at least %d '
                '(%d missing)' % (total, ', '.join(states), where, expected, expected - total),
            **result)
    return result


def build_module():
    return AnsibleModule(
        argument_spec=dict(
            netns=dict(type='str'),
            states=dict(type='list', elements='str', default=['established'],
                        choices=['all'] + sorted(sd.TCP_STATES, key=sd.TCP_STATES.get)),
            family=dict(type='str', choices=['ipv4', 'ipv6', 'both'], default='both'),
            local_networks=dict(type='list', elements='str'),
            remote_networks=dict(type='list', elements='str'),
            local_ports=dict(type='list', elements='raw'),
            remote_ports=dict(type='list', elements='raw'),
            expect_at_least=dict(type='int'),
        ),
        supports_check_mode=True,
    )


def main():
    module = build_module()
    nsu.fail_without_pyroute2(module, module.params['netns'] is not None)
    run_module(module, run, what='sock_diag')


if __name__ == '__main__':
    main()
