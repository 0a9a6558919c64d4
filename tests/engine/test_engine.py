# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine (files/tcpscale) with real sockets in real network namespaces.

Counts are checked independently of the engine, with the collection's
sock_diag counter in each namespace.
"""

import os
import signal
import sys
import time

import pytest

from ansible_collections.scalelab.testbed.plugins.module_utils.sockdiag import count_tcp_states

from enginelib import CLOSER, SERVER_ADDR, engine_package, pids_alive, wait_gone


def established(ns, **filters):
    return count_tcp_states(netns=ns, states=['established'], **filters)['established']


def client_args(pair, n, ports='10000', extra=()):
    return ['--targets', SERVER_ADDR, '--ports', ports, '--sources', ','.join(pair.sources),
            '--connections', str(n)] + list(extra)


def test_fan_out_over_the_fd_limit(netpair):
    """45,000 connections: more than one process may hold (20,000 here) on each side."""
    pair = netpair.up(sources=2)
    n = 45000
    srv = pair.server(['--listen', SERVER_ADDR, '--ports', '10000-10003'])
    srv.wait_ready()
    cli = pair.client(client_args(pair, n, '10000-10003'))
    st = cli.wait_status(lambda s: s.get('reached'), timeout=300)
    assert st['established'] == n
    assert established(pair.cli, remote_ports=[(10000, 10003)]) == n
    assert established(pair.srv, local_ports=[(10000, 10003)]) == n
    sst = srv.wait_status(lambda s: s.get('held_total') == n, timeout=60)
    assert sum(sst['held_per_endpoint'].values()) == n
    assert set(sst['held_per_endpoint']) == set('%s:%d' % (SERVER_ADDR, p)
                                                for p in range(10000, 10004))
    code, summary = cli.finish(sig=signal.SIGTERM)
    assert code == 0, cli.stderr()
    limit = summary['limits']['nofile']
    assert summary['limits']['per_worker'] == limit - summary['limits']['reserve']
    need = -(-n // summary['limits']['per_worker'])
    assert summary['workers'] >= max(need, 2) and summary['workers_started'] == summary['workers']
    assert summary['reached'] and summary['established_peak'] == n
    assert summary['errors'] == {}
    assert summary['user_bytes_per_conn'] > 0
    # host-wide slab delta: other work on a shared machine can make it 0 (clamped), not absent
    assert isinstance(summary['kernel_bytes_per_conn'], float)
    assert summary['kernel_bytes_per_conn'] >= 0
    assert summary['timeline'] and all(len(row) == 7 for row in summary['timeline'])
    assert summary['timeline_columns'] == ['t_seconds', 'established', 'user_pss_bytes',
                                           'kernel_bytes', 'dropped', 'opened', 'errors']
    assert summary['timeline'][-1][5] == n and summary['timeline'][-1][6] == 0
    code, ssum = srv.finish(sig=signal.SIGTERM)
    assert code == 0, srv.stderr()
    # the server needed successors: each holder takes at most per_worker connections
    assert ssum['workers'] >= -(-n // ssum['limits']['per_worker'])
    assert ssum['held_peak'] == n and ssum['lost_workers'] == []
    assert 'nofile: soft limit' in cli.stderr() and 'workers' in cli.stderr()


def test_plans_workers_from_the_real_fd_limit(netpair):
    """With RLIMIT_NOFILE 1100 both halves spread 5,000 connections over many workers."""
    pair = netpair.up(sources=2)
    n = 5000
    srv = pair.server(['--listen', SERVER_ADDR, '--ports', '10000-10001'], nofile=1100)
    srv.wait_ready()
    cli = pair.client(client_args(pair, n, '10000-10001'), nofile=1100)
    cli.wait_status(lambda s: s.get('reached'), timeout=120)
    assert established(pair.cli) == n
    # the server's peak comes from its progress samples: one must see them all
    srv.wait_status(lambda s: s.get('held_total') == n, timeout=60)
    code, summary = cli.finish(sig=signal.SIGTERM)
    assert code == 0, cli.stderr()
    assert summary['limits']['nofile'] == 1100
    assert summary['workers'] == -(-n // (1100 - summary['limits']['reserve']))
    assert 'nofile: soft limit 1100 raised to 1100 (hard 1100)' in cli.stderr()
    code, ssum = srv.finish(sig=signal.SIGTERM)
    assert code == 0
    assert ssum['held_peak'] == n
    assert ssum['workers'] >= -(-n // ssum['limits']['per_worker'])


def test_more_than_65535_connections_to_one_endpoint(netpair, heavy_lock):
    """70,000 connections from one namespace to ONE address:port, over 4 source aliases."""
    pair = netpair.up(sources=4)
    n = 70000
    srv = pair.server(['--listen', SERVER_ADDR, '--ports', '10000'])
    srv.wait_ready()
    cli = pair.client(client_args(pair, n, '10000'))
    cli.wait_status(lambda s: s.get('reached'), timeout=300)
    assert established(pair.cli, remote_ports=[(10000, 10000)]) == n
    assert established(pair.srv, local_ports=[(10000, 10000)]) == n
    # every alias carries its share: more than one source address's worth of ports in use
    for src in pair.sources:
        assert established(pair.cli, local_networks=[src + '/32']) == n // 4
    sst = srv.wait_status(lambda s: s.get('held_total') == n, timeout=60)
    assert sst['held_per_endpoint'] == {'%s:10000' % SERVER_ADDR: n}
    code, summary = cli.finish(sig=signal.SIGTERM)
    assert code == 0, cli.stderr()
    assert summary['plan'] == dict(summary['plan'], sources=4, destinations=1, ports=1, tuples=4,
                                   per_tuple=n // 4)
    srv.finish(sig=signal.SIGTERM)


def test_a_source_the_route_chooses_is_not_bound(netpair):
    """One source, the one the client namespace's route gives the target: the connections
    are not bound (two system calls fewer each) and still come from it. Another one
    source, not the route's: bound, and they come from it, not from the route's."""
    pair = netpair.up(sources=2)       # 198.19.0.1 (the route's source), 198.19.0.2
    n = 3000
    srv = pair.server(['--listen', SERVER_ADDR, '--ports', '10000-10001'])
    srv.wait_ready()
    for src, bound in ((pair.sources[0], False), (pair.sources[1], True)):
        cli = pair.client(['--targets', SERVER_ADDR, '--ports', '10000-10001', '--sources', src,
                           '--connections', str(n)])
        cli.wait_status(lambda s: s.get('reached'), timeout=120)
        for a in pair.sources:
            assert established(pair.cli, local_networks=[a + '/32']) == (n if a == src else 0)
        code, summary = cli.finish(sig=signal.SIGTERM)
        assert code == 0, cli.stderr()
        assert summary['plan']['bound'] is bound
        assert ('not bound' in cli.stderr()) is not bound, cli.stderr()
        deadline = time.monotonic() + 30
        while established(pair.cli) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert established(pair.cli) == 0
    srv.finish(sig=signal.SIGTERM)


def test_more_than_65535_listening_endpoints(netpair):
    """2 addresses x 32,977 ports = 65,954 listening sockets on one host, then traffic."""
    addrs = (SERVER_ADDR, '198.18.0.2')
    pair = netpair.up(sources=2, server_addrs=addrs)
    lo, hi = 1024, 34000
    endpoints = len(addrs) * (hi - lo + 1)
    assert endpoints > 65535
    srv = pair.server(['--listen', ','.join(addrs), '--ports', '%d-%d' % (lo, hi)])
    srv.wait_ready(timeout=300)
    listening = count_tcp_states(netns=pair.srv, states=['listen'],
                                 local_ports=[(lo, hi)])['listen']
    assert listening == endpoints
    # the status file is written every progress interval: wait for one written after ready
    srv.wait_status(lambda s: s.get('ready') and s.get('listening') == endpoints)
    # 2 destinations x 32,977 ports: one connection per endpoint and a few more
    n = endpoints + 1000
    cli = pair.client(['--targets', ','.join(addrs), '--ports', '%d-%d' % (lo, hi),
                       '--sources', ','.join(pair.sources), '--connections', str(n)])
    cli.wait_status(lambda s: s.get('reached'), timeout=300)
    assert established(pair.srv, local_ports=[(lo, hi)]) == n
    sst = srv.wait_status(lambda s: s.get('held_total') == n, timeout=60)
    per = sst['held_per_endpoint']
    assert len(per) == endpoints            # every endpoint got at least one
    assert sum(per.values()) == n
    assert per['198.18.0.2:%d' % hi] >= 1 and per['%s:%d' % (SERVER_ADDR, lo)] >= 1
    code, _summary = cli.finish(sig=signal.SIGTERM)
    assert code == 0, cli.stderr()
    code, ssum = srv.finish(sig=signal.SIGTERM)
    assert code == 0, srv.stderr()
    assert ssum['listening'] == endpoints and ssum['keepers'] > 1


def test_refused_target_counts_errno_and_exits_1(netpair):
    pair = netpair.up(sources=1)
    cli = pair.client(client_args(pair, 50, '10999', ['--retries', '1', '--timeout', '2']))
    code, summary = cli.finish(timeout=120)
    assert code == 1, cli.stderr()
    assert summary['reached'] is False and summary['exit_code'] == 1
    assert summary['errors'] == {'ECONNREFUSED': 100}        # 50 connections x 2 attempts
    assert summary['failed_connections'] == 50
    assert summary['established_final'] == 0
    assert 'target 50 not reached' in cli.stderr()
    assert os.path.exists(cli.summary_file)


def test_unreachable_arithmetic_exits_2_before_any_socket(netpair):
    pair = netpair.up(sources=1)
    # 198.19.99.1 is not an address of the namespace: had the engine opened a socket
    # (bound a source) first, the error would be about that address instead.
    cli = pair.client(['--targets', SERVER_ADDR, '--ports', '10000', '--sources', '198.19.99.1',
                       '--connections', '70000'])
    code, summary = cli.finish(timeout=60)
    err = cli.stderr()
    assert code == 2 and summary is None
    assert ('1 sources x 1 endpoints (address:port) = 1 tuples x 64512 local ports '
            '(net.ipv4.ip_local_port_range 1024-65535) = 64512 connections at most < 70000 '
            'requested') in err
    assert 'at least 2' in err and 'cannot be used' not in err
    # the same with one more source address is fine arithmetically, then the missing
    # address is reported
    cli = pair.client(['--targets', SERVER_ADDR, '--ports', '10000', '--sources',
                       '198.19.99.1,198.19.99.2', '--connections', '70000'])
    code, _s = cli.finish(timeout=60)
    assert code == 2 and 'source address 198.19.99.1 cannot be used' in cli.stderr()


def test_external_target_refused_without_allow_external(netpair):
    pair = netpair.up(sources=1)
    cli = pair.client(['--targets', '8.8.8.8', '--ports', '53', '--sources', pair.sources[0],
                       '--connections', '1'])
    code, _s = cli.finish(timeout=60)
    assert code == 2 and '--allow-external' in cli.stderr()


def test_worker_killed_mid_run_is_reported(netpair):
    """A client worker lost while connecting: the others finish, no new worker starts, exit 3."""
    pair = netpair.up(sources=2)
    srv = pair.server(['--listen', SERVER_ADDR, '--ports', '10000-10001'])
    srv.wait_ready()
    cli = pair.client(client_args(pair, 20000, '10000-10001', ['--rate', '4000']), nofile=3000)
    st = cli.wait_status(lambda s: s.get('established', 0) > 1000 and len(s['pids']) > 2)
    workers = [p for p in st['pids'] if p != cli.pid]
    victim = workers[0]
    os.kill(victim, signal.SIGKILL)
    code, summary = cli.finish(timeout=120)
    assert code == 3, cli.stderr()
    assert summary['exit_code'] == 3 and summary['stopped_by'] == 'lost_worker'
    assert summary['reached'] is False
    lost = summary['lost_workers']
    assert [w['pid'] for w in lost] == [victim]
    assert 'SIGKILL' in lost[0]['how'] and lost[0]['worker'].startswith('c')
    assert lost[0]['held'] > 0 and lost[0]['at'] > 0 and lost[0]['t'] > 0
    # what the others hold is what is left: the lost worker's share is not counted
    assert summary['established_final'] <= 20000 - lost[0]['held']
    assert 'lost' in cli.stderr()
    assert wait_gone(workers) == []          # no orphans


def holders_by_count(srv):
    st = srv.status()
    return sorted((h for h in st.get('holders', []) if h['held'] > 0), key=lambda h: -h['held'])


def test_holder_killed_during_the_hold_the_others_keep_holding(netpair):
    """A server holder killed mid-hold: the half keeps running, names it, counts what it held."""
    pair = netpair.up(sources=2)
    # 4,000 descriptors per process: 12,000 connections need several holders
    srv = pair.server(['--listen', SERVER_ADDR, '--ports', '10000-10001', '--workers', '1'],
                      nofile=4000)
    srv.wait_ready()
    cli = pair.client(client_args(pair, 12000, '10000-10001', ['--hold', '8']))
    cli.wait_status(lambda s: s.get('reached'))
    srv.wait_status(lambda s: s.get('held_total') == 12000, timeout=30)
    victim = holders_by_count(srv)[0]
    assert victim['held'] < 12000
    os.kill(victim['pid'], signal.SIGKILL)
    sst = srv.wait_status(lambda s: s.get('lost_workers'), timeout=30)
    lost = sst['lost_workers'][0]
    assert lost['pid'] == victim['pid'] and lost['worker'] == victim['worker']
    assert lost['held'] == victim['held'] and 'SIGKILL' in lost['how'] and lost['at'] > 0
    # the rest still hold, in the kernel's count too
    srv.wait_status(lambda s: s.get('held_total') == 12000 - victim['held'], timeout=30)
    assert established(pair.srv, local_ports=[(10000, 10001)]) == 12000 - victim['held']
    code, summary = cli.finish(timeout=120)
    assert code == 1, cli.stderr()
    assert summary['reached'] is True and summary['hold']['held_ok'] is False
    assert summary['hold']['lost'] == victim['held']
    assert summary['drops']['peer_closed'] + summary['drops']['peer_reset'] == victim['held']
    assert summary['errors'].get('peer_closed', 0) + summary['errors'].get('peer_reset', 0) \
        == victim['held']
    assert summary['established_at_target'] == 12000
    assert summary['established_final'] == 12000 - victim['held']
    err = cli.stderr()
    assert 'ended by the peer since the target was reached' in err
    assert 'lost during the hold' in err and 'dropped %d' % victim['held'] in err
    assert summary['timeline_columns'][4] == 'dropped'
    assert summary['timeline'][-1][4] == victim['held']
    # the drops are errors of their own kind, over time too
    assert summary['errors_timeline'][-1][1] == summary['errors']
    code, ssum = srv.finish(sig=signal.SIGTERM)
    assert code == 3 and ssum['lost_workers'][0]['pid'] == victim['pid']


def test_client_worker_killed_during_the_hold(netpair):
    """A client worker lost mid-hold: the others keep holding until the end, exit 3."""
    pair = netpair.up(sources=2)
    srv = pair.server(['--listen', SERVER_ADDR, '--ports', '10000-10001'])
    srv.wait_ready()
    cli = pair.client(client_args(pair, 9000, '10000-10001', ['--hold', '6']), nofile=4000)
    st = cli.wait_status(lambda s: s.get('reached'))
    victim = [p for p in st['pids'] if p != cli.pid][0]
    os.kill(victim, signal.SIGKILL)
    st = cli.wait_status(lambda s: s.get('lost_workers'), timeout=30)
    held = st['lost_workers'][0]['held']
    assert 0 < held < 9000
    cli.wait_status(lambda s: s.get('established') == 9000 - held, timeout=30)
    code, summary = cli.finish(timeout=120)
    assert code == 3, cli.stderr()
    assert summary['stopped_by'] == 'hold' and summary['reached'] is True
    assert summary['established_final'] == 9000 - held
    assert summary['hold']['held_ok'] is False and summary['hold']['lost'] == held
    assert summary['lost_workers'][0]['pid'] == victim


def closer(pair, ports, close_after, reset=False):
    """The tests' own small server in the server namespace (tests/engine/closer.py)."""
    ready = os.path.join(pair.workdir, 'closer-%s.ready' % ports)
    argv = ['--listen', SERVER_ADDR, '--ports', ports, '--close-after', str(close_after),
            '--ready-file', ready] + (['--reset'] if reset else [])
    proc = pair.spawn(pair.srv, [sys.executable, CLOSER] + argv)
    deadline = time.monotonic() + 30
    while not os.path.exists(ready):
        assert proc.poll() is None and time.monotonic() < deadline, 'closer did not start'
        time.sleep(0.05)
    return proc


