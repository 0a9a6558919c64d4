# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What binding each connection to its source costs the engine's client, in one run.

    . .venv/bin/activate
    flock /tmp/scalelab-heavy.lock python3 benchmarks/bind.py [--connections N] [--rounds R]

In benchmarks/connections.py's two namespaces, a listener process accepts and
closes on 64 ports while this process opens N connections in a loop the way the
engine's client worker does: a non-blocking socket, connect() twice, tuple by
tuple (plan.worker_order, the engine's own function). The rounds alternate:
bound (IP_BIND_ADDRESS_NO_PORT, then bind() to the client namespace's second
address: what the engine does with several sources) and unbound (the first
address, the one the route picks: what it does with one source, plan.routes_choose).
Every round's connections are checked (each one established, from the address it
should have) and then reset (SO_LINGER 0), so each round starts from the same tables.

Prints each kind's wall and CPU (this process's user + system) microseconds per
connection, the median over its rounds, and the ratio unbound / bound; the last
line is one JSON object.
"""

import argparse
import errno
import json
import os
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import connections as bench  # noqa: E402  pylint: disable=wrong-import-position

sys.dont_write_bytecode = True              # no files/tcpscale/__pycache__ (the roles copy it)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), 'files'))
# pylint: disable-next=wrong-import-position
from tcpscale.plan import worker_order  # noqa: E402
# pylint: disable-next=wrong-import-position
from tcpscale.system import IP_BIND_ADDRESS_NO_PORT, LINGER_RST  # noqa: E402

PORTS = 64

LISTENER = r'''
import select, socket, sys
addr, lo, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
by = {}
ep = select.epoll()
for port in range(lo, lo + n):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(65535)
    s.setblocking(False)
    by[s.fileno()] = s
    ep.register(s.fileno(), select.EPOLLIN)
print('ready', flush=True)
while True:
    for fd, _ev in ep.poll():
        while True:
            try:
                c, _a = by[fd].accept()
            except BlockingIOError:
                break
            c.close()
'''


def one_round(n, src, dsts, bind):
    """(wall us, CPU us) per connection of n connections, bound to src or not, and how
    many of them were established from src (checked after the timing)."""
    socks = []
    nonblock_stream = socket.SOCK_STREAM | socket.SOCK_NONBLOCK
    ndst = len(dsts)
    t0, c0 = time.perf_counter(), os.times()
    for g in worker_order(0, n, ndst):
        s = socket.socket(socket.AF_INET, nonblock_stream)
        if bind:
            s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            s.bind((src, 0))
        d = dsts[g % ndst]
        if s.connect_ex(d) == errno.EINPROGRESS:
            s.connect_ex(d)
        socks.append(s)
    t1, c1 = time.perf_counter(), os.times()
    ok = 0
    for s in socks:
        try:
            s.getpeername()
            ok += s.getsockname()[0] == src
        except OSError:
            pass
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
        s.close()
    cpu = (c1.user - c0.user) + (c1.system - c0.system)
    return (t1 - t0) * 1e6 / n, cpu * 1e6 / n, ok


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    p.add_argument('--connections', type=int, default=19000,
                   help='connections per round (default 19,000: what one engine worker holds here)')
    p.add_argument('--rounds', type=int, default=16, help='rounds of each kind (default 16)')
    args = p.parse_args()
    if args.connections < 1 or args.rounds < 1:
        p.error('--connections and --rounds: give 1 or more')
    host = bench.HostSettings()
    listener = None
    got = {'bound': [], 'unbound': []}
    try:
        # the route picks the first; a bound connection from the second shows its bind
        routed, other = bench.create_namespaces(host, 2, 0)
        listener = subprocess.Popen(bench.ip_netns_exec(bench.NS_SRV, [
            sys.executable, '-c', LISTENER, bench.SRV_ADDR, str(bench.PORT_LO), str(PORTS)]),
            stdout=subprocess.PIPE, universal_newlines=True)
        if listener.stdout.readline().strip() != 'ready':
            raise SystemExit('bind.py: the listener did not start')
        dsts = [(bench.SRV_ADDR, bench.PORT_LO + i) for i in range(PORTS)]
        with bench.nsmod.enter_netns(bench.NS_CLI):
            for r in range(args.rounds):
                for kind in (('bound', 'unbound') if r % 2 == 0 else ('unbound', 'bound')):
                    time.sleep(0.5)         # the listener catches up, the resets settle
                    bound = kind == 'bound'
                    got[kind].append(one_round(args.connections, other if bound else routed,
                                               dsts, bound))
    finally:
        if listener is not None:
            listener.kill()
            listener.wait()
        bench.remove_namespaces()
        host.restore()
    out = {'connections': args.connections, 'rounds': args.rounds}
    for kind, runs in got.items():
        out[kind] = {'wall_us_per_conn': round(statistics.median(r[0] for r in runs), 2),
                     'cpu_us_per_conn': round(statistics.median(r[1] for r in runs), 2),
                     'wall_by_round': [round(r[0], 2) for r in runs],
                     'established_by_round': [r[2] for r in runs]}
        bench.log('%-8s wall %5.2f us, CPU %5.2f us per connection (median of %d rounds: %s); '
                  'established from its source: %s'
                  % (kind, out[kind]['wall_us_per_conn'], out[kind]['cpu_us_per_conn'],
                     len(runs), ', '.join('%.2f' % r[0] for r in runs),
                     ', '.join(str(r[2]) for r in runs)))
    out['unbound_vs_bound'] = {
        'wall': round(out['unbound']['wall_us_per_conn'] / out['bound']['wall_us_per_conn'], 3),
        'cpu': round(out['unbound']['cpu_us_per_conn'] / out['bound']['cpu_us_per_conn'], 3)}
    bench.log('unbound / bound: wall %.3fx, CPU %.3fx' % (out['unbound_vs_bound']['wall'],
                                                          out['unbound_vs_bound']['cpu']))
    short = {kind: [r[2] for r in runs if r[2] != args.connections] for kind, runs in got.items()}
    for kind, counts in short.items():
        if counts:
            bench.log('%s: %d round(s) with fewer than %d connections established from its '
                      'source (%s): their times do not count' % (
                          kind, len(counts), args.connections, ', '.join(map(str, counts))))
    print(json.dumps(out, sort_keys=True))
    return 1 if any(short.values()) else 0


if __name__ == '__main__':
    sys.exit(main())
