# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark of the load engine (the package files/tcpscale) at N connections.

    . .venv/bin/activate
    flock /tmp/scalelab-heavy.lock python3 benchmarks/connections.py --connections 1000000 \\
        [--baseline] [--heartbeat-interval 30] [--metrics] [--reference-engine DIR] [--keep-going]
        [--client-args ARGS] [--variant ARGS] [--rounds N] [--perf] [--idle-descriptors N]
        [--sessions per-process]

For every phase it creates two fresh network namespaces (tbd-bench-srv and
tbd-bench-cli) joined by a veth pair, gives the client side its source
address(es) (by default the blocking contenders' layout: one source, one server
port per 19,000 connections; see layout_for), tunes the namespaces (port range,
somaxconn, SYN backlog), runs the server half and then the client half at N,
verifies the count with the collection's sock_diag counter in both namespaces
(and that the server half held every connection, not only its kernel: sock_diag
counts one still in an accept queue), and tears everything down
(also on Ctrl-C or failure). Host values it touches
(net.ipv4.tcp_child_ehash_entries around namespace creation, fs.file-max only
if too low) are restored.

Phases: the engine; with --heartbeat-interval the engine again with
heartbeats and server echo (the cost is the loss of connect rate); with
--baseline a naive baseline in the same run: one listener process per port,
one client process per port, blocking connect()/accept(), one socket object
per connection (what a throw-away script written for the job looks like; the
development machine's first million was measured with such scripts), at the
same N. With --metrics the engine again with live metrics on (textfile and
HTTP on both halves, scraped every second as Prometheus would): the cost is
the loss of connect rate. With --reference-engine DIR, another copy of the
engine (an older commit: `git worktree add /tmp/ref COMMIT`, then
/tmp/ref/files/tcpscale) at the same N, to measure what a change costs
against what came before (for instance the connect-latency histograms, which
are always on).

With --perf every engine phase runs under `perf record -a -g` (all CPUs, so
the kernel's softirq work and other processes count too) and its result gets
a profile: for the first and the last 10% of the ramp, the CPU microseconds
per connection by process (the engine's halves by pid) and by function
(inclusive), and the functions whose cost per connection grew the most: what
slows the ramp down as the count grows. --client-args ARGS adds options to the
engine's client half; --variant ARGS runs it again with other options (phase
engine_variant) and reports the ratio.

With --idle-descriptors N, helper processes hold N descriptors of /dev/null,
idle, through every phase: the extra work a host agent that walks every process's
open files gets (this machine's PID 1 is one; docs/sizing.md), to measure how
much each contender suffers from it in one run. Each phase's
foreign_cpu_during_ramp shows what that agent took.

Every contender's processes run in this benchmark's session, each in a process
group of its own (--sessions per-process: each in a session of its own, as this
benchmark ran them until 7 December 2026; the comment above add_engine_options says
why that favoured the blocking contenders). Every
phase's ramp is timed the same way: the client namespace's TCP sockets
(/proc/PID/net/sockstat) read every 50 ms, which gives each contender's rate over
the first and the last 10% of its ramp (ramp_tenths; the table's last/first 10%)
and what other processes took in each (foreign_cpu_by_window).

The last stdout line is one JSON object: established, seconds_to_target,
connections_per_s, user_bytes_per_conn (PSS of the client and server
processes together; an engine phase's pss_split gives each half's supervisor
apart from its workers' mean and largest, at the target), kernel_bytes_per_conn
(Slab + TCP memory delta), and per phase details, plus ratios against the
baseline. Its table (also printed to stderr) gives each contender's rate, bytes
and CPU per connection, in all and by half (cpu_us_per_conn_by_half: the client's
and the server's processes, from their own /proc times), with the engine's ratios;
with --rounds, each phase keeps every round's figures in by_round.
"""

import argparse
import glob
import json
import math
import os
import select
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
CREF_SRC = os.path.join(REPO, 'benchmarks', 'cref.c')
ENGINE = os.path.join(REPO, 'files', 'tcpscale')      # run as: python3 ENGINE server|client ...
sys.path.insert(0, os.path.join(REPO, '.collections'))

try:
    from ansible_collections.scalelab.testbed.plugins.module_utils.sockdiag import count_tcp_states
    from ansible_collections.scalelab.testbed.plugins.module_utils import netns as nsmod
    from pyroute2 import IPRoute
except ImportError as exc:     # pragma: no cover - environment problem
    sys.stderr.write('connections.py: cannot import the collection or pyroute2 (%s); run it with '
                     'the project virtualenv: . .venv/bin/activate\n' % exc)
    sys.exit(2)

NS_SRV = 'tbd-bench-srv'
NS_CLI = 'tbd-bench-cli'
VETH_SRV = 'tbd-bs'
VETH_CLI = 'tbd-bc'
SRV_ADDR = '198.18.0.1'
NET_PREFIX = 15
CLI_CIDR = '198.19.0.0/16'          # aliases 198.19.0.1 ...
PORT_LO = 10000
METRICS_PORTS = {'server': 19464, 'client': 19465}     # --metrics, on 127.0.0.1
BASE_PORT_LO = 20000
TARGET_PYTHON = '/usr/bin/python3'     # testbed_python's default: the engine's interpreter
BASE_PER_PROC = 19000
SOMAXCONN = 262144

BASELINE_SERVER = r'''
import resource, socket, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
addr, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind((addr, port))
ls.listen(65535)
print('ready', flush=True)
conns = []
while len(conns) < n:
    c, _a = ls.accept()
    conns.append(c)
print('held %d' % len(conns), flush=True)
sys.stdin.readline()
'''

BASELINE_CLIENT = r'''
import resource, socket, sys, time
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
addr, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
print('loaded', flush=True)
sys.stdin.readline()
conns = []
errors = 0
while len(conns) < n:
    s = socket.socket()
    try:
        s.connect((addr, port))
    except OSError:
        errors += 1
        s.close()
        if errors > 1000:
            break
        continue
    conns.append(s)
print('done %d %.6f %d' % (len(conns), time.monotonic(), errors), flush=True)
sys.stdin.readline()
'''


def log(msg):
    sys.stderr.write('[bench %s] %s\n' % (time.strftime('%H:%M:%S'), msg))
    sys.stderr.flush()


class BenchError(Exception):
    pass


# ---------------------------------------------------------------------------
# host and namespace plumbing

def read(path):
    with open(path) as f:
        return f.read().strip()


def write(path, value):
    with open(path, 'w') as f:
        f.write(str(value))


def ns_sysctl(name, key, value):
    path = '/proc/sys/' + key.replace('.', '/')
    with nsmod.enter_netns(name):
        write(path, value)
        return read(path)


class HostSettings(object):
    """Host sysctls changed by the benchmark, restored by restore()."""

    def __init__(self):
        self.saved = {}

    def set(self, key, value):
        path = '/proc/sys/' + key.replace('.', '/')
        if key not in self.saved:
            self.saved[key] = read(path)
        write(path, value)

    def restore_key(self, key):
        if key in self.saved:
            write('/proc/sys/' + key.replace('.', '/'), self.saved.pop(key))

    def restore(self):
        for key in list(self.saved):
            try:
                self.restore_key(key)
            except OSError as exc:
                log('could not restore %s: %s' % (key, exc))


def remove_namespaces():
    for name in (NS_SRV, NS_CLI):
        if nsmod.netns_exists(name):
            nsmod.remove_netns(name)


def create_namespaces(host, n_sources, ehash):
    remove_namespaces()
    ehash_path = '/proc/sys/net/ipv4/tcp_child_ehash_entries'
    if ehash and os.path.exists(ehash_path):
        host.set('net.ipv4.tcp_child_ehash_entries', ehash)
    try:
        nsmod.create_netns(NS_SRV)
        nsmod.create_netns(NS_CLI)
    finally:
        host.restore_key('net.ipv4.tcp_child_ehash_entries')
    with IPRoute(netns=NS_SRV) as ip:
        ip.link('add', ifname=VETH_SRV, kind='veth',
                peer={'ifname': VETH_CLI, 'net_ns_fd': NS_CLI})
        idx = ip.link_lookup(ifname=VETH_SRV)[0]
        ip.addr('add', index=idx, address=SRV_ADDR, prefixlen=NET_PREFIX)
        ip.link('set', index=idx, state='up')
        ip.link('set', index=ip.link_lookup(ifname='lo')[0], state='up')
    sources = ['198.19.%d.%d' % (i // 254, i % 254 + 1) for i in range(n_sources)]
    with IPRoute(netns=NS_CLI) as ip:
        idx = ip.link_lookup(ifname=VETH_CLI)[0]
        for a in sources:
            ip.addr('add', index=idx, address=a, prefixlen=NET_PREFIX)
        ip.link('set', index=idx, state='up')
        ip.link('set', index=ip.link_lookup(ifname='lo')[0], state='up')
    ns_sysctl(NS_CLI, 'net.ipv4.ip_local_port_range', '1024 65535')
    ns_sysctl(NS_SRV, 'net.core.somaxconn', SOMAXCONN)
    ns_sysctl(NS_SRV, 'net.ipv4.tcp_max_syn_backlog', SOMAXCONN)
    return sources


# ---------------------------------------------------------------------------
# measurements

def meminfo():
    out = {}
    with open('/proc/meminfo') as f:
        for line in f:
            k, v = line.split(':', 1)
            out[k] = int(v.split()[0]) * 1024
    return out


def tcp_mem_bytes():
    with open('/proc/net/sockstat') as f:
        for line in f:
            if line.startswith('TCP:'):
                parts = line.split()
                return int(parts[parts.index('mem') + 1]) * os.sysconf('SC_PAGE_SIZE')
    return 0


def slabinfo():
    out = {}
    try:
        with open('/proc/slabinfo') as f:
            for line in f:
                if line.startswith(('slabinfo', '#')):
                    continue
                p = line.split()
                out[p[0]] = int(p[1]) * int(p[3])      # active objects x object size
    except OSError:
        pass
    return out


def softnet_drops():
    total = 0
    with open('/proc/net/softnet_stat') as f:
        for line in f:
            total += int(line.split()[1], 16)
    return total


def cpu_times():
    """System-wide jiffies from /proc/stat: user, nice, system, idle, iowait, irq, softirq."""
    with open('/proc/stat') as f:
        parts = f.readline().split()
    return [int(x) for x in parts[1:8]]


def cpu_delta(before, after, per):
    names = ('user', 'nice', 'system', 'idle', 'iowait', 'irq', 'softirq')
    hz = os.sysconf('SC_CLK_TCK')
    d = dict((n, (b - a) / float(hz)) for n, a, b in zip(names, before, after))
    busy = sum(v for k, v in d.items() if k not in ('idle', 'iowait'))
    total = busy + d['idle'] + d['iowait']
    out = {'seconds': dict((k, round(v, 2)) for k, v in d.items()),
           'busy_pct': round(100.0 * busy / total, 1) if total else None}
    if per:
        out['busy_us_per_conn'] = round(busy * 1e6 / per, 1)
        out['softirq_us_per_conn'] = round(d['softirq'] * 1e6 / per, 1)
        out['system_us_per_conn'] = round(d['system'] * 1e6 / per, 1)
        out['user_us_per_conn'] = round((d['user'] + d['nice']) * 1e6 / per, 1)
    return out


def proc_stat(pid):
    """(comm, ppid, user+system ticks) from /proc/PID/stat; None when it is gone."""
    try:
        with open('/proc/%s/stat' % pid) as f:
            st = f.read()
    except OSError:
        return None
    fields = st[st.rindex(')') + 2:].split()
    return st[st.index('(') + 1:st.rindex(')')], fields[1], int(fields[11]) + int(fields[12])


def process_cpu():
    """pid -> (comm, user+system ticks) of every user-space process."""
    out = {}
    for name in os.listdir('/proc'):
        if not name.isdigit():
            continue
        st = proc_stat(name)
        if st is None:
            continue
        comm, ppid, ticks = st
        if ppid == '2' or name == '2':       # kernel threads (children of kthreadd)
            continue
        out[int(name)] = (comm, ticks)
    return out


def foreign_cpu(before, after, ours):
    """CPU seconds used by processes that are not part of this benchmark."""
    hz = float(os.sysconf('SC_CLK_TCK'))
    total = 0
    tops = {}
    for pid, (comm, ticks) in after.items():
        if pid == os.getpid() or comm.startswith('tcpscale') or pid in ours:
            continue
        d = ticks - before.get(pid, (comm, 0))[1]
        if d > 0:
            total += d
            tops[comm] = tops.get(comm, 0) + d
    top = sorted(tops.items(), key=lambda kv: -kv[1])[:3]
    return {'seconds': round(total / hz, 2),
            'top': dict((k, round(v / hz, 2)) for k, v in top)}


class ForeignSampler(object):
    """The CPU time of the processes that are not the benchmark's own (foreign_cpu's
    rule) and were there when the ramp began, sampled while it runs: what they took in
    its first and in its last 10% (the descriptor walker's share grows with the
    descriptors open)."""

    def __init__(self, procs, ours):
        self.last = dict((pid, ticks) for pid, (comm, ticks) in procs.items()
                         if pid != os.getpid() and not comm.startswith('tcpscale')
                         and pid not in ours)
        self.samples = []

    def sample(self):
        for pid in list(self.last):
            st = proc_stat(pid)
            if st is not None:      # gone: its last reading stays in the sum
                self.last[pid] = st[2]
        self.samples.append((time.monotonic(), sum(self.last.values())))

    def ticks_at(self, t):
        """Interpolated total ticks at monotonic time t (None outside the samples)."""
        for (t0, a), (t1, b) in zip(self.samples, self.samples[1:]):
            if t0 <= t <= t1:
                return a + (b - a) * ((t - t0) / (t1 - t0) if t1 > t0 else 0.0)
        return None

    def window(self, t0, t1):
        a, b = self.ticks_at(t0), self.ticks_at(t1)
        if a is None or b is None or t1 <= t0:
            return None
        secs = (b - a) / float(os.sysconf('SC_CLK_TCK'))
        return {'seconds': round(secs, 2),
                'share_of_cpus_pct': round(100.0 * secs / ((t1 - t0) * (os.cpu_count() or 1)),
                                           1)}


def foreign_by_window(sampler, marks):
    """foreign CPU in the first and the last 10% of the ramp (marks: ramp_marks')."""
    if not marks:
        return None
    return {'first_10pct': sampler.window(marks[0], marks[1]),
            'last_10pct': sampler.window(marks[2], marks[3])}


class RampCounter(object):
    """The TCP sockets of the client namespace, from /proc/PID/net/sockstat ("TCP: inuse":
    the namespace's count, read in constant time) every INTERVAL seconds, by a thread,
    from start() to stop(); with foreign (a ForeignSampler), that every 5th reading too.

    Every contender gets the same ramp timeline from it, where their own reports differ
    (the engine's client writes its timeline every second, the blocking scripts report
    only at their end). pid: a process in namespace ns (readings start once it is in)."""

    INTERVAL = 0.05

    def __init__(self, pid, ns, foreign=None):
        self.path = '/proc/%d/net/sockstat' % pid
        self.ns_path = '/proc/%d/ns/net' % pid
        self.ns_ino = os.stat(os.path.join('/run/netns', ns)).st_ino
        self.foreign = foreign
        self.samples = []           # (monotonic, sockets)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.stopping.set()
        self.thread.join()

    def read(self):
        try:
            if os.stat(self.ns_path).st_ino != self.ns_ino:
                return None         # still ip netns exec, before its setns
            with open(self.path) as f:
                for line in f:
                    if line.startswith('TCP:'):
                        fields = line.split()
                        return int(fields[fields.index('inuse') + 1])
        except (OSError, ValueError):
            pass
        return None

    def run(self):
        i = 0
        while not self.stopping.is_set():
            n = self.read()
            if n is not None:
                self.samples.append((time.monotonic(), n))
            if self.foreign is not None and i % 5 == 0:
                self.foreign.sample()
            i += 1
            self.stopping.wait(self.INTERVAL)
        n = self.read()
        if n is not None:
            self.samples.append((time.monotonic(), n))
        if self.foreign is not None:
            self.foreign.sample()


def ramp_marks(samples, t_go, n):
    """[start, 10%, 90%, 100%] of a ramp to n in monotonic time, from (monotonic, count)
    samples (RampCounter's) and its start t_go; None if it did not reach n."""
    timeline = [(t - t_go, c) for t, c in samples if t >= t_go]
    marks = [crossing(timeline, n * f) for f in (0.1, 0.9, 1.0)]
    if None in marks:
        return None
    return [t_go] + [t_go + m for m in marks]


def ramp_tenths(marks, n):
    """The rate over the first and over the last 10% of a ramp (marks: ramp_marks')."""
    if not marks or marks[1] <= marks[0] or marks[3] <= marks[2]:
        return None
    first = n * 0.1 / (marks[1] - marks[0])
    last = n * 0.1 / (marks[3] - marks[2])
    return {'first_10pct_per_s': round(first, 1), 'last_10pct_per_s': round(last, 1),
            'last_vs_first': round(last / first, 2)}


def log_tenths(label, result):
    tenths, fw = result.get('ramp_tenths'), result.get('foreign_cpu_by_window')
    if not tenths:
        log('%s: the ramp timeline (sockstat) did not reach the target' % label)
        return
    log('%s: the first 10%% of the ramp at %.0f/s, the last 10%% at %.0f/s (%sx); other '
        'processes took %s%% of the CPUs in the first, %s%% in the last'
        % (label, tenths['first_10pct_per_s'], tenths['last_10pct_per_s'],
           tenths['last_vs_first'], ((fw or {}).get('first_10pct') or {}).get('share_of_cpus_pct'),
           ((fw or {}).get('last_10pct') or {}).get('share_of_cpus_pct')))


def procs_cpu_us(before, after, pids, per):
    """CPU (user + system) of the given processes between two kernel_state()s, in us per
    connection, from their own /proc/PID/stat (a process that started in between counts
    whole)."""
    hz = float(os.sysconf('SC_CLK_TCK'))
    ticks = 0
    for pid in pids:
        if pid in after['procs']:
            ticks += after['procs'][pid][1] - before['procs'].get(pid, ('', 0))[1]
    return round(ticks / hz * 1e6 / per, 1) if per else None


def kernel_state():
    m = meminfo()
    return {'slab': m.get('Slab', 0), 'tcp_mem': tcp_mem_bytes(), 'slabinfo': slabinfo(),
            'cpu': cpu_times(), 't': time.monotonic(), 'procs': process_cpu(),
            'drops': softnet_drops(), 'page_tables': m.get('PageTables', 0),
            'kernel_stack': m.get('KernelStack', 0)}


def kernel_delta(before, after, per, ours=()):
    slab = after['slab'] - before['slab']
    tcp = after['tcp_mem'] - before['tcp_mem']
    caches = []
    for k, v in after['slabinfo'].items():
        d = v - before['slabinfo'].get(k, 0)
        if d > 0:
            caches.append((d, k))
    caches.sort(reverse=True)
    return {
        'kernel_bytes': slab + tcp,
        'kernel_bytes_per_conn': round((slab + tcp) / float(per), 1) if per else None,
        'slab_per_conn_by_cache': dict((k, round(d / float(per), 1)) for d, k in caches[:10])
        if per else {},
        'page_tables_and_stacks_per_conn': round(
            (after['page_tables'] - before['page_tables'] + after['kernel_stack']
             - before['kernel_stack']) / float(per), 1) if per else None,
        'softnet_drops': after['drops'] - before['drops'],
        'host_cpu_during_ramp': cpu_delta(before['cpu'], after['cpu'], per),
        'foreign_cpu_during_ramp': foreign_cpu(before['procs'], after['procs'], set(ours)),
        'ramp_window_s': round(after['t'] - before['t'], 2),
    }


def pss_split(sizes):
    """A half's PSS by process, its supervisor apart (sizes: bytes, in the order of the
    engine's status pids, the supervisor's first): {supervisor, workers, worker_mean,
    worker_max} in bytes."""
    workers = sizes[1:]
    return {'supervisor': sizes[0] if sizes else 0, 'workers': len(workers),
            'worker_mean': int(sum(workers) / len(workers)) if workers else 0,
            'worker_max': max(workers) if workers else 0}


def pss(pid):
    try:
        with open('/proc/%d/smaps_rollup' % pid) as f:
            for line in f:
                if line.startswith('Pss:'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


# A VM whose balloon reports the guest's free pages to the hypervisor, which takes them
# back: the next touch of such a page faults it in again (about 13 us per 4 KiB here).
PAGE_REPORTED = '/sys/module/page_reporting/parameters/reported_kib'


def reported_kib():
    try:
        return int(read(PAGE_REPORTED))
    except (OSError, ValueError):
        return None


def wait_settled(label, timeout=300.0):
    """Wait until the kernel has freed the previous phase's sockets and, on a VM with free
    page reporting, until it has reported that memory back (no change for 3 s).

    Every phase then starts with the same memory: all of it cold. Otherwise a phase that
    starts soon after a fast teardown finds pages not yet reported (cheap) and one after
    a slow teardown finds them reported (a fault each), which decides more of the rate
    than the contender does.
    """
    t0 = time.monotonic()
    last = None
    while time.monotonic() - t0 < timeout:
        s = meminfo()['Slab']
        if last is not None and abs(s - last) < 8 << 20:
            break
        last = s
        time.sleep(1.0)
    reported, still = reported_kib(), 0
    while reported is not None and still < 3 and time.monotonic() - t0 < timeout:
        time.sleep(1.0)
        now = reported_kib()
        still = still + 1 if now == reported else 0
        reported = now
    log('%s: kernel settled after %.1f s (Slab %.0f MB%s)'
        % (label, time.monotonic() - t0, meminfo()['Slab'] / 1e6,
           ', free pages reported to the hypervisor: %.1f GB' % (reported / 1e6)
           if reported is not None else ''))


def count(ns, local_ports=None, remote_ports=None):
    t = time.monotonic()
    c = count_tcp_states(netns=ns, states=['established'], local_ports=local_ports,
                         remote_ports=remote_ports)['established']
    return c, round(time.monotonic() - t, 2)


def ip_netns_exec(ns, argv):
    return ['ip', 'netns', 'exec', ns] + argv


def last_json(text):
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith('{'):
            return json.loads(line)
    return None


def terminate(proc, sig=signal.SIGTERM, timeout=120.0):
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.send_signal(sig)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        log('pid %d did not stop in %.0f s: killing its process group' % (proc.pid, timeout))
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


# ---------------------------------------------------------------------------
# phases

WORKDIR = '/tmp/tbd-bench-%d-'        # a run's working directories: this, then what
WORKDIRS = WORKDIR + '*'


def workdir(name):
    """/tmp/tbd-bench-PID-NAME: one of this run's working directories (see WORKDIRS)."""
    return WORKDIR % os.getpid() + name


def finish_workdirs(keep, failed):
    """At the end of a run: remove its working directories, unless asked to keep them
    (--keep-files) or a phase failed (then their logs say why: the log names them)."""
    paths = sorted(glob.glob(WORKDIRS % os.getpid()))
    if not paths:
        return
    if keep or failed:
        why = ' (a phase failed)' if failed and not keep else ''
        log('working directories kept%s: %s' % (why, ' '.join(paths)))
        return
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)


class Phase(object):
    def __init__(self, args, host, label):
        self.args = args
        self.host = host
        self.label = label
        self.procs = []
        self.workdir = workdir(label)
        # a round's files start empty: a ready, status or summary file left by the round
        # before would be read as this one's
        shutil.rmtree(self.workdir, ignore_errors=True)
        os.makedirs(self.workdir)

    def path(self, name):
        return os.path.join(self.workdir, name)

    def spawn(self, argv, **kw):
        """Start one of the contender's processes, in a process group of its own (killpg),
        in the benchmark's session (--sessions shared) or in a session of its own
        (--sessions per-process): see the comment above add_engine_options."""
        if getattr(self.args, 'sessions', 'shared') == 'per-process':
            kw['start_new_session'] = True
        else:
            kw['process_group'] = 0
        p = subprocess.Popen(argv, **kw)
        self.procs.append(p)
        return p

    def cleanup(self):
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
        self.procs = []
        remove_namespaces()


def layout_for(n, ports=0, sources=0):
    """(server ports, client source addresses) of an engine phase at n connections.

    By default the blocking contenders' own layout: one server port per BASE_PER_PROC
    connections, one source address (the client namespace's first, the one its route
    chooses: the engine then connects without binding it, as they do), so every
    contender fills each (source, destination, port) tuple alike, to under 30% of the
    64,512 local ports. With --ports, enough sources to keep every tuple under a
    quarter of them.
    """
    if not ports:
        return int(math.ceil(n / float(BASE_PER_PROC))), sources or 1
    return ports, sources or max(1, int(math.ceil(n / float(ports * 16000))))


def scraper(urls, stop, counts):
    """GET each URL every second until stop is set (what a Prometheus does)."""
    while not stop.wait(1.0):
        for url in urls:
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    r.read()
                counts['ok'] = counts.get('ok', 0) + 1
            except OSError:
                counts['failed'] = counts.get('failed', 0) + 1


def run_engine(args, host, heartbeat=None, protocol='tcp', metrics=False, engine=ENGINE,
               label=None, tls=None, client_extra=None, server_extra=None):
    """One run of both halves at args.connections, with heartbeats, a protocol, live
    metrics (textfile + HTTP, scraped every second), TLS (tls: the server's (certificate,
    key) files) if given, by the engine at engine."""
    if label is None:
        label = 'engine-hb' if heartbeat else 'engine'
        if protocol != 'tcp':
            label = 'engine-' + protocol
        if tls:
            label += '-tls'
    ph = Phase(args, host, label)
    n = args.connections
    ports, nsrc = layout_for(n, args.ports, args.sources)
    ehash = 1 << max(16, int(math.ceil(math.log(max(2 * n, 2), 2))))
    result = {'phase': label}
    perf = counter = None
    try:
        sources = create_namespaces(host, nsrc, ehash)
        log('%s: namespaces %s/%s, %d source aliases, child ehash %d'
            % (label, NS_SRV, NS_CLI, len(sources), ehash))
        port_range = '%d-%d' % (PORT_LO, PORT_LO + ports - 1)
        metrics_args = {}
        if metrics:
            mdir = ph.path('metrics')
            os.makedirs(mdir, exist_ok=True)
            for half in ('server', 'client'):
                metrics_args[half] = ['--metrics-dir', mdir, '--metrics-listen',
                                      '127.0.0.1:%d' % METRICS_PORTS[half],
                                      '--metrics-netns', 'parent']
        server_argv = [args.python, engine, 'server', '--listen', SRV_ADDR, '--ports',
                       port_range, '--backlog', str(SOMAXCONN),
                       '--ready-file', ph.path('ready'), '--status-file', ph.path('sstatus'),
                       '--summary-file', ph.path('ssummary')]
        server_argv += metrics_args.get('server', [])
        server_argv += shlex.split(getattr(args, 'server_args', '') or '') \
            if server_extra is None else list(server_extra)
        if heartbeat:
            server_argv.append('--echo')
        if protocol != 'tcp':
            server_argv += ['--protocol', protocol]
        if tls:
            server_argv += ['--tls-cert', tls[0], '--tls-key', tls[1]]
        server = ph.spawn(ip_netns_exec(NS_SRV, server_argv), stdout=subprocess.PIPE,
                          stderr=open(ph.path('server.err'), 'w'), universal_newlines=True)
        deadline = time.monotonic() + 60
        while not os.path.exists(ph.path('ready')):
            if server.poll() is not None or time.monotonic() > deadline:
                raise BenchError('the server did not become ready: %s'
                                 % open(ph.path('server.err')).read()[-2000:])
            time.sleep(0.05)
        before = kernel_state()
        client_argv = [args.python, engine, 'client', '--targets', SRV_ADDR, '--ports',
                       port_range, '--sources', ','.join(sources), '--connections', str(n),
                       '--status-file', ph.path('cstatus'), '--summary-file', ph.path('csummary')]
        if heartbeat:
            client_argv += ['--heartbeat-interval', str(heartbeat)]
        if protocol != 'tcp':
            client_argv += ['--protocol', protocol]
        if tls:
            client_argv.append('--tls')
        client_argv += metrics_args.get('client', [])
        client_argv += shlex.split(getattr(args, 'client_args', '') or '') \
            if client_extra is None else list(client_extra)
        result['client_command'] = shlex.join(ip_netns_exec(NS_CLI, client_argv))
        result['server_command'] = shlex.join(ip_netns_exec(NS_SRV, server_argv))
        log('%s: %s' % (label, result['client_command']))
        perf = start_perf(ph.path('perf.data')) if getattr(args, 'perf', False) else None
        foreign = ForeignSampler(before['procs'], set([server.pid]))
        foreign.sample()
        t_start = time.monotonic()
        client = ph.spawn(ip_netns_exec(NS_CLI, client_argv), stdout=subprocess.PIPE,
                          stderr=open(ph.path('client.err'), 'w'), universal_newlines=True)
        counter = RampCounter(client.pid, NS_CLI, foreign).start()
        scrapes, stop_scraping = {}, threading.Event()
        if metrics:
            threading.Thread(target=scraper, daemon=True, args=(
                ['http://127.0.0.1:%d/metrics' % METRICS_PORTS[h] for h in ('server', 'client')],
                stop_scraping, scrapes)).start()
        deadline = t_start + max(300.0, n / 2000.0)
        status, sstat = {}, {}
        while True:
            time.sleep(0.25)
            try:
                with open(ph.path('cstatus')) as f:
                    status = json.load(f)
            except (OSError, ValueError):
                status = {}
            if status.get('reached') or client.poll() is not None:
                break
            if time.monotonic() > deadline:
                log('%s: the target was not reached in %.0f s' % (label, deadline - t_start))
                break
        counter.stop()
        marks = ramp_marks(counter.samples, t_start, n)
        if perf is not None:
            stop_perf(perf)
        if status.get('reached'):
            at = kernel_state()
            log('%s: target reached (engine says %.2f s); counting with sock_diag'
                % (label, status.get('seconds_to_target') or -1))
            cli_count, cli_t = count(NS_CLI, remote_ports=[(PORT_LO, PORT_LO + ports - 1)])
            srv_count, srv_t = count(NS_SRV, local_ports=[(PORT_LO, PORT_LO + ports - 1)])
            log('%s: sock_diag established: client %d (%.2f s), server %d (%.2f s)'
                % (label, cli_count, cli_t, srv_count, srv_t))
            try:
                with open(ph.path('sstatus')) as f:
                    sstat = json.load(f)
            except (OSError, ValueError):
                sstat = {}
            cpids, spids = status.get('pids', []), sstat.get('pids', [])
            # each process's PSS read once: the server half's total and both halves' split
            sizes = {'client': [pss(p) for p in cpids], 'server': [pss(p) for p in spids]}
            server_pss = sum(sizes['server'])
            result['pss_split'] = dict((half, pss_split(v)) for half, v in sizes.items())
            log('%s: PSS by process: %s' % (label, '; '.join(
                '%s supervisor %.2f MB, %d workers %.3f MB each (max %.3f)'
                % (half, v['supervisor'] / 1e6, v['workers'], v['worker_mean'] / 1e6,
                   v['worker_max'] / 1e6) for half, v in sorted(result['pss_split'].items()))))
            result['server_cpu_at_target'] = sstat.get('cpu')
            # what the server half had accepted (its last status, up to a progress interval
            # old): sock_diag counts a connection still in an accept queue as established
            result['server_held_at_target'] = sstat.get('held_total')
            result['cpu_us_per_conn_procs'] = procs_cpu_us(before, at, cpids + spids, n)
            result['cpu_us_per_conn_by_half'] = {
                'client': procs_cpu_us(before, at, cpids, n),
                'server': procs_cpu_us(before, at, spids, n)}
            result.update({'established_client_sockdiag': cli_count,
                           'established_server_sockdiag': srv_count,
                           'sockdiag_seconds': [cli_t, srv_t],
                           'server_user_pss_bytes': server_pss})
            result.update(kernel_delta(before, at, n))
            if heartbeat:
                # steady state: heartbeats start one interval after a connection opened
                hold = heartbeat + 5.0
                log('%s: holding %.0f s with heartbeats' % (label, hold))
                h0 = kernel_state()
                time.sleep(hold)
                h1 = kernel_state()
                result['heartbeat_hold'] = {'seconds': round(h1['t'] - h0['t'], 2),
                                            'host_cpu': cpu_delta(h0['cpu'], h1['cpu'], 0)}
        stop_scraping.set()
        if metrics:
            result['scrapes'] = dict(scrapes)
        t_stop = time.monotonic()
        terminate(client)
        out = client.stdout.read()
        csum = last_json(out) or {}
        terminate(server)
        ssum = last_json(server.stdout.read()) or {}
        result['teardown_seconds'] = round(time.monotonic() - t_stop, 2)
        result['client_exit'] = client.returncode
        result['server_exit'] = server.returncode
        result['client_summary'] = dict((k, v) for k, v in csum.items() if k != 'timeline')
        result['client_timeline'] = csum.get('timeline')
        result['server_summary'] = dict((k, v) for k, v in ssum.items()
                                        if k not in ('timeline', 'held_per_endpoint'))
        est = min(result.get('established_client_sockdiag', 0),
                  result.get('established_server_sockdiag', 0))
        result['established'] = est
        result['seconds_to_target'] = csum.get('seconds_to_target')
        result['connections_per_s'] = csum.get('connections_per_s')
        cpss = csum.get('user_pss_bytes') or 0
        if est:
            result['user_bytes_per_conn'] = round((cpss + result.get('server_user_pss_bytes', 0))
                                                  / float(est), 1)
            result['user_bytes_per_conn_client'] = round(cpss / float(est), 1)
            result['user_bytes_per_conn_server'] = round(
                result.get('server_user_pss_bytes', 0) / float(est), 1)
            cpu_c = csum.get('cpu_at_target') or {}
            cpu_s = result.get('server_cpu_at_target') or {}
            result['cpu_us_per_conn'] = {
                'client_user': round(cpu_c.get('workers_user_s', 0) * 1e6 / n, 1),
                'client_sys': round(cpu_c.get('workers_sys_s', 0) * 1e6 / n, 1),
                'server_user': round(cpu_s.get('workers_user_s', 0) * 1e6 / n, 1),
                'server_sys': round(cpu_s.get('workers_sys_s', 0) * 1e6 / n, 1)}
        result['heartbeat'] = csum.get('heartbeat')
        hh = result.get('heartbeat_hold')
        if hh and (csum.get('heartbeat') or {}).get('sent'):
            sent = csum['heartbeat']['sent']
            secs = hh['host_cpu']['seconds']
            busy = sum(v for k, v in secs.items() if k not in ('idle', 'iowait'))
            # the hold window holds nearly all heartbeats (the first ones are due one
            # interval after the connections opened)
            hh['heartbeats_per_s'] = round(sent / hh['seconds'], 1)
            hh['host_cpu_us_per_heartbeat'] = round(busy * 1e6 / sent, 1)
        result['ramp_tenths'] = ramp_tenths(marks, n)
        result['foreign_cpu_by_window'] = foreign_by_window(foreign, marks)
        log_tenths(label, result)
        if perf is not None and csum.get('started_at') and csum.get('timeline'):
            result['profile'] = profile_ramp(
                ph.path('perf.data'), csum['started_at'], csum['timeline'], n,
                {'client': status.get('pids', []), 'server': sstat.get('pids', [])})
            log_profile(label, result['profile'])
        # every connection accepted by the server half at some point, not only queued
        result['server_held_peak'] = ssum.get('held_peak')
        if (ssum.get('held_peak') or 0) < n:
            log('%s: the server half held %s connections at most, not %d: the rest were '
                'queued, never accepted' % (label, ssum.get('held_peak'), n))
        result['ok'] = bool(csum.get('reached')) and est >= n and (ssum.get('held_peak') or 0) >= n
    finally:
        if perf is not None and perf.poll() is None:
            stop_perf(perf)         # a phase that failed before the target
        if counter is not None:
            counter.stop()
        ph.cleanup()
    wait_settled(label)
    return result


PERF_HZ = 199
PERF_START_S = 60        # how long perf may take to start sampling


def start_perf(path):
    """perf record of every CPU (call graphs, CLOCK_MONOTONIC) into path; None without perf.

    perf starts with its events off and is switched on through its control pipe: the
    call returns once perf has acknowledged that it samples (recording every CPU, it
    first reads every process's maps, which can take more than a second on a busy host).
    """
    exe = shutil.which('perf')
    if not exe:
        log('perf: not installed (apt install linux-perf): no profile')
        return None
    ctl_r, ctl_w = os.pipe()
    ack_r, ack_w = os.pipe()
    proc = subprocess.Popen([exe, 'record', '-a', '-g', '-F', str(PERF_HZ), '--clockid',
                             'monotonic', '-q', '-D', '-1',
                             '--control', 'fd:%d,%d' % (ctl_r, ack_w), '-o', path],
                            stdout=subprocess.DEVNULL, stderr=open(path + '.err', 'w'),
                            pass_fds=(ctl_r, ack_w))
    os.close(ctl_r)
    os.close(ack_w)
    proc.perf_ctl = ctl_w       # open until stop_perf: perf reads commands from it
    os.write(ctl_w, b'enable\n')
    ack = b''
    with os.fdopen(ack_r, 'rb', buffering=0) as acks:
        # (perf writes 'ack\n' and a NUL after it)
        while b'\n' not in ack and select.select([acks], [], [], PERF_START_S)[0]:
            chunk = acks.read(16)
            if not chunk:
                break
            ack += chunk
    if not ack.startswith(b'ack'):
        stop_perf(proc)
        log('perf: record did not start sampling (it exited, or no answer within %d s): %s'
            % (PERF_START_S, open(path + '.err').read()[-500:]))
        return None
    return proc


def stop_perf(proc):
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    os.close(proc.perf_ctl)


def perf_samples(path):
    """[(monotonic seconds, pid, comm, frames leaf first)] of the samples in perf.data."""
    res = subprocess.run(['perf', 'script', '-i', path, '-F', 'comm,pid,time,ip,sym'],
                         check=False, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         universal_newlines=True, errors='replace')
    samples, frames = [], None
    for line in res.stdout.splitlines():
        if line.startswith('\t'):
            if frames is not None:
                parts = line.split(None, 1)
                frames.append(parts[1].strip() if len(parts) > 1 else '[unknown]')
            continue
        head = line.strip().rstrip(':')
        if not head:
            frames = None
            continue
        rest, _sp, t = head.rpartition(' ')
        comm, _sp, pid = rest.strip().rpartition(' ')
        try:
            frames = []
            samples.append((float(t), int(pid), comm.strip(), frames))
        except ValueError:
            frames = None
    return samples


def crossing(timeline, level):
    """The t_seconds at which the timeline's established count reaches level (interpolated)."""
    prev_t, prev_e = 0.0, 0
    for row in timeline:
        t, est = row[0], row[1]
        if est >= level:
            if est == prev_e:
                return t
            return prev_t + (t - prev_t) * (level - prev_e) / float(est - prev_e)
        prev_t, prev_e = t, est
    return None


def profile_windows(path, windows, pids):
    """CPU per connection in time windows of a perf.data (all CPUs).

    windows: name -> (monotonic start, end, connections made in it); pids: role -> pids.
    A sample is 1/PERF_HZ s of one CPU; idle (swapper) is left out. By process (the
    engine's halves by pid, other processes by name), by function inclusive (a function
    counts once in each sample whose call chain holds it) and by function self (the
    function the sample was taken in). Returns (that summary by window, the inclusive
    sample counts of every function by window).
    """
    role_of = {}
    for role, ps in pids.items():
        for pid in ps:
            role_of[pid] = role
    stats = dict((w, {'seconds': round(b - a, 2), 'connections': c, 'samples': 0, 'idle': 0,
                      'by_process': {}, 'functions': {}, 'self': {}})
                 for w, (a, b, c) in windows.items())
    for t, pid, comm, frames in perf_samples(path):
        for w, (a, b, _c) in windows.items():
            if a <= t < b:
                st = stats[w]
                st['samples'] += 1
                if comm == 'swapper':
                    st['idle'] += 1
                    continue
                who = role_of.get(pid, comm)
                st['by_process'][who] = st['by_process'].get(who, 0) + 1
                for fn in set(frames):
                    st['functions'][fn] = st['functions'].get(fn, 0) + 1
                leaf = frames[0] if frames else '[unknown]'
                st['self'][leaf] = st['self'].get(leaf, 0) + 1
    us = 1e6 / PERF_HZ
    out = {}
    for w, st in stats.items():
        def per_conn(count, st=st):
            return round(count * us / st['connections'], 2) if st['connections'] else None
        out[w] = {
            'seconds': st['seconds'], 'connections': st['connections'],
            'connections_per_s': round(st['connections'] / st['seconds'], 1)
            if st['seconds'] > 0 else None,
            'busy_pct': round(100.0 * (st['samples'] - st['idle']) / st['samples'], 1)
            if st['samples'] else None,
            'us_per_conn_by_process': dict((k, per_conn(v)) for k, v in sorted(
                st['by_process'].items(), key=lambda kv: -kv[1])[:10]),
            'us_per_conn_by_function': dict((k, per_conn(v)) for k, v in sorted(
                st['functions'].items(), key=lambda kv: -kv[1])[:40]),
            'us_per_conn_self': dict((k, per_conn(v)) for k, v in sorted(
                st['self'].items(), key=lambda kv: -kv[1])[:40])}
    return out, dict((w, st['functions']) for w, st in stats.items())


def profile_ramp(path, started_at, timeline, n, pids):
    """CPU per connection over the whole ramp, and in its first and last 10%, from perf.data
    (profile_windows), with the functions whose cost per connection grew the most.

    started_at: the client's Unix time of t_seconds 0 (its summary); pids: role -> pids.
    """
    t0 = started_at - (time.time() - time.monotonic())
    marks = [crossing(timeline, n * f) for f in (0.0, 0.1, 0.9, 1.0)]
    if None in marks:
        return {'error': 'the timeline does not reach the target'}
    tenth = int(n * 0.1)
    windows, counts = profile_windows(path, {
        'whole': (t0 + marks[0], t0 + marks[3], n),
        'first_10pct': (t0 + marks[0], t0 + marks[1], tenth),
        'last_10pct': (t0 + marks[2], t0 + marks[3], tenth)}, pids)
    first, last = counts['first_10pct'], counts['last_10pct']
    grown = []
    us = 1e6 / PERF_HZ
    for fn in set(first) | set(last):
        a = round(first.get(fn, 0) * us / tenth, 2)
        b = round(last.get(fn, 0) * us / tenth, 2)
        grown.append((round(b - a, 2), fn, a, b))
    grown.sort(reverse=True)
    return {'hz': PERF_HZ, 'windows': windows,
            'grown_most': [{'function': fn, 'first_us': a, 'last_us': b, 'growth_us': g}
                           for g, fn, a, b in grown[:15]]}


def log_profile(label, prof):
    if 'windows' not in prof:
        log('%s: profile: %s' % (label, prof.get('error')))
        return
    for w, st in prof['windows'].items():
        log('%s: profile %s: %s connections/s over %.2f s, CPU busy %s%%; us per connection by '
            'process: %s' % (label, w, st['connections_per_s'], st['seconds'], st['busy_pct'],
                             ', '.join('%s %s' % kv for kv in st['us_per_conn_by_process'].items())))
    whole = prof['windows'].get('whole')
    if whole:
        log('%s: profile: where the ramp\'s CPU went (us per connection, self):' % label)
        for fn, v in list(whole['us_per_conn_self'].items())[:15]:
            log('    %-40s %8.2f' % (fn[:40], v))
    if prof.get('grown_most'):
        log('%s: profile: functions whose CPU per connection grew most from the first to the '
            'last 10%% of the ramp (us per connection, inclusive):' % label)
        for g in prof['grown_most']:
            log('    %-40s %8.2f -> %8.2f' % (g['function'][:40], g['first_us'], g['last_us']))


IDLE_HOLDER = r'''
import os, resource, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
fds = [os.open(os.devnull, os.O_RDONLY) for _ in range(int(sys.argv[1]))]
print('holding %d' % len(fds), flush=True)
sys.stdin.readline()
'''


class IdleDescriptors(object):
    """--idle-descriptors N: N descriptors of /dev/null held, doing nothing, by helper
    processes of at most BASE_PER_PROC each, from start() to stop(). A host agent that
    walks every process's open files (this machine's PID 1 does, docs/sizing.md) then has
    N more to walk during every phase; the helpers themselves use no CPU."""

    def __init__(self, python=sys.executable):
        self.python = python
        self.procs = []

    def start(self, n):
        try:
            while n > sum(self.counts()):
                k = min(BASE_PER_PROC, n - sum(self.counts()))
                p = subprocess.Popen([self.python, '-c', IDLE_HOLDER, str(k)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     universal_newlines=True)
                self.procs.append((p, k))
                if p.stdout.readline().split() != ['holding', str(k)]:
                    raise BenchError('an idle-descriptor holder could not open %d descriptors '
                                     '(its RLIMIT_NOFILE, or fs.file-max)' % k)
        except BaseException:
            self.stop()
            raise
        return [p.pid for p, _k in self.procs]

    def counts(self):
        return [k for _p, k in self.procs]

    def stop(self):
        for p, _k in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        self.procs = []


def build_cref(into):
    """benchmarks/cref.c built with cc into directory into: (path, None), or (None, why not)."""
    cc = shutil.which(os.environ.get('CC', 'cc'))
    if not cc:
        return None, 'no C compiler (cc) on this host: the C reference is skipped'
    os.makedirs(into, exist_ok=True)
    out = os.path.join(into, 'cref')
    res = subprocess.run([cc, '-O2', '-Wall', '-o', out, CREF_SRC], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    if res.returncode != 0:
        return None, 'cc failed on %s: %s' % (CREF_SRC, res.stdout[-1000:])
    return out, None


def run_baseline(args, host, label='baseline', command=None):
    """The blocking contenders: the naive Python scripts, or (command: the built cref) the
    C reference; one listener and one client process per port."""
    if command is None:
        server_cmd = [args.python, '-c', BASELINE_SERVER]
        client_cmd = [args.python, '-c', BASELINE_CLIENT]
    else:
        server_cmd, client_cmd = [command, 'server'], [command, 'client']
    ph = Phase(args, host, label)
    n = args.connections
    nproc = int(math.ceil(n / float(BASE_PER_PROC)))
    ehash = 1 << max(16, int(math.ceil(math.log(max(2 * n, 2), 2))))
    result = {'phase': label, 'processes': 2 * nproc}
    perf = counter = None
    try:
        create_namespaces(host, 1, ehash)
        counts = [n // nproc + (1 if i < n % nproc else 0) for i in range(nproc)]
        servers = []
        for i in range(nproc):
            servers.append(ph.spawn(ip_netns_exec(NS_SRV, server_cmd + [
                SRV_ADDR, str(BASE_PORT_LO + i), str(counts[i])]), stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, universal_newlines=True))
        for s in servers:
            if s.stdout.readline().strip() != 'ready':
                raise BenchError('a %s listener did not start' % label)
        clients = []
        for i in range(nproc):
            clients.append(ph.spawn(ip_netns_exec(NS_CLI, client_cmd + [
                SRV_ADDR, str(BASE_PORT_LO + i), str(counts[i])]), stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, universal_newlines=True))
        for c in clients:
            if c.stdout.readline().strip() != 'loaded':
                raise BenchError('a %s client did not start' % label)
        perf = start_perf(ph.path('perf.data')) if getattr(args, 'perf', False) else None
        before = kernel_state()
        log('%s: %d listener + %d client processes, blocking calls; go' % (label, nproc, nproc))
        foreign = ForeignSampler(before['procs'], set(p.pid for p in servers + clients))
        foreign.sample()
        counter = RampCounter(clients[0].pid, NS_CLI, foreign).start()
        t0 = time.monotonic()
        for c in clients:
            c.stdin.write('go\n')
            c.stdin.flush()
        done_t = []
        got = 0
        errors = 0
        pending = dict((c.stdout.fileno(), c) for c in clients)
        deadline = t0 + max(600.0, n / 1000.0)
        while pending and time.monotonic() < deadline:
            r, _w, _x = select.select(list(pending), [], [], 5.0)
            for fd in r:
                c = pending.pop(fd)
                line = c.stdout.readline().split()
                if len(line) == 4 and line[0] == 'done':
                    got += int(line[1])
                    done_t.append(float(line[2]))
                    errors += int(line[3])
        if pending:
            log('%s: %d client processes did not finish' % (label, len(pending)))
        counter.stop()
        at = kernel_state()
        marks = ramp_marks(counter.samples, t0, n)
        result['ramp_tenths'] = ramp_tenths(marks, n)
        result['foreign_cpu_by_window'] = foreign_by_window(foreign, marks)
        log_tenths(label, result)
        if perf is not None:
            stop_perf(perf)
            if done_t:
                result['profile'] = {'hz': PERF_HZ, 'windows': profile_windows(
                    ph.path('perf.data'), {'whole': (t0, max(done_t), n)},
                    {'client': [c.pid for c in clients], 'server': [s.pid for s in servers]})[0]}
                log_profile(label, result['profile'])
        seconds = (max(done_t) - t0) if done_t else None
        user = sum(pss(p.pid) for p in servers + clients)
        # ip netns exec execs python, so the Popen pid is the python process
        cli_count, _t1 = count(NS_CLI, remote_ports=[(BASE_PORT_LO, BASE_PORT_LO + nproc - 1)])
        srv_count, _t2 = count(NS_SRV, local_ports=[(BASE_PORT_LO, BASE_PORT_LO + nproc - 1)])
        log('%s: %d established (sock_diag client %d, server %d) in %s s'
            % (label, got, cli_count, srv_count, round(seconds, 2) if seconds else '?'))
        est = min(cli_count, srv_count)
        result.update({'established': est, 'client_reported': got, 'errors': errors,
                       'seconds_to_target': round(seconds, 3) if seconds else None,
                       'connections_per_s': round(got / seconds, 1) if seconds else None,
                       'user_pss_bytes': user,
                       'user_bytes_per_conn': round(user / float(est), 1) if est else None})
        ours = [p.pid for p in servers + clients]
        result.update(kernel_delta(before, at, est or 1, ours))
        result['cpu_us_per_conn_procs'] = procs_cpu_us(before, at, ours, n)
        result['cpu_us_per_conn_by_half'] = {
            'client': procs_cpu_us(before, at, [p.pid for p in clients], n),
            'server': procs_cpu_us(before, at, [p.pid for p in servers], n)}
        result['ok'] = est >= n
        t_stop = time.monotonic()
        for p in servers + clients:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for p in servers + clients:
            p.wait()
        result['teardown_seconds'] = round(time.monotonic() - t_stop, 2)
    finally:
        if perf is not None and perf.poll() is None:
            stop_perf(perf)
        if counter is not None:
            counter.stop()
        ph.cleanup()
    wait_settled(label)
    return result


def run_site(args, _host, label='site'):
    """What a user runs: ansible-playbook site.yml at the same N on the one-box default
    (the inventory of the checkout), then teardown.yml; its figures come from its own
    report.json (verified by the kernel on both sides at both ends of the hold)."""
    ansible = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')
    if not os.path.exists(ansible):
        ansible = shutil.which('ansible-playbook') or 'ansible-playbook'
    reports = workdir(label)
    os.makedirs(reports, exist_ok=True)
    argv = [ansible, 'site.yml', '-e', 'testbed_connections=%d' % args.connections,
            '-e', 'client_hold=%g' % args.site_hold, '-e', 'report_base_dir=%s' % reports]
    result = {'phase': label, 'command': shlex.join(argv)}
    log('%s: %s' % (label, result['command']))
    t0 = time.monotonic()
    with open(os.path.join(reports, 'site.out'), 'w') as out:
        proc = subprocess.run(argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, check=False)
    result['wall_seconds'] = round(time.monotonic() - t0, 1)
    t1 = time.monotonic()
    with open(os.path.join(reports, 'teardown.out'), 'w') as out:
        subprocess.run([ansible, 'teardown.yml'], cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                       check=False)
    result['teardown_seconds'] = round(time.monotonic() - t1, 1)
    try:
        with open(os.path.join(reports, 'latest', 'report.json')) as f:
            report = json.load(f)
    except (OSError, ValueError):
        report = {}
    result.update({'rc': proc.returncode, 'established': report.get('verified'),
                   'verified_end': report.get('verified_end'),
                   'seconds_to_target': report.get('seconds_to_target'),
                   'connections_per_s': report.get('connections_per_s'),
                   'kernel_bytes_per_conn': report.get('kernel_bytes_per_conn'),
                   'user_bytes_per_conn': report.get('user_bytes_per_conn'),
                   'hold_seconds': args.site_hold,
                   'ok': proc.returncode == 0 and bool(report.get('verified_ok'))})
    log('%s: rc %d, %s to the target (%s connections/s), %s s wall, verified %s / %s'
        % (label, proc.returncode, result['seconds_to_target'], result['connections_per_s'],
           result['wall_seconds'], result['established'], result['verified_end']))
    wait_settled(label)
    return result


# ---------------------------------------------------------------------------

def preflight(args, host):
    if os.geteuid() != 0:
        raise BenchError('run as root (namespaces, veth, sysctls)')
    n = args.connections
    if n < 1:
        raise BenchError('--connections must be >= 1')
    avail = meminfo().get('MemAvailable', 0)
    need = n * 12000
    if need > avail * 0.85:
        raise BenchError('%d connections need about %.1f GB of kernel memory, %.1f GB available'
                         % (n, need / 1e9, avail / 1e9))
    fmax = int(read('/proc/sys/fs/file-max'))
    used = int(read('/proc/sys/fs/file-nr').split()[0])
    want = used + 2 * n + max(0, getattr(args, 'idle_descriptors', 0)) + 200000
    if fmax < want:
        log('fs.file-max %d is below %d: raising it for the run' % (fmax, want))
        host.set('fs.file-max', want)
    if not os.path.exists('/proc/sys/net/ipv4/tcp_child_ehash_entries'):
        log('note: this kernel has no net.ipv4.tcp_child_ehash_entries: namespaces share the '
            'boot-time established hash')


def interrupt_on_sigterm():
    """SIGTERM interrupts this process (KeyboardInterrupt: the phases tear down)."""
    main_pid = os.getpid()

    def on_term(_s, _f):
        # pyroute2 forks helpers (netns creation, sockets in a netns) and SIGTERMs them:
        # they inherit this handler and must just go away.
        if os.getpid() != main_pid:
            os._exit(0)
        raise KeyboardInterrupt()
    signal.signal(signal.SIGTERM, on_term)


def contenders_table(phases):
    """Rate, kernel and user bytes and CPU us per connection (all of it, and each half's) of
    engine, baseline and c, and the engine's ratios against each of the others."""
    rows = {}
    for name in ('engine', 'baseline', 'c'):
        ph = phases.get(name) or {}
        if not ph.get('connections_per_s'):
            continue
        halves = ph.get('cpu_us_per_conn_by_half') or {}
        tenths = ph.get('ramp_tenths') or {}
        rows[name] = {'connections_per_s': ph['connections_per_s'],
                      'last_vs_first_10pct': tenths.get('last_vs_first'),
                      'kernel_bytes_per_conn': ph.get('kernel_bytes_per_conn'),
                      'user_bytes_per_conn': ph.get('user_bytes_per_conn'),
                      'cpu_us_per_conn': ph.get('cpu_us_per_conn_procs'),
                      'cpu_us_client': halves.get('client'),
                      'cpu_us_server': halves.get('server')}
    heads = ('', 'connections/s', 'kernel B', 'user B', 'CPU us', 'client CPU', 'server CPU',
             'last/first 10%')
    lines = ['%-9s %14s %12s %10s %10s %11s %11s %15s' % heads]
    for name, r in rows.items():
        lines.append('%-9s %14.0f %12s %10s %10s %11s %11s %15s'
                     % (name, r['connections_per_s'], r['kernel_bytes_per_conn'],
                        r['user_bytes_per_conn'], r['cpu_us_per_conn'], r['cpu_us_client'],
                        r['cpu_us_server'], r['last_vs_first_10pct']))

    def ratio(a, b):
        return round(a / b, 2) if a and b else None
    ratios = {}
    eng = rows.get('engine')
    for other in ('baseline', 'c'):
        o = rows.get(other)
        if not (eng and o):
            continue
        ratios[other] = dict((key, ratio(eng[field], o[field])) for key, field in (
            ('rate', 'connections_per_s'), ('kernel_bytes', 'kernel_bytes_per_conn'),
            ('user_bytes', 'user_bytes_per_conn'), ('cpu_us', 'cpu_us_per_conn'),
            ('cpu_us_client', 'cpu_us_client'), ('cpu_us_server', 'cpu_us_server')))
        lines.append('engine vs %-8s rate %sx, kernel bytes %sx, user bytes %sx, CPU %sx '
                     '(client %sx, server %sx)'
                     % (other, ratios[other]['rate'], ratios[other]['kernel_bytes'],
                        ratios[other]['user_bytes'], ratios[other]['cpu_us'],
                        ratios[other]['cpu_us_client'], ratios[other]['cpu_us_server']))
    return {'rows': rows, 'engine_vs': ratios, 'lines': lines}


def lower_median(values, key=None):
    """The median of values (the lower middle one of an even count), ranked by key."""
    return sorted(values, key=key)[(len(values) - 1) // 2]


# what each round of a phase keeps beside the median run (by_round)
ROUND_FIELDS = ('connections_per_s', 'cpu_us_per_conn_procs', 'cpu_us_per_conn_by_half',
                'kernel_bytes_per_conn', 'user_bytes_per_conn', 'ramp_tenths')


def median_run(runs):
    """Of a phase's runs (all ok), the one with the median rate (the lower middle one
    of an even count), with every run's rate in 'rates' and its main figures (rate, CPU in
    all and by half, bytes) in 'by_round', in the order they ran."""
    out = dict(lower_median(runs, key=lambda r: r.get('connections_per_s') or 0))
    out['rates'] = [r.get('connections_per_s') for r in runs]
    out['by_round'] = [dict((k, r.get(k)) for k in ROUND_FIELDS) for r in runs]
    return out


# Why the contenders share one session (--sessions shared). With the kernel's
# autogroup scheduling (kernel.sched_autogroup_enabled=1, Debian's default) every session
# is one scheduling group, and the CPU goes to groups fairly before it goes to their
# processes. A blocking contender spawned one session per process (as this benchmark
# did before) is 2 x N groups at 1,000,000 (N = 53), the engine's two halves 2: every other
# process on the host then gets a small share during the blocking contenders' ramps and
# a large one during the engine's. On this VM, PID 1 (a host agent that walks every
# process's open files, docs/sizing.md) took 4.4 s of CPU in the naive baseline's ramp
# and 13.2 s in the engine's; a process burning half a core beside the run got 0.57 s in
# the baseline's ramp (21 s) and 11.5 s in the engine's (36 s). With every contender's
# processes in one session, the agent took 10.7 to 14.5 s in each contender's ramp (two
# runs, 7 December).
# A user's shell that starts the scripts (for p in ...; do python3 client.py $p & done)
# starts them in its own session too.


def add_layout_options(p):
    p.add_argument('--ports', type=int, default=0,
                   help='server ports of the engine phases (default: the blocking contenders\' '
                        'layout, one port per %d connections, with one source)' % BASE_PER_PROC)
    p.add_argument('--sources', type=int, default=0,
                   help='client source aliases of the engine phases (default: one with the '
                        'default ports, or enough for <= 16,000 connections per tuple)')


def add_engine_options(p):
    """The options of this benchmark and of protocols.py: how the engine runs, what it is
    compared with, and its profile."""
    p.add_argument('--python', default=TARGET_PYTHON if os.path.exists(TARGET_PYTHON)
                   else sys.executable,
                   help='the interpreter the engine (and the naive baseline) run with (default: '
                        '%s, what the roles run the engine with on a target, where it exists; '
                        'else this one)' % TARGET_PYTHON)
    p.add_argument('--reference-engine', metavar='DIR',
                   help='also run this copy of the engine (DIR/__main__.py, for instance an older '
                        'commit\'s files/tcpscale from git worktree add) and report the ratio '
                        'of the rates')
    p.add_argument('--sessions', choices=('shared', 'per-process'), default='shared',
                   help='where the contenders\' processes run: all in this benchmark\'s '
                        'session (default), or each in a session of its own (the naive '
                        'baseline\'s and the C reference\'s 2 x N processes are then 2 x N '
                        'scheduling groups against 2 for the engine: the comparison before '
                        '7 December 2026)')
    p.add_argument('--perf', action='store_true',
                   help='profile every CPU with perf during each phase and report the CPU '
                        'microseconds per connection by process and by function over the ramp '
                        '(the engine phases also for its first and last 10%%)')
    p.add_argument('--keep-files', action='store_true',
                   help='keep the run\'s working directories (%s: the phases\' logs, '
                        'status files, perf data, the C reference\'s build) when every phase '
                        'passed too; they are kept when one failed, and removed otherwise'
                        % WORKDIRS.replace('%d', 'PID').replace('%', '%%'))


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    p.add_argument('--connections', type=int, required=True)
    p.add_argument('--baseline', action='store_true', help='also run the naive baseline')
    p.add_argument('--heartbeat-interval', type=float, default=0.0,
                   help='also run the engine with heartbeats every S seconds (and server '
                        'echo) and report the cost')
    p.add_argument('--metrics', action='store_true',
                   help='also run the engine with live metrics on (textfile and HTTP, scraped '
                        'every second) and report the cost')
    p.add_argument('--client-args', default='', metavar='ARGS',
                   help='extra options of the engine\'s client half, for instance '
                        '"--inflight 4096"')
    p.add_argument('--variant', metavar='ARGS',
                   help='also run the engine with these client options instead of '
                        '--client-args (phase engine_variant), for instance "--inflight 1024", '
                        'and report the ratio')
    p.add_argument('--server-args', default='', metavar='ARGS',
                   help='extra options of the engine\'s server half, for instance '
                        '"--watch epoll"')
    p.add_argument('--variant-server', metavar='ARGS',
                   help='the server options of the variant (phase engine_variant) instead of '
                        '--server-args, for instance "--watch epoll"')
    add_engine_options(p)
    p.add_argument('--baseline-first', action='store_true',
                   help='run the baseline and the C reference before the engine instead of after '
                        'it (the phase that runs first on a VM whose freed memory goes back to '
                        'the hypervisor pays for faulting fresh pages in)')
    p.add_argument('--site', action='store_true',
                   help='also run ansible-playbook site.yml at the same N on the one-box default '
                        '(then teardown.yml) as phase site, alternating with the engine: its '
                        'time to the target against the engine\'s, and its whole wall time')
    p.add_argument('--site-hold', type=float, default=10.0,
                   help='client_hold of the site phase (default 10, the role\'s default)')
    p.add_argument('--warmup', action='store_true',
                   help='run the engine once before the measured phases, unmeasured: on a VM '
                        'whose freed memory goes back to the hypervisor the first phase pays '
                        'for faulting fresh pages in')
    p.add_argument('--keep-going', action='store_true',
                   help='run the remaining phases when one fails (exit 1 at the end)')
    p.add_argument('--idle-descriptors', type=int, default=0, metavar='N',
                   help='hold N idle descriptors (/dev/null, in helper processes) through '
                        'every phase: what an agent that walks every process\'s open files '
                        'then has to walk besides the contenders\' sockets (docs/sizing.md)')
    add_layout_options(p)
    p.add_argument('--rounds', type=int, default=1,
                   help='run every phase (the engine, its variants, the reference engine, the '
                        'baseline and the C reference) this many times, in alternating order, '
                        'and keep the median rate of each: on a noisy machine a slow spell then '
                        'hits every contender')
    args = p.parse_args()
    if args.rounds < 1:
        p.error('--rounds: give 1 or more')
    if args.idle_descriptors < 0:
        p.error('--idle-descriptors: give 0 or more')
    host = HostSettings()
    phases = {}
    failed = []
    interrupted = False

    interrupt_on_sigterm()
    idle = IdleDescriptors()
    try:
        preflight(args, host)
        if args.idle_descriptors > 0:
            pids = idle.start(args.idle_descriptors)
            log('idle descriptors: %d held by %d helper processes through every phase'
                % (args.idle_descriptors, len(pids)))
        wait_settled('start', timeout=30)
        engines = [('engine', lambda: run_engine(args, host))]
        if args.heartbeat_interval > 0:
            engines.append(('engine_heartbeat',
                            lambda: run_engine(args, host, heartbeat=args.heartbeat_interval)))
        if args.metrics:
            engines.append(('engine_metrics',
                            lambda: run_engine(args, host, metrics=True, label='engine-metrics')))
        if args.variant is not None or args.variant_server is not None:
            engines.append(('engine_variant', lambda: run_engine(
                args, host, label='engine-variant',
                client_extra=None if args.variant is None else shlex.split(args.variant),
                server_extra=None if args.variant_server is None
                else shlex.split(args.variant_server))))
        if args.site:
            engines.append(('site', lambda: run_site(args, host)))
        if args.reference_engine:
            engines.append(('engine_reference',
                            lambda: run_engine(args, host,
                                               engine=os.path.abspath(args.reference_engine),
                                               label='engine-reference')))
        if args.baseline:
            blocking = [('baseline', lambda: run_baseline(args, host))]
            cref, why = build_cref(workdir('cref'))
            if cref:
                log('c: built %s from %s' % (cref, CREF_SRC))
                blocking.append(('c', lambda: run_baseline(args, host, 'c', cref)))
            else:
                log('c: %s' % why)
                phases['c'] = {'phase': 'c', 'ok': None, 'skipped': why}
            # what runs first pays for fresh memory (see --baseline-first)
            engines = blocking + engines if args.baseline_first else engines + blocking
        plan = []
        if args.warmup:
            # a first run nobody is measured by: the fresh-memory cost of a first phase
            # (docs/sizing.md) then hits no contender
            plan.append(('warmup', lambda: run_engine(args, host, label='warmup')))
        for r in range(args.rounds):
            plan += engines if r % 2 == 0 else engines[::-1]
        runs = {}
        for name, fn in plan:
            try:
                phases[name] = fn()
            except BenchError as exc:
                phases[name] = {'phase': name, 'ok': False, 'error': str(exc)}
            runs.setdefault(name, []).append(phases[name])
            if phases[name].get('ok') and len(runs[name]) > 1:
                phases[name] = median_run(runs[name])
            if not phases[name].get('ok'):
                failed.append(name)
                log('phase %s failed: %s'
                    % (name, phases[name].get('error', 'target not reached')))
                if not args.keep_going:
                    break
    except KeyboardInterrupt:
        interrupted = True
        log('interrupted: tearing down')
    except BenchError as exc:
        log('error: %s' % exc)
        failed.append('preflight')
    finally:
        try:
            idle.stop()
            remove_namespaces()
        finally:
            host.restore()
    eng = phases.get('engine', {})
    out = {'connections': args.connections,
           'established': eng.get('established'),
           'seconds_to_target': eng.get('seconds_to_target'),
           'connections_per_s': eng.get('connections_per_s'),
           'user_bytes_per_conn': eng.get('user_bytes_per_conn'),
           'kernel_bytes_per_conn': eng.get('kernel_bytes_per_conn'),
           'failed_phases': failed, 'interrupted': interrupted,
           'command': shlex.join([sys.executable] + sys.argv),
           'idle_descriptors': max(0, args.idle_descriptors),
           'phases': phases}
    base = phases.get('baseline')
    if base and base.get('connections_per_s') and eng.get('connections_per_s'):
        out['ratios_vs_baseline'] = {
            'rate': round(eng['connections_per_s'] / base['connections_per_s'], 2),
            'time': round(base['seconds_to_target'] / eng['seconds_to_target'], 2),
            'user_memory': round(base['user_bytes_per_conn'] / eng['user_bytes_per_conn'], 1)
            if eng.get('user_bytes_per_conn') else None,
            'kernel_memory': round(base['kernel_bytes_per_conn'] / eng['kernel_bytes_per_conn'],
                                   2) if eng.get('kernel_bytes_per_conn') else None}
        log('engine vs baseline: %.2fx the rate, %.1fx less user memory, %.2fx less kernel '
            'memory' % (out['ratios_vs_baseline']['rate'], out['ratios_vs_baseline']['user_memory']
                        or 0, out['ratios_vs_baseline']['kernel_memory'] or 0))
    for name, phase in sorted(phases.items()):
        if phase.get('rates'):
            log('%s: connections/s per round %s, the median kept' % (name, phase['rates']))
            halves = [r['cpu_us_per_conn_by_half'] for r in phase['by_round']
                      if r.get('cpu_us_per_conn_by_half')]
            if halves:          # (the site phase has none)
                log('%s: CPU us per connection per round (client + server) %s' % (
                    name, ', '.join('%s + %s' % (h['client'], h['server']) for h in halves)))
    out['table'] = contenders_table(phases)
    for line in out['table']['lines']:
        log(line)
    hb = phases.get('engine_heartbeat')
    if hb and hb.get('connections_per_s') and eng.get('connections_per_s'):
        out['heartbeat_cost_pct'] = round(
            100.0 * (1 - hb['connections_per_s'] / eng['connections_per_s']), 1)
        out['heartbeat'] = hb.get('heartbeat')
        log('heartbeat every %.0f s: %.1f%% of the connect rate; RTT p50 %s ms p99 %s ms'
            % (args.heartbeat_interval, out['heartbeat_cost_pct'],
               (hb.get('heartbeat') or {}).get('rtt_p50_ms'),
               (hb.get('heartbeat') or {}).get('rtt_p99_ms')))
    met = phases.get('engine_metrics')
    if met and met.get('connections_per_s') and eng.get('connections_per_s'):
        out['metrics_cost_pct'] = round(
            100.0 * (1 - met['connections_per_s'] / eng['connections_per_s']), 1)
        out['metrics_scrapes'] = met.get('scrapes')
        log('metrics on (textfile + HTTP scraped every second): %.1f%% of the connect rate '
            '(%s vs %s connections/s; scrapes %s)'
            % (out['metrics_cost_pct'], met['connections_per_s'], eng['connections_per_s'],
               met.get('scrapes')))
    ref = phases.get('engine_reference')
    if ref and ref.get('connections_per_s') and eng.get('connections_per_s'):
        out['ratio_vs_reference_engine'] = round(
            eng['connections_per_s'] / ref['connections_per_s'], 3)
        log('this engine vs the reference engine (%s): %.3fx the rate (%s vs %s connections/s)'
            % (args.reference_engine, out['ratio_vs_reference_engine'], eng['connections_per_s'],
               ref['connections_per_s']))
    site = phases.get('site')
    if site and site.get('seconds_to_target') and eng.get('seconds_to_target'):
        out['site_vs_engine'] = {
            'time_to_target': round(site['seconds_to_target'] / eng['seconds_to_target'], 3),
            'wall_seconds': site.get('wall_seconds')}
        log('site.yml vs the engine: %.3fx the time to the target (%s vs %s s); site.yml\'s '
            'whole wall time %s s with a hold of %g s'
            % (out['site_vs_engine']['time_to_target'], site['seconds_to_target'],
               eng['seconds_to_target'], site.get('wall_seconds'), args.site_hold))
    var = phases.get('engine_variant')
    if var and var.get('connections_per_s') and eng.get('connections_per_s'):
        out['ratio_vs_variant'] = round(eng['connections_per_s'] / var['connections_per_s'], 3)
        log('the engine (%s) vs its variant (%s): %.3fx the rate (%s vs %s connections/s), '
            'kernel %s vs %s B per connection'
            % (' | '.join(filter(None, (args.client_args, args.server_args))) or 'defaults',
               ' | '.join(filter(None, (args.variant, args.variant_server))),
               out['ratio_vs_variant'],
               eng['connections_per_s'], var['connections_per_s'],
               eng.get('kernel_bytes_per_conn'), var.get('kernel_bytes_per_conn')))
    finish_workdirs(args.keep_files, failed or interrupted)
    sys.stdout.write(json.dumps(out, sort_keys=True) + '\n')
    sys.stdout.flush()
    return 1 if failed or interrupted else 0


if __name__ == '__main__':
    sys.exit(main())
