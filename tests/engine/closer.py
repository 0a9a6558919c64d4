# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A server that is not the engine: it accepts, then ends idle connections.

It behaves like a server with an idle timeout (nginx's client_header_timeout):
every accepted connection is closed (FIN) or, with --reset, reset (RST)
--close-after seconds after it was accepted. The tests point the engine's
client at it to see that connections ended by the peer are counted as drops.

    python3 closer.py --listen ADDR --ports LO-HI --close-after S [--reset]
                      [--ready-file F]

Standard library only; one process, one epoll; stops on SIGTERM.
"""

import argparse
import collections
import os
import resource
import select
import signal
import socket
import struct
import time


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--listen', required=True)
    p.add_argument('--ports', required=True)
    p.add_argument('--close-after', type=float, required=True)
    p.add_argument('--reset', action='store_true')
    p.add_argument('--ready-file')
    args = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    lo, _sep, hi = args.ports.partition('-')
    ports = range(int(lo), int(hi or lo) + 1)
    ep = select.epoll()
    listeners = {}
    for port in ports:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((args.listen, port))
        s.listen(65535)
        s.setblocking(False)
        listeners[s.fileno()] = s
        ep.register(s.fileno(), select.EPOLLIN)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    if args.ready_file:
        with open(args.ready_file, 'w') as f:
            f.write('ready\n')
    due = collections.deque()          # (deadline, socket), in accept order
    linger = struct.pack('ii', 1, 0)
    while not stop:
        timeout = max(0.0, due[0][0] - time.monotonic()) if due else 0.5
        try:
            events = ep.poll(min(timeout, 0.5))
        except InterruptedError:
            continue
        for fd, _ev in events:
            lsock = listeners[fd]
            while True:
                try:
                    conn, _addr = lsock.accept()
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break
                due.append((time.monotonic() + args.close_after, conn))
        now = time.monotonic()
        while due and due[0][0] <= now:
            _t, conn = due.popleft()
            if args.reset:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            conn.close()
    for _t, conn in due:
        conn.close()
    os._exit(0)


if __name__ == '__main__':
    main()