# Both ways of watching held connections notice a peer that ends them: epoll at once,
# poll (the default for tcp without heartbeats) at its next pass.
WATCH_MODES = ('epoll', 'poll')


@pytest.mark.parametrize('watch', WATCH_MODES)
def test_peer_closing_idle_connections_during_the_hold_fails_the_run(netpair, watch):
    pair = netpair.up(sources=1)
    closer(pair, '10000-10001', close_after=3)
    cli = pair.client(client_args(pair, 4000, '10000-10001', ['--hold', '6', '--watch', watch]))
    code, summary = cli.finish(timeout=120)
    assert code == 1, cli.stderr()
    assert summary['watch']['mode'] == watch
    if watch == 'poll':
        assert summary['watch']['passes'] > 0 and summary['watch']['interval_s'] == 5.0
    assert summary['reached'] is True
    assert summary['drops'] == {'peer_closed': 4000, 'peer_reset': 0}
    assert summary['errors'] == {'peer_closed': 4000}
    assert summary['hold']['held_ok'] is False and summary['hold']['dropped_by_peer'] == 4000
    assert summary['established_final'] == 0
    err = cli.stderr()
    assert 'dropped 4000' in err and 'peer_closed=4000' in err
    assert 'error: 4000 of 4000 connections lost during the hold' in err


