# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the engine asks of the system: log lines, libc, limits, /proc readings, files.

Exit codes and the Usage error live here too: every module may raise or
return them.
"""

import array
import ctypes
import gc
import itertools
import json
import os
import resource
import signal
import socket
import _socket
import sys

from . import ipplan
from .shm import PAGE

EXIT_OK, EXIT_NOT_REACHED, EXIT_USAGE, EXIT_LOST = 0, 1, 2, 3

IP_BIND_ADDRESS_NO_PORT = getattr(socket, 'IP_BIND_ADDRESS_NO_PORT', 24)
# Bind an address that is not on any interface (AnyIP: a local route covers
# it). IP_FREEBIND at SOL_IP sets the same socket flag for IPv6 sockets.
IP_FREEBIND = getattr(socket, 'IP_FREEBIND', 15)
PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
SOCK_NONBLOCK = getattr(socket, 'SOCK_NONBLOCK', 0o4000)
SOCK_CLOEXEC = getattr(socket, 'SOCK_CLOEXEC', 0o2000000)
LINGER_RST = b'\x01\x00\x00\x00\x00\x00\x00\x00'    # struct linger {1, 0}: close sends RST


class Usage(Exception):
    """Bad arguments or unreachable plan: exit 2 with this message."""


def log(msg):
    try:
        sys.stderr.write('tcpscale: %s\n' % msg)
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


# --------------------------------------------------------------------- libc

_LIBC = None
_TRIM = None


def libc():
    global _LIBC
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL(None, use_errno=True)
        except OSError:
            _LIBC = False
    return _LIBC


def trim_heap():
    """Hand the C heap's free pages back to the kernel (glibc's malloc_trim(0)).

    A worker calls it when its ramp is over and after each pass over its held
    connections: the pass's temporary arrays (about 0.5 MB at 20,000 connections)
    are freed into the heap, whose pages would otherwise stay in the worker's private
    memory until it exits. A supervisor calls it after each progress line. It takes
    tens of microseconds. A no-op where the C library has no malloc_trim (musl).
    """
    global _TRIM
    if _TRIM is None:
        lib = libc()
        _TRIM = (getattr(lib, 'malloc_trim', None) if lib else None) or False
    if _TRIM:
        _TRIM(0)


def set_name(name):
    """Process name shown by ps/top/perf (comm, 15 characters at most)."""
    lib = libc()
    if lib:
        try:
            lib.prctl(PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)
        except (AttributeError, OSError, TypeError):
            pass


def set_pdeathsig(sig):
    """Get sig when the parent (the thread that forked us) dies; False if not possible."""
    lib = libc()
    if not lib:
        return False
    try:
        return lib.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (AttributeError, OSError):
        return False


def child_setup(parent_pid, name=None):
    """In a freshly forked worker: die with the parent, own signal handling.

    Returns (the read end of the wake-up pipe, flags); flags['stop'] turns
    True on SIGTERM.
    """
    set_pdeathsig(signal.SIGTERM)
    if name:
        set_name(name)
    if os.getppid() != parent_pid:      # the parent died before prctl
        os._exit(EXIT_LOST)
    gc.disable()
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # the supervisor coordinates
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    # SIGUSR1 only wakes the worker up (the wake-up pipe below): the supervisor asks
    # for something in shared memory and wants it now. Ignored until this point.
    signal.signal(signal.SIGUSR1, lambda _s, _f: None)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    flags = {'stop': False}

    def on_term(_signum, _frame):
        flags['stop'] = True
    signal.signal(signal.SIGTERM, on_term)
    return wake_r, flags


# ------------------------------------------------------------------- limits

def read_sysctl(path, default=None):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def local_port_range():
    """(lo, hi, usable count) of net.ipv4.ip_local_port_range in this namespace."""
    try:
        lo, hi = ipplan.port_range(read_sysctl('/proc/sys/net/ipv4/ip_local_port_range',
                                               '32768 60999'))
    except ValueError as exc:
        raise Usage('net.ipv4.ip_local_port_range: %s' % exc)
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


# ------------------------------------------------------------------ memory

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


def tcp_in_use():
    """TCP sockets in this network namespace's tables (/proc/net/sockstat "inuse"), or
    None: a connection reset by its peer leaves them, one its peer closed does not."""
    try:
        with open('/proc/net/sockstat') as f:
            for line in f:
                if line.startswith('TCP:'):
                    parts = line.split()
                    return int(parts[parts.index('inuse') + 1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def pss_of(pid):
    try:
        with open('/proc/%d/smaps_rollup' % pid, 'rb') as f:
            for line in f:
                if line.startswith(b'Pss:'):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


# -------------------------------------------------------------------- files

def write_json_atomic(path, obj):
    """obj as one line of sorted JSON in path, replaced at once (never half written)."""
    if not path:
        return
    tmp = '%s.tmp.%d' % (path, os.getpid())
    with open(tmp, 'w') as f:
        json.dump(obj, f, sort_keys=True)
        f.write('\n')
    os.replace(tmp, path)


def read_json(path):
    """The JSON in path, or None when it is missing or not JSON."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


