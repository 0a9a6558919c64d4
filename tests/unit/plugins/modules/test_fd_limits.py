# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""scalelab.testbed.fd_limits, run() on real files under /etc/security/limits.d."""

from __future__ import annotations

import os
import uuid

import pytest

from ansible_collections.scalelab.testbed.plugins.modules import fd_limits

from modlib import call, journal_of


@pytest.fixture
def limits_file(root):
    path = '/etc/security/limits.d/tbm-%s.conf' % uuid.uuid4().hex[:8]
    try:
        yield path
    finally:
        if os.path.exists(path):
            os.unlink(path)


def live_nr_open():
    with open('/proc/sys/fs/nr_open') as f:
        return int(f.read())


def test_write_record_and_reapply(limits_file, tmp_path):
    journal = str(tmp_path / 'journal.json')
    failed, r = call(fd_limits.main, domain='root', nofile_soft=4096, nofile_hard=8192,
                     path=limits_file, systemd='never', journal=journal)
    assert not failed and r['changed'] and r['files'] == [{'path': limits_file, 'action': 'created'}]
    assert 'root            soft  nofile  4096' in open(limits_file).read()
    assert journal_of(journal)['file'][limits_file]['previous'] is None
    failed, r = call(fd_limits.main, domain='root', nofile_soft=4096, nofile_hard=8192,
                     path=limits_file, systemd='never', journal=journal)
    assert not failed and not r['changed']


def test_a_nofile_above_the_live_nr_open_is_never_written(limits_file, tmp_path):
    """nr_open names what the play raises fs.nr_open to: trusted in check mode only."""
    above = live_nr_open() + 1
    args = dict(domain='root', nofile_soft=above, nofile_hard=above, nr_open=above * 2,
                path=limits_file, systemd='never', journal=str(tmp_path / 'j.json'))
    failed, r = call(fd_limits.main, _ansible_check_mode=True, **args)
    assert not failed and r['changed'], r
    failed, r = call(fd_limits.main, **args)
    assert failed and 'above fs.nr_open' in r['msg'] and 'nothing was changed' in r['msg']
    assert not os.path.exists(limits_file) and not os.path.exists(str(tmp_path / 'j.json'))


def test_drop_ins_record_what_systemd_needs_afterwards(limits_file, tmp_path):
    journal = str(tmp_path / 'journal.json')
    name = os.path.basename(limits_file)
    dropin = '/etc/systemd/system.conf.d/%s' % name
    unit_dropin = '/etc/systemd/system/tbm-unit.service.d/%s' % name
    try:
        failed, r = call(fd_limits.main, domain='root', nofile_soft=4096, nofile_hard=4096,
                         path=limits_file, systemd='always', units=['tbm-unit'], journal=journal)
        assert not failed, r
        entries = journal_of(journal)['file']
        assert entries[dropin]['reload'] == 'daemon-reexec'
        assert entries[unit_dropin]['reload'] == 'daemon-reload'
        assert 'DefaultLimitNOFILE=4096' in open(dropin).read()
        assert r['systemd_actions'][0] == 'systemctl daemon-reexec'
    finally:
        for path in (dropin, unit_dropin):
            if os.path.exists(path):
                os.unlink(path)
        for d in ('/etc/systemd/system/tbm-unit.service.d', '/etc/systemd/system.conf.d'):
            try:
                os.rmdir(d)
            except OSError:
                pass
