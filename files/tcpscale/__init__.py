# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""tcpscale: open, hold and count a very large number of TCP connections.

A package directory, standard library only, Python >= 3.9, Linux. It runs
from where it is copied, without any install step:

    python3 DIR server --listen ADDR[,ADDR...] --ports LO-HI ...
    python3 DIR client --targets ADDR[,ADDR...] --ports LO-HI
                       (--sources ADDR,... | --sources-cidr CIDR --sources-count N)
                       --connections N ...
    python3 DIR start|run|stop|status|wait|inspect|limits|tail ...

Run ``python3 DIR COMMAND --help`` for the options.

Modules: cli (the command line), plan (what to open, where, in how many
processes), shm (the shared memory slots of the workers), system (libc,
limits, /proc, files), supervisor (what both halves share, and the control
commands that start and stop a half), client and server (the halves),
ipplan (the collection's rules of addresses and ports, copied verbatim).

Process model
-------------
A lean supervisor (imports done, no per-connection state) forks worker
processes. One process may hold at most RLIMIT_NOFILE descriptors; the
supervisor reads the real limit, raises the soft limit to the hard one, and
plans ``workers = ceil(sockets / (limit - reserve))``. Workers keep each
connection as a bare file descriptor, marked in a table of one byte per possible
descriptor (no socket object), watch them with one epoll each, and report
through a shared memory page per worker; the supervisor aggregates, prints
progress on stderr and writes the summary (the last line on stdout, and
--summary-file).

Exit codes: 0 target reached (client) / clean stop (server); 1 target not
reached; 2 bad arguments, unreachable arithmetic or an endpoint that cannot
be used (preflight, before any connection); 3 a worker was lost.
"""

VERSION = '1.0.0'
