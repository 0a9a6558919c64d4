# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure planning of scalelab.testbed.sysctls: no root, no kernel."""

from __future__ import annotations


import pytest

from ansible_collections.scalelab.testbed.plugins.module_utils import sysctl as sc
from ansible_collections.scalelab.testbed.plugins.module_utils import common

TbError = common.TestbedError


def state(value, writable=True, ro_mount=False, mode=0o644, exists=True, readable=True):
    """A probe result as probe_key returns it."""
    return {'path': '/proc/sys/x', 'exists': exists, 'readable': readable and exists,
            'writable': writable, 'ro_mount': ro_mount, 'mode': mode,
            'value': value.split() if value is not None and readable else None}


# ------------------------------------------------------------------ keys

@pytest.mark.parametrize('name, key, parts', [
    ('net.ipv4.ip_local_port_range', 'net.ipv4.ip_local_port_range', ['net', 'ipv4', 'ip_local_port_range']),
    ('net/ipv4/ip_local_port_range', 'net.ipv4.ip_local_port_range', ['net', 'ipv4', 'ip_local_port_range']),
    ('net.ipv4.conf.eth0/100.rp_filter', 'net.ipv4.conf.eth0/100.rp_filter',
     ['net', 'ipv4', 'conf', 'eth0.100', 'rp_filter']),
    ('net/ipv4/conf/eth0.100/rp_filter', 'net.ipv4.conf.eth0/100.rp_filter',
     ['net', 'ipv4', 'conf', 'eth0.100', 'rp_filter']),
    ('fs.file-max', 'fs.file-max', ['fs', 'file-max']),
])
def test_normalize_key_forms(name, key, parts):
    assert sc.normalize_key(name) == (key, parts)


@pytest.mark.parametrize('name', [
    'net.core.somaxconn;reboot', 'net.core.somaxconn reboot', '$(reboot)', 'net..somaxconn',
    '../../etc/passwd', '/proc/sys/net/core/somaxconn', 'net.core.`id`', 'net.core.a|b', '',
    'net.core.somaxconn\n', 'net/core/../../x',
])
def test_normalize_key_rejects(name):
    with pytest.raises(TbError) as err:
        sc.normalize_key(name)
    assert err.value.field == 'settings'


def test_key_path():
    assert sc.key_path('net.ipv4.conf.eth0/100.rp_filter') == '/proc/sys/net/ipv4/conf/eth0.100/rp_filter'
    assert sc.key_path(sc.HASHSIZE_KEY) == sc.HASHSIZE_PATH


# ---------------------------------------------------------------- values

@pytest.mark.parametrize('value, tokens', [
    (65535, ['65535']),
    ('1024 65535', ['1024', '65535']),
    ('1024\t65535', ['1024', '65535']),
    ([1024, '65535'], ['1024', '65535']),
    ('cubic', ['cubic']),
    (-1, ['-1']),
])
def test_normalize_value(value, tokens):
    assert sc.normalize_value('k', value) == tokens


@pytest.mark.parametrize('value, words', [
    (True, 'boolean'), (1.5, 'integers only'), ('', 'empty'), ([], 'empty'),
    (['1 2'], 'one token'), ({'a': 1}, 'type dict'), ('a\x00b', 'control'), ([None], 'not an integer'),
])
def test_normalize_value_rejects(value, words):
    with pytest.raises(TbError) as err:
        sc.normalize_value('net.core.somaxconn', value)
    assert words in str(err.value)
    assert err.value.field == 'settings.net.core.somaxconn'


def test_values_equal_token_wise():
    assert sc.values_equal(['1024', '65535'], sc.tokens_of('1024\t65535\n'))
    assert not sc.values_equal(['1024', '65535'], ['1024', '65534'])
    assert not sc.values_equal(['1024'], ['1024', '65535'])
    assert sc.values_equal(['cubic'], ['cubic'])
    assert not sc.values_equal(None, ['1'])


@pytest.mark.parametrize('key, desired, current, words', [
    ('net.ipv4.ip_local_port_range', ['1', '2', '3'], ['32768', '60999'], 'takes 2 values'),
    ('net.core.somaxconn', ['010'], ['4096'], 'octal'),
    ('net.core.somaxconn', ['0x10'], ['4096'], 'hexadecimal'),
    ('net.core.somaxconn', ['many'], ['4096'], 'not an integer'),
    ('fs.nr_open', ['63'], ['1048576'], 'accepts 64 to 2147483584'),
    ('net.core.somaxconn', ['-1'], ['4096'], 'out of range'),
    (sc.HASHSIZE_KEY, ['0'], ['262144'], 'out of range'),
])
def test_validate_value_errors(key, desired, current, words):
    message = sc.validate_value(key, desired, current)
    assert message and words in message and key in message


