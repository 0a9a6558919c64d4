# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The journal (one record, locked, validated) and the file helpers, on real files."""

from __future__ import annotations

import fcntl
import json
import multiprocessing
import os

import pytest

from ansible_collections.scalelab.testbed.plugins.module_utils import files
from ansible_collections.scalelab.testbed.plugins.module_utils.journal import (
    KIND_FILE, KIND_NETNS, KIND_NOTRACK, KIND_SYSCTL, KINDS, Journal, JournalError,
    scoped_key, split_scoped_key, validate)


def test_first_recorded_value_wins(tmp_path):
    path = str(tmp_path / 'state' / 'journal.json')
    with Journal(path).session(create=True) as j:
        assert j.record(KIND_SYSCTL, scoped_key(None, 'net.core.somaxconn'), '4096')
        assert not j.record(KIND_SYSCTL, scoped_key(None, 'net.core.somaxconn'), '65535')
    data = json.load(open(path))
    assert data['version'] == 2
    assert data['entries']['sysctl']['-|net.core.somaxconn']['previous'] == '4096'
    assert data['created_dirs'] == [str(tmp_path / 'state')]


def test_empty_journal_leaves_nothing_behind_not_even_its_directory(tmp_path):
    state = tmp_path / 'a' / 'b'
    path = str(state / 'journal.json')
    with Journal(path).session(create=True) as j:
        j.record(KIND_NETNS, 'tb-x', None)
    assert os.path.exists(path)
    with Journal(path).session() as j:
        j.forget(KIND_NETNS, 'tb-x')
    assert not os.path.exists(path) and not (tmp_path / 'a').exists()
    # a session that records nothing leaves no directory either
    with Journal(path).session(create=True):
        pass
    assert not (tmp_path / 'a').exists()


def test_a_directory_that_was_there_stays(tmp_path):
    path = str(tmp_path / 'journal.json')
    with Journal(path).session(create=True) as j:
        j.record(KIND_NETNS, 'tb-x', None)
    with Journal(path).session() as j:
        j.forget(KIND_NETNS, 'tb-x')
    assert tmp_path.is_dir() and not os.path.exists(path)


def _record_many(path, prefix, count, queue):
    for i in range(count):
        with Journal(path).session(create=True) as j:
            j.record(KIND_NETNS, '%s-%d' % (prefix, i), None)
    queue.put(prefix)


def test_two_writers_at_once_lose_nothing(tmp_path):
    """Each session reads, records and writes under the lock: no lost update."""
    path = str(tmp_path / 'journal.json')
    queue = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=_record_many, args=(path, p, 40, queue))
             for p in ('a', 'b')]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert sorted(queue.get(timeout=5) for _p in procs) == ['a', 'b']
    names = set(Journal(path).load().entries(KIND_NETNS))
    assert names == set('%s-%d' % (p, i) for p in 'ab' for i in range(40))


def test_the_lock_is_held_during_a_session(tmp_path):
    path = str(tmp_path / 'journal.json')
    with Journal(path).session(create=True):
        fd = os.open(str(tmp_path), os.O_RDONLY)
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(fd)


@pytest.mark.parametrize('data, words', [
    ([], 'not a journal object'),
    ({'version': 42}, 'unknown journal version 42'),
    ({'version': 2, 'entries': []}, '"entries" is list'),
    ({'version': 2, 'entries': {'bogus': {}}}, 'entries.bogus: unknown kind'),
    ({'version': 2, 'entries': {'sysctl': {'-|a': 'x'}}}, "entries.sysctl['-|a']: expected an object"),
    ({'version': 2, 'entries': {'sysctl': {'-|a': {'previous': ['1']}}}},
     "entries.sysctl['-|a'].previous: expected str, got list"),
    ({'version': 2, 'entries': {'sysctl': {'a': {'previous': '1'}}}}, 'must be "<netns or ->|<name>"'),
    ({'version': 2, 'entries': {'file': {'rel/path': {'previous': None}}}}, 'absolute path'),
    ({'version': 2, 'entries': {'notrack': {'k': {'previous': None}}}}, "entries.notrack['k'].backend"),
])
def test_a_journal_of_the_wrong_shape_names_the_broken_field(data, words):
    with pytest.raises(JournalError) as err:
        validate(data, '/j.json')
    assert words in str(err.value) and 'move it away' in str(err.value)