def test_connections_that_join_epoll_after_the_ramp_see_the_peer_end_them(netpair):
    """Heartbeats and an unpaced ramp (watch late): the held connections are outside
    epoll until the ramp is over, then in it; a server that ends them during the hold is
    noticed (FIN, or RST where the heartbeats it never read were still queued)."""
    pair = netpair.up(sources=1)
    closer(pair, '10000-10001', close_after=3)
    cli = pair.client(client_args(pair, 4000, '10000-10001', ['--hold', '6',
                                                              '--heartbeat-interval', '1']))
    code, summary = cli.finish(timeout=120)
    assert code == 1, cli.stderr()
    assert summary['watch']['mode'] == 'epoll' and summary['watch']['late'] is True
    assert summary['reached'] is True
    assert sum(summary['drops'].values()) == 4000, summary['drops']
    assert summary['hold']['held_ok'] is False and summary['hold']['dropped_by_peer'] == 4000
    assert summary['established_final'] == 0


@pytest.mark.parametrize('watch', WATCH_MODES)
def test_a_tolerance_accepts_a_loss_within_it(netpair, watch):
    """Half the connections reset by the peer: --hold-tolerance 0.5 passes, 0.4 does not."""
    pair = netpair.up(sources=1)
    srv = pair.server(['--listen', SERVER_ADDR, '--ports', '10000', '--watch', watch])
    srv.wait_ready()
    closer(pair, '10001', close_after=2, reset=True)
    for tolerance, want in (('0.5', 0), ('0.4', 1)):
        cli = pair.client(client_args(pair, 1000, '10000-10001', ['--hold', '4', '--watch', watch,
                                                                  '--hold-tolerance', tolerance]))
        code, summary = cli.finish(timeout=120)
        assert code == want, cli.stderr()
        assert summary['drops'] == {'peer_closed': 0, 'peer_reset': 500}
        assert summary['hold']['lost'] == 500
        assert summary['hold']['allowed_loss'] == int(1000 * float(tolerance))
        assert summary['hold']['held_ok'] is (want == 0)
    bad = pair.client(client_args(pair, 10, '10000', ['--hold-tolerance', '1']))
    code, _s = bad.finish(timeout=60)
    assert code == 2 and '--hold-tolerance' in bad.stderr()