def test_validate_value_accepts():
    assert sc.validate_value('net.ipv4.ip_local_port_range', ['1024', '65535'], ['32768', '60999']) is None
    # string keys take free text, whatever the count
    assert sc.validate_value('kernel.core_pattern', ['|/usr/bin/x', '%p'], ['core']) is None
    assert sc.validate_value('net.ipv4.tcp_congestion_control', ['bbr'], ['cubic']) is None
    # a string key that happens to look like a number stays a string key
    assert sc.validate_value('kernel.hostname', ['web1'], ['12345']) is None
    # the kernel decides what it does not document (rollback covers a refusal)
    assert sc.validate_value('net.ipv4.tcp_syn_retries', ['200'], ['6']) is None


def test_effective_tokens_rounds_hash_sizes():
    assert sc.effective_tokens(sc.HASHSIZE_KEY, ['262145']) == ['262656']
    assert sc.effective_tokens(sc.HASHSIZE_KEY, ['262144']) == ['262144']
    assert sc.effective_tokens('net.netfilter.nf_conntrack_buckets', ['1000'], page_size=65536) == ['8192']
    assert sc.effective_tokens('net.core.somaxconn', ['1000']) == ['1000']


# ----------------------------------------------------------------- order

def test_order_first_keys_then_alphabetical():
    keys = ['net.netfilter.nf_conntrack_max', 'net.core.somaxconn', sc.HASHSIZE_KEY, 'fs.file-max',
            'fs.nr_open', 'net.ipv4.tcp_fin_timeout', 'kernel.pid_max']
    assert sc.order_keys(keys) == ['fs.nr_open', 'fs.file-max', sc.HASHSIZE_KEY,
                                   'net.netfilter.nf_conntrack_max', 'kernel.pid_max',
                                   'net.core.somaxconn', 'net.ipv4.tcp_fin_timeout']
    assert sc.order_keys(list(reversed(keys))) == sc.order_keys(keys)


def test_order_restore_reverses_first_keys():
    keys = ['fs.nr_open', 'fs.file-max', sc.HASHSIZE_KEY, 'net.netfilter.nf_conntrack_max', 'net.core.somaxconn']
    assert sc.order_keys(keys, restore=True) == ['net.core.somaxconn', 'net.netfilter.nf_conntrack_max',
                                                 sc.HASHSIZE_KEY, 'fs.file-max', 'fs.nr_open']


def test_order_port_range_and_unprivileged_start():
    keys = [sc.PORT_RANGE_KEY, sc.UNPRIV_START_KEY]
    current = {sc.UNPRIV_START_KEY: ['1024'], sc.PORT_RANGE_KEY: ['32768', '60999']}
    # lowering both: the start must go first or the kernel refuses the range
    down = {sc.PORT_RANGE_KEY: ['500', '60999'], sc.UNPRIV_START_KEY: ['500']}
    assert sc.order_keys(keys, down, current) == [sc.UNPRIV_START_KEY, sc.PORT_RANGE_KEY]
    # raising both: the range must go first
    up = {sc.PORT_RANGE_KEY: ['40000', '60999'], sc.UNPRIV_START_KEY: ['40000']}
    assert sc.order_keys(keys, up, current) == [sc.PORT_RANGE_KEY, sc.UNPRIV_START_KEY]


def test_check_related():
    cur = {sc.UNPRIV_START_KEY: ['1024'], sc.PORT_RANGE_KEY: ['32768', '60999']}
    assert sc.check_related({sc.PORT_RANGE_KEY: ['1024', '65535']}, cur) == []
    assert 'above the high end' in sc.check_related({sc.PORT_RANGE_KEY: ['60000', '50000']}, cur)[0]
    assert 'below net.ipv4.ip_unprivileged_port_start' in sc.check_related(
        {sc.PORT_RANGE_KEY: ['500', '600']}, cur)[0]
    assert sc.check_related({sc.PORT_RANGE_KEY: ['500', '600'], sc.UNPRIV_START_KEY: ['500']}, cur) == []
    assert 'raise the range too' in sc.check_related({sc.UNPRIV_START_KEY: ['40000']}, cur)[0]
    assert sc.check_related({'net.ipv4.ping_group_range': ['10', '1']}, {})


