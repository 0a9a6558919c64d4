# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""tcpscale: open, hold and count a very large number of TCP connections.

One file, standard library only, Python >= 3.9, Linux. Two halves:

    python3 tcpscale.py server --listen ADDR[,ADDR...] --ports LO-HI ...
    python3 tcpscale.py client --targets ADDR[,ADDR...] --ports LO-HI
                               (--sources ADDR,... | --sources-cidr CIDR --sources-count N)
                               --connections N ...

Run ``python3 tcpscale.py server --help`` / ``client --help`` for the options.

Process model
-------------
A lean supervisor (imports done, no per-connection state) forks worker
processes. One process may hold at most RLIMIT_NOFILE descriptors; the
supervisor reads the real limit, raises the soft limit to the hard one, and
plans ``workers = ceil(sockets / (limit - reserve))``. Workers keep each
connection as a bare file descriptor in an ``array('i')`` (no socket object),
watch them with one epoll each, and report through a shared memory page per
worker; the supervisor aggregates, prints progress on stderr and writes the
summary (the last line on stdout, and --summary-file).

Client: workers are started a few at a time (one per core); each opens its
quota with non-blocking connects (bind to a source alias with
IP_BIND_ADDRESS_NO_PORT, so the kernel picks the port per 4-tuple at connect
time and one source address is not capped at the local port range), many
handshakes in flight, then holds; the next worker starts when one is done.
Connection k of the whole run goes to tuple k mod T over
sources x destinations x ports, so every tuple carries the same share.

Server: endpoints (addresses x ports, more than 65,535 is fine) are split
into groups whose listening sockets one *keeper* process creates and keeps.
Holder processes inherit them and accept (one accepting holder per lane and
core; lanes are SO_REUSEPORT siblings of one endpoint); when a holder is
nearly full the keeper forks its successor, and the full holder closes its
copies of the listening sockets. The keeper keeps them open, so no queued
handshake is ever lost when a holder leaves the accepting set.