def test_peer_closing_before_the_target_names_the_drops(netpair):
    pair = netpair.up(sources=1)
    closer(pair, '10000', close_after=0.2)
    cli = pair.client(client_args(pair, 3000, '10000', ['--rate', '1000']))
    code, summary = cli.finish(timeout=120)
    assert code == 1 and summary['reached'] is False
    assert summary['dropped'] > 0 and summary['errors']['peer_closed'] == summary['dropped']
    assert 'not reached' in cli.stderr() and 'ended by the peer %d' % summary['dropped'] \
        in cli.stderr()


@pytest.mark.parametrize('watch', WATCH_MODES)
def test_sigterm_mid_run_writes_the_summary(netpair, watch):
    """The client resets what it holds; the server sees every connection go (both watch modes)."""
    pair = netpair.up(sources=2)
    srv = pair.server(['--listen', SERVER_ADDR, '--ports', '10000-10001', '--watch', watch])
    srv.wait_ready()
    cli = pair.client(client_args(pair, 20000, '10000-10001', ['--rate', '2000']))
    st = cli.wait_status(lambda s: s.get('established', 0) > 1000)
    code, summary = cli.finish(sig=signal.SIGTERM, timeout=120)
    assert code == 1, cli.stderr()
    assert summary['reached'] is False and summary['stopped_by'] == 'signal:SIGTERM'
    assert 1000 < summary['established_final'] < 20000
    assert os.path.exists(cli.summary_file)
    assert wait_gone(st['pids']) == []
    # connections were reset, not left in TIME_WAIT on the client side
    states = count_tcp_states(netns=pair.cli, states=['established', 'time_wait'])
    assert states['established'] == 0 and states['time_wait'] == 0
    sst = srv.wait_status(lambda s: s.get('held_total') == 0, timeout=60)
    code, ssum = srv.finish(sig=signal.SIGTERM)
    assert code == 0 and ssum['stopped_by'] == 'signal:SIGTERM'
    # handshakes still in flight at SIGTERM may have completed on the server side
    assert summary['established_peak'] <= ssum['accepted_total'] <= summary['attempts']
    assert ssum['closed_total'] == ssum['accepted_total']
    assert ssum['watch']['mode'] == watch
    assert wait_gone(sst['pids']) == []


