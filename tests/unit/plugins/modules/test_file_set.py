# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""scalelab.testbed.file_set: a directory's files equal to a set of contents, in one run."""

from __future__ import annotations

import os
import stat

from ansible_collections.scalelab.testbed.plugins.modules import file_set

from modlib import call

ENGINE = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', '..',
                      'files', 'tcpscale')


def listing(d):
    return dict((p.name, (p.read_text(), stat.S_IMODE(p.stat().st_mode)))
                for p in sorted(d.iterdir()) if p.is_file())


def test_writes_what_differs_then_nothing(tmp_path):
    d = tmp_path / 'engine'
    d.mkdir()
    (d / 'same.py').write_text('x = 1\n')
    (d / 'same.py').chmod(0o644)
    (d / 'old.py').write_text('x = 0\n')
    files = {'same.py': 'x = 1\n', 'old.py': 'x = 2\n', '__init__.py': ''}
    failed, r = call(file_set.main, dest=str(d), files=files, _ansible_check_mode=True,
                     _ansible_diff=True)
    assert not failed and r['changed'] and r['written'] == ['__init__.py', 'old.py']
    assert (d / 'old.py').read_text() == 'x = 0\n' and not (d / '__init__.py').exists()
    assert 'old.py' in r['diff']['before'] and '__init__.py absent' in r['diff']['before']
    failed, r = call(file_set.main, dest=str(d), files=files)
    assert not failed and r['changed'] and r['unchanged'] == 1
    assert listing(d) == {'__init__.py': ('', 0o644), 'old.py': ('x = 2\n', 0o644),
                          'same.py': ('x = 1\n', 0o644)}
    failed, r = call(file_set.main, dest=str(d), files=files)
    assert not failed and not r['changed'] and r['unchanged'] == 3 and r['written'] == []


def test_a_wrong_mode_is_rewritten_and_prune_removes_the_rest(tmp_path):
    d = tmp_path / 'engine'
    d.mkdir()
    (d / 'a.py').write_text('a\n')
    (d / 'a.py').chmod(0o600)
    (d / 'stale.py').write_text('gone\n')
    (d / 'sub').mkdir()
    failed, r = call(file_set.main, dest=str(d), files={'a.py': 'a\n'}, mode='0644', prune=True)
    assert not failed and r['written'] == ['a.py'] and r['removed'] == ['stale.py']
    assert listing(d)['a.py'] == ('a\n', 0o644) and not (d / 'stale.py').exists()
    assert (d / 'sub').is_dir(), 'a directory is not pruned'


def test_the_engine_package_round_trips(tmp_path):
    names = sorted(n for n in os.listdir(ENGINE) if n.endswith('.py'))
    files = dict((n, open(os.path.join(ENGINE, n)).read()) for n in names)
    failed, r = call(file_set.main, dest=str(tmp_path), files=files)
    assert not failed and r['written'] == names
    for n in names:
        assert (tmp_path / n).read_text() == files[n]


def test_check_mode_takes_a_missing_directory_as_empty(tmp_path):
    failed, r = call(file_set.main, dest=str(tmp_path / 'later'), files={'a.py': 'a\n'},
                     prune=True, _ansible_check_mode=True)
    assert not failed and r['changed'] and r['written'] == ['a.py'] and r['removed'] == []
    assert not (tmp_path / 'later').exists()


def test_bad_input_names_the_field_and_changes_nothing(tmp_path):
    for args, text in (
            ({'dest': str(tmp_path / 'missing'), 'files': {'a.py': ''}}, 'dest: '),
            ({'dest': 'relative', 'files': {'a.py': ''}}, 'dest: '),
            ({'dest': str(tmp_path), 'files': {'../evil.py': ''}}, "files: '../evil.py' is not"),
            ({'dest': str(tmp_path), 'files': {'.hidden': ''}}, 'files: '),
            ({'dest': str(tmp_path), 'files': {'a;rm -rf': ''}}, 'files: '),
            ({'dest': str(tmp_path), 'files': {'a.py': ''}, 'mode': 'rw'}, 'mode: '),
    ):
        failed, r = call(file_set.main, **args)
        assert failed and text in r['msg'], (args, r['msg'])
    assert os.listdir(str(tmp_path)) == []


def test_a_symlink_in_the_set_is_replaced_and_its_target_left_alone(tmp_path):
    d = tmp_path / 'engine'
    d.mkdir()
    outside = tmp_path / 'outside.py'
    outside.write_text('keep\n')
    (d / 'link.py').symlink_to(outside)
    files = {'link.py': 'x = 1\n'}
    failed, r = call(file_set.main, dest=str(d), files=files)
    assert not failed and r['changed'] and r['written'] == ['link.py']
    assert not (d / 'link.py').is_symlink() and (d / 'link.py').read_text() == 'x = 1\n'
    assert outside.read_text() == 'keep\n'
    failed, r = call(file_set.main, dest=str(d), files=files)
    assert not failed and not r['changed']
