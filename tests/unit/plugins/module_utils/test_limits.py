# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure planning of scalelab.testbed.fd_limits: no root, no files."""

from __future__ import annotations

import pytest

from ansible_collections.scalelab.testbed.plugins.module_utils import common
from ansible_collections.scalelab.testbed.plugins.module_utils import limits as lm

TbError = common.TestbedError

ANY_USER = {'user': None, 'uid': None, 'gid': None, 'groups': []}
ALICE = {'user': 'alice', 'uid': 1000, 'gid': 1000, 'groups': ['alice', 'loadgen']}


# ------------------------------------------------------------ validation

@pytest.mark.parametrize('domain', ['*', 'alice', '@loadgen', '1000:2000', ':1000', '1000:', '@100:200', 'root'])
def test_validate_domain_ok(domain):
    assert lm.validate_domain(domain) == domain


@pytest.mark.parametrize('domain, words', [
    ('', 'empty'), ('%', 'maxlogins'), ('%admins', 'maxlogins'), ('alice;reboot', 'not allowed'),
    ('a b', 'not allowed'), ('$(id)', 'not allowed'), ('alice\n', 'not allowed'), ('../x', 'not allowed'),
])
def test_validate_domain_rejects(domain, words):
    with pytest.raises(TbError) as err:
        lm.validate_domain(domain)
    assert words in str(err.value) and err.value.field == 'domain'


def test_validate_value():
    assert lm.validate_value('nofile', 'soft', 1048576) == 1048576
    assert lm.validate_value('nofile', 'hard', '1048576') == 1048576
    assert lm.validate_value('nproc', 'hard', 'unlimited') == lm.UNLIMITED
    assert lm.validate_value('nproc', 'hard', 'infinity') == lm.UNLIMITED
    assert lm.validate_value('nproc', 'hard', None) is None


@pytest.mark.parametrize('item, value, words', [
    ('nofile', 'unlimited', 'not allowed for nofile'),
    ('nofile', -1, 'not allowed for nofile'),
    ('nofile', 'infinity', 'not allowed for nofile'),
    ('nofile', 0, 'too small'),
    ('nproc', 'lots', 'whole number'),
    ('nofile', True, 'boolean'),
    ('nofile', '1e6', 'whole number'),
])
def test_validate_value_rejects(item, value, words):
    with pytest.raises(TbError) as err:
        lm.validate_value(item, 'hard', value)
    assert words in str(err.value)
    assert err.value.field == '%s_hard' % item


def test_unlimited_nofile_message_points_at_nr_open():
    with pytest.raises(TbError) as err:
        lm.validate_value('nofile', 'soft', 'unlimited')
    assert 'fs.nr_open' in str(err.value) and 'scalelab.testbed.sysctls' in str(err.value)


def test_validate_limits():
    lm.validate_limits({'nofile': {'soft': 1000, 'hard': 2000}, 'nproc': {'soft': 10, 'hard': lm.UNLIMITED}},
                       1048576)
    with pytest.raises(TbError) as err:
        lm.validate_limits({'nofile': {'soft': 3000, 'hard': 2000}}, 1048576)
    assert err.value.field == 'nofile_soft' and 'above the hard limit' in str(err.value)
    with pytest.raises(TbError) as err:
        lm.validate_limits({'nproc': {'soft': lm.UNLIMITED, 'hard': 10}}, 1048576)
    assert err.value.field == 'nproc_soft'


def test_nofile_above_nr_open_says_raise_it_first():
    with pytest.raises(TbError) as err:
        lm.validate_limits({'nofile': {'soft': 2000000, 'hard': 2000000}}, 1048576)
    text = str(err.value)
    assert err.value.field == 'nofile_hard'
    assert 'above fs.nr_open (1048576)' in text
    assert 'raise fs.nr_open first' in text and 'scalelab.testbed.sysctls' in text
    # the value the same play sets
    lm.validate_limits({'nofile': {'soft': 2000000, 'hard': 2000000}}, 2097152, 'nr_open')


@pytest.mark.parametrize('path', ['/etc/security/limits.conf', '/etc/security/limits.d/x',
                                  '/etc/security/limits.d/../x.conf', '/tmp/x.conf', 'x.conf',
                                  '/etc/security/limits.d/a b.conf'])
def test_validate_limits_path_rejects(path):
    with pytest.raises(TbError):
        lm.validate_limits_path(path)