def test_supervisor_killed_leaves_no_orphans(netpair):
    pair = netpair.up(sources=2)
    srv = pair.server(['--listen', SERVER_ADDR, '--ports', '10000'])
    srv.wait_ready()
    cli = pair.client(client_args(pair, 20000, '10000', ['--rate', '2000']))
    st = cli.wait_status(lambda s: s.get('established', 0) > 500 and len(s['pids']) > 2)
    sst = srv.status()
    os.kill(cli.pid, signal.SIGKILL)
    os.kill(srv.pid, signal.SIGKILL)
    assert wait_gone(st['pids'] + sst['pids']) == []


def test_heartbeat_echo_and_rtt(netpair):
    pair = netpair.up(sources=1)
    srv = pair.server(['--listen', SERVER_ADDR, '--ports', '10000', '--echo'])
    srv.wait_ready()
    cli = pair.client(client_args(pair, 2000, '10000', ['--heartbeat-interval', '0.5',
                                                        '--heartbeat-size', '64',
                                                        '--hold', '3']))
    code, summary = cli.finish(timeout=120)
    assert code == 0, cli.stderr()
    hb = summary['heartbeat']
    assert hb['sent'] >= 2000 and hb['received'] >= 2000
    assert hb['rtt_p50_ms'] is not None and hb['rtt_p99_ms'] >= hb['rtt_p50_ms']
    assert summary['stopped_by'] == 'hold' and summary['established_final'] == 2000
    code, ssum = srv.finish(sig=signal.SIGTERM)
    assert ssum['echo_bytes'] >= 64 * hb['received']


