# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The command line: the two halves of the engine and the control commands around them.

    python3 DIR server ...                      the server half
    python3 DIR client ...                      the client half
    python3 DIR start --name N --run-dir D [...] -- ARGV...
    python3 DIR run   --name N --run-dir D [...] -- ARGV...
    python3 DIR stop | status --name N --run-dir D [...]
    python3 DIR wait | inspect | limits | tail ...

The control commands take the command they start after ``--`` and print
one JSON object (see supervisor.py).
"""

import argparse
import sys

from .protocol import PROTOCOLS
from .watch import WATCH_MODES

ENGINE_COMMANDS = ('server', 'client')


def add_server(sub):
    s = sub.add_parser('server', help='listen on addresses x ports, accept and hold')
    s.add_argument('--listen', required=True, help='ADDR[,ADDR...] to listen on')
    s.add_argument('--ports', required=True, help='port or range LO-HI on every address')
    s.add_argument('--workers', default='auto',
                   help='accepting workers at a time per endpoint group (auto: one per core); '
                        'more holders are started as they fill')
    s.add_argument('--backlog', type=int, default=65535, help='listen backlog (capped by '
                   'net.core.somaxconn)')
    s.add_argument('--echo', action='store_true',
                   help='answer what clients send as it arrives (heartbeats): tcp echoes it; '
                        'http and websocket answer a first request at accept anyway, and '
                        'without --echo what comes later at the next --watch poll check')
    s.add_argument('--protocol', choices=PROTOCOLS, default='tcp',
                   help='what to answer: tcp (hold; --echo echoes), http (200 to every '
                        'request), websocket (the upgrade, pongs to pings)')
    s.add_argument('--tls-cert', metavar='FILE', help='serve TLS with this PEM certificate '
                   '(with --tls-key)')
    s.add_argument('--tls-key', metavar='FILE', help='the PEM private key of --tls-cert')
    s.add_argument('--status-file', help='JSON status, rewritten every progress interval')
    s.add_argument('--summary-file', help='final JSON summary (also the last stdout line)')
    s.add_argument('--ready-file', help='written when every endpoint listens')
    s.add_argument('--duration', type=float, default=0.0,
                   help='seconds to run once ready (0: until SIGTERM)')
    s.add_argument('--progress-interval', type=float, default=1.0, help='seconds')
    add_watch(s)
    add_metrics(s, 'server')


def add_watch(p):
    p.add_argument('--watch', choices=WATCH_MODES, default='auto',
                   help='how held connections are watched: epoll (each in an epoll set: a '
                        'connection the peer ends is seen at once), poll (no epoll item per '
                        'connection, a faster ramp: one poll() over them every --watch-interval '
                        'once the ramp is over; only when nothing is read as it arrives), auto '
                        '(poll where it can; a client with heartbeats alone and no --rate '
                        'joins epoll at the end of the ramp, when its heartbeats start)')
    p.add_argument('--watch-interval', type=float, default=5.0,
                   help='seconds between the checks of the held connections (--watch poll; '
                        'each costs about 0.3 us of CPU per connection)')


def add_metrics(p, half):
    p.add_argument('--metrics-dir', help='directory to write tcpscale_%s.prom into every '
                   'progress interval (node_exporter textfile collector)' % half)
    p.add_argument('--metrics-listen', metavar='ADDR:PORT', help='serve the metrics over '
                   'HTTP at http://ADDR:PORT/metrics (off unless given)')
    p.add_argument('--metrics-netns', metavar='PATH', help='network namespace to open the '
                   '--metrics-listen socket in: a file like /run/netns/NAME, or "parent", the '
                   'namespace of the parent process (the one that ran ip netns exec)')


def add_client_targets(c):
    c.add_argument('--targets', help='ADDR[,ADDR...] to connect to (with --ports)')
    c.add_argument('--ports', help='port or range LO-HI on every target')
    c.add_argument('--endpoints', help='ADDR:PORT[,[V6ADDR]:PORT...] to connect to, instead of '
                   '--targets and --ports')
    c.add_argument('--sources', help='ADDR[,ADDR...] local addresses to connect from')
    c.add_argument('--sources-cidr', help='CIDR whose first usable hosts are the sources')
    c.add_argument('--sources-count', type=int, help='how many sources from --sources-cidr')
    c.add_argument('--sources-offset', type=int, default=0,
                   help='usable hosts of --sources-cidr to skip first (default 0)')
    c.add_argument('--freebind', action='store_true',
                   help='bind the sources with IP_FREEBIND: they need not be on an interface '
                   '(AnyIP: a local route over their prefix)')
    c.add_argument('--connections', type=int, required=True, help='target count')
    c.add_argument('--allow-external', action='store_true',
                   help='allow targets outside private, loopback, link-local and benchmark '
                        'ranges')


def add_client(sub):
    c = sub.add_parser('client', help='open N connections to targets x ports and hold them')
    add_client_targets(c)
    c.add_argument('--rate', type=float, default=0.0, help='connections/s (0: unlimited)')
    c.add_argument('--ramp', type=float, default=0.0, help='seconds to ramp up to --rate')
    c.add_argument('--inflight', type=int, default=2048,
                   help='handshakes in flight at most (polling http or websocket: with the '
                        'connections whose first answer is not in yet)')
    c.add_argument('--timeout', type=float, default=10.0, help='connect timeout, seconds')
    c.add_argument('--retries', type=int, default=3, help='retries per connection, with '
                   'exponential backoff')
    c.add_argument('--hold', type=float, default=0.0,
                   help='seconds to hold once the target is reached (0: until SIGTERM)')
    c.add_argument('--hold-tolerance', type=float, default=0.0,
                   help='fraction of the target that may be lost during the hold (ended by '
                        'the peer, or with a lost worker) before the run fails (default 0)')
    c.add_argument('--heartbeat-interval', type=float, default=0.0,
                   help='seconds between heartbeats on each connection (0: none); they start '
                        'one interval after a worker\'s first connection, and not before the end '
                        'of the ramp unless it is paced (--rate)')
    c.add_argument('--heartbeat-size', type=int, default=16, help='heartbeat payload bytes')
    c.add_argument('--protocol', choices=PROTOCOLS, default='tcp',
                   help='tcp: connect and hold; http: one HTTP/1.1 keep-alive request, its '
                        'status counted, then hold (heartbeats repeat it); websocket: the '
                        'RFC 6455 handshake, then hold (heartbeats are pings)')
    c.add_argument('--http-method', default='GET', help='request method (http)')
    c.add_argument('--http-path', default='/', help='request path (http, websocket)')
    c.add_argument('--http-host', default='', help='Host header (default: the endpoint)')
    c.add_argument('--http-header', action='append', default=[], metavar='NAME:VALUE',
                   help='an extra request header (repeatable)')
    c.add_argument('--ws-subprotocol', default='', help='Sec-WebSocket-Protocol to ask for')
    c.add_argument('--tls', action='store_true', help='wrap the protocol in TLS (sessions are '
                   'resumed); a connection counts once its handshake completed')
    c.add_argument('--tls-server-name', default='', metavar='NAME',
                   help='SNI, and the name checked against the certificate with --tls-ca')
    c.add_argument('--tls-ca', metavar='FILE', help='verify the server\'s certificate against '
                   'these PEM CA certificates (default: no verification)')
    c.add_argument('--workers', default='auto', help='worker processes (auto: as the fd '
                   'limit requires, at least one per core)')
    c.add_argument('--concurrency', type=int, default=0,
                   help='workers connecting at a time (default: one per core)')
    c.add_argument('--summary-file', help='final JSON summary (also the last stdout line)')
    c.add_argument('--status-file', help='JSON status, rewritten every progress interval')
    c.add_argument('--progress-interval', type=float, default=1.0, help='seconds')
    add_watch(c)
    add_metrics(c, 'client')


CONTROL_HELP = {
    'start': 'start "-- ARGV..." detached under NAME (no change when it already runs)',
    'run': 'run "-- ARGV..." in the foreground under NAME (for an asynchronous job)',
    'stop': 'stop the half running under NAME: SIGTERM, then SIGKILL',
    'status': 'whether the half under NAME runs (and runs "-- ARGV...")',
}


def add_control(sub):
    for name in ('start', 'run', 'stop', 'status'):
        p = sub.add_parser(name, help=CONTROL_HELP[name])
        p.add_argument('--name', required=True, help='name of the half (pid file NAME.json)')
        p.add_argument('--run-dir', required=True, help='directory of the pid and exit files')
        p.add_argument('--timeout', type=float, default=30.0,
                       help='seconds to wait after SIGTERM before SIGKILL')
        if name in ('start', 'run'):
            p.add_argument('--log', help='file that gets the output (appended); "-" keeps '
                           'this stderr (under systemd-run: the unit\'s journal)')
            p.add_argument('--nofile', type=int, default=0, help='RLIMIT_NOFILE wanted')
        if name == 'start':
            p.add_argument('--ready-file', help='removed before the start')

    p = sub.add_parser('clean', help='remove the files of an earlier run of the half under NAME '
                       '(not while it runs)')
    p.add_argument('--name', required=True, help='name of the half (pid file NAME.json)')
    p.add_argument('--run-dir', required=True, help='directory of the pid and exit files')
    p.add_argument('--remove', action='append', default=[], metavar='FILE',
                   help='a file of the earlier run (status, summary, log); repeatable')
    p = sub.add_parser('limits', help='the nofile limit a child would get')
    p.add_argument('--nofile', type=int, default=0)
    p = sub.add_parser('inspect', help='whether the half writing a status file runs')
    p.add_argument('--status-file', required=True)
    p.add_argument('--comm', default='tcpscale-server', help='process name of the supervisor')
    p = sub.add_parser('tail', help='the last non-empty line of a log')
    p.add_argument('--log', required=True)
    p = sub.add_parser('wait', help='wait for the target, or through the hold')
    p.add_argument('--status-file', required=True)
    p.add_argument('--exit-file', required=True)
    p.add_argument('--log')
    p.add_argument('--timeout', type=float, default=5.0)
    p.add_argument('--hold', action='store_true',
                   help='wait through the hold: return early only when it breaks')


def build_parser():
    p = argparse.ArgumentParser(
        prog='tcpscale', description='Open, hold and count very many TCP connections; start, '
                                     'watch and stop the halves that do it.')
    sub = p.add_subparsers(dest='command', metavar='COMMAND')
    sub.required = True
    add_server(sub)
    add_client(sub)
    add_control(sub)
    return p


def split_argv(argv):
    """(options, ARGV after '--') of a control command; engine commands take no ARGV."""
    if argv and argv[0] not in ENGINE_COMMANDS and '--' in argv:
        cut = argv.index('--')
        return argv[:cut], argv[cut + 1:]
    return argv, []


def main(argv=None):
    argv, command = split_argv(list(sys.argv[1:] if argv is None else argv))
    args = build_parser().parse_args(argv)
    if args.command in ENGINE_COMMANDS:
        from .system import EXIT_USAGE, log
        if sys.platform != 'linux':
            log('error: Linux only (epoll, IP_BIND_ADDRESS_NO_PORT, /proc)')
            return EXIT_USAGE
        if args.command == 'client':
            from .client import client_main
            return client_main(args)
        from .server import server_main
        return server_main(args)
    args.argv = command
    from .supervisor import control_main
    return control_main(args)
