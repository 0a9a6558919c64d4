# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""scalelab.testbed.kernel_info reads what the tuning needs, on the host and in a namespace."""

from __future__ import annotations

import os
import resource
import socket

from ansible_collections.scalelab.testbed.plugins.modules import kernel_info

from modlib import call, ns_read


def test_the_host_values(root):
    failed, r = call(kernel_info.main)
    assert not failed and not r['changed']
    with open('/proc/sys/fs/nr_open') as f:
        assert r['sysctls']['fs.nr_open'] == f.read().strip()
    assert r['mem_available_kb'] > 0 and r['mem_total_kb'] >= r['mem_available_kb']
    assert set(r['nofile']) == {'soft', 'hard', 'cap_sys_resource'}
    assert r['init_netns'] is True


def test_a_namespace_and_keys_it_does_not_have(scratch_netns):
    failed, r = call(kernel_info.main, netns=scratch_netns,
                     keys=['net.ipv4.ip_local_port_range', 'net.core.netdev_max_backlog'])
    assert not failed
    assert r['sysctls']['net.ipv4.ip_local_port_range'].split() == \
        ns_read(scratch_netns, 'net.ipv4.ip_local_port_range')
    # a key of the initial namespace only: reported missing, not an error
    assert r['missing'] == ['net.core.netdev_max_backlog'] and r['init_netns'] is False


def test_a_bad_key_fails_cleanly(root):
    failed, r = call(kernel_info.main, keys=['net.core.$x'])
    assert failed and 'not a valid sysctl name' in r['msg']


def test_the_listeners_of_a_port_with_their_limits(root):
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    s.listen(4)
    port = s.getsockname()[1]
    try:
        failed, r = call(kernel_info.main, keys=['net.core.somaxconn'], listener_ports=[port],
                         connections=10 ** 9)
    finally:
        s.close()
    assert not failed, r
    me = [p for p in r['listeners'] if p['pid'] == os.getpid()]
    assert len(me) == 1 and me[0]['ports'] == [port], r['listeners']
    assert me[0]['nofile_soft'] == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert 'fewer than the 1,000,000,000 connections' in r['listener_warnings'][0]
    failed, r = call(kernel_info.main, listener_ports=[0])
    assert failed and 'listener_ports' in r['msg']