def test_heartbeats_wait_for_the_end_of_an_unpaced_ramp(netpair):
    """An unpaced ramp takes every core: heartbeats start once it is over. A paced one
    (--rate) leaves room for them: they start one interval after a worker's first
    connection, during the ramp."""
    pair = netpair.up(sources=1)
    srv = pair.server(['--listen', SERVER_ADDR, '--ports', '10000-10001', '--echo'])
    srv.wait_ready()
    # 8 workers of 1,000 one after the other (--concurrency 1): a ramp of several passes
    unpaced = pair.client(client_args(pair, 8000, '10000-10001', [
        '--heartbeat-interval', '0.2', '--hold', '2', '--workers', '8', '--concurrency', '1']))
    code, summary = unpaced.finish(timeout=120)
    assert code == 0, unpaced.stderr()
    hb = summary['heartbeat']
    assert hb['sent'] > 0 and hb['during_ramp'] is False
    assert hb['first_sent_s'] >= summary['seconds_to_target'], (hb, summary['seconds_to_target'])
    # the held connections joined the epoll set at the ramp's end: the echoes were read
    assert summary['watch']['mode'] == 'epoll' and summary['watch']['late'] is True
    assert hb['received'] > 0 and hb['rtt_p50_ms'] is not None, hb
    paced = pair.client(client_args(pair, 3000, '10000-10001', [
        '--heartbeat-interval', '0.2', '--hold', '1', '--rate', '1500']))
    code, summary = paced.finish(timeout=120)
    assert code == 0, paced.stderr()
    hb = summary['heartbeat']
    assert hb['during_ramp'] is True and summary['seconds_to_target'] > 1.5
    assert summary['watch']['mode'] == 'epoll' and summary['watch']['late'] is False
    assert hb['first_sent_s'] < summary['seconds_to_target'] - 0.5, (hb, summary['seconds_to_target'])
    srv.finish(sig=signal.SIGTERM)


