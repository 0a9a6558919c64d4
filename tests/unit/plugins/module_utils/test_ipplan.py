# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rules of addresses and ports (module_utils/ipplan.py), and the engine's copy of them."""

from __future__ import annotations

import filecmp
import ipaddress
import os

import pytest

from ansible_collections.scalelab.testbed.plugins.module_utils import ipplan

from testlib import REPO


def test_the_engine_carries_an_identical_copy():
    """The engine runs where only the standard library is: it carries this file, unchanged."""
    ours = os.path.join(REPO, 'plugins', 'module_utils', 'ipplan.py')
    engine = os.path.join(REPO, 'files', 'tcpscale', 'ipplan.py')
    assert filecmp.cmp(ours, engine, shallow=False), \
        'files/tcpscale/ipplan.py differs from plugins/module_utils/ipplan.py: copy it again'


def test_ipplan_imports_only_the_standard_library():
    with open(os.path.join(REPO, 'plugins', 'module_utils', 'ipplan.py')) as f:
        imports = [line for line in f if line.startswith(('import ', 'from '))]
    assert imports == ['from __future__ import annotations\n', 'import ipaddress\n', 'import re\n']


@pytest.mark.parametrize('cidr, first, count', [
    ('10.0.0.0/24', '10.0.0.1', 254),
    ('10.0.0.0/31', '10.0.0.0', 2),        # RFC 3021
    ('10.0.0.5/32', '10.0.0.5', 1),
    ('fd00::/64', 'fd00::1', 2 ** 64 - 1),  # no subnet-router anycast address
    ('fd00::/127', 'fd00::', 2),           # RFC 6164: both
    ('fd00::5/128', 'fd00::5', 1),
])
def test_usable_hosts_one_rule_for_every_caller(cidr, first, count):
    start, n = ipplan.usable_hosts(cidr)
    assert ipaddress.ip_address(start) == ipaddress.ip_address(first) and n == count


def test_hosts_and_the_arithmetic_when_they_do_not_fit():
    assert [str(a) for a in ipplan.hosts('10.0.0.0/29', 3, offset=2)] == \
        ['10.0.0.3', '10.0.0.4', '10.0.0.5']
    with pytest.raises(ValueError) as err:
        ipplan.hosts('10.0.0.0/29', 5, offset=2)
    assert '6 usable host addresses, but offset 2 + count 5 = 7 do not fit' in str(err.value)
    assert '/28 or shorter' in str(err.value)


@pytest.mark.parametrize('text, words', [
    ('10.0.0.1/24', 'did you mean 10.0.0.0/24'),
    ('bogus', 'not a network in CIDR form'),
    ('10.0.0.0/33', 'not a network in CIDR form'),
])
def test_network_says_what_is_wrong(text, words):
    with pytest.raises(ValueError, match=words):
        ipplan.network(text)


@pytest.mark.parametrize('text, default, want', [
    ('10.0.0.1', None, ('10.0.0.1', 32)),
    ('10.0.0.1/24', None, ('10.0.0.1', 24)),
    ('10.0.0.1', 16, ('10.0.0.1', 16)),
    ('fd00::1', None, ('fd00::1', 128)),
])
def test_address_prefix(text, default, want):
    ip, prefix = ipplan.address_prefix(text, default)
    assert (str(ip), prefix) == want


@pytest.mark.parametrize('text, words', [
    ('10.0.0.1/255.255.255.0', 'number of bits'),
    ('10.0.0.1/33', 'out of range for IPv4'),
    ('224.0.0.1', 'not a unicast'),
    ('0.0.0.0', 'not a unicast'),
    ('255.255.255.255', 'not a unicast'),
    ('10.0.0.300', 'not an IP address'),
    ('', 'not an address'),
])
def test_address_prefix_refuses(text, words):
    with pytest.raises(ValueError, match=words):
        ipplan.address_prefix(text)


@pytest.mark.parametrize('value, want', [
    (80, (80, 80)), ('80', (80, 80)), ('1000-2000', (1000, 2000)), ('1024 65535', (1024, 65535)),
    ('1024\t65535', (1024, 65535)), ([1, 2], (1, 2)), ((5, 6), (5, 6)),
])
def test_port_range_forms(value, want):
    assert ipplan.port_range(value) == want


@pytest.mark.parametrize('value, words', [
    ('2000-1000', 'starts above its end (write it as 1000-2000)'),
    (0, 'ports go from 1'), (65536, 'to 65535'), ('a-b', 'not a port'), (True, 'not a port'),
    ([1, 2, 3], 'not a port'), ('-1', 'not a port'), ('80-', 'not a port'), ('-80', 'not a port'),
    ('5--6', 'not a port'), ('1-2-3', 'not a port'), ('', 'not a port'),
])
def test_port_range_refuses(value, words):
    with pytest.raises(ValueError, match=words.replace('(', r'\(').replace(')', r'\)')):
        ipplan.port_range(value)


def test_filters_may_start_at_port_0():
    assert ipplan.port_range(0, minimum=0) == (0, 0)


def test_texts():
    assert ipplan.port_range_text(5001, 5016) == '5001-5016' and ipplan.port_range_text(80, 80) == '80'
    assert ipplan.endpoint_text('10.0.0.1', 80) == '10.0.0.1:80'
    assert ipplan.endpoint_text('fd00::1', 80) == '[fd00::1]:80'


def test_the_limits_are_the_kernels():
    assert ipplan.LIMITS['fs.nr_open'] == (64, 2147483584)
    assert ipplan.EHASH_MAX == 16777216


def test_merge_port_ranges():
    assert ipplan.merge_port_ranges([(10, 20), (1, 5), (6, 8), (30, 30), (15, 25)]) == \
        [(1, 8), (10, 25), (30, 30)]
    assert ipplan.merge_port_ranges([]) == []
