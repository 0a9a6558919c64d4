# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The processes that listen on given TCP ports, and the files they may open.

A service under test holds its connections in the processes that accept them,
so their nofile limits cap the run (nginx: worker_rlimit_nofile). The
listening sockets come from sock_diag (pyroute2's DiagSocket: a handful of
sockets), their owners from the socket inodes under /proc/PID/fd, the limits
from /proc/PID/limits. A process whose children hold the same sockets only
hands them down (nginx's master, a preforking server's parent): it is listed
with hands_down true and left out of the capacity.

Reads only; ``capacity_warnings`` is the pure part.
"""

from __future__ import annotations

import os
import socket

PROC = '/proc'
# The load engine's processes (files/tcpscale set_name): never the service under test.
OWN_PREFIX = 'tcpscale'


def listening_inodes(ports):
    """{socket inode: port} of the TCP sockets listening on ports (IPv4 and IPv6)."""
    from pyroute2 import DiagSocket  # pylint: disable=import-outside-toplevel
    from pyroute2.netlink.diag import SS_LISTEN  # pylint: disable=import-outside-toplevel
    wanted = set(int(p) for p in ports)
    out = {}
    with DiagSocket() as ds:
        ds.bind()
        for family in (socket.AF_INET, socket.AF_INET6):
            for msg in ds.get_sock_stats(family=family, states=1 << SS_LISTEN):
                port = msg['idiag_sport']
                if port in wanted and msg['idiag_inode']:
                    out[msg['idiag_inode']] = port
    return out


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def parse_limits(text):
    """(soft, hard) of "Max open files" in /proc/PID/limits text (None: unlimited)."""
    for line in (text or '').splitlines():
        if line.startswith('Max open files'):
            fields = line[len('Max open files'):].split()
            return tuple(None if v == 'unlimited' else int(v) for v in fields[:2])
    return None, None


def parse_ppid(stat):
    """The parent pid in /proc/PID/stat text (after the command in parentheses)."""
    rest = (stat or '').rpartition(')')[2].split()
    return int(rest[1]) if len(rest) > 1 else 0


def owners(inodes, proc=PROC):
    """[{pid, ppid, comm, ports, nofile_soft, nofile_hard, open_files}] of the processes
    that hold a socket of inodes ({inode: port}), sorted by pid."""
    links = dict(('socket:[%d]' % i, port) for i, port in inodes.items())
    out = []
    for name in os.listdir(proc):
        if not name.isdigit():
            continue
        comm = (_read(os.path.join(proc, name, 'comm')) or '?').strip()
        if comm.startswith(OWN_PREFIX):
            continue                # the testbed's own engine: up to millions of fds to skip
        fd_dir = os.path.join(proc, name, 'fd')
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue                # gone, or not ours to read
        ports = set()
        for fd in fds:
            try:
                target = os.readlink(os.path.join(fd_dir, fd))
            except OSError:
                continue
            if target in links:
                ports.add(links[target])
        if not ports:
            continue
        soft, hard = parse_limits(_read(os.path.join(proc, name, 'limits')))
        out.append({'pid': int(name), 'ppid': parse_ppid(_read(os.path.join(proc, name, 'stat'))),
                    'comm': comm,
                    'ports': sorted(ports), 'nofile_soft': soft, 'nofile_hard': hard,
                    'open_files': len(fds)})
    out.sort(key=lambda p: p['pid'])
    for p in out:
        p['hands_down'] = any(q['ppid'] == p['pid'] for q in out)
    return out


def listeners(ports, proc=PROC):
    """The processes listening on ports, as owners() gives them."""
    return owners(listening_inodes(ports), proc)


def capacity_warnings(processes, connections, ports):
    """Sentences (empty: none) when the processes that accept on ports can open fewer
    files than connections: each may open nofile_soft - open_files more."""
    fmt = '{:,}'.format
    accepting = [p for p in processes if not p.get('hands_down')]
    if not accepting or any(p['nofile_soft'] is None for p in accepting):
        return []
    room = sum(max(0, p['nofile_soft'] - p['open_files']) for p in accepting)
    if room >= connections:
        return []
    who = ', '.join('%s %d (nofile %s, %s open)' % (p['comm'], p['pid'], fmt(p['nofile_soft']),
                                                    fmt(p['open_files'])) for p in accepting)
    return ['the processes listening on port(s) %s can open %s more files together (%s), fewer '
            'than the %s connections: the service will refuse or drop the rest (EMFILE). Raise '
            'its nofile limit (nginx: worker_rlimit_nofile and worker_connections; a unit: '
            'LimitNOFILE=) or lower testbed_connections.'
            % (', '.join(str(x) for x in ports), fmt(room), who, fmt(connections))]
