# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""scalelab.testbed.ip_aliases, main() on a real namespace (root; names tbb-ma-*)."""

from __future__ import annotations

import json
import os
import subprocess
import uuid

import pytest

from ansible_collections.scalelab.testbed.plugins.modules import ip_aliases

from modlib import call, journal_of


@pytest.fixture
def ns(root):
    name = 'tbb-ma-%s' % uuid.uuid4().hex[:8]
    subprocess.run(['ip', 'netns', 'add', name], check=True)
    try:
        subprocess.run(['ip', '-n', name, 'link', 'add', 'tbb-ma0', 'type', 'veth', 'peer',
                        'name', 'tbb-ma1'], check=True)
        yield name
    finally:
        subprocess.run(['ip', 'netns', 'delete', name], check=False)


def kernel(name):
    out = subprocess.run(['ip', '-j', '-n', name, 'addr', 'show', 'dev', 'tbb-ma0'], check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    return sorted('%s/%d' % (a['local'], a['prefixlen'])
                  for a in json.loads(out)[0].get('addr_info', [])
                  if not a['local'].startswith('fe80:'))


def test_apply_reapply_purge_and_the_journal(ns, tmp_path):
    journal = str(tmp_path / 'state' / 'journal.json')
    args = dict(interface='tbb-ma0', netns=ns, journal=journal)
    failed, r = call(ip_aliases.main, addresses=['10.66.0.1', '10.66.0.2/24', 'fd00:66::1'],
                     **args)
    assert not failed and r['changed'], r
    assert r['added'] == ['10.66.0.1/32', '10.66.0.2/24', 'fd00:66::1/128']
    assert r['tag'] == {'method': 'proto', 'value': 211}
    assert kernel(ns) == ['10.66.0.1/32', '10.66.0.2/24', 'fd00:66::1/128']
    assert list(journal_of(journal)['aliases']) == ['%s|tbb-ma0' % ns]
    failed, r = call(ip_aliases.main, addresses=['10.66.0.1', '10.66.0.2/24', 'fd00:66::1'],
                     **args)
    assert not failed and not r['changed'] and r['unchanged'] == 3
    failed, r = call(ip_aliases.main, addresses=['10.66.0.3'], purge=True,
                     _ansible_check_mode=True, _ansible_diff=True, **args)
    assert not failed and r['changed'] and r['count'] == 1
    assert '10.66.0.3/32' in r['diff']['after'] and '10.66.0.3/32' not in r['diff']['before']
    assert kernel(ns) == ['10.66.0.1/32', '10.66.0.2/24', 'fd00:66::1/128']
    failed, r = call(ip_aliases.main, state='absent', purge=True, **args)
    assert not failed and r['changed'] and r['count'] == 0 and kernel(ns) == []
    assert not os.path.exists(str(tmp_path / 'state'))      # forgotten, and the dir it made


def test_a_failed_request_is_undone_and_nothing_is_recorded(ns, tmp_path):
    journal = str(tmp_path / 'state' / 'journal.json')
    subprocess.run(['ip', 'netns', 'exec', ns, 'sysctl', '-q', '-w',
                    'net.ipv6.conf.tbb-ma0.disable_ipv6=1'], check=True)
    failed, r = call(ip_aliases.main, interface='tbb-ma0', netns=ns, journal=journal,
                     addresses=['10.69.0.1', '10.69.0.2', '10.69.0.3', 'fd00:69::1'])
    assert failed and r['field'] == 'addresses'
    assert 'fd00:69::1/128: EACCES (errno 13' in r['msg']
    assert 'the 3 address(es) added before it were removed again' in r['msg']
    assert 'exception' not in r                                  # no traceback
    assert kernel(ns) == [] and not os.path.exists(str(tmp_path / 'state'))


@pytest.mark.parametrize('args, field, words', [
    (dict(interface='tbb-ma0', cidr='10.68.0.0/29', offset=2, count=5), 'cidr',
     '6 usable host addresses, but offset 2 + count 5 = 7'),
    (dict(interface='tbb-ma0', addresses=['10.68.0.1', '10.68.0.1']), 'addresses', 'listed twice'),
    (dict(interface='tbb-ma-nope', addresses=['10.68.0.1']), 'interface', 'does not exist'),
    (dict(interface='tbb;reboot', addresses=['10.68.0.1']), 'interface', 'not allowed'),
    (dict(interface='tbb-ma0'), 'addresses', 'no addresses given'),
])
def test_bad_input_fails_cleanly_and_changes_nothing(ns, tmp_path, args, field, words):
    journal = str(tmp_path / 'state' / 'journal.json')
    failed, r = call(ip_aliases.main, netns=ns, journal=journal, **args)
    assert failed and r['field'] == field and words in r['msg'], r
    assert 'nothing was changed' in r['msg']
    assert kernel(ns) == [] and not os.path.exists(str(tmp_path / 'state'))


def test_missing_namespace(root, tmp_path):
    failed, r = call(ip_aliases.main, interface='tbb-ma0', netns='tbb-ma-no-such-ns',
                     addresses=['10.68.0.1'], journal=str(tmp_path / 'j.json'))
    assert failed and r['field'] == 'netns' and "'tbb-ma-no-such-ns' does not exist" in r['msg']