def test_validate_unit():
    assert lm.validate_unit('nginx') == 'nginx.service'
    assert lm.validate_unit('getty@tty1') == 'getty@tty1.service'
    assert lm.validate_unit('nginx.service') == 'nginx.service'
    assert lm.validate_unit('docker.socket') == 'docker.socket'
    for bad in ('backup.timer', 'a;b', 'a b', '../x.service', 'x/y.service', ''):
        with pytest.raises(TbError):
            lm.validate_unit(bad)


# ------------------------------------------------------------ limits.d

NOFILE = {'nofile': {'soft': 1048576, 'hard': 1048576}}


def test_plan_limits_file_new():
    text = lm.plan_limits_file(None, '*', {'nofile': {'soft': 1000, 'hard': 2000},
                                           'nproc': {'soft': lm.UNLIMITED, 'hard': lm.UNLIMITED}})
    assert text.startswith(lm.LIMITS_HEADER)
    entries = [lm.parse_limits_line(l) for l in text.splitlines() if lm.parse_limits_line(l)]
    assert entries == [('*', 'soft', 'nofile', '1000'), ('*', 'hard', 'nofile', '2000'),
                       ('*', 'soft', 'nproc', 'unlimited'), ('*', 'hard', 'nproc', 'unlimited')]
    assert lm.plan_limits_file(text, '*', {'nofile': {'soft': 1000, 'hard': 2000},
                                           'nproc': {'soft': lm.UNLIMITED, 'hard': lm.UNLIMITED}}) == text


def test_plan_limits_file_in_place():
    before = ('# site limits\n'
              'alice  -  nofile  4096   # alice\n'
              '*      soft nofile 1024\n'
              '@ops   hard nproc  100\n'
              '*      hard nofile 4096\n'
              '*      soft core   0\n')
    after = lm.plan_limits_file(before, '*', NOFILE)
    lines = after.splitlines()
    assert lines[0] == '# site limits'
    assert lines[1] == 'alice  -  nofile  4096   # alice'
    assert lm.parse_limits_line(lines[2]) == ('*', 'soft', 'nofile', '1048576')
    assert lm.parse_limits_line(lines[3]) == ('*', 'hard', 'nofile', '1048576')
    assert lines[4] == '@ops   hard nproc  100'
    assert lines[5] == '*      soft core   0'
    assert len(lines) == 6
    assert lm.plan_limits_file(after, '*', NOFILE) == after


def test_plan_limits_file_equal_dash_line_untouched():
    before = '*  -  nofile  1048576\n'
    assert lm.plan_limits_file(before, '*', NOFILE) == before


def test_plan_limits_file_absent():
    ours = lm.plan_limits_file(None, '*', NOFILE)
    assert lm.plan_limits_file(ours, '*', {}, 'absent') is None
    assert lm.plan_limits_file(None, '*', {}, 'absent') is None
    mixed = '# keep me\n*  soft nofile 10\n*  hard nofile 20\nbob hard nofile 30\n'
    assert lm.plan_limits_file(mixed, '*', {}, 'absent') == '# keep me\nbob hard nofile 30\n'
    both = lm.plan_limits_file(None, '*', dict(NOFILE, nproc={'soft': 5, 'hard': 6}))
    only_nproc = lm.plan_limits_file(both, '*', NOFILE, 'absent')
    assert 'nofile' not in only_nproc.replace(lm.LIMITS_HEADER, '') and 'nproc' in only_nproc


# -------------------------------------------------------------- systemd

def test_render_dropins():
    desired = {'nofile': {'soft': 1024, 'hard': 1048576}, 'nproc': {'soft': lm.UNLIMITED, 'hard': lm.UNLIMITED}}
    text = lm.render_system_dropin(desired)
    assert '[Manager]\nDefaultLimitNOFILE=1024:1048576\nDefaultLimitNPROC=infinity\n' in text
    unit = lm.render_unit_dropin('x.socket', {'nofile': {'soft': 5, 'hard': 5}})
    assert '[Socket]\nLimitNOFILE=5\n' in unit
    assert lm.unit_dropin_path('x.service') == '/etc/systemd/system/x.service.d/90-scalelab-testbed.conf'
    assert lm.system_dropin_path('tba-x.conf') == '/etc/systemd/system.conf.d/tba-x.conf'


