# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Record, apply, roll back: the transaction helper, on real files."""

from __future__ import annotations

import errno
import os

import pytest

from ansible_collections.scalelab.testbed.plugins.module_utils import common
from ansible_collections.scalelab.testbed.plugins.module_utils.files import (
    read_text, remove_file, write_atomic)
from ansible_collections.scalelab.testbed.plugins.module_utils.journal import (
    KIND_FILE, Journal)
from ansible_collections.scalelab.testbed.plugins.module_utils.transaction import Transaction


def write_change(tx, path, new):
    old = read_text(path)
    tx.change(KIND_FILE, path, old, apply=lambda: write_atomic(path, new),
              undo=lambda: remove_file(path) if old is None else write_atomic(path, old),
              what='write %s' % os.path.basename(path), field='files')


def test_each_change_is_recorded_before_it_is_made(tmp_path):
    journal = str(tmp_path / 'state' / 'journal.json')
    seen = []

    def apply():
        seen.append(Journal(journal).load().get(KIND_FILE, '/x') is not None)

    with Transaction(False, journal) as tx:
        tx.change(KIND_FILE, '/x', None, apply=apply)
    assert seen == [True]
    assert tx.changed and tx.planned == ['file /x']


def test_a_failure_undoes_what_was_done_and_forgets_it(tmp_path):
    journal = str(tmp_path / 'state' / 'journal.json')
    a, b = str(tmp_path / 'a.conf'), str(tmp_path / 'b.conf')
    with open(b, 'w') as f:
        f.write('b before\n')
    tx = Transaction(False, journal)
    with pytest.raises(common.TestbedError) as err:
        with tx:
            write_change(tx, a, 'a new\n')
            write_change(tx, b, 'b new\n')
            tx.change(KIND_FILE, '/proc/none', None, apply=lambda: open('/proc/none/x', 'w'),
                      what='write the third', field='third')
    text = str(err.value)
    assert err.value.field == 'third' and err.value.rolled_back
    assert 'write the third failed: ENOENT' in text
    assert 'undid 2 earlier change(s): write b.conf; write a.conf' in text
    assert tx.failed == {'what': 'write the third', 'kind': KIND_FILE, 'key': '/proc/none'}
    # the host and the journal are as they were: no file, no journal, no state directory
    assert not os.path.exists(a) and read_text(b) == 'b before\n'
    assert not (tmp_path / 'state').exists()


def test_entries_recorded_earlier_survive_a_failed_task(tmp_path):
    journal = str(tmp_path / 'journal.json')
    a = str(tmp_path / 'a.conf')
    with Transaction(False, journal) as tx:
        write_change(tx, a, 'first\n')
    with pytest.raises(common.TestbedError):
        with Transaction(False, journal) as tx:
            write_change(tx, a, 'second\n')
            raise OSError(errno.EIO, 'boom')
    # the undo put back the first run's content; the entry from the first run stays
    assert read_text(a) == 'first\n'
    assert Journal(journal).load().get(KIND_FILE, a)['previous'] is None


def test_check_mode_records_and_applies_nothing(tmp_path):
    journal = str(tmp_path / 'state' / 'journal.json')
    done = []
    with Transaction(True, journal) as tx:
        tx.change(KIND_FILE, '/x', None, apply=lambda: done.append(1), what='write x')
    assert tx.changed and tx.planned == ['write x'] and done == []
    assert not (tmp_path / 'state').exists()


def test_an_error_before_any_change_passes_through_as_it_was(tmp_path):
    with pytest.raises(common.TestbedError) as err:
        with Transaction(False, str(tmp_path / 'j.json')):
            raise common.TestbedError('interface', 'no such interface', 'fix the name')
    assert str(err.value) == 'interface: no such interface (fix: fix the name)'
    assert not err.value.rolled_back


def test_an_undo_that_fails_is_named(tmp_path):
    journal = str(tmp_path / 'journal.json')

    def bad_undo():
        raise OSError(errno.EPERM, 'Operation not permitted')

    with pytest.raises(common.TestbedError) as err:
        with Transaction(False, journal) as tx:
            tx.change(KIND_FILE, '/a', None, apply=lambda: None, undo=bad_undo, what='make a')
            tx.change(KIND_FILE, '/b', None, apply=lambda: 1 / 0, what='make b')
    assert 'UNDO INCOMPLETE: make a: EPERM' in str(err.value)
    # an entry whose undo failed stays in the journal, so teardown still knows it
    assert Journal(journal).load().get(KIND_FILE, '/a') is not None


def test_forget_drops_an_entry_the_task_itself_undid(tmp_path):
    journal = str(tmp_path / 'journal.json')
    with Transaction(False, journal) as tx:
        tx.change(KIND_FILE, '/a', None, apply=lambda: None)
    with Transaction(False, journal) as tx:
        tx.forget(KIND_FILE, '/a')
    assert not os.path.exists(journal)