# -------------------------------------------------------------- classify

def test_classify_container_global_keys():
    for key in ('fs.file-max', 'kernel.pid_max', 'vm.max_map_count', 'net.netfilter.nf_conntrack_max'):
        assert sc.classify(key, state('1'), in_container=True, init_netns=False) == \
            ('unavailable', sc.GLOBAL_KEY_REASON)
    # namespaced outside net: the container has its own copy
    assert sc.classify('kernel.shmmax', state('1'), in_container=True, init_netns=False) is None
    assert sc.classify('fs.mqueue.msg_max', state('1'), in_container=True, init_netns=False) is None
    # a per-netns key in the container's own netns is fine ...
    assert sc.classify('net.core.somaxconn', state('4096'), in_container=True, init_netns=False) is None
    # ... but not when the container shares the host's network namespace
    assert sc.classify('net.core.somaxconn', state('4096'), in_container=True, init_netns=True)[1] == \
        sc.GLOBAL_KEY_REASON
    assert sc.classify(sc.HASHSIZE_KEY, state('262144'), in_container=True)[1] == sc.GLOBAL_KEY_REASON


def test_classify_netns():
    verdict = sc.classify('fs.file-max', state('1'), netns='tb-x')
    assert verdict[0] == 'error' and 'fs.file-max is not a network key' in verdict[1]
    verdict = sc.classify('net.core.netdev_max_backlog', state(None, exists=False), netns='tb-x',
                          init_netns=False, host_exists=True)
    assert verdict[0] == 'unavailable' and 'not per network namespace' in verdict[1]
    verdict = sc.classify('net.netfilter.nf_conntrack_max', state('262144', writable=False, mode=0o444),
                          netns='tb-x', init_netns=False)
    assert verdict[0] == 'unavailable' and 'global key' in verdict[1]
    verdict = sc.classify(sc.HASHSIZE_KEY, state('262144'), netns='tb-x')
    assert verdict[0] == 'error' and 'without netns' in verdict[1]


def test_classify_host():
    assert sc.classify('net.core.somaxconn', state('4096')) is None
    verdict = sc.classify('net.ipv4.tcp_nope', state(None, exists=False))
    assert verdict[0] == 'error' and 'no such key' in verdict[1]
    verdict = sc.classify('net.netfilter.nf_conntrack_max', state(None, exists=False))
    assert verdict[0] == 'error' and 'nf_conntrack' in verdict[1]
    verdict = sc.classify('vm.drop_caches', state('0', readable=False, mode=0o200))
    assert verdict[0] == 'error' and 'write-only' in verdict[1]
    verdict = sc.classify('fs.inode-nr', state('1 0', writable=False, mode=0o444))
    assert verdict == ('unavailable', 'read-only key (mode 0444): the kernel does not let anyone change it here')
    verdict = sc.classify('net.core.somaxconn', state('4096', ro_mount=True))
    assert verdict[0] == 'unavailable' and 'read-only mount' in verdict[1]
    verdict = sc.classify(sc.HASHSIZE_KEY, state(None, exists=False))
    assert verdict[0] == 'error' and 'not loaded' in verdict[1]


# ------------------------------------------------------------------ plan

def test_plan_changes_unchanged_unavailable():
    desired = {'net.core.somaxconn': ['65535'], 'net.ipv4.ip_local_port_range': ['32768', '60999'],
               'fs.nr_open': ['2097152'], 'fs.inode-nr': ['1', '2']}
    states = {'net.core.somaxconn': state('4096'), 'net.ipv4.ip_local_port_range': state('32768\t60999'),
              'fs.nr_open': state('1048576'), 'fs.inode-nr': state('5 0', writable=False, mode=0o444)}
    result = sc.plan(desired, states, related={sc.UNPRIV_START_KEY: ['1024']})
    assert result['errors'] == []
    assert result['changes'] == [('fs.nr_open', ['1048576'], ['2097152']),
                                 ('net.core.somaxconn', ['4096'], ['65535'])]
    assert result['unchanged'] == ['net.ipv4.ip_local_port_range']
    assert list(result['unavailable']) == ['fs.inode-nr']
    assert result['previous']['net.ipv4.ip_local_port_range'] == ['32768', '60999']


