# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""scalelab.testbed.tcp_sockets_info, main() on real sockets (root; names tbc-mt-*)."""

from __future__ import annotations

import os
import socket
import subprocess
import uuid

import pytest

from ansible_collections.scalelab.testbed.plugins.module_utils.netns import enter_netns
from ansible_collections.scalelab.testbed.plugins.modules import tcp_sockets_info

from modlib import call


@pytest.fixture
def ns(root):
    name = 'tbc-mt-%s' % uuid.uuid4().hex[:8]
    subprocess.run(['ip', 'netns', 'add', name], check=True)
    subprocess.run(['ip', '-n', name, 'link', 'set', 'lo', 'up'], check=True)
    try:
        yield name
    finally:
        subprocess.run(['ip', 'netns', 'delete', name], check=False)


def test_counts_sockets_of_a_namespace(ns):
    with enter_netns(ns):                   # sockets keep the namespace they were made in
        lst = socket.socket()
        lst.bind(('127.0.0.1', 0))
        lst.listen(16)
        port = lst.getsockname()[1]
        clients = [socket.create_connection(('127.0.0.1', port)) for _i in range(7)]
    servers = [lst.accept()[0] for _i in range(7)]
    try:
        failed, r = call(tcp_sockets_info.main, netns=ns, states=['established', 'listen'],
                         local_ports=[port], expect_at_least=8)
        assert not failed and not r['changed'], r
        assert r['counts'] == {'established': 7, 'listen': 1} and r['total'] == 8
        assert r['kernel_filtered'] is True
        failed, r = call(tcp_sockets_info.main, netns=ns, expect_at_least=15)
        assert failed and r['total'] == 14 and '1 missing' in r['msg']
        failed, r = call(tcp_sockets_info.main, netns=ns, family='ipv6')
        assert not failed and r['total'] == 0
    finally:
        for s in clients + servers + [lst]:
            s.close()


def test_a_namespace_that_vanished_fails_cleanly(root):
    # The name is still listed but its mount is gone: what a namespace removed
    # under the task's feet looks like. Entering it is refused (EINVAL).
    name = 'tbc-mt-%s' % uuid.uuid4().hex[:8]
    subprocess.run(['ip', 'netns', 'add', name], check=True)
    path = '/var/run/netns/' + name
    try:
        subprocess.run(['umount', path], check=True)
        failed, r = call(tcp_sockets_info.main, netns=name)
        assert failed and r['field'] == 'netns', r
        assert "cannot enter network namespace '%s': EINVAL (errno 22" % name in r['msg']
        assert 'exception' not in r
    finally:
        subprocess.run(['ip', 'netns', 'delete', name], check=False)
        if os.path.lexists(path):
            os.unlink(path)


@pytest.mark.parametrize('args, field, words', [
    (dict(netns='tbc-mt-no-such-ns'), 'netns', 'does not exist'),
    (dict(netns='tbc;reboot'), 'netns', 'not allowed'),
    (dict(local_ports=['9000-8000']), 'local_ports', 'write the range as "8000-9000"'),
    (dict(remote_ports=[70000]), 'remote_ports', 'ports go from 0 to 65535'),
    (dict(remote_networks=['10.1.2.3/8']), 'remote_networks', 'did you mean 10.0.0.0/8'),
    (dict(expect_at_least=-1), 'expect_at_least', 'must not be negative'),
])
def test_bad_input_fails_cleanly(root, args, field, words):
    failed, r = call(tcp_sockets_info.main, **args)
    assert failed and r['field'] == field and words in r['msg'], r