Exit codes: 0 target reached (client) / clean stop (server); 1 target not
reached; 2 bad arguments, unreachable arithmetic or an endpoint that cannot
be used (preflight, before any connection); 3 a worker was lost.
"""

import argparse
import array
import ctypes
import errno
import gc
import heapq
import ipaddress
import json
import math
import mmap
import os
import random
import resource
import select
import signal
import socket
import _socket
import sys
import time
import traceback

VERSION = '1.0.0'

IP_BIND_ADDRESS_NO_PORT = getattr(socket, 'IP_BIND_ADDRESS_NO_PORT', 24)
PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
SOCK_NONBLOCK = getattr(socket, 'SOCK_NONBLOCK', 0o4000)
SOCK_CLOEXEC = getattr(socket, 'SOCK_CLOEXEC', 0o2000000)
LINGER_RST = b'\x01\x00\x00\x00\x00\x00\x00\x00'    # struct linger {1, 0}: close sends RST

EXIT_OK, EXIT_NOT_REACHED, EXIT_USAGE, EXIT_LOST = 0, 1, 2, 3
RESERVE_FDS = 64            # descriptors a worker keeps for itself (epoll, pipes, stdio)
ACCEPT_BATCH = 128          # a server holder that accepted fewer than this in one round
ACCEPT_PAUSE = 0.002        # ... waits this long (s) for the accept queue to fill
HB_BURST = 32               # heartbeats a client worker sends in one pass (small: RTT fidelity)
PAGE = os.sysconf('SC_PAGE_SIZE') if hasattr(os, 'sysconf') else 4096
INF = float('inf')

# Address ranges the client connects to without --allow-external.
SAFE_NETWORKS = [ipaddress.ip_network(n) for n in (
    '10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16',       # RFC 1918
    '127.0.0.0/8', '169.254.0.0/16',                       # loopback, link-local
    '198.18.0.0/15',                                       # RFC 2544 benchmarking
    '::1/128', 'fc00::/7', 'fe80::/10')]                   # loopback, ULA, link-local

# ---------------------------------------------------------------------------
# Shared memory layout: one slot of SLOT_WORDS int64 per process.

SLOT_WORDS = 1024
F_PID, F_STATE, F_EST, F_TOTAL, F_ATTEMPTS, F_FAILED, F_INFLIGHT, F_DROPPED = range(8)
F_DONE_NS, F_QUOTA, F_HB_SENT, F_HB_RECV, F_RATE, F_INFL_CAP, F_STOP, F_PEAK = range(8, 16)
F_LISTEN, F_WANT, F_LANE, F_CAP, F_NHOLDERS = range(16, 21)
F_ERRNO, F_ERR_INDEX, F_ECHO_BYTES, F_CPU_USER_US, F_CPU_SYS_US = range(24, 29)
# F_DROPPED counts held connections the peer closed (FIN) or reset (RST);
# F_DROP_RST the resets among them. F_LOST_* are written into the slot of a
# holder that died unexpectedly: its wait status, when (wall clock, ns) and
# how many connections it held.
F_DROP_RST, F_LOST_STATUS, F_LOST_NS, F_LOST_HELD = range(29, 33)
ERR_BASE, ERR_SLOTS = 64, 256          # connect errors by errno (last slot: errno >= 255)
HIST_BASE, HIST_SLOTS = 320, 512       # RTT histogram, HIST_PER_E buckets per e-fold of us
HIST_PER_E = 20

ST_EMPTY, ST_STARTING, ST_ACTIVE, ST_HOLDING, ST_SETTLED, ST_EXITED, ST_FAILED, ST_LOST = range(8)
STATE_NAMES = ('empty', 'starting', 'active', 'holding', 'settled', 'exited', 'failed', 'lost')
# Error kinds that are not an errno: a held connection ended by the peer.
PEER_CLOSED, PEER_RESET = 'peer_closed', 'peer_reset'
# Columns of the timeline rows of both halves (dropped: cumulative count of
# connections the peer ended; the server counts the ones clients closed).
TIMELINE_COLUMNS = ['t_seconds', 'established', 'user_pss_bytes', 'kernel_bytes', 'dropped']


class Shm(object):
    """Anonymous shared memory created before fork: int64 and float64 views."""

    def __init__(self, nslots, extra_u32=0):
        self.nslots = nslots
        self.mm = mmap.mmap(-1, max(PAGE, nslots * SLOT_WORDS * 8))
        self.q = memoryview(self.mm).cast('q')
        self.d = memoryview(self.mm).cast('d')
        self.mm2 = None
        self.u = None
        if extra_u32:
            self.mm2 = mmap.mmap(-1, max(PAGE, extra_u32 * 4))
            self.u = memoryview(self.mm2).cast('I')


# ---------------------------------------------------------------------------
# Small helpers


class Usage(Exception):
    """Bad arguments or unreachable plan: exit 2 with this message."""


def log(msg):
    try:
        sys.stderr.write('tcpscale: %s\n' % msg)
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def errno_name(num):
    if num == ERR_SLOTS - 1:
        return 'EOTHER'
    return errno.errorcode.get(num, 'E%d' % num)


def parse_addresses(text, field):
    out = []
    for item in [x.strip() for x in str(text).split(',')]:
        if not item:
            continue
        try:
            out.append(ipaddress.ip_address(item))
        except ValueError:
            raise Usage('%s: %r is not an IP address (give addresses separated by commas, '
                        'e.g. 10.0.0.1,10.0.0.2)' % (field, item))
    if not out:
        raise Usage('%s: no address given' % field)
    if len(set(out)) != len(out):
        raise Usage('%s: an address is listed twice' % field)
    return out


def parse_ports(text, field='--ports'):
    text = str(text).strip()
    try:
        if '-' in text:
            lo, hi = [int(x) for x in text.split('-', 1)]
        else:
            lo = hi = int(text)
    except ValueError:
        raise Usage('%s: %r is not a port or a range LO-HI (e.g. 10000-10015)' % (field, text))
    if not 1 <= lo <= hi <= 65535:
        raise Usage('%s: %r must satisfy 1 <= LO <= HI <= 65535' % (field, text))
    return lo, hi


def sources_from_cidr(cidr, count, offset):
    """The first usable hosts of cidr after offset (as the ip_aliases module adds them)."""
    try:
        net = ipaddress.ip_network(cidr, strict=True)
    except ValueError as exc:
        raise Usage('--sources-cidr: %r is not a network in CIDR form (%s)' % (cidr, exc))
    if count is None or count < 1:
        raise Usage('--sources-count: give a number of source addresses >= 1 with --sources-cidr')
    first = int(net.network_address)
    size = net.num_addresses
    if net.version == 4 and net.prefixlen < 31:
        first, size = first + 1, size - 2
    elif net.version == 6 and net.prefixlen < 127:
        first, size = first + 1, size - 1
    if offset + count > size:
        raise Usage('--sources-cidr: %s has %d usable host addresses, offset %d + count %d does '
                    'not fit' % (net, size, offset, count))
    cls = ipaddress.IPv4Address if net.version == 4 else ipaddress.IPv6Address
    return [cls(first + offset + i) for i in range(count)]


def is_safe_target(addr):
    return any(addr in net for net in SAFE_NETWORKS if net.version == addr.version)


def probe_addresses(addrs, what, option):
    """Fail (Usage) unless every address belongs to this network namespace.

    Binds each one without a port (IP_BIND_ADDRESS_NO_PORT), so nothing is
    reserved and nothing listens.
    """
    for a in addrs:
        af = socket.AF_INET if a.version == 4 else socket.AF_INET6
        s = socket.socket(af, socket.SOCK_STREAM)
        try:
            s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            s.bind((str(a), 0))
        except OSError as exc:
            raise Usage('%s address %s cannot be used in this network namespace: %s '
                        '(add it as an alias first, or fix %s)' % (what, a, exc.strerror, option))
        finally:
            s.close()


def read_sysctl(path, default=None):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def local_port_range():
    """(lo, hi, usable count) of net.ipv4.ip_local_port_range in this namespace."""
    text = read_sysctl('/proc/sys/net/ipv4/ip_local_port_range', '32768 60999')
    lo, hi = [int(x) for x in text.split()]
    reserved = 0
    spec = read_sysctl('/proc/sys/net/ipv4/ip_local_reserved_ports', '') or ''
    for part in spec.split(','):
        part = part.strip()
        if not part:
            continue
        a, _sep, b = part.partition('-')
        a = int(a)
        b = int(b) if b else a
        reserved += max(0, min(b, hi) - max(a, lo) + 1)
    return lo, hi, hi - lo + 1 - reserved


def raise_nofile():
    """Raise the soft RLIMIT_NOFILE to the hard one; return (soft_before, soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if hard == resource.RLIM_INFINITY:
        target = int(read_sysctl('/proc/sys/fs/nr_open', '1048576'))
    new = soft
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            new = target
        except (ValueError, OSError):
            new = soft
    return soft, new, hard


def cpu_count():
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def kernel_snapshot():
    """(slab bytes, TCP memory bytes) now: /proc/meminfo Slab and /proc/net/sockstat mem."""
    slab = 0
    try:
        with open('/proc/meminfo') as f:
            for line in f:
                if line.startswith('Slab:'):
                    slab = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    tcpmem = 0
    try:
        with open('/proc/net/sockstat') as f:
            for line in f:
                if line.startswith('TCP:'):
                    parts = line.split()
                    tcpmem = int(parts[parts.index('mem') + 1]) * PAGE
    except (OSError, ValueError, IndexError):
        pass
    return slab, tcpmem


def pss_of(pid):
    try:
        with open('/proc/%d/smaps_rollup' % pid, 'rb') as f:
            for line in f:
                if line.startswith(b'Pss:'):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def write_json_atomic(path, obj):
    if not path:
        return
    tmp = '%s.tmp.%d' % (path, os.getpid())
    with open(tmp, 'w') as f:
        json.dump(obj, f, sort_keys=True)
        f.write('\n')
    os.replace(tmp, path)


def hist_add(q, base, seconds):
    us = seconds * 1e6
    idx = int(math.log(us + 1.0) * HIST_PER_E) if us > 0 else 0
    if idx >= HIST_SLOTS:
        idx = HIST_SLOTS - 1
    q[base + idx] += 1


def hist_percentile(hist, fraction):
    total = sum(hist)
    if not total:
        return None
    want = fraction * total
    run = 0
    for idx, n in enumerate(hist):
        run += n
        if run >= want:
            # middle of the bucket, in milliseconds
            return round((math.exp((idx + 0.5) / HIST_PER_E) - 1.0) / 1000.0, 3)
    return None


_LIBC = None


def libc():
    global _LIBC
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL(None, use_errno=True)
        except OSError:
            _LIBC = False
    return _LIBC


def set_name(name):
    """Process name shown by ps/top/perf (comm, 15 characters at most)."""
    lib = libc()
    if lib:
        try:
            lib.prctl(PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)
        except (AttributeError, OSError, TypeError):
            pass


def child_setup(parent_pid, name=None):
    """In a freshly forked worker: die with the parent, own signal handling."""
    lib = libc()
    if lib:
        try:
            lib.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        except (AttributeError, OSError):
            pass
    if name:
        set_name(name)
    if os.getppid() != parent_pid:      # the parent died before prctl
        os._exit(EXIT_LOST)
    gc.disable()
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # the supervisor coordinates
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    flags = {'stop': False}

    def on_term(_signum, _frame):
        flags['stop'] = True
    signal.signal(signal.SIGTERM, on_term)
    return wake_r, flags


def publish_cpu(q, b):
    t = os.times()
    q[b + F_CPU_USER_US] = int(t[0] * 1e6)
    q[b + F_CPU_SYS_US] = int(t[1] * 1e6)


def drain(fd):
    try:
        while os.read(fd, 4096):
            pass
    except OSError:
        pass


def close_rst(fds):
    """Close held connections with SO_LINGER {1, 0}: RST, no TIME_WAIT left behind."""
    new = _socket.socket
    for fd in fds:
        try:
            s = new(socket.AF_INET, socket.SOCK_STREAM, 0, fd)
        except OSError:
            try:
                os.close(fd)
            except OSError:
                pass
            continue
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
        except OSError:
            pass
        s.close()


def fork_worker(target, parent_pid, *args):
    """Fork a worker running target(*args); the child never returns."""
    sys.stdout.flush()
    sys.stderr.flush()
    gc.freeze()
    pid = os.fork()
    if pid:
        return pid
    code = 70
    try:
        code = target(parent_pid, *args) or 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 70
    except BaseException:       # report and die: the supervisor sees a lost worker
        try:
            traceback.print_exc()
        except Exception:
            pass
        code = 70
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:
            pass
        os._exit(code)
    return 0    # not reached


def describe_status(status):
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = 'signal %d' % sig
        return 'killed by %s' % name
    if os.WIFEXITED(status):
        return 'exited with code %d' % os.WEXITSTATUS(status)
    return 'status %d' % status


class Supervisor(object):
    """What both halves share: signals, children, memory and kernel accounting."""

    def __init__(self, args, role):
        self.args = args
        self.role = role
        self.pid = os.getpid()
        self.children = {}              # pid -> slot
        self.expected_exit = set()      # pids we asked to stop
        self.lost = []
        self.stop_reason = None
        self.timeline = []
        self.t0 = time.monotonic()
        self.wake_r, self.wake_w = os.pipe()
        self.notify_r, self.notify_w = os.pipe()
        for fd in (self.wake_r, self.wake_w, self.notify_r, self.notify_w):
            os.set_blocking(fd, False)
        self.signalled = None
        self.poller = select.epoll()
        self.poller.register(self.wake_r, select.EPOLLIN)
        self.poller.register(self.notify_r, select.EPOLLIN)
        self.k0 = kernel_snapshot()

    def install_signals(self):
        signal.set_wakeup_fd(self.wake_w)

        def on_stop(signum, _frame):
            if self.signalled is None:
                self.signalled = signal.Signals(signum).name
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, on_stop)
        signal.signal(signal.SIGCHLD, lambda _s, _f: None)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)

    def wait(self, timeout):
        try:
            self.poller.poll(max(0.0, timeout))
        except InterruptedError:
            pass
        drain(self.wake_r)
        drain(self.notify_r)

    def reap(self, on_lost=None):
        """Collect exited children; unexpected exits are recorded as lost.

        on_lost(pid, slot) returns what the role knows of the lost worker (its
        name and the connections it held), merged into the record.
        """
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            slot = self.children.pop(pid, None)
            if slot is None or pid in self.expected_exit:
                continue
            self.record_lost(pid, status, on_lost(pid, slot) if on_lost else {'slot': slot})

    def record_lost(self, pid, status, extra, at=None):
        """One lost worker: what it was, how it ended, when, what it held."""
        at = time.time() if at is None else at
        entry = {'pid': pid, 'how': describe_status(status), 'at': round(at, 3),
                 't': round(time.monotonic() - self.t0 - (time.time() - at), 3)}
        entry.update(extra)
        self.lost.append(entry)
        log('error: worker %s (pid %d) lost: %s, holding %s connection(s); the others keep '
            'holding' % (entry.get('worker', entry.get('slot')), pid, entry['how'],
                         entry.get('held', '?')))
        return entry

    def kernel_bytes(self):
        slab, tcpmem = kernel_snapshot()
        return max(0, (slab - self.k0[0]) + (tcpmem - self.k0[1]))

    def pss_total(self, pids):
        return sum(pss_of(p) for p in pids)

    def stop_children(self, pids, grace):
        """SIGTERM the given children, wait up to grace seconds, then SIGKILL."""
        for pid in pids:
            self.expected_exit.add(pid)
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while self.children and time.monotonic() < deadline:
            self.reap()
            if self.children:
                self.wait(0.05)
        for pid in list(self.children):
            log('worker pid %d did not stop within %.0f s: SIGKILL' % (pid, grace))
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        while self.children:
            try:
                pid, _status = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            self.children.pop(pid, None)

    def emergency_kill(self):
        for pid in list(self.children):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def finish(summary, path):
    try:
        write_json_atomic(path, summary)
    except OSError as exc:
        log('cannot write the summary file %s: %s' % (path, exc))
    sys.stdout.write(json.dumps(summary, sort_keys=True) + '\n')
    sys.stdout.flush()


# ---------------------------------------------------------------------------
# Client


