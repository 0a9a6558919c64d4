# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark of the client protocols (tcp, http, websocket) at N connections, in one run.

    . .venv/bin/activate
    flock /tmp/scalelab-heavy.lock python3 benchmarks/protocols.py --connections 150000

Each protocol runs the engine's two halves against each other in fresh
namespaces, as benchmarks/connections.py does (the same phase code): the
server half answers the protocol (200s, the WebSocket upgrade), the client
half opens N connections, each one's first answer counted before it counts
toward the target, and sock_diag verifies the count on both sides. For each
it prints the rate, the user memory per connection (client and server PSS),
the CPU us per connection and the ratios against tcp and tcp-epoll from the
same run (tcp-epoll: tcp with every held connection in an epoll set, --watch
epoll on both halves, the way any protocol holds them with heartbeats). With
--tls each protocol runs again wrapped in TLS (the server half with a
self-signed P-256 certificate made by openssl for the run, the client
resuming sessions), against the same tcp. With --reference-engine DIR each
protocol runs again, right after, with that copy of the engine (an older
commit's, from `git worktree add`; entries named PROTOCOL@reference): the
ratio of the two rates, from one run. --perf profiles each ramp as
connections.py --perf does. --rounds N runs every phase N times, in
alternating order, and reports each ratio as the median of the ratios taken
within each round.

The last stdout line is one JSON object: {protocol: figures}, ratios.
"""

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import connections as bench  # noqa: E402  pylint: disable=wrong-import-position

PROTOCOLS = ('tcp', 'tcp-epoll', 'http', 'websocket')
# tcp-epoll: tcp with every held connection in an epoll set on both halves (--watch epoll),
# as any protocol holds them with heartbeats (read as they arrive); the default runs keep
# them out of epoll (--watch auto resolves to poll without heartbeats), a faster ramp
EPOLL = ['--watch', 'epoll']


def figures(phase):
    cpu = phase.get('cpu_us_per_conn') or {}
    return {'ok': phase.get('ok'), 'established': phase.get('established'),
            'connections_per_s': phase.get('connections_per_s'),
            'seconds_to_target': phase.get('seconds_to_target'),
            'user_bytes_per_conn': phase.get('user_bytes_per_conn'),
            'user_bytes_per_conn_client': phase.get('user_bytes_per_conn_client'),
            'kernel_bytes_per_conn': phase.get('kernel_bytes_per_conn'),
            'cpu_us_per_conn': round(sum(cpu.values()), 1) if cpu else None,
            'answers': ((phase.get('client_summary') or {}).get('protocol') or {}).get(
                'responses_by_status'),
            'profile': phase.get('profile'),
            'error': phase.get('error')}


def self_signed(directory):
    """(certificate, key) files of a self-signed P-256 certificate, made by openssl."""
    crt, key = os.path.join(directory, 'bench.crt'), os.path.join(directory, 'bench.key')
    openssl = shutil.which('openssl')
    if not openssl:
        raise SystemExit('protocols.py --tls: openssl is missing (apt-get install openssl)')
    subprocess.run([openssl, 'req', '-x509', '-newkey', 'ec', '-pkeyopt',
                    'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', crt,
                    '-days', '2', '-subj', '/CN=tcpscale-bench'], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return crt, key


RATIOS = ('rate_vs_tcp', 'rate_vs_tcp_epoll', 'rate_vs_reference')


def run_phase(args, host, proto, tls, suffix, engine, r):
    """One protocol's phase, by one engine: its figures from benchmarks/connections.py."""
    label = 'engine-%s%s%s' % (proto, '-tls' if tls else '', suffix)
    if args.rounds > 1:
        label += '-r%d' % (r + 1)
    try:
        if proto == 'tcp-epoll':
            return bench.run_engine(args, host, label=label, tls=tls, engine=engine,
                                    client_extra=EPOLL, server_extra=EPOLL)
        return bench.run_engine(args, host, label=label, protocol=proto, tls=tls, engine=engine)
    except bench.BenchError as exc:
        return {'ok': False, 'error': str(exc)}


def add_ratios(got):
    """The ratios of one round's rates (got: {protocol: figures}), within that round:
    against tcp and tcp-epoll run by the same engine, and against the reference engine."""
    for proto, f in got.items():
        suffix = '@reference' if proto.endswith('@reference') else ''
        rate = f.get('connections_per_s')
        for key, other in (('rate_vs_tcp', 'tcp' + suffix),
                           ('rate_vs_tcp_epoll', 'tcp-epoll' + suffix),
                           ('rate_vs_reference', proto + '@reference')):
            base = (got.get(other) or {}).get('connections_per_s')
            if base and rate:
                f[key] = round(rate / base, 2)


def combine(rounds):
    """{protocol: figures} over the rounds: one round's as they are; of several, the
    median-rate run's figures, each ratio the median of the rounds' own ratios (in
    'ratios_by_round', in the order the rounds ran), ok when every run was."""
    if len(rounds) <= 1:
        return rounds[0] if rounds else {}      # (none: stopped before the first phase)
    out = {}
    for proto in rounds[0]:
        runs = [got[proto] for got in rounds if proto in got]
        f = bench.median_run(runs)
        f['ok'] = all(run.get('ok') for run in runs)
        by_round = {key: [run.get(key) for run in runs] for key in RATIOS
                    if all(run.get(key) is not None for run in runs)}
        for key in RATIOS:
            f.pop(key, None)
        for key, values in by_round.items():
            f[key] = bench.lower_median(values)
        f['ratios_by_round'] = by_round
        out[proto] = f
    return out


def row(proto, f, prefix):
    return ('%s%-22s %10s/s  user %8s B/conn  cpu %6s us/conn  vs tcp %s  vs tcp-epoll %s%s%s'
            % (prefix, proto, f.get('connections_per_s'), f.get('user_bytes_per_conn'),
               f.get('cpu_us_per_conn'), f.get('rate_vs_tcp', '-'),
               f.get('rate_vs_tcp_epoll', '-'),
               '  vs reference %s' % f['rate_vs_reference'] if 'rate_vs_reference' in f else '',
               '' if f.get('ok') else '  FAILED %s' % (f.get('error') or '')))


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    p.add_argument('--connections', type=int, required=True)
    bench.add_layout_options(p)
    p.add_argument('--protocols', default=','.join(PROTOCOLS))
    p.add_argument('--tls', action='store_true', help='also run each protocol over TLS')
    p.add_argument('--rounds', type=int, default=1,
                   help='run every phase this many times, in alternating order; each ratio is '
                        'then the median of the ratios taken within each round (the lower '
                        'middle one of an even count), each protocol\'s figures those of its '
                        'median-rate run: on a noisy machine a slow spell then hits every '
                        'protocol')
    bench.add_engine_options(p)
    args = p.parse_args()
    if args.rounds < 1:
        p.error('--rounds: give 1 or more')
    wanted = [x for x in args.protocols.split(',') if x]
    host = bench.HostSettings()
    bench.interrupt_on_sigterm()
    out = {'connections': args.connections, 'command': shlex.join([sys.executable] + sys.argv)}
    rounds = []
    workdir = tempfile.mkdtemp(prefix='tbd-bench-tls.')
    try:
        bench.preflight(args, host)
        runs = [(proto, None) for proto in wanted]
        if args.tls:
            cert = self_signed(workdir)
            runs += [(proto, cert) for proto in wanted]
        bench.wait_settled('start', timeout=30)
        engines = [('', bench.ENGINE)]
        if args.reference_engine:
            engines.append(('@reference', os.path.abspath(args.reference_engine)))
        phases = [(proto, tls, suffix, engine) for proto, tls in runs for suffix, engine in engines]
        for r in range(args.rounds):
            got = {}
            rounds.append(got)
            for proto, tls, suffix, engine in phases if r % 2 == 0 else phases[::-1]:
                got[proto + ('+tls' if tls else '') + suffix] = figures(
                    run_phase(args, host, proto, tls, suffix, engine, r))
    except KeyboardInterrupt:
        out['interrupted'] = True
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        try:
            bench.remove_namespaces()
        finally:
            host.restore()
    for got in rounds:
        add_ratios(got)
    out['protocols'] = combine(rounds)
    if len(rounds) > 1:
        out['rounds'] = rounds
    rows = []
    for r, got in enumerate(rounds):
        rows += [row(proto, f, 'round %d ' % (r + 1) if len(rounds) > 1 else '')
                 for proto, f in got.items()]
    if len(rounds) > 1:
        rows += [row(proto, f, 'median  ') for proto, f in out['protocols'].items()]
    for line in rows:
        bench.log(line)
    ok = out['protocols'] and not out.get('interrupted')
    ok = ok and all(f.get('ok') for f in out['protocols'].values())
    bench.finish_workdirs(args.keep_files, not ok)
    sys.stdout.write(json.dumps(out, sort_keys=True) + '\n')
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
