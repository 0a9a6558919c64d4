# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Hold a known mix of TCP sockets, for the tcp_sockets_info integration test.

Run inside a fresh network namespace (ip netns exec NS python3 tcp_holder.py
...). It opens, all on loopback:

* listeners on 127.0.0.1 ports BASE+1..BASE+5, on [::1]:BASE+1, and a
  dual-stack listener on [::]:BASE+100 (IPv4 clients land on it as
  IPv4-mapped IPv6 sockets);
* --per-port established connections to each of BASE+1, BASE+2, BASE+3,
  from the sources 127.0.1.1, 127.0.1.2 and 127.0.2.1 respectively;
* 20 IPv6 connections [::1] -> [::1]:BASE+1;
* 30 connections 127.0.3.1 -> 127.0.0.1:BASE+100 (dual-stack listener);
* 50 connections to BASE+4 from 127.0.4.1, closed by the client first,
  then by the server: 50 TIME_WAIT sockets on the client side;
* 10 connections to BASE+5 from 127.0.5.1 whose clients shut down their
  sending side: 10 FIN_WAIT2 (client) and 10 CLOSE_WAIT (server).

Writes the expected counts as JSON to --ready-file once everything is in
place, then holds the sockets until --stop-file exists, SIGTERM, or
--duration seconds pass.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import socket
import sys
import time

IP_BIND_ADDRESS_NO_PORT = 24


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--base', type=int, default=7000)
    ap.add_argument('--per-port', type=int, default=1000)
    ap.add_argument('--ready-file', required=True)
    ap.add_argument('--stop-file', required=True)
    ap.add_argument('--duration', type=float, default=600)
    args = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 6 * args.per_port + 400
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(need, soft)), hard))

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    base = args.base
    keep = []

    def listen(family, addr, port, v6only=True):
        s = socket.socket(family)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1 if v6only else 0)
        s.bind((addr, port))
        s.listen(4096)
        keep.append(s)
        return s

    def connect(lst, family, src, dst, port, count):
        pairs = []
        for _i in range(count):
            c = socket.socket(family)
            if src is not None:
                c.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                c.bind((src, 0))
            c.connect((dst, port))
            pairs.append((c, lst.accept()[0]))
        return pairs

    listeners = {}
    for i in range(1, 6):
        listeners[i] = listen(socket.AF_INET, '127.0.0.1', base + i)
    l6 = listen(socket.AF_INET6, '::1', base + 1)
    dual = listen(socket.AF_INET6, '::', base + 100, v6only=False)

    for i, src in ((1, '127.0.1.1'), (2, '127.0.1.2'), (3, '127.0.2.1')):
        for c, s in connect(listeners[i], socket.AF_INET, src, '127.0.0.1', base + i,
                            args.per_port):
            keep += [c, s]
    for c, s in connect(l6, socket.AF_INET6, None, '::1', base + 1, 20):
        keep += [c, s]
    for c, s in connect(dual, socket.AF_INET, '127.0.3.1', '127.0.0.1', base + 100, 30):
        keep += [c, s]
    # TIME_WAIT on the client side: client closes first, then the server
    tw = connect(listeners[4], socket.AF_INET, '127.0.4.1', '127.0.0.1', base + 4, 50)
    for c, _s in tw:
        c.close()
    time.sleep(0.2)
    for _c, s in tw:
        s.close()
    # FIN_WAIT2 (client, still open) and CLOSE_WAIT (server)
    for c, s in connect(listeners[5], socket.AF_INET, '127.0.5.1', '127.0.0.1', base + 5, 10):
        c.shutdown(socket.SHUT_WR)
        keep += [c, s]
    time.sleep(0.5)

    expected = {
        'pid': os.getpid(),
        'listen': 7,
        'established': 6 * args.per_port + 40 + 60,
        'time_wait': 50,
        'fin_wait2': 10,
        'close_wait': 10,
    }
    tmp = args.ready_file + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(expected, f)
    os.rename(tmp, args.ready_file)

    deadline = time.monotonic() + args.duration
    while not stop and time.monotonic() < deadline and not os.path.exists(args.stop_file):
        time.sleep(0.2)
    for s in keep:
        s.close()
    return 0


if __name__ == '__main__':
    sys.exit(main())
