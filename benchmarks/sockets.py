# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: counting TCP sockets with the lean sock_diag reader.

In a fresh network namespace (tbc-bench) this opens N established loopback
connections (2N sockets) with several worker processes (one process holds at
most ~20,000 fds on the development machine, and each connection costs a
worker two: its client end and the accepted end), then times, in the same
run:

* sockdiag.count_tcp_states (all states; established only; with a kernel
  bytecode port filter selecting one listener port),
* the module: tcp_sockets_info run as a process (import + dump), and a full
  ad-hoc ``ansible localhost -m scalelab.testbed.tcp_sockets_info`` run,
* ``ss -tan | wc -l`` and ``ss -tan state established | wc -l`` in the namespace,
* pyroute2 DiagSocket.get_sock_stats on the subset of one listener port (the
  kernel filters by exact sport, so pyroute2 parses only that subset).

It prints times, per-socket costs and ratios; the last line is one JSON object.
Run it as root, holding the heavy lock:

    flock /tmp/scalelab-heavy.lock .venv/bin/python benchmarks/sockets.py --connections 100000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NETNS = 'tbc-bench'
BASE_PORT = 20000
IP_BIND_ADDRESS_NO_PORT = 24


# ---------------------------------------------------------------------------
# worker: runs inside the namespace (ip netns exec), holds `conns` connections
# ---------------------------------------------------------------------------

def worker(index, conns, batch):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    port = BASE_PORT + index
    src = '127.0.%d.%d' % (1 + index // 250, 1 + index % 250)
    lst = socket.socket()
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind(('127.0.0.1', port))
    lst.listen(65535)
    held = []
    made = 0
    while made < conns:
        k = min(batch, conns - made)
        for _i in range(k):
            c = socket.socket()
            c.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            c.bind((src, 0))
            c.connect(('127.0.0.1', port))
            held.append(c)
        for _i in range(k):
            held.append(lst.accept()[0])
        made += k
    sys.stdout.write('ready %d %d\n' % (index, made))
    sys.stdout.flush()
    # hold until the parent closes our stdin (or dies)
    sys.stdin.read()
    return 0


# ---------------------------------------------------------------------------
# parent
# ---------------------------------------------------------------------------

def run(argv, **kw):
    return subprocess.run(argv, check=True, **kw)


def netns_exec(*argv):
    return ['ip', 'netns', 'exec', NETNS] + list(argv)


def setup_netns():
    if os.path.exists('/var/run/netns/' + NETNS):
        run(['ip', 'netns', 'del', NETNS])
    run(['ip', 'netns', 'add', NETNS])
    run(['ip', '-n', NETNS, 'link', 'set', 'lo', 'up'])
    # per-namespace keys only
    for kv in ('net.ipv4.ip_local_port_range=1024 65535', 'net.core.somaxconn=65535',
               'net.ipv4.tcp_max_syn_backlog=65535'):
        run(netns_exec('sysctl', '-q', '-w', kv))


def teardown(workers):
    for p in workers:
        try:
            p.stdin.close()
        except OSError:
            pass
    deadline = time.monotonic() + 30
    for p in workers:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    if os.path.exists('/var/run/netns/' + NETNS):
        subprocess.run(['ip', 'netns', 'del', NETNS], check=False)


def timed(fn, repeat):
    times = []
    value = None
    for _i in range(repeat):
        t = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t)
    return min(times), statistics.median(times), value


