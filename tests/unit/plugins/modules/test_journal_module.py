# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""scalelab.testbed.journal: what a builtin task is about to change, recorded first."""

from __future__ import annotations

import os

from ansible_collections.scalelab.testbed.plugins.modules import journal as journal_module

from modlib import call, journal_of


def test_a_path_is_recorded_only_when_the_testbed_makes_it(root, tmp_path):
    journal = str(tmp_path / 'state' / 'journal.json')
    new = str(tmp_path / 'opt' / 'engine')
    failed, r = call(journal_module.main, path=new, journal=journal, _ansible_check_mode=True)
    assert not failed and r['recorded'] and not os.path.exists(journal)
    failed, r = call(journal_module.main, path=new, journal=journal)
    assert not failed and r['changed'] and journal_of(journal)['path'][new]['previous'] is None
    failed, r = call(journal_module.main, path=new, journal=journal)
    assert not failed and not r['changed']
    failed, r = call(journal_module.main, path=str(tmp_path), journal=journal)
    assert not failed and not r['recorded'], 'an existing directory is not the testbed\'s'


def test_a_file_and_a_unit_keep_their_previous_content(root, tmp_path):
    journal = str(tmp_path / 'journal.json')
    f = tmp_path / 'x.conf'
    f.write_text('before\n')
    failed, r = call(journal_module.main, kind='file', path=str(f), journal=journal)
    assert not failed and journal_of(journal)['file'][str(f)]['previous'] == 'before\n'
    unit = tmp_path / 'tbm.service'
    failed, r = call(journal_module.main, kind='unit', path=str(unit), unit='tbm.service',
                     journal=journal)
    entry = journal_of(journal)['unit']['tbm.service']
    assert not failed and entry['previous'] is None and entry['path'] == str(unit)
    assert entry['active'] is False
    failed, r = call(journal_module.main, kind='unit', path=str(unit), journal=journal)
    assert failed and 'unit' in r['msg']
