# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""scalelab.testbed.netns, main() on real namespaces and veths (root; names tbb-mn*)."""

from __future__ import annotations

import json
import os
import subprocess
import uuid

import pytest

from ansible_collections.scalelab.testbed.plugins.module_utils import links
from ansible_collections.scalelab.testbed.plugins.module_utils import netns as nsu
from ansible_collections.scalelab.testbed.plugins.modules import netns

from modlib import call, journal_of


@pytest.fixture
def names(root):
    """A unique namespace name and host-side veth name; both removed afterwards."""
    tag = uuid.uuid4().hex[:6]
    made = {'ns': 'tbb-mn-%s' % tag, 'host': 'tbb-mh%s' % tag, 'other': 'tbb-mo-%s' % tag}
    try:
        yield made
    finally:
        for name in (made['ns'], made['other']):
            path = '/var/run/netns/' + name
            while os.path.ismount(path):
                subprocess.run(['umount', path], check=False)
            subprocess.run(['ip', 'netns', 'delete', name], check=False,
                           stderr=subprocess.DEVNULL)
        subprocess.run(['ip', 'link', 'delete', made['host']], check=False,
                       stderr=subprocess.DEVNULL)


def veths(names):
    return [{'name': 'tbb-mn0', 'peer': names['host'],
             'addresses': ['10.71.0.1/24', 'fd00:71::1/64'], 'peer_addresses': ['10.71.0.2/24'],
             'mtu': 1400},
            {'name': 'tbb-mn1', 'peer': 'tbb-mn2', 'peer_netns': names['ns'], 'state': 'down'}]


def ip_json(*argv):
    return json.loads(subprocess.run(['ip', '-j'] + list(argv), check=True,
                                     stdout=subprocess.PIPE, text=True).stdout)


def link(where, name):
    argv = (['-n', where] if where else []) + ['-d', 'addr', 'show', 'dev', name]
    got = ip_json(*argv)[0]
    return {'mtu': got['mtu'], 'up': 'UP' in got['flags'], 'kind': got['linkinfo']['info_kind'],
            'addresses': sorted('%s/%d' % (a['local'], a['prefixlen'])
                                for a in got.get('addr_info', [])
                                if not a['local'].startswith('fe80:'))}


def test_create_record_reapply_remove_forget(names, tmp_path):
    journal = str(tmp_path / 'state' / 'journal.json')
    ns = names['ns']
    failed, r = call(netns.main, name=ns, veths=veths(names),
                     routes=[{'dst': '10.72.0.0/16', 'gateway': '10.71.0.2'}], journal=journal)
    assert not failed and r['changed'], r
    assert 'create network namespace %s' % ns in r['changes']
    assert link(ns, 'tbb-mn0') == {'mtu': 1400, 'up': True, 'kind': 'veth',
                                   'addresses': ['10.71.0.1/24', 'fd00:71::1/64']}
    assert link(None, names['host'])['addresses'] == ['10.71.0.2/24']
    entries = journal_of(journal)
    assert list(entries['netns']) == [ns]
    assert sorted(entries['link']) == ['%s|tbb-mn0' % ns, '%s|tbb-mn1' % ns]
    assert all(e['previous'] is None for kind in entries.values() for e in kind.values())
    failed, r = call(netns.main, name=ns, veths=veths(names),
                     routes=[{'dst': '10.72.0.0/16', 'gateway': '10.71.0.2'}], journal=journal)
    assert not failed and not r['changed'] and r['changes'] == []
    failed, r = call(netns.main, name=ns, state='absent', journal=journal)
    assert not failed and r['changed'], r
    # one removal per pair: the pair inside the namespace goes once
    assert len([c for c in r['changes'] if c.startswith('delete veth')]) == 2
    assert ns not in nsu.list_netns()
    assert not os.path.exists(str(tmp_path / 'state'))       # all forgotten, the dir removed


def test_a_failed_removal_puts_everything_back(names, tmp_path):
    journal = str(tmp_path / 'state' / 'journal.json')
    ns = names['ns']
    failed, r = call(netns.main, name=ns, veths=veths(names), journal=journal)
    assert not failed, r
    before = journal_of(journal)
    wanted = {'in': link(ns, 'tbb-mn0'), 'host': link(None, names['host']),
              'pair': (link(ns, 'tbb-mn1'), link(ns, 'tbb-mn2'))}
    # Mounted twice, the namespace cannot be removed (the unlink fails with
    # EBUSY) after its veths were deleted: every deletion must be undone.
    path = '/var/run/netns/' + ns
    subprocess.run(['mount', '--bind', path, path], check=True)
    failed, r = call(netns.main, name=ns, state='absent', journal=journal)
    assert failed and r['field'] == 'name', r
    assert 'remove network namespace %s failed: EBUSY' % ns in r['msg']
    assert 'undid 2 earlier change(s)' in r['msg'] and 'UNDO INCOMPLETE' not in r['msg']
    assert link(ns, 'tbb-mn0') == wanted['in']
    assert link(None, names['host']) == wanted['host']
    assert (link(ns, 'tbb-mn1'), link(ns, 'tbb-mn2')) == wanted['pair']
    assert journal_of(journal) == before
    # the pair is a pair again: the module recognises what it made
    failed, r = call(netns.main, name=ns, veths=veths(names), journal=journal)
    assert not failed and not r['changed'], r


def test_a_failed_creation_leaves_nothing(names, tmp_path):
    journal = str(tmp_path / 'state' / 'journal.json')
    failed, r = call(netns.main, name=names['ns'], journal=journal,
                     veths=[{'name': 'tbb-mn0', 'peer': names['host'],
                             'addresses': ['10.75.0.1/24']}],
                     routes=[{'dst': '10.76.0.0/16', 'gateway': '10.99.99.1'}])
    assert failed and 'ENETUNREACH' in r['msg'] and 'undid' in r['msg'], r
    assert names['ns'] not in nsu.list_netns()
    assert subprocess.run(['ip', 'link', 'show', names['host']], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, check=False).returncode != 0
    assert not os.path.exists(str(tmp_path / 'state'))


def test_delete_link_and_remove_netns_for_restore(names):
    ns = names['ns']
    subprocess.run(['ip', 'netns', 'add', ns], check=True)
    subprocess.run(['ip', '-n', ns, 'link', 'add', 'tbb-mn0', 'type', 'veth', 'peer', 'name',
                    names['host'], 'netns', '1'], check=True)
    assert links.delete_link(ns, 'tbb-mn0') is True
    assert subprocess.run(['ip', 'link', 'show', names['host']], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, check=False).returncode != 0   # the peer went with it
    assert links.delete_link(ns, 'tbb-mn0') is False
    assert links.delete_link(names['other'], 'tbb-mn0') is False      # no such namespace
    assert nsu.remove_netns(ns) is True
    assert nsu.remove_netns(ns) is False