def pipe_count(argv):
    """argv | wc -l, without a shell."""
    p1 = subprocess.Popen(argv, stdout=subprocess.PIPE)
    p2 = subprocess.Popen(['wc', '-l'], stdin=p1.stdout, stdout=subprocess.PIPE)
    p1.stdout.close()
    out = p2.communicate()[0]
    p1.wait()
    return int(out.strip())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    ap.add_argument('--connections', type=int, default=100000,
                    help='established connections to open (2x sockets), default 100000')
    ap.add_argument('--per-worker', type=int, default=9900,
                    help='connections per worker process (2 fds each), default 9900')
    ap.add_argument('--batch', type=int, default=1000)
    ap.add_argument('--repeat', type=int, default=5)
    ap.add_argument('--no-ansible', action='store_true', help='skip the ad-hoc ansible run')
    ap.add_argument('--worker', nargs=2, type=int, metavar=('INDEX', 'CONNS'),
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker[0], args.worker[1], args.batch)

    if os.geteuid() != 0:
        ap.error('needs root (network namespaces)')
    sys.path.insert(0, os.path.join(REPO, '.collections'))
    from ansible_collections.scalelab.testbed.plugins.module_utils import sockdiag

    n = args.connections
    nworkers = (n + args.per_worker - 1) // args.per_worker
    shares = [n // nworkers + (1 if i < n % nworkers else 0) for i in range(nworkers)]
    workers = []
    result = {'connections': n, 'sockets': 2 * n, 'workers': nworkers}
    try:
        setup_netns()
        t0 = time.perf_counter()
        for i, share in enumerate(shares):
            workers.append(subprocess.Popen(
                netns_exec(sys.executable, os.path.abspath(__file__), '--batch',
                           str(args.batch), '--worker', str(i), str(share)),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
        for p in workers:
            line = p.stdout.readline()
            if not line.startswith('ready'):
                raise SystemExit('a worker failed before reaching its count (exit %s)' % p.poll())
        setup_s = time.perf_counter() - t0
        print('opened %d connections (%d sockets) with %d workers in %.1f s'
              % (n, 2 * n, nworkers, setup_s))
        result['setup_seconds'] = round(setup_s, 2)

        rep = args.repeat
        lean_all = timed(lambda: sockdiag.count_tcp_states(NETNS), rep)
        lean_est = timed(lambda: sockdiag.count_tcp_states(NETNS, ['established']), rep)
        port0 = BASE_PORT
        lean_port = timed(lambda: sockdiag.count_tcp_states(
            NETNS, ['established'], local_ports=[(port0, port0)]), rep)
        lean_v4net = timed(lambda: sockdiag.count_tcp_states(
            NETNS, ['established'], families=['inet'], local_networks=['127.0.1.0/24']), rep)
        est = lean_est[2]['established']
        total_all = sum(lean_all[2].values())

        # the kernel's floor: the same combined dump on the same socket, received
        # but not parsed (a walker that only looks for NLMSG_DONE at the end)
        from ansible_collections.scalelab.testbed.plugins.module_utils import netlink
        from ansible_collections.scalelab.testbed.plugins.module_utils.netns import enter_netns

        def kernel_floor():
            def walk(buf, n, state, seq):
                state.count += n            # bytes, here
                # NLMSG_DONE (20 bytes) always ends the last datagram
                if n >= 20 and netlink.NLMSGHDR.unpack_from(buf, n - 20)[:2] == (20, 3):
                    state.done = True
            with netlink.NetlinkSocket(netlink.NETLINK_SOCK_DIAG, NETNS) as so:
                mtype, payload = sockdiag.request_payload('any', 1 << 1, b'')
                return so.dump(mtype, payload, walk).count
        floor = timed(kernel_floor, rep)

        ss_all = timed(lambda: pipe_count(netns_exec('ss', '-tan')), rep)
        ss_est = timed(lambda: pipe_count(netns_exec('ss', '-tan', 'state', 'established')), rep)

        # the module as a process: python plugins/modules/tcp_sockets_info.py ARGSFILE
        args_path = '/tmp/tbc-bench-args.json'
        with open(args_path, 'w') as f:
            json.dump({'ANSIBLE_MODULE_ARGS': {'netns': NETNS, 'states': ['established'],
                                               'expect_at_least': 2 * n}}, f)
        env = dict(os.environ, PYTHONPATH=os.path.join(REPO, '.collections'))
        module_py = os.path.join(REPO, 'plugins', 'modules', 'tcp_sockets_info.py')

        def module_run():
            out = subprocess.run([sys.executable, module_py, args_path], env=env, check=True,
                                 stdout=subprocess.PIPE, text=True).stdout
            return json.loads(out)
        mod = timed(module_run, rep)
        os.unlink(args_path)

        adhoc = None
        if not args.no_ansible:
            ansible = os.path.join(os.path.dirname(sys.executable), 'ansible')
            adhoc_env = dict(os.environ, ANSIBLE_LOAD_CALLBACK_PLUGINS='1',
                             ANSIBLE_STDOUT_CALLBACK='ansible.builtin.minimal')

            def adhoc_run():
                subprocess.run([ansible, 'localhost', '-m', 'scalelab.testbed.tcp_sockets_info',
                                '-a', json.dumps({'netns': NETNS, 'expect_at_least': 2 * n})],
                               cwd=REPO, env=adhoc_env, check=True, stdout=subprocess.DEVNULL)
            adhoc = timed(adhoc_run, max(1, rep // 2))

        # pyroute2 on the subset of one listener port (kernel filters by exact sport)
        from pyroute2 import DiagSocket

        def pyroute2_subset():
            with enter_netns(NETNS):
                ds = DiagSocket()
            try:
                ds.bind()
                return len(ds.get_sock_stats(family=socket.AF_INET, states=1 << 1,
                                             sport=port0))
            finally:
                ds.close()
        pr2 = timed(pyroute2_subset, 1)
        pr2_n = pr2[2]
    finally:
        teardown(workers)

    us_lean = lean_est[0] / max(est, 1) * 1e6
    us_pr2 = pr2[0] / max(pr2_n, 1) * 1e6
    rows = [
        ('lean count_tcp_states, all states', lean_all, total_all),
        ('lean count_tcp_states, established', lean_est, est),
        ('lean, established, local port %d (bytecode)' % port0, lean_port,
         lean_port[2]['established']),
        ('lean, established, ipv4, local 127.0.1.0/24 (bytecode)', lean_v4net,
         lean_v4net[2]['established']),
        ('kernel floor: same dump received, not parsed (%.0f MB)' % (floor[2] / 1e6), floor, None),
        ('module process (import + dump)', mod, mod[2]['total']),
        ('ss -tan | wc -l', ss_all, ss_all[2] - 1),
        ('ss -tan state established | wc -l', ss_est, ss_est[2] - 1),
        ('pyroute2 DiagSocket, sport %d subset' % port0, pr2, pr2_n),
    ]
    if adhoc:
        rows.insert(6, ('ansible ad-hoc run (whole task)', adhoc, None))
    print('%-58s %9s %9s %10s' % ('method', 'best s', 'median s', 'sockets'))
    for name, t, count in rows:
        print('%-58s %9.4f %9.4f %10s' % (name, t[0], t[1], '' if count is None else count))
    ratio_ss_all = ss_all[0] / lean_all[0]
    ratio_ss_est = ss_est[0] / lean_est[0]
    print('per socket: lean %.3f us, pyroute2 %.1f us (%.0fx)' % (us_lean, us_pr2, us_pr2 / us_lean))
    print('Python share of the lean count: %.0f%% (kernel floor %.4f s)'
          % (max(0.0, 1 - floor[0] / lean_est[0]) * 100, floor[0]))
    print('ss -tan | wc -l is %.1fx slower than the lean reader (all states)' % ratio_ss_all)
    print('ss -tan state established | wc -l is %.1fx slower (established)' % ratio_ss_est)
    print('module reported dump time %.4f s; lean count at this size, scaled to 1,000,000 '
          'sockets: %.2f s' % (mod[2]['seconds'], us_lean))
    checks = {
        'lean_established_equals_2n': est == 2 * n,
        'ss_established_matches': ss_est[2] - 1 == est,
        'ss_all_matches': ss_all[2] - 1 == total_all,
        'module_matches': mod[2]['total'] == est,
        'port_subset_matches_pyroute2': lean_port[2]['established'] == pr2_n,
    }
    print('checks: %s' % ', '.join('%s=%s' % kv for kv in checks.items()))
    result.update({
        'lean_all_s': round(lean_all[0], 4),
        'lean_established_s': round(lean_est[0], 4),
        'lean_port_filtered_s': round(lean_port[0], 4),
        'lean_net_filtered_s': round(lean_v4net[0], 4),
        'kernel_floor_s': round(floor[0], 4),
        'module_process_s': round(mod[0], 4),
        'module_reported_s': mod[2]['seconds'],
        'ansible_adhoc_s': round(adhoc[0], 3) if adhoc else None,
        'ss_all_s': round(ss_all[0], 4),
        'ss_established_s': round(ss_est[0], 4),
        'pyroute2_subset_sockets': pr2_n,
        'pyroute2_subset_s': round(pr2[0], 4),
        'us_per_socket_lean': round(us_lean, 4),
        'us_per_socket_pyroute2': round(us_pr2, 2),
        'ratio_ss_all_over_lean': round(ratio_ss_all, 2),
        'ratio_ss_established_over_lean': round(ratio_ss_est, 2),
        'ratio_pyroute2_over_lean_per_socket': round(us_pr2 / us_lean, 1),
        'extrapolated_1M_sockets_s': round(us_lean, 3),
        'checks': checks,
    })
    print(json.dumps(result, sort_keys=True))
    return 0 if all(checks.values()) else 1


if __name__ == '__main__':
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sys.exit(main())