def test_a_version_1_journal_is_read(tmp_path):
    path = tmp_path / 'journal.json'
    path.write_text(json.dumps({'version': 1, 'entries': {
        'sysctl': {'-|fs.nr_open': {'previous': '1048576', 'time': 1}},
        'file': {'/etc/x.conf': {'previous': None, 'time': 1, 'created_dirs': []}}}}))
    j = Journal(str(path)).load()
    assert j.get(KIND_SYSCTL, '-|fs.nr_open')['previous'] == '1048576'
    assert j.data['version'] == 2


def test_invalid_json_is_refused_with_the_fix(tmp_path):
    path = tmp_path / 'journal.json'
    path.write_text('{not json')
    with pytest.raises(JournalError, match='not valid JSON'):
        Journal(str(path)).load()


def test_record_refuses_an_entry_of_the_wrong_shape(tmp_path):
    j = Journal(str(tmp_path / 'j.json'))
    with pytest.raises(ValueError):
        j.record(KIND_NOTRACK, 'k', None, backend='nft')          # no table, chain, rule
    with pytest.raises(ValueError):
        j.record('bogus', 'k', None)


def test_scoped_keys():
    assert scoped_key(None, 'net.core.somaxconn') == '-|net.core.somaxconn'
    assert scoped_key('tb-client', 'tb-cli') == 'tb-client|tb-cli'
    assert split_scoped_key('tb-client|net.ipv4.ip_local_port_range') == \
        ('tb-client', 'net.ipv4.ip_local_port_range')
    assert split_scoped_key('-|x') == (None, 'x')


def test_kinds_replay_units_first_and_paths_last():
    assert KINDS[0] == 'unit' and KINDS[-1] == 'path'
    assert KINDS.index('netns') > KINDS.index('link') > KINDS.index('aliases')


# -------------------------------------------------------------- files.py

def test_read_write_and_remove(tmp_path):
    target = tmp_path / 'x' / 'y' / 'f.conf'
    assert files.read_text(str(target)) is None
    made = files.missing_dirs(str(target))
    assert made == [str(tmp_path / 'x'), str(tmp_path / 'x' / 'y')]
    files.write_atomic(str(target), 'a = 1\n')
    assert files.read_text(str(target)) == 'a = 1\n'
    assert oct(os.stat(str(target)).st_mode & 0o777) == '0o644'
    files.remove_file(str(target), made)
    assert not (tmp_path / 'x').exists()


def test_a_symlinked_target_stays_a_symlink(tmp_path):
    real = tmp_path / 'real.conf'
    real.write_text('old\n')
    link = tmp_path / 'link.conf'
    link.symlink_to(real)
    files.write_atomic(str(link), 'new\n')
    assert link.is_symlink() and real.read_text() == 'new\n'


def test_exact_mode_sets_the_mode_and_leaves_a_replaced_links_target_alone(tmp_path):
    key = tmp_path / 'k.pem'
    key.write_text('old\n')
    os.chmod(str(key), 0o644)
    files.write_atomic(str(key), b'new\n', 0o600, exact_mode=True)
    assert key.read_bytes() == b'new\n' and os.stat(str(key)).st_mode & 0o777 == 0o600
    other = tmp_path / 'other'
    other.write_text('x')
    os.chmod(str(other), 0o644)
    link = tmp_path / 'link.pem'
    link.symlink_to(other)
    files.write_atomic(str(link), 'mine\n', 0o600, follow=False, exact_mode=True)
    assert not link.is_symlink() and link.read_text() == 'mine\n'
    assert os.stat(str(link)).st_mode & 0o777 == 0o600
    assert other.read_text() == 'x' and os.stat(str(other)).st_mode & 0o777 == 0o644
    assert sorted(os.listdir(str(tmp_path))) == ['k.pem', 'link.pem', 'other']


def test_remove_keeps_non_empty_dirs_and_trees_go_whole(tmp_path):
    d = tmp_path / 'd'
    d.mkdir()
    (d / 'other').write_text('x')
    (d / 'f').write_text('x')
    files.remove_file(str(d / 'f'), [str(d)])
    assert d.is_dir()
    files.remove_tree(str(d))
    assert not d.exists()
    files.remove_tree(str(d))               # absent is fine


def test_describe_content():
    assert files.describe_content(None) == 'absent'
    assert files.describe_content('é\n') == 'present (3 bytes)'


def test_kind_file_entries_keep_created_dirs(tmp_path):
    path = str(tmp_path / 'j.json')
    with Journal(path).session(create=True) as j:
        j.record(KIND_FILE, '/etc/a/b.conf', None, created_dirs=['/etc/a'])
    assert Journal(path).load().get(KIND_FILE, '/etc/a/b.conf')['created_dirs'] == ['/etc/a']
