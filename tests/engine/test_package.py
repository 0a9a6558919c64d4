# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine's package without root: its entry point and its pure functions.

The package is imported from files/ (as the engine's own __main__ does, with
no __pycache__ written there); plan and shm need no socket and no namespace.
"""

import ipaddress
import json
import os
import shutil
import socket
import subprocess
import sys

import pytest

from enginelib import ENGINE, engine_package

eng = engine_package()
plan, shm, cli = eng.plan, eng.shm, eng.cli


def parse(*argv):
    return cli.build_parser().parse_args(list(argv))


def client_args(*extra):
    return parse('client', '--targets', '198.18.0.1', '--ports', '10000-10003',
                 '--sources', '198.19.0.1,198.19.0.2', '--connections', '1000', *extra)


# ------------------------------------------------------------ entry point

def test_runs_as_a_directory_under_any_name(tmp_path):
    """`python3 DIR COMMAND`: no install step, the directory's name does not matter."""
    copy = str(tmp_path / 'engine')
    shutil.copytree(ENGINE, copy, ignore=shutil.ignore_patterns('__pycache__'))
    for where in (ENGINE, copy):
        out = subprocess.run([sys.executable, where, 'limits'], stdout=subprocess.PIPE,
                             check=True, universal_newlines=True).stdout
        assert set(json.loads(out)['nofile']) == {'soft', 'hard', 'wanted', 'note'}
        assert not os.path.exists(os.path.join(where, '__pycache__'))


def test_engine_commands_and_control_commands_share_one_parser():
    args = parse('server', '--listen', '10.0.0.1', '--ports', '80')
    assert args.command == 'server' and args.workers == 'auto' and args.backlog == 65535
    assert cli.split_argv(['start', '--name', 'a', '--run-dir', 'd', '--', 'x', '--', 'y']) == (
        ['start', '--name', 'a', '--run-dir', 'd'], ['x', '--', 'y'])
    # the halves take no command after --
    assert cli.split_argv(['client', '--ports', '1']) == (['client', '--ports', '1'], [])
    args = parse('stop', '--name', 'client', '--run-dir', '/tmp/x')
    assert args.timeout == 30.0
    assert parse('wait', '--status-file', 's', '--exit-file', 'e').timeout == 5.0


# ------------------------------------------------------------ option errors

@pytest.mark.parametrize('call, prefix', [
    (lambda: plan.parse_ports('70000'), '--ports: '),
    (lambda: plan.parse_ports('20-10'), '--ports: '),
    (lambda: plan.parse_addresses('10.0.0.1,nope', '--targets'), "--targets: 'nope' is not an IP"),
    (lambda: plan.parse_addresses('10.0.0.1,10.0.0.1', '--listen'),
     '--listen: an address is listed twice'),
    (lambda: plan.parse_addresses(' , ', '--sources'), '--sources: no address given'),
    (lambda: plan.sources_from_cidr('10.0.0.1/24', 2, 0), '--sources-cidr: '),
    (lambda: plan.sources_from_cidr('10.0.0.0/30', 3, 0),
     '--sources-cidr: 10.0.0.0/30 has 2 usable'),
    (lambda: plan.sources_from_cidr('10.0.0.0/24', 0, 0), '--sources-count: '),
    (lambda: plan.parse_workers('0'), '--workers: give auto or a number >= 1'),
])
def test_option_errors_name_the_option(call, prefix):
    with pytest.raises(plan.Usage) as err:
        call()
    assert str(err.value).startswith(prefix), str(err.value)


def test_ports_and_endpoints_follow_ipplan():
    assert plan.parse_ports('10000-10015') == (10000, 10015)
    assert plan.parse_ports('443') == (443, 443)
    srv = plan.ServerPlan(parse('server', '--listen', '10.0.0.1,fd00::1', '--ports', '80-81'))
    assert [srv.endpoint_name(e) for e in range(srv.endpoints)] == [
        '10.0.0.1:80', '10.0.0.1:81', '[fd00::1]:80', '[fd00::1]:81']


# ------------------------------------------------------------ client arithmetic

