# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""scalelab.testbed.restore replays every kind of the one record, on real state."""

from __future__ import annotations

import json
import os
import subprocess
import uuid

from ansible_collections.scalelab.testbed.plugins.module_utils import netns as nsu
from ansible_collections.scalelab.testbed.plugins.module_utils.journal import (
    KIND_FILE, KIND_NETNS, KIND_PATH, KIND_SYSCTL, Journal, scoped_key)
from ansible_collections.scalelab.testbed.plugins.modules import restore

from modlib import call, ns_read


def write_journal(path, entries):
    with Journal(path).session(create=True) as j:
        for kind, key, previous, extra in entries:
            j.record(kind, key, previous, **extra)


def test_every_kind_back_and_the_journal_gone(scratch_netns, tmp_path):
    journal = str(tmp_path / 'state' / 'journal.json')
    created = 'tbm-%s' % uuid.uuid4().hex[:8]
    subprocess.run(['ip', 'netns', 'add', created], check=True)
    installed = tmp_path / 'opt'
    (installed / 'tcpscale').mkdir(parents=True)
    conf = tmp_path / 'limits.conf'
    conf.write_text('testbed content\n')
    before = ns_read(scratch_netns, 'net.core.somaxconn')
    subprocess.run(['ip', 'netns', 'exec', scratch_netns, 'sysctl', '-qw', 'net.core.somaxconn=777'],
                   check=True)
    write_journal(journal, [
        (KIND_NETNS, created, None, {}),
        (KIND_PATH, str(installed), None, {}),
        (KIND_FILE, str(conf), 'original\n', {}),
        (KIND_SYSCTL, scoped_key(scratch_netns, 'net.core.somaxconn'), before[0], {}),
    ])
    failed, r = call(restore.main, journal=journal, _ansible_check_mode=True)
    assert not failed and r['changed'] and nsu.netns_exists(created) and installed.exists()
    failed, r = call(restore.main, journal=journal, _ansible_diff=True)
    assert not failed, r
    assert [x['kind'] for x in r['restored']] == ['netns', 'file', 'sysctl', 'path']
    assert not nsu.netns_exists(created) and not installed.exists()
    assert conf.read_text() == 'original\n'
    assert ns_read(scratch_netns, 'net.core.somaxconn') == before
    assert r['journal_removed'] and not (tmp_path / 'state').exists()
    assert not call(restore.main, journal=journal)[1]['changed']


def test_a_malformed_entry_restores_nothing_and_names_the_field(root, tmp_path):
    journal = tmp_path / 'journal.json'
    conf = tmp_path / 'x.conf'
    conf.write_text('testbed\n')
    journal.write_text(json.dumps({'version': 2, 'entries': {
        'file': {str(conf): {'previous': 'original\n', 'time': 1}},
        'sysctl': {'-|net.core.somaxconn': {'previous': {'not': 'text'}, 'time': 1}}}}))
    failed, r = call(restore.main, journal=str(journal))
    assert failed and "entries.sysctl['-|net.core.somaxconn'].previous: expected str" in r['msg']
    assert conf.read_text() == 'testbed\n', 'nothing is restored before the whole journal is valid'


def test_the_records_of_0_1_0_are_folded_in(root, tmp_path):
    created = 'tbm-%s' % uuid.uuid4().hex[:8]
    subprocess.run(['ip', 'netns', 'add', created], check=True)
    (tmp_path / 'topology.json').write_text(json.dumps({'netns': [created], 'interfaces': []}))
    failed, r = call(restore.main, journal=str(tmp_path / 'journal.json'))
    assert not failed and not nsu.netns_exists(created)
    assert not (tmp_path / 'topology.json').exists()


def test_entries_of_a_namespace_that_is_gone_are_skipped(root, tmp_path):
    journal = str(tmp_path / 'journal.json')
    write_journal(journal, [(KIND_SYSCTL, scoped_key('tbm-gone', 'net.core.somaxconn'), '4096', {})])
    failed, r = call(restore.main, journal=journal)
    assert not failed and r['skipped_entries'][0]['reason'] == 'namespace gone'
    assert not os.path.exists(journal)


def test_without_pyroute2_the_rest_is_restored_and_the_journal_saved(root, tmp_path, monkeypatch):
    """A missing library (here: pyroute2 reported as not importable) never leaves a half restore."""
    journal = str(tmp_path / 'journal.json')
    conf = tmp_path / 'x.conf'
    conf.write_text('testbed\n')
    write_journal(journal, [(KIND_FILE, str(conf), 'original\n', {}),
                            (KIND_NETNS, 'tbm-needs-pyroute2', None, {})])
    monkeypatch.setattr(nsu, 'HAS_PYROUTE2', False)
    monkeypatch.setattr(nsu, 'PYROUTE2_IMPORT_ERROR', ImportError('No module named pyroute2'))
    failed, r = call(restore.main, journal=journal)
    assert failed and 'needs the Python library pyroute2' in r['msg']
    assert conf.read_text() == 'original\n'
    left = json.load(open(journal))['entries']
    assert list(left) == ['netns'], 'the file entry was restored and forgotten, the journal saved'