def test_plan_collects_every_error():
    desired = {'net.core.somaxconn': ['010'], 'net.ipv4.tcp_nope': ['1'],
               'net.ipv4.ip_local_port_range': ['500', '600']}
    states = {'net.core.somaxconn': state('4096'), 'net.ipv4.tcp_nope': state(None, exists=False),
              'net.ipv4.ip_local_port_range': state('32768 60999')}
    result = sc.plan(desired, states, related={sc.UNPRIV_START_KEY: ['1024']})
    assert len(result['errors']) == 3


def test_plan_hashsize_rounding_is_idempotent():
    result = sc.plan({sc.HASHSIZE_KEY: ['262145']}, {sc.HASHSIZE_KEY: state('262656', mode=0o600)})
    assert result['changes'] == [] and result['unchanged'] == [sc.HASHSIZE_KEY]
    result = sc.plan({sc.HASHSIZE_KEY: ['300000'], 'net.netfilter.nf_conntrack_max': ['1048576']},
                     {sc.HASHSIZE_KEY: state('262144', mode=0o600),
                      'net.netfilter.nf_conntrack_max': state('262144')})
    assert [c[0] for c in result['changes']] == [sc.HASHSIZE_KEY, 'net.netfilter.nf_conntrack_max']
    assert result['changes'][0][2] == ['300032']


# --------------------------------------------------------------- persist

@pytest.mark.parametrize('path', ['/etc/sysctl.d/90-x.conf'])
def test_validate_persist_path_ok(path):
    assert sc.validate_persist_path(path) == path


@pytest.mark.parametrize('path', ['/etc/sysctl.conf', '/etc/sysctl.d/x', '/etc/sysctl.d/../x.conf',
                                  '/etc/sysctl.d/sub/x.conf', 'etc/sysctl.d/x.conf', '/tmp/x.conf',
                                  '/etc/sysctl.d/a;b.conf', '/etc/sysctl.d/.conf'])
def test_validate_persist_path_rejects(path):
    with pytest.raises(TbError) as err:
        sc.validate_persist_path(path)
    assert err.value.field == 'persist'


def test_plan_persist_keeps_other_lines():
    before = ('# mine\n'
              'net.core.somaxconn=128\n'
              '  -net.ipv4.tcp_fin_timeout = 60\n'
              'kernel.foo.*.bar = 1\n'
              '\n'
              'net.ipv4.ip_local_port_range = 1024\t65535\n'
              'net/core/somaxconn = 256')
    desired = {'net.core.somaxconn': ['4096'], 'net.ipv4.tcp_fin_timeout': ['15'],
               'net.ipv4.ip_local_port_range': ['1024', '65535'], 'net.ipv4.tcp_syn_retries': ['3']}
    after = sc.plan_persist(before, desired)
    assert after == ('# mine\n'
                     'net.core.somaxconn = 4096\n'
                     '  -net.ipv4.tcp_fin_timeout = 15\n'
                     'kernel.foo.*.bar = 1\n'
                     '\n'
                     'net.ipv4.ip_local_port_range = 1024\t65535\n'
                     'net/core/somaxconn = 4096\n'
                     'net.ipv4.tcp_syn_retries = 3\n')
    assert sc.plan_persist(after, desired) == after


def test_plan_persist_new_file():
    text = sc.plan_persist(None, {'net.core.somaxconn': ['4096'], 'fs.nr_open': ['2097152']})
    assert text.startswith('#')
    assert text.endswith('fs.nr_open = 2097152\nnet.core.somaxconn = 4096\n')


def test_persist_overrides_only_later_files():
    desired = {'net.core.somaxconn': ['4096']}
    others = {'/etc/sysctl.d/10-early.conf': 'net.core.somaxconn = 1\n',
              '/usr/lib/sysctl.d/99-late.conf': 'net.core.somaxconn = 2\n',
              '/etc/sysctl.d/95-same.conf': 'net.core.somaxconn = 4096\n',
              '/etc/sysctl.conf': 'net.core.somaxconn=3\n'}
    found = sc.persist_overrides('/etc/sysctl.d/90-x.conf', desired, others)
    assert found == [('net.core.somaxconn', '/usr/lib/sysctl.d/99-late.conf', ['2']),
                     ('net.core.somaxconn', '/etc/sysctl.conf', ['3'])]


def test_render_values():
    assert sc.render_values({'b': ['1'], 'a': ['1024', '65535']}) == 'a = 1024 65535\nb = 1\n'
