# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Python cost of the protocol codec per connection (no sockets), in one run.

    python3 benchmarks/protocol_codec.py [--reference-engine DIR] [--number N]

Times, with timeit (best of 7 repeats of N calls), what the engine's two halves do
in Python for each http or websocket connection besides the system calls: the
client's Sec-WebSocket-Key and expected accept, the server's 101 answer, and the
client's reading of a 101 and of a 200. With --reference-engine DIR (another
copy of files/tcpscale, for instance an older commit's from `git worktree add`)
the same calls of that copy are timed in the same run, alternating, and each
ratio is this engine's time over the reference's.

The last stdout line is one JSON object: {engine: {call: us}}, ratios.
"""

import argparse
import importlib.util
import json
import os
import sys
import timeit

HERE = os.path.dirname(os.path.abspath(__file__))
ENGINE = os.path.join(os.path.dirname(HERE), 'files', 'tcpscale')


def load(engine_dir, name):
    """The protocol module of the engine at engine_dir, under its own name."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(engine_dir, 'protocol.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def calls(pr):
    """{call: zero-argument function} of one engine's codec."""
    head, tail = pr.ws_request_parts('/', '198.18.0.1:10000')
    key = pr.ws_key()
    accept = pr.ws_accept(key)
    upgrade = head + key + tail
    answer_101 = pr.ws_handshake_response(upgrade)
    answer_200 = pr.http_response()
    if pr.Reader(0, False, accept).feed(answer_101) != (101, None, b''):
        raise SystemExit('protocol_codec.py: the 101 does not read back')
    return {'ws_key': pr.ws_key,
            'ws_accept': lambda: pr.ws_accept(key),
            'server_101_answer': lambda: pr.ws_handshake_response(upgrade),
            'client_reads_101': lambda: pr.Reader(0, False, accept).feed(answer_101),
            'client_reads_200': lambda: pr.Reader(0, False).feed(answer_200)}


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    p.add_argument('--reference-engine', metavar='DIR', help='another copy of files/tcpscale')
    p.add_argument('--number', type=int, default=100000, help='calls per repeat')
    args = p.parse_args()
    engines = [('engine', ENGINE)]
    if args.reference_engine:
        engines.append(('reference', os.path.abspath(args.reference_engine)))
    funcs = dict((label, calls(load(d, 'codec_' + label))) for label, d in engines)
    best = dict((label, {}) for label, _d in engines)
    for _round in range(7):
        for label, _d in engines:
            for call, fn in funcs[label].items():
                us = timeit.timeit(fn, number=args.number) / args.number * 1e6
                best[label][call] = min(us, best[label].get(call, us))
    out = {'python': sys.version.split()[0], 'number': args.number,
           'us': dict((label, dict((c, round(v, 3)) for c, v in b.items()))
                      for label, b in best.items())}
    for call in funcs['engine']:
        line = '%-18s %7.3f us' % (call, best['engine'][call])
        if args.reference_engine:
            ref = best['reference'][call]
            out.setdefault('ratio_vs_reference', {})[call] = round(best['engine'][call] / ref, 2)
            line += '   reference %7.3f us   %.2fx' % (ref, best['engine'][call] / ref)
        print(line)
    for label in best:
        ws = sum(best[label][c] for c in ('ws_key', 'ws_accept', 'server_101_answer',
                                          'client_reads_101'))
        out['us'][label]['websocket_per_connection'] = round(ws, 3)
        out['us'][label]['http_per_connection'] = round(best[label]['client_reads_200'], 3)
        print('%-10s websocket %.3f us, http %.3f us per connection (these calls)'
              % (label, ws, best[label]['client_reads_200']))
    print(json.dumps(out, sort_keys=True))


if __name__ == '__main__':
    main()