def test_rate_limit_and_ramp(netpair):
    pair = netpair.up(sources=1)
    srv = pair.server(['--listen', SERVER_ADDR, '--ports', '10000'])
    srv.wait_ready()
    cli = pair.client(client_args(pair, 3000, '10000', ['--rate', '2000', '--ramp', '1',
                                                        '--hold', '0.2']))
    code, summary = cli.finish(timeout=120)
    assert code == 0, cli.stderr()
    # a lower bound only: the limiter must not let 3,000 through faster than the ramp
    # (0.5 s x 1,000/s on average) plus the rest at 2,000/s allows
    assert summary['seconds_to_target'] >= 1.4
    assert summary['connect_rate']['rate_limit_per_s'] == 2000
    srv.finish(sig=signal.SIGTERM)


def test_ipv6_endpoints(netpair):
    pair = netpair.up(sources=1, ipv6=True)
    srv = pair.server(['--listen', 'fd00:5ca1::1', '--ports', '10000-10001'])
    srv.wait_ready()
    cli = pair.client(['--targets', 'fd00:5ca1::1', '--ports', '10000-10001', '--sources',
                       'fd00:5ca1::100,fd00:5ca1::101', '--connections', '1000'])
    cli.wait_status(lambda s: s.get('reached'))
    sst = srv.wait_status(lambda s: s.get('held_total') == 1000)
    assert sst['held_per_endpoint'] == {'[fd00:5ca1::1]:10000': 500,
                                        '[fd00:5ca1::1]:10001': 500}
    assert established(pair.cli, remote_networks=['fd00:5ca1::1/128']) == 1000
    code, summary = cli.finish(sig=signal.SIGTERM)
    assert code == 0, cli.stderr()
    assert summary['established_final'] == 1000 and summary['plan']['tuples'] == 4
    code, ssum = srv.finish(sig=signal.SIGTERM)
    assert code == 0 and ssum['accepted_total'] == 1000


