# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a host agent that walks every process's open files takes for descriptors at rest.

    . .venv/bin/activate
    flock /tmp/scalelab-heavy.lock python3 benchmarks/walker.py [--pairs 10] [--fds 19000]
        [--kinds tcp,null,spawn] [--alternations 2] [--windows 3] [--window 10]

On this machine PID 1 (`process_api`) walks the open files of every process,
and its CPU grows with the descriptors held (docs/sizing.md). This samples its
CPU time from /proc/1/stat (or --pid's) over --windows windows of --window
seconds while descriptors are held by processes that do nothing else:

- ``tcp``: the naive baseline's own scripts (benchmarks/connections.py), --pairs
  listeners and as many clients of --fds connections each, through loopback in a
  namespace of their own: 2 x pairs x fds descriptors;
- ``null``: 2 x pairs holders of --fds ``/dev/null`` descriptors each (as many);
- ``spawn``: the null holders, while ``/bin/true`` is spawned 10 times a second.

Every kind runs --alternations times, in turn; after each, one window with nothing
held. The last stdout line is one JSON object: {kind: [core fractions]}.
"""

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import connections as bench  # noqa: E402  pylint: disable=wrong-import-position

NS = 'tbd-bench-walker'
NULL_HOLDER = r'''
import os, resource, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
fds = [os.open(os.devnull, os.O_RDONLY) for _ in range(int(sys.argv[1]))]
print('ready', flush=True)
sys.stdin.readline()
'''
SPAWN_RATE = 10.0


def cpu_seconds(pid):
    """utime + stime of pid, in seconds."""
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / float(os.sysconf('SC_CLK_TCK'))


def window(pid, seconds, spawn=False):
    """The fraction of a core pid took over the next seconds (spawning /bin/true meanwhile)."""
    c0, t0 = cpu_seconds(pid), time.monotonic()
    while time.monotonic() - t0 < seconds:
        if spawn:
            subprocess.run(['/bin/true'], check=False)
            time.sleep(1.0 / SPAWN_RATE)
        else:
            time.sleep(0.2)
    return round((cpu_seconds(pid) - c0) / (time.monotonic() - t0), 3)


def spawn(argv):
    return subprocess.Popen(['ip', 'netns', 'exec', NS] + argv, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, universal_newlines=True,
                            start_new_session=True)


def hold(kind, pairs, fds):
    """Start the holders of one kind; returns them once every descriptor is held."""
    procs = []
    if kind == 'tcp':
        for i in range(pairs):
            procs.append(spawn([sys.executable, '-c', bench.BASELINE_SERVER, '127.0.0.1',
                                str(20000 + i), str(fds)]))
        for p in procs:
            if p.stdout.readline().strip() != 'ready':
                raise SystemExit('walker.py: a listener did not start')
        clients = [spawn([sys.executable, '-c', bench.BASELINE_CLIENT, '127.0.0.1',
                          str(20000 + i), str(fds)]) for i in range(pairs)]
        for c in clients:
            c.stdout.readline()                 # loaded
        for c in clients:
            c.stdin.write('go\n')
            c.stdin.flush()
        for c in clients:
            done = c.stdout.readline().split()
            if not done or done[0] != 'done' or int(done[1]) != fds:
                raise SystemExit('walker.py: a client did not connect: %s' % done)
        procs += clients
    else:
        procs = [spawn([sys.executable, '-c', NULL_HOLDER, str(fds)]) for _i in range(2 * pairs)]
        for p in procs:
            if p.stdout.readline().strip() != 'ready':
                raise SystemExit('walker.py: a holder did not start')
    return procs


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    p.add_argument('--pairs', type=int, default=10)
    p.add_argument('--fds', type=int, default=19000, help='descriptors per process')
    p.add_argument('--kinds', default='tcp,null,spawn')
    p.add_argument('--alternations', type=int, default=2)
    p.add_argument('--windows', type=int, default=3)
    p.add_argument('--window', type=float, default=10.0, help='seconds')
    p.add_argument('--pid', type=int, default=1, help='the walker (default: PID 1)')
    args = p.parse_args()
    kinds = args.kinds.split(',')
    for k in kinds:
        if k not in ('tcp', 'null', 'spawn'):
            p.error('--kinds: %s is not one of tcp, null, spawn' % k)
    out = {'pid': args.pid, 'descriptors': 2 * args.pairs * args.fds, 'window_s': args.window}
    subprocess.run(['ip', 'netns', 'delete', NS], check=False, stderr=subprocess.DEVNULL)
    subprocess.run(['ip', 'netns', 'add', NS], check=True)
    try:
        subprocess.run(['ip', '-n', NS, 'link', 'set', 'lo', 'up'], check=True)
        subprocess.run(['ip', 'netns', 'exec', NS, 'sysctl', '-qw',
                        'net.ipv4.ip_local_port_range=1024 65535'], check=True)
        out['nothing held'] = [window(args.pid, args.window)]
        for _a in range(args.alternations):
            for kind in kinds:
                procs = hold('null' if kind == 'spawn' else kind, args.pairs, args.fds)
                try:
                    time.sleep(3)
                    for _w in range(args.windows):
                        v = window(args.pid, args.window, spawn=kind == 'spawn')
                        out.setdefault(kind, []).append(v)
                        print('%-6s %d descriptors: %.3f of a core' % (kind, out['descriptors'], v),
                              flush=True)
                finally:
                    for proc in procs:
                        proc.kill()
                    for proc in procs:
                        proc.wait()
                time.sleep(3)
                out['nothing held'].append(window(args.pid, args.window / 2))
    finally:
        subprocess.run(['ip', 'netns', 'delete', NS], check=False)
    print(json.dumps(out, sort_keys=True))


if __name__ == '__main__':
    main()