class ClientPlan(object):
    """Everything a client worker needs, computed before the first socket."""

    def __init__(self, args):
        self.target = args.connections
        if self.target < 1:
            raise Usage('--connections: give a number >= 1')
        self.targets = parse_addresses(args.targets, '--targets')
        self.plo, self.phi = parse_ports(args.ports)
        self.nports = self.phi - self.plo + 1
        if args.sources and args.sources_cidr:
            raise Usage('--sources and --sources-cidr are mutually exclusive')
        if args.sources:
            self.sources = parse_addresses(args.sources, '--sources')
        elif args.sources_cidr:
            self.sources = sources_from_cidr(args.sources_cidr, args.sources_count,
                                             args.sources_offset)
        else:
            raise Usage('give the source addresses: --sources ADDR,... or --sources-cidr CIDR '
                        '--sources-count N')
        if not args.allow_external:
            bad = [str(a) for a in self.targets if not is_safe_target(a)]
            if bad:
                raise Usage('--targets: %s outside private (RFC 1918, ULA), loopback, link-local '
                            'and benchmark (198.18.0.0/15) ranges; pass --allow-external if '
                            'you really mean to load that host' % ', '.join(bad))
        for name in ('rate', 'ramp', 'hold', 'heartbeat_interval'):
            if getattr(args, name) < 0:
                raise Usage('--%s: must be >= 0' % name.replace('_', '-'))
        if not 0 <= args.hold_tolerance < 1:
            raise Usage('--hold-tolerance: give a fraction from 0 to below 1, e.g. 0.001')
        if args.ramp > 0 and args.rate <= 0:
            raise Usage('--ramp needs --rate (the rate to ramp up to)')
        if args.inflight < 1 or args.timeout <= 0 or args.retries < 0:
            raise Usage('--inflight >= 1, --timeout > 0 and --retries >= 0 are required')
        if args.heartbeat_size < 1 or args.heartbeat_size > 65536:
            raise Usage('--heartbeat-size: give 1 to 65536 bytes')
        if args.progress_interval <= 0:
            raise Usage('--progress-interval: must be > 0')
        # tuples, grouped by family (a v4 source only reaches v4 targets)
        self.segments = []     # (af, tuples, sources as str, targets as str)
        for version, af in ((4, socket.AF_INET), (6, socket.AF_INET6)):
            srcs = [str(a) for a in self.sources if a.version == version]
            dsts = [str(a) for a in self.targets if a.version == version]
            if srcs and dsts:
                self.segments.append((af, len(srcs) * len(dsts) * self.nports, srcs, dsts))
        if not self.segments:
            raise Usage('no source address has the same family (IPv4/IPv6) as a target')
        self.tuples = sum(s[1] for s in self.segments)
        self.port_lo, self.port_hi, self.port_count = local_port_range()
        capacity = self.tuples * self.port_count
        nsrc = sum(len(s[2]) for s in self.segments)
        ndst = sum(len(s[3]) for s in self.segments)
        self.arith = ('%d sources x %d destinations x %d ports = %d tuples x %d local ports '
                      '(net.ipv4.ip_local_port_range %d-%d) = %d connections at most'
                      % (nsrc, ndst, self.nports, self.tuples, self.port_count, self.port_lo,
                         self.port_hi, capacity))
        if capacity < self.target:
            need = -(-self.target // (len(self.targets) * self.nports * self.port_count))
            raise Usage('the target cannot be reached: %s < %d requested. Add source addresses '
                        '(at least %d), destination addresses or ports, or widen '
                        'ip_local_port_range' % (self.arith, self.target, need))
        self.per_tuple = -(-self.target // self.tuples)
        self.warnings = []
        if self.per_tuple > self.port_count // 2:
            self.warnings.append(
                '%d connections per (source, destination, port) tuple is more than half of the '
                '%d local ports: the kernel searches the other port parity for every connection '
                'beyond that and slows down; add sources or destinations'
                % (self.per_tuple, self.port_count))
        # descriptors
        self.nofile_before, self.nofile, self.nofile_hard = raise_nofile()
        self.cap = self.nofile - RESERVE_FDS
        if self.cap < 1:
            raise Usage('RLIMIT_NOFILE is %d: too low to hold connections (need > %d)'
                        % (self.nofile, RESERVE_FDS))
        cores = cpu_count()
        need_workers = -(-self.target // self.cap)
        if args.workers == 'auto':
            self.workers = min(self.target, max(need_workers, cores))
        else:
            try:
                self.workers = int(args.workers)
            except ValueError:
                raise Usage('--workers: give auto or a number >= 1')
            if self.workers < 1:
                raise Usage('--workers: give auto or a number >= 1')
            if self.workers < need_workers:
                raise Usage('--workers %d: %d connections need at least %d workers at %d '
                            'descriptors each (RLIMIT_NOFILE %d - %d reserved)'
                            % (self.workers, self.target, need_workers, self.cap, self.nofile,
                               RESERVE_FDS))
            self.workers = min(self.workers, self.target)
        self.active = min(self.workers, args.concurrency or cores)
        base, extra = divmod(self.target, self.workers)
        self.quotas = [base + (1 if i < extra else 0) for i in range(self.workers)]
        self.starts = []
        acc = 0
        for q in self.quotas:
            self.starts.append(acc)
            acc += q
        self.payload = b'h' * args.heartbeat_size

    def probe_sources(self):
        """Every source must be an address of this namespace (bind without a port)."""
        probe_addresses(self.sources, 'source', '--sources')


def client_worker(parent_pid, plan, args, shm, slot, start_g, quota, notify_w):
    wake_r, flags = child_setup(parent_pid, 'tcpscale-c%d' % slot)
    q = shm.q
    d = shm.d
    b = slot * SLOT_WORDS
    err_base = b + ERR_BASE
    hist_base = b + HIST_BASE
    q[b + F_PID] = os.getpid()
    q[b + F_QUOTA] = quota
    q[b + F_STATE] = ST_ACTIVE

    epoll = select.epoll(1024)
    epoll.register(wake_r, select.EPOLLIN)
    poll = epoll.poll
    register = epoll.register
    conn_mask = select.EPOLLOUT | select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLET
    bad_mask = select.EPOLLERR | select.EPOLLHUP | select.EPOLLRDHUP
    in_mask = select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLERR | select.EPOLLHUP

    fds = array.array('i')
    fds_append = fds.append
    pos = array.array('i', [0]) * (plan.nofile + 2)     # fd -> index in fds + 1
    inflight = {}
    inflight_pop = inflight.pop
    retry_heap = []
    new_socket = _socket.socket
    nonblock_stream = socket.SOCK_STREAM | SOCK_NONBLOCK
    sol_ip = socket.IPPROTO_IP
    sol_socket = socket.SOL_SOCKET
    so_error = socket.SO_ERROR
    einprogress = errno.EINPROGRESS
    monotonic = time.monotonic
    retries = args.retries
    timeout = args.timeout
    segments = plan.segments
    single = len(segments) == 1
    seg_af, seg_t, seg_src, seg_dst = segments[0]
    nsrc, nports, plo = len(seg_src), plan.nports, plan.plo
    ndst = len(seg_dst) * nports
    tuples = plan.tuples
    rbuf = bytearray(65536)
    rbufs = [rbuf]
    readv = os.readv
    write = os.write
    close = os.close
    payload = plan.payload
    hb_interval = args.heartbeat_interval
    hb_pending = {}

    next_g = start_g
    end_g = start_g + quota
    est = 0
    peak = 0
    total = 0
    attempts = 0
    failed = 0
    dropped = 0
    drop_rst = 0
    tokens = 0.0
    hb_budget = 0.0
    hb_cursor = 0
    hb_sent = 0
    hb_recv = 0
    last = monotonic()
    last_scan = last
    last_ppid = last
    last_hb = last
    hb_start = INF
    done = False

    def target_of(g, attempt):
        p = (g + attempt) % tuples
        if single:
            af, srcs, dsts = seg_af, seg_src, seg_dst
        else:
            for af, t, srcs, dsts in segments:
                if p < t:
                    break
                p -= t
        nd = len(dsts) * nports
        d = p % nd
        return af, srcs[(p // nd) % len(srcs)], dsts[d // nports], plo + d % nports

    def fail(g, attempt, err, now):
        nonlocal failed
        q[err_base + (err if 0 < err < ERR_SLOTS else ERR_SLOTS - 1)] += 1
        if attempt < retries:
            delay = min(10.0, 0.2 * (2 ** attempt)) * (0.5 + random.random())
            heapq.heappush(retry_heap, (now + delay, g, attempt + 1))
        else:
            failed += 1

    def start(g, attempt, now):
        nonlocal attempts
        attempts += 1
        if single:
            # destinations (address x port) first, then sources: the first D connections
            # reach D different endpoints; k and k + T share a tuple
            p = (g + attempt) % tuples
            d = p % ndst
            af = seg_af
            src = seg_src[(p // ndst) % nsrc]
            dst = (seg_dst[d // nports], plo + d % nports)
        else:
            af, src, daddr, dport = target_of(g, attempt)
            dst = (daddr, dport)
        try:
            s = new_socket(af, nonblock_stream)
        except OSError as exc:
            fail(g, attempt, exc.errno or 0, now)
            return
        try:
            s.setsockopt(sol_ip, IP_BIND_ADDRESS_NO_PORT, 1)
            s.bind((src, 0))
            err = s.connect_ex(dst)
        except OSError as exc:
            err = exc.errno or 0
        if err == einprogress or err == 0:
            fd = s.detach()
            register(fd, conn_mask)
            inflight[fd] = (g, attempt, now)
        else:
            s.close()
            fail(g, attempt, err, now)

    def sock_error(fd):
        s = new_socket(socket.AF_INET, socket.SOCK_STREAM, 0, fd)
        try:
            return s.getsockopt(sol_socket, so_error)
        finally:
            s.detach()

    def drop(fd, reset):
        # the peer ended a held connection: FIN (reset False) or RST (reset True)
        nonlocal est, dropped, drop_rst
        i = pos[fd] - 1
        if i < 0:
            return
        lastfd = fds[-1]
        fds[i] = lastfd
        pos[lastfd] = i + 1
        fds.pop()
        pos[fd] = 0
        hb_pending.pop(fd, None)
        try:
            close(fd)
        except OSError:
            pass
        est -= 1
        dropped += 1
        if reset:
            drop_rst += 1

    while True:
        now = monotonic()
        if flags['stop'] or q[b + F_STOP]:
            break
        if now - last_ppid > 0.5:
            last_ppid = now
            publish_cpu(q, b)
            if os.getppid() != parent_pid:
                break
        # --- open new connections (and due retries) within rate and in-flight caps
        if not done:
            rate = d[b + F_RATE]
            room = int(q[b + F_INFL_CAP]) - len(inflight)
            if rate > 0:
                tokens = min(tokens + (now - last) * rate, max(1.0, rate * 0.02))
                room = min(room, int(tokens))
            if room > 256:
                room = 256
            n = 0
            while n < room and retry_heap and retry_heap[0][0] <= now:
                _t, g, attempt = heapq.heappop(retry_heap)
                start(g, attempt, now)
                n += 1
            while n < room and next_g < end_g:
                start(next_g, 0, now)
                next_g += 1
                n += 1
            if rate > 0:
                tokens -= n
        last = now
        # --- wait for events
        if done:
            if hb_interval <= 0:
                tmo = 1.0
            elif hb_budget >= 1:
                tmo = 0
            else:
                tmo = min(0.1, max(0.001, hb_interval / max(1, len(fds)) * HB_BURST))
        elif inflight or retry_heap or next_g < end_g:
            if next_g < end_g and len(inflight) < q[b + F_INFL_CAP]:
                rate = d[b + F_RATE]
                tmo = 0 if rate <= 0 or tokens >= 1 else min(0.05, (1 - tokens) / rate)
            else:
                tmo = 0.05
            if retry_heap:
                tmo = min(tmo, max(0.0, retry_heap[0][0] - now))
        else:
            tmo = 0
        events = poll(tmo, 4096)
        now = monotonic()
        for fd, ev in events:
            st = inflight_pop(fd, None)
            if st is not None:
                if ev & bad_mask:
                    try:
                        err = sock_error(fd) or errno.ECONNRESET
                    except OSError as exc:
                        err = exc.errno or errno.ECONNRESET
                    close(fd)
                    fail(st[0], st[1], err, now)
                else:
                    fds_append(fd)
                    pos[fd] = len(fds)
                    est += 1
                    total += 1
                    if hb_start == INF:
                        hb_start = now + hb_interval
                        last_hb = hb_start
                continue
            if fd == wake_r:
                drain(wake_r)
                continue
            if ev & in_mask:
                # echo of a heartbeat, or the end of the connection
                try:
                    n = readv(fd, rbufs)
                except BlockingIOError:
                    continue
                except OSError:
                    drop(fd, True)
                    continue
                if n == 0:
                    drop(fd, False)
                    continue
                t = hb_pending.pop(fd, None)
                if t is not None:
                    hb_recv += 1
                    hist_add(q, hist_base, now - t)
        if est > peak:
            peak = est
        # --- connect timeouts, scanned every 100 ms
        if inflight and now - last_scan > 0.1:
            last_scan = now
            limit = now - timeout
            for fd, st in list(inflight.items()):
                if st[2] <= limit:
                    del inflight[fd]
                    close(fd)
                    fail(st[0], st[1], errno.ETIMEDOUT, now)
        # --- heartbeats: every connection gets one per interval, the first about one
        # interval after it was established (a worker opens its quota within a second
        # or two, so its first connection's time stands for all of them). At most
        # HB_BURST per pass, each stamped when sent, so the echoes of a burst do not
        # wait behind a long burst and the RTT stays honest.
        if hb_interval > 0 and fds and now >= hb_start:
            hb_budget += len(fds) * min(1.0, now - last_hb) / hb_interval
            last_hb = now
            k = min(int(hb_budget), HB_BURST, len(fds))
            if k:
                hb_budget -= k
                nf = len(fds)
                for _i in range(k):
                    if hb_cursor >= nf:
                        hb_cursor = 0
                    fd = fds[hb_cursor]
                    hb_cursor += 1
                    try:
                        write(fd, payload)
                    except OSError:
                        continue
                    hb_pending[fd] = monotonic()
                    hb_sent += 1
        # --- publish
        q[b + F_EST] = est
        q[b + F_PEAK] = peak
        q[b + F_TOTAL] = total
        q[b + F_ATTEMPTS] = attempts
        q[b + F_FAILED] = failed
        q[b + F_INFLIGHT] = len(inflight)
        q[b + F_DROPPED] = dropped
        q[b + F_DROP_RST] = drop_rst
        q[b + F_HB_SENT] = hb_sent
        q[b + F_HB_RECV] = hb_recv
        if not done and next_g >= end_g and not inflight and not retry_heap:
            done = True
            q[b + F_DONE_NS] = time.monotonic_ns()
            q[b + F_STATE] = ST_HOLDING if est >= quota else ST_SETTLED
            try:
                os.write(notify_w, b'c')
            except OSError:
                pass
        elif not done and est >= quota and q[b + F_DONE_NS] == 0:
            q[b + F_DONE_NS] = time.monotonic_ns()
    # stop: close in-flight handshakes, reset held connections
    for fd in inflight:
        try:
            close(fd)
        except OSError:
            pass
    q[b + F_INFLIGHT] = 0
    publish_cpu(q, b)
    close_rst(fds)
    q[b + F_STATE] = ST_EXITED
    return 0


class ClientRun(object):
    """The client supervisor: starts the workers, watches them, decides the verdict.

    A lost worker (killed, crashed) does not stop the run: its connections are
    gone, the others keep holding, so the summary shows what survived. Any
    lost worker, a target not reached, or more connections ended by the peer
    during the hold than --hold-tolerance allows makes the exit status non-zero.
    """

    def __init__(self, args, plan):
        self.args = args
        self.plan = plan
        self.sup = Supervisor(args, 'client')
        self.shm = Shm(plan.workers)
        self.q, self.d = self.shm.q, self.shm.d
        self.started = 0
        self.t0 = self.sup.t0 = time.monotonic()
        self.t0_ns = time.monotonic_ns()
        self.reached = False
        self.t_reached = None
        self.t_reached_mono = None
        self.at_target = None           # figures taken when the target was reached
        self.stop_reason = None
        self.peak_total = 0
        self.hold_until = None
        self.allowed_loss = int(plan.target * args.hold_tolerance)
        self.dropped_seen = 0
        self.next_tick = self.t0 + args.progress_interval
        self.last_tick = (0, self.t0)
        self.last_status = 0.0

    # --- shared-memory readings
    def total_of(self, field):
        q = self.q
        return sum(q[i * SLOT_WORDS + field] for i in range(self.started))

    def states(self):
        q = self.q
        return [q[i * SLOT_WORDS + F_STATE] for i in range(self.started)]

    def live_pids(self):
        return [self.sup.pid] + list(self.sup.children)

    def cpu_totals(self):
        own = os.times()
        return {'workers_user_s': round(self.total_of(F_CPU_USER_US) / 1e6, 3),
                'workers_sys_s': round(self.total_of(F_CPU_SYS_US) / 1e6, 3),
                'supervisor_s': round(own[0] + own[1], 3)}

    def drops(self):
        dropped = self.total_of(F_DROPPED)
        reset = self.total_of(F_DROP_RST)
        return {PEER_CLOSED: dropped - reset, PEER_RESET: reset}

    def errors_total(self):
        q = self.q
        out = {}
        for e in range(1, ERR_SLOTS):
            n = sum(q[i * SLOT_WORDS + ERR_BASE + e] for i in range(self.started))
            if n:
                out[errno_name(e)] = n
        out.update((k, v) for k, v in self.drops().items() if v)
        return out

    def on_lost(self, pid, slot):
        """A worker died: keep what it held in the record, then count it out."""
        b = slot * SLOT_WORDS
        held = self.q[b + F_EST]
        self.q[b + F_EST] = 0
        self.q[b + F_INFLIGHT] = 0
        self.q[b + F_STATE] = ST_LOST
        return {'worker': 'c%d' % slot, 'slot': slot, 'held': held}

    # --- phases of one pass of the loop
    def start_workers(self, states):
        plan, args, q, d, sup = self.plan, self.args, self.q, self.d, self.sup
        connecting = sum(1 for st in states if st in (ST_STARTING, ST_ACTIVE))
        blocked = any(st in (ST_SETTLED, ST_LOST) for st in states)
        while not blocked and self.started < plan.workers and connecting < plan.active:
            i = self.started
            b = i * SLOT_WORDS
            q[b + F_STATE] = ST_STARTING
            q[b + F_INFL_CAP] = max(1, args.inflight // plan.active)
            d[b + F_RATE] = 0.0
            pid = fork_worker(client_worker, sup.pid, plan, args, self.shm, i,
                              plan.starts[i], plan.quotas[i], sup.notify_w)
            sup.children[pid] = i
            q[b + F_PID] = pid
            self.started += 1
            connecting += 1

    def share_rate(self, now):
        """Rate and in-flight shares of the workers that are connecting."""
        args, q, d = self.args, self.q, self.d
        active = [i for i, st in enumerate(self.states()) if st in (ST_STARTING, ST_ACTIVE)]
        if not active:
            return
        share = 0.0
        if args.rate > 0:
            frac = 1.0 if args.ramp <= 0 else min(1.0, max(0.02, (now - self.t0) / args.ramp))
            share = args.rate * frac / len(active)
        cap = max(1, args.inflight // len(active))
        for i in active:
            d[i * SLOT_WORDS + F_RATE] = share
            q[i * SLOT_WORDS + F_INFL_CAP] = cap

    def check_reached(self, now, states, est):
        plan = self.plan
        if self.reached or self.started < plan.workers or est < plan.target \
                or not all(st == ST_HOLDING for st in states):
            return
        self.reached = True
        q = self.q
        done_ns = max(q[i * SLOT_WORDS + F_DONE_NS] for i in range(self.started))
        self.t_reached = round((done_ns - self.t0_ns) / 1e9, 3)
        self.t_reached_mono = now
        self.at_target = {'established': est, 'pss': self.sup.pss_total(self.live_pids()),
                          'kernel': self.sup.kernel_bytes(), 'cpu': self.cpu_totals(),
                          'dropped': self.total_of(F_DROPPED)}
        self.dropped_seen = self.at_target['dropped']
        log('target %d reached in %.2f s (%.0f connections/s)'
            % (plan.target, self.t_reached, plan.target / max(self.t_reached, 1e-9)))
        self.sup.timeline.append([self.t_reached, est, self.at_target['pss'],
                                  self.at_target['kernel'], self.at_target['dropped']])
        if self.args.hold > 0:
            self.hold_until = now + self.args.hold

    def stop_condition(self, now, states):
        """Why the loop ends now, or None."""
        if self.sup.signalled:
            return 'signal:%s' % self.sup.signalled
        busy = any(st in (ST_STARTING, ST_ACTIVE) for st in states)
        if not self.reached and not busy:
            if any(st == ST_LOST for st in states):
                return 'lost_worker'
            if any(st == ST_SETTLED for st in states) or self.started == self.plan.workers:
                # every worker is done and connections were lost on the way: nothing
                # will change any more
                return 'settled'
        if self.hold_until is not None and now >= self.hold_until:
            return 'hold'
        return None

    def tick(self, now, est):
        """A progress line and a timeline sample every progress interval."""
        plan, sup = self.plan, self.sup
        pss = sup.pss_total(self.live_pids())
        kb = sup.kernel_bytes()
        t = round(now - self.t0, 3)
        dropped = self.total_of(F_DROPPED)
        sup.timeline.append([t, est, pss, kb, dropped])
        rate = (est - self.last_tick[0]) / max(1e-9, now - self.last_tick[1])
        self.last_tick = (est, now)
        errs = self.errors_total()
        log('[%7.1fs] established %d/%d (%.1f%%) rate %.0f/s in-flight %d workers %d/%d '
            'user %.1f MB kernel %.1f MB%s%s%s'
            % (t, est, plan.target, 100.0 * est / plan.target, rate,
               self.total_of(F_INFLIGHT), self.started, plan.workers, pss / 1e6, kb / 1e6,
               ' dropped %d' % dropped if dropped else '',
               ' lost workers %d' % len(sup.lost) if sup.lost else '',
               (' errors ' + ' '.join('%s=%d' % kv for kv in sorted(errs.items())))
               if errs else ''))
        if self.reached and dropped > self.dropped_seen:
            drops = self.drops()
            log('warning: %d connection(s) ended by the peer since the target was reached '
                '(%s=%d %s=%d); %d established of %d'
                % (dropped - self.at_target['dropped'], PEER_CLOSED, drops[PEER_CLOSED],
                   PEER_RESET, drops[PEER_RESET], est, plan.target))
        self.dropped_seen = dropped
        self.next_tick += self.args.progress_interval
        if self.next_tick < now:
            self.next_tick = now + self.args.progress_interval

    def status(self, final=False):
        est = self.total_of(F_EST)
        return {'role': 'client', 'target': self.plan.target, 'established': est,
                'reached': self.reached, 'seconds_to_target': self.t_reached,
                'established_at_target': self.at_target['established'] if self.reached else None,
                'dropped': self.total_of(F_DROPPED), 'drops': self.drops(),
                'allowed_loss': self.allowed_loss,
                'lost_workers': self.sup.lost,
                'workers': self.plan.workers, 'workers_started': self.started,
                'pids': self.live_pids(), 'errors': self.errors_total(),
                'elapsed_s': round(time.monotonic() - self.t0, 3), 'final': final}

    def write_status(self, now):
        if not self.args.status_file or now - self.last_status < self.args.progress_interval:
            return
        self.last_status = now
        try:
            write_json_atomic(self.args.status_file, self.status())
        except OSError as exc:
            log('cannot write the status file: %s' % exc)

    def loop(self):
        sup = self.sup
        while True:
            now = time.monotonic()
            sup.reap(self.on_lost)
            states = self.states()
            self.start_workers(states)
            self.share_rate(now)
            states = self.states()
            est = self.total_of(F_EST)
            self.peak_total = max(self.peak_total, est)
            self.check_reached(now, states, est)
            self.stop_reason = self.stop_condition(now, states)
            if self.stop_reason:
                return
            if now >= self.next_tick:
                self.tick(now, est)
            self.write_status(now)
            sup.wait(min(0.05, max(0.0, self.next_tick - time.monotonic())))

    def run(self):
        self.sup.install_signals()
        try:
            self.loop()
        except BaseException:
            self.sup.emergency_kill()
            raise
        return self.stop()

    # --- the end
    def stop(self):
        sup = self.sup
        cpu_at_stop = self.cpu_totals()
        final = {'established': self.total_of(F_EST), 'pss': sup.pss_total(self.live_pids()),
                 'kernel': sup.kernel_bytes(), 'dropped': self.total_of(F_DROPPED)}
        self.peak_total = max(self.peak_total, final['established'])
        t_stop = time.monotonic()
        sup.timeline.append([round(t_stop - self.t0, 3), final['established'], final['pss'],
                             final['kernel'], final['dropped']])
        log('stopping (%s): closing %d connections' % (self.stop_reason, final['established']))
        sup.stop_children(list(sup.children), grace=60.0)
        sup.reap(self.on_lost)
        close_s = round(time.monotonic() - t_stop, 3)
        summary = self.summary(final, t_stop, close_s, cpu_at_stop)
        if self.args.status_file:
            try:
                st = self.status(final=True)
                st['established'] = final['established']
                write_json_atomic(self.args.status_file, st)
            except OSError:
                pass
        finish(summary, self.args.summary_file)
        self.log_verdict(summary)
        return summary['exit_code']

    def rate_stats(self):
        """Connect rate per progress interval, up to the target."""
        rates = []
        tl = self.sup.timeline
        for a, b in zip(tl, tl[1:]):
            if b[0] > a[0] and (self.t_reached is None or b[0] <= self.t_reached + 1e-6):
                rates.append((b[1] - a[1]) / (b[0] - a[0]))
        return sorted(rates)

    def heartbeat_summary(self):
        q = self.q
        hist = [0] * HIST_SLOTS
        for i in range(self.started):
            base = i * SLOT_WORDS + HIST_BASE
            for j in range(HIST_SLOTS):
                v = q[base + j]
                if v:
                    hist[j] += v
        args = self.args
        return {'interval_s': args.heartbeat_interval or None, 'size': args.heartbeat_size,
                'sent': self.total_of(F_HB_SENT), 'received': self.total_of(F_HB_RECV),
                'rtt_p50_ms': hist_percentile(hist, 0.50),
                'rtt_p99_ms': hist_percentile(hist, 0.99)}

    def hold_verdict(self, final, t_stop):
        """The hold: how long, what was lost, and whether that is within the tolerance."""
        if not self.reached:
            return {'seconds': None, 'tolerance': self.args.hold_tolerance,
                    'allowed_loss': self.allowed_loss, 'established_at_start': None,
                    'established_at_end': final['established'], 'lost': None,
                    'dropped_by_peer': None, 'held_ok': None}
        lost = max(0, self.plan.target - final['established'])
        return {'seconds': round(t_stop - self.t_reached_mono, 3),
                'tolerance': self.args.hold_tolerance, 'allowed_loss': self.allowed_loss,
                'established_at_start': self.at_target['established'],
                'established_at_end': final['established'], 'lost': lost,
                'dropped_by_peer': final['dropped'] - self.at_target['dropped'],
                'held_ok': lost <= self.allowed_loss and not self.sup.lost}

    def summary(self, final, t_stop, close_s, cpu_at_stop):
        plan, args, sup = self.plan, self.args, self.sup
        rates = self.rate_stats()
        elapsed = (self.t_reached if self.t_reached else (t_stop - self.t0)) or 1e-9
        basis = self.at_target if self.reached else final
        per_conn = (lambda v: round(v / float(basis['established']), 1)) \
            if basis['established'] else (lambda v: None)
        hold = self.hold_verdict(final, t_stop)
        if sup.lost:
            code = EXIT_LOST
        elif self.reached and hold['held_ok']:
            code = EXIT_OK
        else:
            code = EXIT_NOT_REACHED
        mean = round((plan.target if self.reached else self.peak_total) / elapsed, 1)
        return {
            'role': 'client', 'version': VERSION, 'target': plan.target, 'reached': self.reached,
            'exit_code': code, 'stopped_by': self.stop_reason,
            'established_peak': max(self.peak_total,
                                    self.at_target['established'] if self.reached else 0),
            'established_at_target': self.at_target['established'] if self.reached else None,
            'established_final': final['established'],
            'seconds_to_target': self.t_reached,
            'connections_per_s': mean,
            'connect_rate': {
                'mean_per_s': mean,
                'peak_per_s': round(rates[-1], 1) if rates else None,
                'p50_per_s': round(rates[len(rates) // 2], 1) if rates else None,
                'min_per_s': round(rates[0], 1) if rates else None,
                'interval_s': args.progress_interval,
                'rate_limit_per_s': args.rate or None, 'ramp_s': args.ramp or None,
                'inflight_cap': args.inflight},
            'attempts': self.total_of(F_ATTEMPTS),
            'failed_connections': self.total_of(F_FAILED),
            'dropped': self.total_of(F_DROPPED), 'drops': self.drops(),
            'hold': hold,
            'errors': self.errors_total(),
            'heartbeat': self.heartbeat_summary(),
            'user_pss_bytes': basis['pss'], 'kernel_bytes': basis['kernel'],
            'user_bytes_per_conn': per_conn(basis['pss']),
            'kernel_bytes_per_conn': per_conn(basis['kernel']),
            'kernel_scope': 'host-wide delta of Slab + TCP memory (includes the server half when '
                            'it runs on the same host)',
            'workers': plan.workers, 'workers_started': self.started,
            'concurrency': plan.active, 'lost_workers': sup.lost,
            'limits': {'nofile_soft_before': plan.nofile_before, 'nofile': plan.nofile,
                       'nofile_hard': plan.nofile_hard, 'reserve': RESERVE_FDS,
                       'per_worker': plan.cap},
            'plan': {'sources': len(plan.sources), 'destinations': len(plan.targets),
                     'ports': plan.nports, 'tuples': plan.tuples,
                     'local_port_range': [plan.port_lo, plan.port_hi],
                     'local_ports': plan.port_count, 'per_tuple': plan.per_tuple},
            'close_seconds': close_s,
            'cpu_at_target': self.at_target['cpu'] if self.reached else None,
            'cpu_at_stop': cpu_at_stop, 'cpu_final': self.cpu_totals(),
            'timeline': sup.timeline,
            'timeline_columns': TIMELINE_COLUMNS,
        }

    def log_verdict(self, summary):
        lost = self.sup.lost
        if lost:
            log('error: %d worker(s) lost: %s' % (len(lost), '; '.join(
                '%s pid %d %s holding %d' % (x['worker'], x['pid'], x['how'], x['held'])
                for x in lost)))
        hold = summary['hold']
        drops = summary['drops']
        dropped = 'ended by the peer %d (%s=%d %s=%d)' % (
            summary['dropped'], PEER_CLOSED, drops[PEER_CLOSED], PEER_RESET, drops[PEER_RESET])
        if not self.reached:
            log('error: target %d not reached (peak %d established; %s; errors %s)'
                % (self.plan.target, summary['established_peak'], dropped,
                   summary['errors'] or 'none'))
        elif not hold['held_ok'] and hold['lost'] > hold['allowed_loss']:
            log('error: %d of %d connections lost during the hold of %.1f s (%s), more than '
                'the %d allowed (--hold-tolerance %s)'
                % (hold['lost'], self.plan.target, hold['seconds'], dropped,
                   hold['allowed_loss'], self.args.hold_tolerance))


def client_main(args):
    try:
        plan = ClientPlan(args)
    except Usage as exc:
        log('error: %s' % exc)
        return EXIT_USAGE
    log('plan: %s; %d connections, %d per tuple' % (plan.arith, plan.target, plan.per_tuple))
    log('nofile: soft limit %d raised to %d (hard %d); %d reserved, %d connections per worker at '
        'most -> %d workers (%d connecting at a time)'
        % (plan.nofile_before, plan.nofile, plan.nofile_hard, RESERVE_FDS, plan.cap,
           plan.workers, plan.active))
    for w in plan.warnings:
        log('warning: %s' % w)
    try:
        plan.probe_sources()
    except Usage as exc:
        log('error: %s' % exc)
        return EXIT_USAGE
    set_name('tcpscale-client')
    return ClientRun(args, plan).run()


# ---------------------------------------------------------------------------
# Server


class ServerPlan(object):
    def __init__(self, args):
        self.addrs = parse_addresses(args.listen, '--listen')
        self.plo, self.phi = parse_ports(args.ports)
        self.nports = self.phi - self.plo + 1
        self.endpoints = len(self.addrs) * self.nports
        if args.backlog < 1:
            raise Usage('--backlog: give a number >= 1')
        if args.duration < 0 or args.progress_interval <= 0:
            raise Usage('--duration >= 0 and --progress-interval > 0 are required')
        self.nofile_before, self.nofile, self.nofile_hard = raise_nofile()
        self.cap = self.nofile - RESERVE_FDS
        if self.cap < 4:
            raise Usage('RLIMIT_NOFILE is %d: too low to listen and hold connections'
                        % self.nofile)
        cores = cpu_count()
        if args.workers == 'auto':
            lanes = cores
        else:
            try:
                lanes = int(args.workers)
            except ValueError:
                raise Usage('--workers: give auto or a number >= 1')
            if lanes < 1:
                raise Usage('--workers: give auto or a number >= 1')
        # A holder needs its lane's listening sockets plus room for connections; the
        # keeper of a group holds all lanes' listeners. Lanes only when few endpoints.
        if self.endpoints * lanes > self.cap // 4:
            lanes = 1
        self.lanes = lanes
        self.group_size = min(self.endpoints, max(1, self.cap // 2))
        self.groups = -(-self.endpoints // self.group_size)
        self.holder_cap = self.cap - self.group_size
        fmax = int(read_sysctl('/proc/sys/fs/file-max', '0') or 0) or 1 << 40
        per_group = max(4 * self.lanes, min(8192, fmax // max(1, self.holder_cap) + 8)
                        // self.groups + 2 * self.lanes)
        self.holders_per_group = min(per_group, max(4 * self.lanes, 8192 // self.groups))
        self.somaxconn = int(read_sysctl('/proc/sys/net/core/somaxconn', '4096') or 4096)
        self.backlog = args.backlog

    def endpoint(self, e):
        a = self.addrs[e // self.nports]
        return a, self.plo + e % self.nports

    def endpoint_name(self, e):
        a, port = self.endpoint(e)
        return ('[%s]:%d' if a.version == 6 else '%s:%d') % (a, port)

    def probe(self):
        probe_addresses(self.addrs, 'listen', '--listen')


def make_listener(plan, e, reuseport):
    a, port = plan.endpoint(e)
    af = socket.AF_INET if a.version == 4 else socket.AF_INET6
    s = socket.socket(af, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuseport:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if af == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind((str(a), port))
        s.listen(plan.backlog)
        s.setblocking(False)
    except OSError:
        s.close()
        raise
    return s


def server_keeper(parent_pid, plan, args, shm, group, notify_sup):
    """Create and keep the listening sockets of one endpoint group; fork holders."""
    wake_r, flags = child_setup(parent_pid, 'tcpscale-k%d' % group)
    signal.signal(signal.SIGCHLD, lambda _s, _f: None)
    q = shm.q
    kb = group * SLOT_WORDS
    q[kb + F_PID] = os.getpid()
    e0 = group * plan.group_size
    e1 = min(plan.endpoints, e0 + plan.group_size)
    reuse = plan.lanes > 1
    lanes = [[] for _l in range(plan.lanes)]
    for e in range(e0, e1):
        if reuse:
            # a plain probe bind first: a stale SO_REUSEPORT listener of someone else on
            # this endpoint must be an error, not a silent sharing of connections
            try:
                probe = make_listener(plan, e, False)
                probe.close()
            except OSError as exc:
                q[kb + F_ERRNO] = exc.errno or 0
                q[kb + F_ERR_INDEX] = e
                q[kb + F_STATE] = ST_FAILED
                os.write(notify_sup, b'k')
                return 0
        for lane in range(plan.lanes):
            try:
                lanes[lane].append(make_listener(plan, e, reuse))
            except OSError as exc:
                q[kb + F_ERRNO] = exc.errno or 0
                q[kb + F_ERR_INDEX] = e
                q[kb + F_STATE] = ST_FAILED
                os.write(notify_sup, b'k')
                return 0
        q[kb + F_LISTEN] = e - e0 + 1
    notify_r, notify_w = os.pipe()
    os.set_blocking(notify_r, False)
    os.set_blocking(notify_w, False)
    hbase = plan.groups + group * plan.holders_per_group
    children = {}
    expected = set()
    nholders = 0
    exhausted = False
    me = os.getpid()

    def spawn(lane):
        nonlocal nholders, exhausted
        if nholders >= plan.holders_per_group:
            if not exhausted:
                exhausted = True
                log('keeper %d: all %d holder slots used; no more connections accepted'
                    % (group, plan.holders_per_group))
            return
        slot = hbase + nholders
        hb = slot * SLOT_WORDS
        q[hb + F_STATE] = ST_STARTING
        q[hb + F_LANE] = lane
        pid = fork_worker(server_holder, me, plan, args, shm, group, slot, nholders, lane,
                          lanes, notify_w, notify_sup)
        q[hb + F_PID] = pid
        children[pid] = slot
        nholders += 1
        q[kb + F_NHOLDERS] = nholders

    for lane in range(plan.lanes):
        spawn(lane)
    q[kb + F_STATE] = ST_ACTIVE
    os.write(notify_sup, b'k')
    ep = select.epoll()
    ep.register(wake_r, select.EPOLLIN)
    ep.register(notify_r, select.EPOLLIN)
    stopping = False
    while True:
        if (flags['stop'] or os.getppid() != parent_pid) and not stopping:
            stopping = True
            for pid in list(children):
                expected.add(pid)
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 60.0
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            slot = children.pop(pid, None)
            if slot is not None and pid not in expected:
                accepting = mark_holder_lost(plan, shm, slot, status)
                if accepting and not stopping:
                    # its lane must keep accepting: the keeper still has the listeners
                    spawn(q[slot * SLOT_WORDS + F_LANE])
                try:
                    os.write(notify_sup, b'l')
                except OSError:
                    pass
        if stopping:
            if not children:
                break
            if time.monotonic() > deadline:
                for pid in children:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        else:
            for i in range(nholders):
                hb = (hbase + i) * SLOT_WORDS
                if q[hb + F_WANT] == 1:
                    q[hb + F_WANT] = 2
                    spawn(q[hb + F_LANE])
        try:
            ep.poll(0.05 if stopping else 0.5)
        except InterruptedError:
            pass
        drain(wake_r)
        drain(notify_r)
    q[kb + F_STATE] = ST_EXITED
    return 0


def mark_holder_lost(plan, shm, slot, status):
    """Record in its slot that a holder died: when, how, what it held.

    Its connections died with it; its counts go to zero so the totals show what
    the other holders still hold. Returns whether it was accepting.
    """
    q, u = shm.q, shm.u
    b = slot * SLOT_WORDS
    accepting = q[b + F_LISTEN] > 0 or q[b + F_STATE] in (ST_STARTING, ST_ACTIVE)
    q[b + F_LOST_HELD] = q[b + F_EST]
    q[b + F_LOST_STATUS] = status
    q[b + F_WANT] = 2                   # a successor it asked for is not needed twice
    q[b + F_LOST_NS] = time.time_ns()
    q[b + F_EST] = 0
    q[b + F_LISTEN] = 0
    q[b + F_STATE] = ST_LOST
    ubase = (slot - plan.groups) * plan.group_size
    for i in range(plan.group_size):
        u[ubase + i] = 0
    return accepting


def server_holder(parent_pid, plan, args, shm, group, slot, index, lane, lanes, notify_keeper,
                  notify_sup):
    wake_r, flags = child_setup(parent_pid, 'tcpscale-s%d' % (slot - plan.groups))
    q = shm.q
    u = shm.u
    b = slot * SLOT_WORDS
    ubase = (slot - plan.groups) * plan.group_size
    err_base = b + ERR_BASE
    q[b + F_PID] = os.getpid()
    e0 = group * plan.group_size
    mine = lanes[lane]
    for other, socks in enumerate(lanes):
        if other != lane:
            for s in socks:
                s.close()
    cap = plan.holder_cap
    q[b + F_CAP] = cap
    ask_at = cap - max(64, cap // 8)
    ep = select.epoll(1024)
    ep.register(wake_r, select.EPOLLIN)
    listener_of = {}
    lmask = select.EPOLLIN | select.EPOLLEXCLUSIVE
    for i, s in enumerate(mine):
        fd = s.fileno()
        listener_of[fd] = i
        ep.register(fd, lmask)
    q[b + F_LISTEN] = len(mine)
    q[b + F_STATE] = ST_ACTIVE
    conn_mask = select.EPOLLIN | select.EPOLLRDHUP
    register = ep.register
    poll = ep.poll
    fds = array.array('i')
    pos = array.array('i', [0]) * (plan.nofile + 2)
    epof = array.array('i', [0]) * (plan.nofile + 2)
    echo = args.echo
    rbuf = bytearray(65536)
    rbufs = [rbuf]
    rview = memoryview(rbuf)
    readv = os.readv
    write = os.write
    close = os.close
    lib = libc()
    accept4 = lib.accept4 if lib else None
    flags4 = SOCK_NONBLOCK | SOCK_CLOEXEC
    get_errno = ctypes.get_errno
    eagain = errno.EAGAIN
    held = 0
    total = 0
    closed = 0
    echo_bytes = 0
    peak = 0
    accepting = True
    asked = False
    listener_get = listener_of.get
    last_ppid = time.monotonic()

    def ask_successor():
        nonlocal asked
        if not asked:
            asked = True
            q[b + F_WANT] = 1
            try:
                write(notify_keeper, b'w')
            except OSError:
                pass

    def accept_error(err):
        q[err_base + (err if 0 < err < ERR_SLOTS else ERR_SLOTS - 1)] += 1
        if err == errno.EMFILE:
            # this process is out of descriptors (something else holds some): hand over
            ask_successor()
            if accepting:
                stop_accepting()
        elif err in (errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
            time.sleep(0.05)        # the host is out of files/memory: do not spin

    def stop_accepting():
        nonlocal accepting
        accepting = False
        for s in mine:
            try:
                ep.unregister(s.fileno())
            except (OSError, ValueError):
                pass
            s.close()
        listener_of.clear()
        q[b + F_LISTEN] = 0
        q[b + F_STATE] = ST_HOLDING

    sleep = time.sleep
    while not flags['stop']:
        events = poll(1.0, 4096)
        before = total
        for fd, ev in events:
            li = listener_get(fd)
            if li is not None:
                if not accepting:
                    continue
                eidx = ubase + li
                while held < cap:
                    if accept4 is not None:
                        cfd = accept4(fd, None, None, flags4)
                        if cfd < 0:
                            err = get_errno()
                            if err != eagain:
                                accept_error(err)
                            break
                    else:
                        try:
                            cfd, _addr = mine[li]._accept()
                        except BlockingIOError:
                            break
                        except OSError as exc:
                            accept_error(exc.errno or 0)
                            break
                        os.set_blocking(cfd, False)
                    register(cfd, conn_mask)
                    fds.append(cfd)
                    held += 1
                    pos[cfd] = held
                    epof[cfd] = li
                    u[eidx] += 1
                    total += 1
                if held >= ask_at:
                    ask_successor()
                if held >= cap and accepting:
                    stop_accepting()
                continue
            if fd == wake_r:
                drain(wake_r)
                continue
            n = 0
            try:
                n = readv(fd, rbufs)
            except BlockingIOError:
                continue
            except OSError:
                n = 0
            if n and echo:
                try:
                    write(fd, rview[:n])
                    echo_bytes += n
                except OSError:
                    n = 0
            if n == 0:
                i = pos[fd] - 1
                if i < 0:
                    continue
                lastfd = fds[-1]
                fds[i] = lastfd
                pos[lastfd] = i + 1
                fds.pop()
                pos[fd] = 0
                u[ubase + epof[fd]] -= 1
                held -= 1
                closed += 1
                close(fd)
        if held > peak:
            peak = held
        if 0 < total - before < ACCEPT_BATCH:
            # Connections keep arriving: the kernel completes their handshakes and
            # queues them (the client sees them established), so let a batch build
            # up instead of waking once per connection.
            sleep(ACCEPT_PAUSE)
        q[b + F_EST] = held
        q[b + F_PEAK] = peak
        q[b + F_TOTAL] = total
        q[b + F_DROPPED] = closed
        q[b + F_ECHO_BYTES] = echo_bytes
        now = time.monotonic()
        if now - last_ppid > 0.5:
            last_ppid = now
            publish_cpu(q, b)
            if os.getppid() != parent_pid:
                break
    publish_cpu(q, b)
    if accepting:
        for s in mine:
            s.close()
    q[b + F_LISTEN] = 0
    close_rst(fds)
    for i in range(len(mine)):
        u[ubase + i] = 0
    q[b + F_EST] = 0
    q[b + F_STATE] = ST_EXITED
    del e0
    return 0


class ServerRun(object):
    """The server supervisor: keepers per endpoint group, progress, status, summary.

    A lost holder or keeper does not stop the half: the keeper replaces a lost
    accepting holder (it keeps the listening sockets), the others keep holding,
    and the loss is reported (status file, summary, exit status 3 at the end).
    """

    def __init__(self, args, plan):
        self.args = args
        self.plan = plan
        self.sup = Supervisor(args, 'server')
        nslots = plan.groups + plan.groups * plan.holders_per_group
        self.shm = Shm(nslots, extra_u32=plan.groups * plan.holders_per_group * plan.group_size)
        self.q = self.shm.q
        self.t0 = self.sup.t0 = time.monotonic()
        self.ready = False
        self.t_ready = None
        self.stop_reason = None
        self.code = EXIT_OK
        self.next_tick = self.t0 + args.progress_interval
        self.last = (0, self.t0)
        self.peak = 0
        self.reported = set()           # holder slots whose loss is recorded

    def holder_slots(self):
        q, plan = self.q, self.plan
        for g in range(plan.groups):
            base = plan.groups + g * plan.holders_per_group
            for i in range(q[g * SLOT_WORDS + F_NHOLDERS]):
                yield g, base + i

    def field_sum(self, field):
        q = self.q
        return sum(q[s * SLOT_WORDS + field] for _g, s in self.holder_slots())

    def pids(self):
        q = self.q
        out = [self.sup.pid] + list(self.sup.children)
        for _g, s in self.holder_slots():
            p = q[s * SLOT_WORDS + F_PID]
            if p and q[s * SLOT_WORDS + F_STATE] not in (ST_EXITED, ST_LOST):
                out.append(p)
        return out

    def held_total(self):
        return self.field_sum(F_EST)

    def holders(self):
        """One row per holder: name, pid, state and connections held."""
        q, groups = self.q, self.plan.groups
        return [{'worker': 's%d' % (s - groups), 'keeper': g, 'pid': q[s * SLOT_WORDS + F_PID],
                 'state': STATE_NAMES[q[s * SLOT_WORDS + F_STATE]],
                 'held': q[s * SLOT_WORDS + F_EST]} for g, s in self.holder_slots()]

    def per_endpoint(self):
        counts = {}
        q, u, plan = self.q, self.shm.u, self.plan
        for g, s in self.holder_slots():
            if not q[s * SLOT_WORDS + F_EST]:
                continue
            ub = (s - plan.groups) * plan.group_size
            e0 = g * plan.group_size
            for i in range(min(plan.group_size, plan.endpoints - e0)):
                v = u[ub + i]
                if v:
                    counts[e0 + i] = counts.get(e0 + i, 0) + v
        return dict((plan.endpoint_name(e), v) for e, v in sorted(counts.items()))

    def listening(self):
        q = self.q
        return sum(q[g * SLOT_WORDS + F_LISTEN] for g in range(self.plan.groups))

    def errors(self):
        q = self.q
        out = {}
        for e in range(1, ERR_SLOTS):
            n = sum(q[s * SLOT_WORDS + ERR_BASE + e] for _g, s in self.holder_slots())
            if n:
                out[errno_name(e)] = n
        return out

    def on_lost_keeper(self, pid, group):
        """A keeper died: its holders die with it (PDEATHSIG), so does what they held."""
        q, plan = self.q, self.plan
        base = plan.groups + group * plan.holders_per_group
        held = sum(q[(base + i) * SLOT_WORDS + F_EST]
                   for i in range(q[group * SLOT_WORDS + F_NHOLDERS]))
        return {'worker': 'k%d' % group, 'keeper': group, 'held': held}

    def collect_lost_holders(self):
        q, groups = self.q, self.plan.groups
        for g, s in self.holder_slots():
            b = s * SLOT_WORDS
            if q[b + F_STATE] == ST_LOST and s not in self.reported:
                self.reported.add(s)
                self.sup.record_lost(q[b + F_PID], q[b + F_LOST_STATUS],
                                     {'worker': 's%d' % (s - groups), 'keeper': g,
                                      'held': q[b + F_LOST_HELD]},
                                     at=q[b + F_LOST_NS] / 1e9)

    def listen_failure(self):
        q, plan = self.q, self.plan
        for g in range(plan.groups):
            kb = g * SLOT_WORDS
            if q[kb + F_STATE] == ST_FAILED:
                err = q[kb + F_ERRNO]
                return 'cannot listen on %s: %s' % (plan.endpoint_name(q[kb + F_ERR_INDEX]),
                                                    os.strerror(err) if err else 'error')
        return None

    def check_ready(self, now):
        plan, q = self.plan, self.q
        if self.ready or self.listening() != plan.endpoints or not all(
                q[g * SLOT_WORDS + F_STATE] == ST_ACTIVE for g in range(plan.groups)):
            return
        self.ready = True
        self.t_ready = now
        log('ready: %d endpoints listening (%.2f s)' % (plan.endpoints, now - self.t0))
        if self.args.ready_file:
            write_json_atomic(self.args.ready_file, {'listening': plan.endpoints,
                                                     'pid': self.sup.pid})

    def snapshot(self, final=False):
        plan, sup = self.plan, self.sup
        return {'role': 'server', 'version': VERSION, 'held_total': self.held_total(),
                'held_peak': self.peak, 'held_per_endpoint': self.per_endpoint(),
                'workers': len(list(self.holder_slots())), 'keepers': plan.groups,
                'lanes': plan.lanes, 'endpoints': plan.endpoints, 'listening': self.listening(),
                'ready': self.ready, 'holders': self.holders(),
                'accepted_total': self.field_sum(F_TOTAL),
                'closed_total': self.field_sum(F_DROPPED),
                'echo_bytes': self.field_sum(F_ECHO_BYTES),
                'cpu': {'workers_user_s': round(self.field_sum(F_CPU_USER_US) / 1e6, 3),
                        'workers_sys_s': round(self.field_sum(F_CPU_SYS_US) / 1e6, 3)},
                'errors': self.errors(), 'pids': self.pids(), 'lost_workers': sup.lost,
                'limits': {'nofile_soft_before': plan.nofile_before, 'nofile': plan.nofile,
                           'nofile_hard': plan.nofile_hard, 'reserve': RESERVE_FDS,
                           'per_worker': plan.holder_cap},
                'started_at': round(time.time() - (time.monotonic() - self.t0), 3),
                'elapsed_s': round(time.monotonic() - self.t0, 3), 'final': final,
                'timeline': sup.timeline, 'timeline_columns': TIMELINE_COLUMNS}

    def tick(self, now, held):
        sup = self.sup
        pss = sup.pss_total(self.pids())
        kbytes = sup.kernel_bytes()
        t = round(now - self.t0, 3)
        closed = self.field_sum(F_DROPPED)
        sup.timeline.append([t, held, pss, kbytes, closed])
        rate = (held - self.last[0]) / max(1e-9, now - self.last[1])
        self.last = (held, now)
        log('[%7.1fs] held %d rate %+.0f/s holders %d listening %d user %.1f MB kernel %.1f MB%s%s'
            % (t, held, rate, len(list(self.holder_slots())), self.listening(), pss / 1e6,
               kbytes / 1e6, ' closed by clients %d' % closed if closed else '',
               ' lost workers %d' % len(sup.lost) if sup.lost else ''))
        if self.args.status_file:
            try:
                write_json_atomic(self.args.status_file, self.snapshot())
            except OSError as exc:
                log('cannot write the status file: %s' % exc)
        self.next_tick += self.args.progress_interval
        if self.next_tick < now:
            self.next_tick = now + self.args.progress_interval

    def loop(self):
        sup, args = self.sup, self.args
        while True:
            now = time.monotonic()
            sup.reap(self.on_lost_keeper)
            self.collect_lost_holders()
            failure = self.listen_failure()
            if failure:
                log('error: %s' % failure)
                self.stop_reason, self.code = 'listen_failed', EXIT_USAGE
                return
            if sup.signalled:
                self.stop_reason = 'signal:%s' % sup.signalled
                return
            self.check_ready(now)
            if self.ready and args.duration > 0 and now - self.t_ready >= args.duration:
                self.stop_reason = 'duration'
                return
            held = self.held_total()
            self.peak = max(self.peak, held)
            if now >= self.next_tick:
                self.tick(now, held)
            sup.wait(min(0.2, max(0.0, self.next_tick - time.monotonic())))

    def run(self):
        plan, sup = self.plan, self.sup
        sup.install_signals()
        for g in range(plan.groups):
            pid = fork_worker(server_keeper, sup.pid, plan, self.args, self.shm, g, sup.notify_w)
            sup.children[pid] = g
        try:
            self.loop()
        except BaseException:
            sup.emergency_kill()
            raise
        return self.stop()

    def stop(self):
        sup = self.sup
        final = self.snapshot(final=True)
        pss = sup.pss_total(self.pids())
        kbytes = sup.kernel_bytes()
        held = final['held_total']
        final.update(user_pss_bytes=pss, kernel_bytes=kbytes,
                     user_bytes_per_conn=round(pss / float(held), 1) if held else None,
                     kernel_bytes_per_conn=round(kbytes / float(held), 1) if held else None)
        sup.timeline.append([round(time.monotonic() - self.t0, 3), held, pss, kbytes,
                             final['closed_total']])
        log('stopping (%s): closing %d connections' % (self.stop_reason, held))
        t_stop = time.monotonic()
        sup.stop_children(list(sup.children), grace=90.0)
        sup.reap(self.on_lost_keeper)
        self.collect_lost_holders()
        if sup.lost and self.code == EXIT_OK:
            self.code = EXIT_LOST
        final.update(lost_workers=sup.lost, stopped_by=self.stop_reason, exit_code=self.code,
                     close_seconds=round(time.monotonic() - t_stop, 3), pids=[])
        if self.args.status_file:
            try:
                write_json_atomic(self.args.status_file, final)
            except OSError:
                pass
        finish(final, self.args.summary_file)
        if self.code == EXIT_LOST:
            log('error: %d worker(s) lost: %s' % (len(sup.lost), '; '.join(
                '%s pid %d %s holding %d' % (x['worker'], x['pid'], x['how'], x['held'])
                for x in sup.lost)))
        return self.code


def server_main(args):
    try:
        plan = ServerPlan(args)
        plan.probe()
    except Usage as exc:
        log('error: %s' % exc)
        return EXIT_USAGE
    log('plan: %d endpoints (%d addresses x %d ports) in %d group(s) of <= %d, %d accepting '
        'lane(s) per group%s' % (plan.endpoints, len(plan.addrs), plan.nports, plan.groups,
                                 plan.group_size, plan.lanes,
                                 ' (SO_REUSEPORT)' if plan.lanes > 1 else ''))
    log('nofile: soft limit %d raised to %d (hard %d); %d reserved; a holder holds up to %d '
        'connections; more holders are started as they fill'
        % (plan.nofile_before, plan.nofile, plan.nofile_hard, RESERVE_FDS, plan.holder_cap))
    if plan.somaxconn < plan.backlog:
        log('note: net.core.somaxconn is %d, the listen backlog %d is capped to it'
            % (plan.somaxconn, plan.backlog))
    set_name('tcpscale-server')
    return ServerRun(args, plan).run()


# ---------------------------------------------------------------------------
# Command line


def build_parser():
    p = argparse.ArgumentParser(
        prog='tcpscale.py', description='Open, hold and count very many TCP connections.')
    sub = p.add_subparsers(dest='role')
    sub.required = True
    s = sub.add_parser('server', help='listen on addresses x ports, accept and hold')
    s.add_argument('--listen', required=True, help='ADDR[,ADDR...] to listen on')
    s.add_argument('--ports', required=True, help='port or range LO-HI on every address')
    s.add_argument('--workers', default='auto',
                   help='accepting workers at a time per endpoint group (auto: one per core); '
                        'more holders are started as they fill')
    s.add_argument('--backlog', type=int, default=65535, help='listen backlog (capped by '
                   'net.core.somaxconn)')
    s.add_argument('--echo', action='store_true', help='echo what clients send (heartbeats)')
    s.add_argument('--status-file', help='JSON status, rewritten every progress interval')
    s.add_argument('--summary-file', help='final JSON summary (also the last stdout line)')
    s.add_argument('--ready-file', help='written when every endpoint listens')
    s.add_argument('--duration', type=float, default=0.0,
                   help='seconds to run once ready (0: until SIGTERM)')
    s.add_argument('--progress-interval', type=float, default=1.0, help='seconds')
    c = sub.add_parser('client', help='open N connections to targets x ports and hold them')
    c.add_argument('--targets', required=True, help='ADDR[,ADDR...] to connect to')
    c.add_argument('--ports', required=True, help='port or range LO-HI on every target')
    c.add_argument('--sources', help='ADDR[,ADDR...] local addresses to connect from')
    c.add_argument('--sources-cidr', help='CIDR whose first usable hosts are the sources')
    c.add_argument('--sources-count', type=int, help='how many sources from --sources-cidr')
    c.add_argument('--sources-offset', type=int, default=0,
                   help='usable hosts of --sources-cidr to skip first (default 0)')
    c.add_argument('--connections', type=int, required=True, help='target count')
    c.add_argument('--rate', type=float, default=0.0, help='connections/s (0: unlimited)')
    c.add_argument('--ramp', type=float, default=0.0, help='seconds to ramp up to --rate')
    c.add_argument('--inflight', type=int, default=2048, help='handshakes in flight at most')
    c.add_argument('--timeout', type=float, default=10.0, help='connect timeout, seconds')
    c.add_argument('--retries', type=int, default=3, help='retries per connection, with '
                   'exponential backoff')
    c.add_argument('--hold', type=float, default=0.0,
                   help='seconds to hold once the target is reached (0: until SIGTERM)')
    c.add_argument('--hold-tolerance', type=float, default=0.0,
                   help='fraction of the target that may be lost during the hold (ended by '
                        'the peer, or with a lost worker) before the run fails (default 0)')
    c.add_argument('--heartbeat-interval', type=float, default=0.0,
                   help='seconds between heartbeats on each connection (0: none)')
    c.add_argument('--heartbeat-size', type=int, default=16, help='heartbeat payload bytes')
    c.add_argument('--workers', default='auto', help='worker processes (auto: as the fd '
                   'limit requires, at least one per core)')
    c.add_argument('--concurrency', type=int, default=0,
                   help='workers connecting at a time (default: one per core)')
    c.add_argument('--summary-file', help='final JSON summary (also the last stdout line)')
    c.add_argument('--status-file', help='JSON status, rewritten every progress interval')
    c.add_argument('--progress-interval', type=float, default=1.0, help='seconds')
    c.add_argument('--allow-external', action='store_true',
                   help='allow targets outside private, loopback, link-local and benchmark '
                        'ranges')
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if sys.platform != 'linux':
        log('error: Linux only (epoll, IP_BIND_ADDRESS_NO_PORT, /proc)')
        return EXIT_USAGE
    if args.role == 'client':
        return client_main(args)
    return server_main(args)


if __name__ == '__main__':
    sys.exit(main())
