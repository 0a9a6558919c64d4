# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""scalelab.testbed.sysctls, run() on a real namespace."""

from __future__ import annotations

import os

from ansible_collections.scalelab.testbed.plugins.modules import sysctls

from modlib import call, journal_of, ns_read


def test_apply_reapply_and_the_journal(scratch_netns, tmp_path):
    journal = str(tmp_path / 'state' / 'journal.json')
    before = ns_read(scratch_netns, 'net.core.somaxconn')
    failed, r = call(sysctls.main, netns=scratch_netns, journal=journal,
                     settings={'net.core.somaxconn': 3333, 'net.ipv4.ip_local_port_range': '2000 60000'})
    assert not failed and r['changed'], r
    assert ns_read(scratch_netns, 'net.core.somaxconn') == ['3333']
    assert r['changed_keys'] == ['net.core.somaxconn', 'net.ipv4.ip_local_port_range']
    entries = journal_of(journal)['sysctl']
    assert entries['%s|net.core.somaxconn' % scratch_netns]['previous'] == before[0]
    failed, r = call(sysctls.main, netns=scratch_netns, journal=journal,
                     settings={'net.core.somaxconn': 3333, 'net.ipv4.ip_local_port_range': [2000, 60000]})
    assert not failed and not r['changed']


def test_check_mode_predicts_and_writes_nothing(scratch_netns, tmp_path):
    journal = str(tmp_path / 'state' / 'journal.json')
    before = ns_read(scratch_netns, 'net.core.somaxconn')
    failed, r = call(sysctls.main, netns=scratch_netns, journal=journal, _ansible_check_mode=True,
                     _ansible_diff=True, settings={'net.core.somaxconn': 4321})
    assert not failed and r['changed'] and r['current']['net.core.somaxconn'] == '4321'
    assert 'net.core.somaxconn = 4321' in r['diff'][0]['after']
    assert ns_read(scratch_netns, 'net.core.somaxconn') == before
    assert not os.path.exists(str(tmp_path / 'state'))


def test_a_refused_write_puts_back_the_others_and_leaves_nothing_behind(scratch_netns, tmp_path):
    journal = str(tmp_path / 'state' / 'journal.json')
    before = [ns_read(scratch_netns, k) for k in ('net.core.somaxconn', 'net.ipv4.tcp_keepalive_probes')]
    failed, r = call(sysctls.main, netns=scratch_netns, journal=journal,
                     settings={'net.core.somaxconn': 2048, 'net.ipv4.tcp_keepalive_probes': 5,
                               'net.ipv4.tcp_syn_retries': 200})
    assert failed and r['failed_key'] == 'net.ipv4.tcp_syn_retries'
    assert 'EINVAL' in r['msg'] and 'undid 2 earlier change(s)' in r['msg']
    after = [ns_read(scratch_netns, k) for k in ('net.core.somaxconn', 'net.ipv4.tcp_keepalive_probes')]
    assert after == before
    assert not os.path.exists(str(tmp_path / 'state')), 'a failed task leaves no state directory'


def test_bad_input_fails_before_any_change(scratch_netns, tmp_path):
    journal = str(tmp_path / 'state' / 'journal.json')
    for settings, words in (({'net.core.nope': 1}, 'no such key'),
                            ({'net.core.$x': 1}, 'not a valid sysctl name'),
                            ({'fs.file-max': 1}, 'not a network key')):
        failed, r = call(sysctls.main, netns=scratch_netns, journal=journal, settings=settings)
        assert failed and words in r['msg'] and 'nothing was changed' in r['msg'], r['msg']
    failed, r = call(sysctls.main, netns='tbm-does-not-exist', journal=journal,
                     settings={'net.core.somaxconn': 1})
    assert failed and 'does not exist' in r['msg']
    assert not os.path.exists(str(tmp_path / 'state'))