def test_bad_arguments_exit_2(netpair):
    pair = netpair.up(sources=1)
    for args, text in (
            (['--connections', '0'], '--connections'),
            (['--connections', '10', '--ramp', '5'], '--ramp needs --rate'),
            (['--connections', '10', '--workers', '0'], '--workers'),
            (['--connections', '10', '--watch', 'poll', '--heartbeat-interval', '5'],
             '--watch poll: the client half reads data as it arrives (heartbeats)'),
            (['--connections', '10', '--watch-interval', '0'], '--watch-interval'),
    ):
        cli = pair.client(['--targets', SERVER_ADDR, '--ports', '10000', '--sources',
                           pair.sources[0]] + args)
        code, summary = cli.finish(timeout=60)
        assert code == 2 and summary is None and text in cli.stderr(), (args, cli.stderr())
    srv = pair.server(['--listen', SERVER_ADDR, '--ports', '10000', '--echo', '--watch', 'poll'])
    code, _s = srv.finish(timeout=60)
    assert code == 2 and '--watch poll: the server half reads data as it arrives (--echo)' \
        in srv.stderr()
    srv = pair.server(['--listen', '198.18.7.7', '--ports', '10000'])
    code, _s = srv.finish(timeout=60)
    assert code == 2 and 'listen address 198.18.7.7 cannot be used' in srv.stderr()
    # a port already taken by another listener: reported, exit 2
    blocker = pair.server(['--listen', SERVER_ADDR, '--ports', '10000', '--workers', '1'])
    blocker.wait_ready()
    srv = pair.server(['--listen', SERVER_ADDR, '--ports', '10000'])
    code, _s = srv.finish(timeout=60)
    assert code == 2 and 'cannot listen on %s:10000' % SERVER_ADDR in srv.stderr()
    blocker.finish(sig=signal.SIGTERM)
    assert not pids_alive([blocker.pid])


def test_sources_cidr_are_the_aliases_the_module_adds():
    """--sources-cidr/--sources-count/--sources-offset pick what ip_aliases adds."""
    from ansible_collections.scalelab.testbed.plugins.module_utils.addresses import (
        generate_aliases)
    eng = engine_package()
    for cidr, count, offset in (('198.19.0.0/16', 300, 0), ('10.1.2.0/24', 5, 7),
                                ('10.9.0.0/31', 2, 0), ('fd00:5ca1::/64', 4, 2),
                                ('fd00:5ca1::/127', 2, 0)):
        want = [str(a.ip) for a in generate_aliases(cidr, count, offset)]
        assert [str(a) for a in eng.plan.sources_from_cidr(cidr, count, offset)] == want


def test_rtt_histogram_percentiles():
    shm = engine_package().shm
    q = [0] * (shm.HIST_SLOTS + 1)
    for ms in [1.0] * 98 + [50.0, 50.0]:
        shm.hist_add(q, 0, ms / 1000.0, shm.HIST_SLOTS)
    q.pop()
    p50 = shm.hist_percentile(q, 0.50)
    p99 = shm.hist_percentile(q, 0.99)
    assert abs(p50 - 1.0) / 1.0 < 0.05 and abs(p99 - 50.0) / 50.0 < 0.05
    assert shm.hist_percentile([0] * shm.HIST_SLOTS, 0.5) is None


def proc_cpu_seconds(pid):
    """user + system CPU of a process, from its own /proc/PID/stat."""
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / float(os.sysconf('SC_CLK_TCK'))


def test_cpu_at_target_matches_what_the_workers_used(netpair):
    """Workers publish their CPU time when they finish their quota, not only every 0.5 s:
    the summary's cpu_at_target agrees with the workers' own /proc times."""
    pair = netpair.up(sources=2)
    srv = pair.server(['--listen', SERVER_ADDR, '--ports', '10000-10001'])
    srv.wait_ready()
    n = 40000
    cli = pair.client(client_args(pair, n, '10000-10001', ['--hold', '30']))
    st = cli.wait_status(lambda s: s.get('reached'))
    sup = st['pids'][0]
    used = sum(proc_cpu_seconds(p) for p in st['pids'][1:])
    code, summary = cli.finish(sig=signal.SIGTERM)
    assert code == 0, cli.stderr()
    assert sup == cli.pid
    cpu = summary['cpu_at_target']
    reported = cpu['workers_user_s'] + cpu['workers_sys_s']
    # /proc was read a little after the target (the status file is 0.5 s old at most):
    # the workers only idled in between
    assert used > 0.1, used
    assert 0.85 * used - 0.05 <= reported <= used + 0.05, (reported, used)