def test_every_tuple_gets_the_same_share_destinations_first():
    srcs = [ipaddress.ip_address(a) for a in ('10.0.0.1', '10.0.0.2', 'fd00::1')]
    dsts = [(ipaddress.ip_address(a), port) for a in ('10.1.0.1', '10.1.0.2', 'fd01::1')
            for port in (1000, 1001, 1002)]
    segments = plan.segments_of(srcs, dsts)
    assert [(s[0], s[1]) for s in segments] == [(socket.AF_INET, 12), (socket.AF_INET6, 3)]
    tuples = sum(s[1] for s in segments)
    seen = [plan.tuple_at(p, segments) for p in range(tuples)]
    assert len(set(seen)) == tuples                     # each tuple once per round
    # the first D connections of a family go to D different endpoints
    assert len(set(t[2] for t in seen[:6])) == 6
    assert seen[0] == (socket.AF_INET, '10.0.0.1', ('10.1.0.1', 1000))
    assert seen[12] == (socket.AF_INET6, 'fd00::1', ('fd01::1', 1000))


def test_a_worker_opens_its_connections_tuple_by_tuple():
    # every connection of the range once, each on its own tuple (g mod T), one tuple after another
    for start, quota, tuples in ((0, 10, 3), (5, 7, 3), (0, 2, 5), (10, 0, 4), (19000, 19000, 53)):
        order = list(plan.worker_order(start, quota, tuples))
        assert sorted(order) == list(range(start, start + quota))
        runs = [g % tuples for g in order]
        changes = sum(1 for a, b in zip(runs, runs[1:]) if a != b)
        assert changes == max(0, min(quota, tuples) - 1)
    assert list(plan.worker_order(5, 7, 3)) == [5, 8, 11, 6, 9, 7, 10]


def test_a_descriptor_table_has_the_narrowest_type_its_values_fit():
    for nofile, top, size in ((100, 53, 1), (100, 255, 1), (20000, 256, 2), (20000, 20001, 2),
                              (70000, 70001, 4)):
        t = eng.system.fd_table(nofile, top)
        assert (t.itemsize, len(t), max(t)) == (size, nofile + 2, 0)
        t[nofile + 1] = top             # the highest descriptor holds the highest value
        assert t[nofile + 1] == top


def test_endpoints_replace_targets_and_ports():
    p = plan.ClientPlan(parse('client', '--endpoints', '10.1.0.1:80,[fd01::1]:8443,10.1.0.2:81',
                              '--sources', '10.0.0.1,fd00::1', '--connections', '30'))
    assert p.destinations == [(ipaddress.ip_address('10.1.0.1'), 80),
                              (ipaddress.ip_address('fd01::1'), 8443),
                              (ipaddress.ip_address('10.1.0.2'), 81)]
    assert p.tuples == 3 and p.arith.startswith('2 sources x 3 endpoints (address:port) = 3 tuples')
    for bad, message in ((['--endpoints', '10.1.0.1'], 'has no port'),
                         (['--endpoints', '10.1.0.1:0'], 'the port must be a number from 1'),
                         (['--endpoints', '10.1.0.1:80', '--targets', '10.1.0.1'], 'replaces'),
                         (['--endpoints', 'name.example:80'], 'is not an IP address')):
        with pytest.raises(plan.Usage) as err:
            plan.ClientPlan(parse('client', '--sources', '10.0.0.1', '--connections', '1', *bad))
        assert message in str(err.value)


def test_protocol_requests_are_built_once_per_destination():
    p = plan.ClientPlan(parse('client', '--endpoints', '10.1.0.1:80,10.1.0.1:81', '--sources',
                              '10.0.0.1', '--connections', '2', '--protocol', 'http',
                              '--http-path', '/health', '--http-header', 'X-Test: 1'))
    assert p.requests[('10.1.0.1', 81)] == (b'GET /health HTTP/1.1\r\nHost: 10.1.0.1:81\r\n'
                                            b'X-Test: 1\r\n\r\n')
    for bad in (['--http-method', 'get'], ['--http-path', 'x'], ['--http-header', 'Bad']):
        with pytest.raises(plan.Usage):
            plan.ClientPlan(parse('client', '--endpoints', '10.1.0.1:80', '--sources', '10.0.0.1',
                                  '--connections', '1', '--protocol', 'http', *bad))


def test_quotas_add_up_and_start_where_the_previous_ended():
    quotas, starts = plan.split_quota(1000003, 53)
    assert sum(quotas) == 1000003 and max(quotas) - min(quotas) <= 1
    assert starts == [sum(quotas[:i]) for i in range(53)]


def test_workers_follow_the_descriptor_limit():
    assert plan.client_workers(1000000, 19936, 2, 'auto', 20000) == 51
    assert plan.client_workers(10, 19936, 2, 'auto', 20000) == 2
    assert plan.client_workers(10, 19936, 2, '40', 20000) == 10
    with pytest.raises(plan.Usage) as err:
        plan.client_workers(1000000, 19936, 2, '10', 20000)
    assert 'need at least 51 workers' in str(err.value)