def test_service_limits_order_and_reset():
    files = [('/etc/systemd/system.conf', '[Manager]\n#DefaultLimitNOFILE=1024:524288\n'),
             ('/usr/lib/systemd/system.conf.d/10-a.conf', '[Manager]\nDefaultLimitNOFILE=4096\n'),
             ('/etc/systemd/system.conf.d/90-scalelab-testbed.conf',
              '[Manager]\nDefaultLimitNOFILE=1024:1048576\nDefaultLimitNPROC=infinity\n')]
    got = lm.effective_service_limits(files)
    assert got['nofile'] == {'soft': 1024, 'hard': 1048576, 'from': files[2][0]}
    assert got['nproc'] == {'soft': lm.UNLIMITED, 'hard': lm.UNLIMITED, 'from': files[2][0]}
    reset = lm.effective_service_limits(files + [('/etc/systemd/system.conf.d/99-z.conf', 'DefaultLimitNOFILE=\n')])
    assert reset['nofile']['soft'] is None


def test_conf_dropin_order_masks_by_name():
    order = lm.conf_dropin_order([('/etc/d', ['50-b.conf', 'x.txt']), ('/usr/lib/d', ['50-b.conf', '10-a.conf'])])
    assert order == ['/usr/lib/d/10-a.conf', '/etc/d/50-b.conf']


# -------------------------------------------------------- login limits

def test_login_limits_later_file_overrides_same_priority():
    files = [('/etc/security/limits.conf', '*  soft nofile 1024\n*  hard nofile 4096\n'),
             ('/etc/security/limits.d/90-x.conf', '*  soft nofile 65536\n*  hard nofile 65536\n')]
    got = lm.effective_login_limits(files, ANY_USER)
    assert got['nofile']['soft'] == 65536 and got['nofile']['hard'] == 65536
    assert got['nofile']['hard_from'] == '/etc/security/limits.d/90-x.conf:2'
    assert got['nproc'] == {'soft': None, 'hard': None, 'soft_from': None, 'hard_from': None}


def test_login_limits_user_beats_group_beats_wildcard():
    files = [('/etc/security/limits.conf', 'alice - nofile 2000\n@loadgen - nofile 3000\n'),
             ('/etc/security/limits.d/90-x.conf', '* - nofile 9000\n@loadgen hard nofile 4000\n')]
    alice = lm.effective_login_limits(files, ALICE)
    assert (alice['nofile']['soft'], alice['nofile']['hard']) == (2000, 2000)
    member = lm.effective_login_limits(files, dict(ALICE, user='bob'))
    assert (member['nofile']['soft'], member['nofile']['hard']) == (3000, 4000)
    anyone = lm.effective_login_limits(files, ANY_USER)
    assert anyone['nofile']['hard'] == 9000


def test_login_limits_ranges_unlimited_and_clamp():
    files = [('/etc/security/limits.conf', '1000:2000 hard nproc 50\n@900: soft nproc 10\n'
                                           '* soft nofile unlimited\n* hard nofile 4096\n'
                                           'bogus line\n* soft nproc lots\n')]
    got = lm.effective_login_limits(files, ALICE, nr_open=1048576)
    assert got['nproc']['hard'] == 50 and got['nproc']['soft'] == 10
    # an unlimited nofile becomes fs.nr_open, then the soft limit is lowered to the hard one
    assert got['nofile']['soft'] == 4096 and got['nofile']['hard'] == 4096


# ------------------------------------------------------------ own limits

def test_cap_effective():
    status = 'Name:\tpython\nCapInh:\t0000000000000000\nCapEff:\t000001fffeffffff\n'
    caps = lm.cap_effective(status)
    assert not caps & (1 << lm.CAP_SYS_RESOURCE)
    assert lm.cap_effective('CapEff:\t000001ffffffffff\n') & (1 << lm.CAP_SYS_RESOURCE)


def test_can_raise():
    stuck = lm.can_raise(20000, 20000, False, 1048576, 1048576)
    assert stuck['can_raise'] is False and 'no CAP_SYS_RESOURCE' in stuck['reason']
    assert '20000' in stuck['reason']
    assert lm.can_raise(1024, 1048576, False, 1048576, 1048576)['can_raise'] is True
    assert lm.can_raise(20000, 20000, True, 1048576, 1048576)['can_raise'] is True
    above = lm.can_raise(20000, 20000, True, 4000000, 1048576)
    assert above['can_raise'] is False and 'fs.nr_open' in above['reason']
    assert lm.can_raise(20000, 20000, False, None, 1048576)['can_raise'] is False
