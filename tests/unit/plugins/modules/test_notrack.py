# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""scalelab.testbed.notrack with nftables and iptables, in a scratch namespace; restore removes it."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from ansible_collections.scalelab.testbed.plugins.modules import notrack, restore

from modlib import call, journal_of


def in_ns(netns, *argv):
    return subprocess.run(['ip', 'netns', 'exec', netns] + list(argv), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, check=False)


@pytest.mark.skipif(not shutil.which('nft'), reason='needs nft (nftables)')
def test_nft_table_added_once_and_removed_by_restore(scratch_netns, tmp_path):
    journal = str(tmp_path / 'journal.json')
    args = dict(ports=['5001-5016'], backend='nft', netns=scratch_netns, journal=journal)
    failed, r = call(notrack.main, _ansible_check_mode=True, **args)
    assert not failed and r['changed'] and in_ns(scratch_netns, 'nft', 'list', 'tables').stdout == ''
    failed, r = call(notrack.main, **args)
    assert not failed and r['changed'] and r['backend'] == 'nft'
    listing = in_ns(scratch_netns, 'nft', 'list', 'table', 'inet', 'scalelab_testbed').stdout
    assert 'tcp dport 5001-5016 notrack' in listing and 'tcp sport 5001-5016 notrack' in listing
    assert 'hook output priority raw' in listing
    assert not call(notrack.main, **args)[1]['changed']
    # other ports: the table is replaced, still one record
    other = dict(args)
    other['ports'] = [6000, '7000-7001']
    failed, r = call(notrack.main, **other)
    assert r['changed'] and 'dport { 6000, 7000-7001 }' in \
        in_ns(scratch_netns, 'nft', 'list', 'table', 'inet', 'scalelab_testbed').stdout
    assert len(journal_of(journal)['notrack']) == 1
    failed, r = call(restore.main, journal=journal)
    assert not failed and [x['kind'] for x in r['restored']] == ['notrack']
    assert in_ns(scratch_netns, 'nft', 'list', 'tables').stdout == ''


@pytest.mark.skipif(not shutil.which('iptables'), reason='needs iptables')
def test_iptables_rules_both_families_and_restore(scratch_netns, tmp_path):
    journal = str(tmp_path / 'journal.json')
    args = dict(ports=['5001-5016'], backend='iptables', netns=scratch_netns, journal=journal)
    failed, r = call(notrack.main, **args)
    assert not failed and r['changed'], r
    rules = in_ns(scratch_netns, 'iptables', '-t', 'raw', '-S').stdout
    assert rules.count('--comment scalelab-testbed -j CT --notrack') + \
        rules.count('--comment scalelab-testbed -j NOTRACK') == 4, rules
    assert in_ns(scratch_netns, 'ip6tables', '-t', 'raw', '-S').stdout.count('scalelab-testbed') == 4
    assert len(journal_of(journal)['notrack']) == 8
    assert not call(notrack.main, **args)[1]['changed']
    failed, r = call(restore.main, journal=journal)
    assert not failed and len(r['restored']) == 8
    assert 'scalelab-testbed' not in in_ns(scratch_netns, 'iptables', '-t', 'raw', '-S').stdout


def test_bad_ports_fail_before_any_change(scratch_netns, tmp_path):
    failed, r = call(notrack.main, ports=['70000'], netns=scratch_netns,
                     journal=str(tmp_path / 'j.json'))
    assert failed and r['msg'].startswith('ports:') and 'nothing was changed' in r['msg']
