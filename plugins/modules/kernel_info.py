#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: kernel_info
short_description: Read the kernel values a connection test depends on
version_added: 0.2.0
description:
  - Reads kernel parameters under C(/proc/sys) (on the host or inside a network namespace), the
    memory available, the conntrack hash size, whether the module runs in a container, whether
    systemd is the running system manager, this process's nofile limits and capabilities, and
    whether the kernel lets a socket bind an address that is on no interface (C(IP_FREEBIND),
    what C(topology_client_sources=anyip) needs), and the processes listening on given ports with
    their nofile limits (a service under test).
  - Changes nothing. The tuning role computes its values from what this returns
    (C(plugins/module_utils/tuning.py)).
author:
  - scalelab.testbed developers (@scalelab)
extends_documentation_fragment:
  - scalelab.testbed.testbed
  - scalelab.testbed.testbed.netns
options:
  keys:
    description:
      - Kernel parameters to read, in dotted form (C(net.core.somaxconn)).
      - A key that does not exist where the module runs is listed in RV(missing), not an error.
      - By default the keys the tuning role reads.
    type: list
    elements: str
  connections:
    description: Connections the listeners of O(listener_ports) are to hold, for RV(listener_warnings); 0 warns of nothing.
    type: int
    default: 0
  listener_ports:
    description:
      - TCP ports whose listening processes to read (in O(netns) when given), for RV(listeners),
        the processes of a service under test, whose nofile limits cap the run.
      - Each from 1 to 65535. Empty reads none.
    type: list
    elements: int
    default: []
attributes:
  check_mode:
    support: full
    details: Reads only.
  diff_mode:
    support: none
requirements:
  - pyroute2 (only with O(netns) or O(listener_ports))
seealso:
  - module: scalelab.testbed.sysctls
'''

EXAMPLES = r'''
- name: Read what the tuning depends on
  scalelab.testbed.kernel_info:
  register: kernel

- name: The processes listening on the ports of a service under test, with their nofile limits
  scalelab.testbed.kernel_info:
    keys: [net.core.somaxconn]
    listener_ports: [8080, 8443]
  register: service_host
- name: The port range inside a namespace
  scalelab.testbed.kernel_info:
    netns: tb-client
    keys: [net.ipv4.ip_local_port_range, net.ipv4.tcp_ehash_entries]
'''

RETURN = r'''
sysctls:
  description: Each key that exists, with its value (tokens joined by one space).
  returned: always
  type: dict
  sample: {"fs.nr_open": "1048576", "net.ipv4.ip_local_port_range": "32768 60999"}
missing:
  description: Keys that do not exist where the module ran (a module not loaded, an older kernel).
  returned: always
  type: list
  elements: str
  sample: ["net.netfilter.nf_conntrack_max"]
mem_available_kb:
  description: MemAvailable from C(/proc/meminfo), in KiB.
  returned: always
  type: int
mem_total_kb:
  description: MemTotal from C(/proc/meminfo), in KiB.
  returned: always
  type: int
conntrack_hashsize:
  description: Buckets of the conntrack hash table, or null when nf_conntrack is not loaded.
  returned: always
  type: int
in_container:
  description: Whether the module runs in a container (global keys then belong to its host).
  returned: always
  type: bool
init_netns:
  description: Whether the keys were read in the host's initial network namespace.
  returned: always
  type: bool
systemd_running:
  description: Whether systemd is the running system manager.
  returned: always
  type: bool
nofile:
  description: This process's nofile limits, and whether it may raise its hard limit (CAP_SYS_RESOURCE).
  returned: always
  type: dict
  sample: {"soft": 20000, "hard": 20000, "cap_sys_resource": false}
freebind:
  description:
    - Whether a TCP socket with C(IP_FREEBIND) may bind an address that is on no interface, per
      family (192.0.2.1 and 2001:db8::1, documentation addresses, bound without a port, so
      nothing is reserved), and the first refusal's text, or null.
    - Read where the module runs (O(netns) when given).
  returned: always
  type: dict
  sample: {"ipv4": true, "ipv6": true, "error": null}