# -------------------------------------------------------------- descriptors

def lost_children(children, expected):
    """(pid, slot, wait status) of each child that ended without being asked to.

    children: {pid: slot}, from which every ended child is removed; expected:
    the pids that were asked to stop.
    """
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        slot = children.pop(pid, None)
        if slot is not None and pid not in expected:
            yield pid, slot, status


def fd_table(nofile, top):
    """A zeroed array with one entry per possible descriptor (0 .. nofile + 1), of the
    narrowest unsigned type that holds values up to top: 1 or 2 bytes an entry where 4
    would be wasted (a worker's table is private memory, counted per connection)."""
    code = 'B' if top < 1 << 8 else 'H' if top < 1 << 16 else 'I'
    return array.array(code, bytes(array.array(code).itemsize * (nofile + 2)))


def held_table(nofile):
    """A zeroed table of one byte per possible descriptor (0 .. nofile + 1): a worker marks
    the connections it holds in it (1 held, 0 not), instead of keeping a list of them and
    each one's place in the list (4 bytes a descriptor where this takes 1: a worker's
    tables are private memory, counted per connection)."""
    return bytearray(nofile + 2)


def held_fds(table):
    """array('i') of the descriptors whose entry in table is not 0, in ascending order
    (built at C speed: about 1 ms for 20,000): what poll() and the close go over."""
    return array.array('i', itertools.compress(range(len(table)), table))


def drain(fd):
    try:
        while os.read(fd, 4096):
            pass
    except OSError:
        pass


def close_rst(fds):
    """Close held connections with SO_LINGER {1, 0}: RST, no TIME_WAIT left behind.

    Through libc where ctypes reaches it: a socket object per descriptor would cost a
    getsockname() each (CPython checks a descriptor it wraps), 0.6 us a connection at
    1,000,000 here; a plain close otherwise.
    """
    lib = libc()
    setsockopt = getattr(lib, 'setsockopt', None) if lib else None
    close = os.close
    if setsockopt is not None:
        linger = ctypes.create_string_buffer(LINGER_RST, len(LINGER_RST))
        level, opt, size = socket.SOL_SOCKET, socket.SO_LINGER, len(LINGER_RST)
        for fd in fds:
            setsockopt(fd, level, opt, linger, size)
            try:
                close(fd)
            except OSError:
                pass
        return
    new = _socket.socket
    for fd in fds:
        try:
            s = new(socket.AF_INET, socket.SOCK_STREAM, 0, fd)
        except OSError:
            try:
                close(fd)
            except OSError:
                pass
            continue
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
        except OSError:
            pass
        s.close()


def probe_addresses(addrs, what, option, freebind=False):
    """Fail (Usage) unless every address belongs to this network namespace.

    Binds each one without a port (IP_BIND_ADDRESS_NO_PORT), so nothing is
    reserved and nothing listens. With freebind the bind is the engine's own
    (IP_FREEBIND): it fails only where the kernel refuses such binds.
    """
    for a in addrs:
        af = socket.AF_INET if a.version == 4 else socket.AF_INET6
        s = socket.socket(af, socket.SOCK_STREAM)
        try:
            s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            if freebind:
                s.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
            s.bind((str(a), 0))
        except OSError as exc:
            fix = ('AnyIP needs binds with IP_FREEBIND, which this kernel refuses: use aliases'
                   if freebind else 'add it as an alias first, or fix %s' % option)
            raise Usage('%s address %s cannot be used in this network namespace: %s (%s)'
                        % (what, a, exc.strerror, fix))
        finally:
            s.close()