def test_client_plan_arithmetic():
    p = plan.ClientPlan(client_args())
    assert p.tuples == 8 and p.per_tuple == 125 and sum(p.quotas) == 1000
    assert p.arith.startswith('2 sources x 4 endpoints (address:port) = 8 tuples x ')
    with pytest.raises(plan.Usage) as err:
        plan.ClientPlan(client_args('--ramp', '5'))
    assert '--ramp needs --rate' in str(err.value)
    with pytest.raises(plan.Usage) as err:
        plan.ClientPlan(parse('client', '--targets', '8.8.8.8', '--ports', '53', '--sources',
                              '10.0.0.1', '--connections', '1'))
    assert '--allow-external' in str(err.value)


def test_server_layout_splits_many_endpoints_into_groups():
    lanes, size, groups, holder_cap, per_group = plan.server_layout(65954, 2, 19936, 1 << 40)
    assert lanes == 1 and size == 9968 and groups == 7 and size * groups >= 65954
    assert holder_cap == 19936 - size and per_group >= 4
    lanes, size, groups, holder_cap, _per = plan.server_layout(16, 2, 19936, 1 << 40)
    assert (lanes, size, groups, holder_cap) == (2, 16, 1, 19920)


# ------------------------------------------------------------ shared memory

def test_error_counters_by_errno_name():
    q = [0] * (3 * shm.SLOT_WORDS)
    q[0 * shm.SLOT_WORDS + shm.ERR_BASE + shm.err_slot(111)] += 2      # ECONNREFUSED
    q[2 * shm.SLOT_WORDS + shm.ERR_BASE + shm.err_slot(111)] += 1
    q[1 * shm.SLOT_WORDS + shm.ERR_BASE + shm.err_slot(9999)] += 1     # out of range
    assert shm.error_counts(q, range(3)) == {'ECONNREFUSED': 3, 'EOTHER': 1}
    assert shm.error_counts(q, [1]) == {'EOTHER': 1}


def test_histograms_merge_across_slots():
    q = [0] * (2 * shm.SLOT_WORDS)
    shm.hist_add(q, shm.HIST_BASE, 0.001, shm.F_RTT_SUM_US)
    shm.hist_add(q, shm.SLOT_WORDS + shm.HIST_BASE, 0.001, shm.SLOT_WORDS + shm.F_RTT_SUM_US)
    shm.hist_add(q, shm.CONNECT_HIST_BASE, 0.2, shm.F_CONNECT_SUM_US)
    hist = shm.hist_merge(q, [0, 1])
    assert sum(hist) == 2 and abs(shm.hist_percentile(hist, 0.5) - 1.0) < 0.05
    assert q[shm.F_RTT_SUM_US] + q[shm.SLOT_WORDS + shm.F_RTT_SUM_US] == 2000
    connect = shm.hist_merge(q, [0, 1], shm.CONNECT_HIST_BASE)
    assert sum(connect) == 1 and abs(shm.hist_percentile(connect, 0.5) - 200.0) < 10
    # the regions do not overlap and fit in a slot
    assert shm.HIST_BASE + shm.HIST_SLOTS <= shm.STATUS_BASE
    assert shm.STATUS_BASE + 2 * shm.STATUS_PAIRS <= shm.CONNECT_HIST_BASE
    assert shm.CONNECT_HIST_BASE + shm.HIST_SLOTS <= shm.SLOT_WORDS


def test_histogram_summary_gives_percentiles_buckets_and_max():
    hist = [0] * shm.HIST_SLOTS
    for ms in [1.0] * 90 + [10.0] * 9 + [100.0]:
        hist[shm.hist_index(ms / 1000.0)] += 1
    out = shm.hist_summary(hist, 1000 * (90 * 1 + 9 * 10 + 100))
    assert out['count'] == 100 and out['sum_seconds'] == 0.28
    assert abs(out['p50_ms'] - 1.0) < 0.05 and abs(out['p90_ms'] - 1.0) < 0.05
    assert abs(out['p99_ms'] - 10.0) < 0.5
    assert 100.0 <= out['max_ms'] <= 105.2          # the upper edge of the 100 ms bucket
    assert [n for _ms, n in out['buckets']] == [90, 9, 1]
    assert shm.hist_summary([0] * shm.HIST_SLOTS, 0)['max_ms'] is None