listeners:
  description:
    - The processes holding a socket that listens on one of O(listener_ports), sorted by pid
      (empty without O(listener_ports)). C(hands_down) marks a process whose children hold the
      same sockets (nginx's master), which accepts nothing itself. C(nofile_soft) is null when
      unlimited.
  returned: always
  type: list
  elements: dict
  sample: [{"pid": 4242, "ppid": 4241, "comm": "nginx", "ports": [8080], "nofile_soft": 19000,
            "nofile_hard": 19000, "open_files": 12, "hands_down": false}]
listener_warnings:
  description: Sentences with the figures when the accepting processes can open fewer files than O(connections).
  returned: always
  type: list
  elements: str
release:
  description: The kernel release.
  returned: always
  type: str
  sample: 6.1.0-18-amd64
'''

import os
import resource
import socket

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.scalelab.testbed.plugins.module_utils import limits as lm
from ansible_collections.scalelab.testbed.plugins.module_utils import listeners as ls
from ansible_collections.scalelab.testbed.plugins.module_utils import netns as ns
from ansible_collections.scalelab.testbed.plugins.module_utils import sysctl as sc
from ansible_collections.scalelab.testbed.plugins.module_utils import tuning
from ansible_collections.scalelab.testbed.plugins.module_utils.common import (
    TestbedError, is_container, run_module, systemd_running)


def _meminfo():
    values = {}
    with open('/proc/meminfo') as f:
        for line in f:
            name, _sep, rest = line.partition(':')
            if name in ('MemAvailable', 'MemTotal'):
                values[name] = int(rest.split()[0])
    return values


def _capabilities():
    with open('/proc/self/status') as f:
        return lm.cap_effective(f.read())


# Linux values (uapi/linux/in.h), where the socket module lacks them
IP_FREEBIND = getattr(socket, 'IP_FREEBIND', 15)
IP_BIND_ADDRESS_NO_PORT = getattr(socket, 'IP_BIND_ADDRESS_NO_PORT', 24)
FREEBIND_PROBES = (('ipv4', socket.AF_INET, '192.0.2.1'), ('ipv6', socket.AF_INET6, '2001:db8::1'))


def _freebind():
    """Bind a documentation address of each family as the engine does (IP_FREEBIND at SOL_IP)."""
    result = {'error': None}
    for name, family, address in FREEBIND_PROBES:
        try:
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                s.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
                s.bind((address, 0))
            result[name] = True
        except OSError as exc:
            result[name] = False
            if result['error'] is None:
                result['error'] = '%s: %s' % (name, exc.strerror or exc)
    return result


def run(module):
    keys = [sc.normalize_key(k, 'keys')[0] for k in (module.params['keys'] or tuning.KEYS)]
    netns = module.params['netns']
    ports = module.params['listener_ports']
    bad = [p for p in ports if not 1 <= p <= 65535]
    if bad:
        raise TestbedError('listener_ports', '%s out of range' % bad, 'give ports from 1 to 65535')
    if netns is not None:
        ns.require_netns(netns)
    with ns.enter_netns(netns):
        states = sc.probe(keys)
        init_netns = sc.in_init_netns()
        freebind = _freebind()
        inodes = ls.listening_inodes(ports) if ports else {}
    procs = ls.owners(inodes) if inodes else []
    hashsize = sc.probe_key(sc.HASHSIZE_KEY)
    memory = _meminfo()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return dict(
        changed=False,
        sysctls=dict((k, ' '.join(s['value'])) for k, s in states.items() if s['readable']),
        missing=sorted(k for k, s in states.items() if not s['exists']),
        mem_available_kb=memory.get('MemAvailable'), mem_total_kb=memory.get('MemTotal'),
        conntrack_hashsize=int(hashsize['value'][0]) if hashsize['readable'] else None,
        in_container=is_container(), init_netns=init_netns, systemd_running=systemd_running(),
        nofile={'soft': soft, 'hard': hard,
                'cap_sys_resource': bool(_capabilities() & (1 << lm.CAP_SYS_RESOURCE))},
        freebind=freebind, release=os.uname().release, listeners=procs,
        listener_warnings=ls.capacity_warnings(procs, module.params['connections'], ports)
        if module.params['connections'] > 0 else [],
    )


def main():
    module = AnsibleModule(
        argument_spec=dict(
            keys=dict(type='list', elements='str', no_log=False),
            netns=dict(type='str'),
            listener_ports=dict(type='list', elements='int', default=[]),
            connections=dict(type='int', default=0),
        ),
        supports_check_mode=True,
    )
    ns.fail_without_pyroute2(module, module.params['netns'] is not None
                             or bool(module.params['listener_ports']))
    run_module(module, run)


if __name__ == '__main__':
    main()
