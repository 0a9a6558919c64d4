# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The journal and the pure restore planning, in a scratch directory."""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.scalelab.testbed.plugins.module_utils import journal as jn


def test_first_recorded_value_wins(tmp_path):
    path = str(tmp_path / 'j.json')
    journal = jn.Journal(path)
    assert journal.record('sysctl', jn.sysctl_key(None, 'net.core.somaxconn'), '4096')
    assert not journal.record('sysctl', jn.sysctl_key(None, 'net.core.somaxconn'), '65535')
    journal.save()
    again = jn.Journal(path)
    assert again.entries('sysctl')['-|net.core.somaxconn']['previous'] == '4096'
    assert not again.record('sysctl', '-|net.core.somaxconn', '1')


def test_forget_and_delete_when_empty(tmp_path):
    path = str(tmp_path / 'sub' / 'j.json')
    journal = jn.Journal(path)
    journal.record('file', '/etc/x.conf', None, created_dirs=['/etc/x.d'])
    journal.record('hashsize', jn.__name__, '262144')
    journal.save()
    with open(path) as f:
        data = json.load(f)
    assert data['version'] == jn.VERSION
    assert data['entries']['file']['/etc/x.conf'] == {
        'previous': None, 'created_dirs': ['/etc/x.d'],
        'time': data['entries']['file']['/etc/x.conf']['time']}
    journal.forget('file', '/etc/x.conf')
    journal.forget('hashsize', jn.__name__)
    assert journal.is_empty()
    journal.save()
    assert not os.path.exists(path)


def test_unknown_version_refused(tmp_path):
    path = tmp_path / 'j.json'
    path.write_text('{"version": 99, "entries": {}}')
    with pytest.raises(ValueError):
        jn.Journal(str(path))


def test_sysctl_keys():
    assert jn.sysctl_key('tb-client', 'net.ipv4.ip_local_port_range') == 'tb-client|net.ipv4.ip_local_port_range'
    assert jn.split_sysctl_key('tb-client|net.ipv4.ip_local_port_range') == ('tb-client', 'net.ipv4.ip_local_port_range')
    assert jn.split_sysctl_key('-|fs.nr_open') == (None, 'fs.nr_open')
    assert jn.split_sysctl_key('fs.nr_open') == (None, 'fs.nr_open')


def test_plan_file_restore():
    entries = {'/a': {'previous': 'old\n'}, '/b': {'previous': None, 'created_dirs': ['/b.d']},
               '/c': {'previous': 'same'}, '/d': {'previous': None}}
    current = {'/a': 'new\n', '/b': 'ours', '/c': 'same', '/d': None}
    actions = dict((a['path'], a) for a in jn.plan_file_restore(entries, current))
    assert actions['/a']['action'] == 'write' and actions['/a']['content'] == 'old\n'
    assert actions['/b']['action'] == 'remove' and actions['/b']['created_dirs'] == ['/b.d']
    assert actions['/c']['action'] == 'none'
    assert actions['/d']['action'] == 'none'


def test_read_text_and_remove_file(tmp_path):
    made = tmp_path / 'made'
    inner = made / 'inner'
    target = str(inner / 'f.conf')
    assert jn.missing_dirs(target) == [str(made), str(inner)]
    os.makedirs(str(inner))
    assert jn.read_text(target) is None
    with open(target, 'w') as f:
        f.write('x')
    assert jn.read_text(target) == 'x'
    jn.remove_file(target, [str(made), str(inner)])
    assert not made.exists()


def test_remove_file_keeps_non_empty_dirs(tmp_path):
    keep = tmp_path / 'keep'
    keep.mkdir()
    (keep / 'other').write_text('user file')
    target = keep / 'f.conf'
    target.write_text('ours')
    jn.remove_file(str(target), [str(keep)])
    assert keep.exists() and not target.exists()


def test_describe_content():
    assert jn.describe_content(None) == 'absent'
    assert jn.describe_content('ab\n') == 'present (3 bytes)'
