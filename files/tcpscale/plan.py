# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The plans of both halves: what to open, where, in how many processes.

Everything here is computed before the first socket; a plan that cannot be
carried out raises Usage (exit 2) with the arithmetic that fails. The rules
of addresses and ports come from ipplan (a copy of the collection's
plugins/module_utils/ipplan.py); the functions below only name the option
a value came from.
"""

import ipaddress
import itertools
import socket

from . import ipplan
from . import protocol
from . import tls as tls_mod
from . import watch
from .system import (Usage, cpu_count, local_port_range, probe_addresses, raise_nofile,
                     read_sysctl)

RESERVE_FDS = 64            # descriptors a worker keeps for itself (epoll, pipes, stdio)

# Address ranges the client connects to without --allow-external.
SAFE_NETWORKS = [ipaddress.ip_network(n) for n in (
    '10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16',       # RFC 1918
    '127.0.0.0/8', '169.254.0.0/16',                       # loopback, link-local
    '198.18.0.0/15',                                       # RFC 2544 benchmarking
    '::1/128', 'fc00::/7', 'fe80::/10')]                   # loopback, ULA, link-local


# ----------------------------------------------------------------- options

def parse_list(text, field, parse_one, what):
    """The items of a comma-separated option, each through parse_one (at least one, none twice)."""
    out = []
    for item in [x.strip() for x in str(text).split(',')]:
        if not item:
            continue
        try:
            out.append(parse_one(item))
        except ValueError as exc:
            raise Usage('%s: %s' % (field, exc))
    if not out:
        raise Usage('%s: no %s given' % (field, what))
    if len(set(out)) != len(out):
        raise Usage('%s: an %s is listed twice' % (field, what))
    return out


def parse_addresses(text, field):
    """The addresses of a comma-separated option (at least one, none twice)."""
    return parse_list(text, field, ipplan.address, 'address')


def _endpoint(item):
    host, port = ipplan.split_endpoint(item)
    return ipplan.address(host), port


def parse_ports(text, field='--ports'):
    try:
        return ipplan.port_range(str(text))
    except ValueError as exc:
        raise Usage('%s: %s' % (field, exc))


def sources_from_cidr(cidr, count, offset):
    """The first usable hosts of cidr after offset (as the ip_aliases module adds them)."""
    try:
        net = ipplan.network(cidr)
    except ValueError as exc:
        raise Usage('--sources-cidr: %s' % exc)
    if count is None or count < 1:
        raise Usage('--sources-count: give a number of source addresses >= 1 with --sources-cidr')
    try:
        return ipplan.hosts(net, count, offset)
    except ValueError as exc:
        raise Usage('--sources-cidr: %s' % exc)


def parse_workers(text):
    """'auto', or a number of workers >= 1."""
    if text == 'auto':
        return text
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise Usage('--workers: give auto or a number >= 1')
    return n


def is_safe_target(addr):
    return any(addr in net for net in SAFE_NETWORKS if net.version == addr.version)


def check_client_options(args):
    """The numeric options of the client half, each in its range."""
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


def plan_watch(plan, args, half, needs):
    """plan.watch, plan.watch_why, plan.watch_interval from --watch and --watch-interval.

    needs: what makes the half read data as it arrives ('' when it only holds).
    """
    plan.watch_interval = getattr(args, 'watch_interval', 1.0)
    if not plan.watch_interval > 0:
        raise Usage('--watch-interval: give seconds > 0')
    try:
        plan.watch, plan.watch_why = watch.resolve(getattr(args, 'watch', 'auto') or 'auto',
                                                   needs, half)
    except ValueError as exc:
        raise Usage(str(exc))


def client_sources(args):
    if args.sources and args.sources_cidr:
        raise Usage('--sources and --sources-cidr are mutually exclusive')
    if args.sources:
        return parse_addresses(args.sources, '--sources')
    if args.sources_cidr:
        return sources_from_cidr(args.sources_cidr, args.sources_count, args.sources_offset)
    raise Usage('give the source addresses: --sources ADDR,... or --sources-cidr CIDR '
                '--sources-count N')


# -------------------------------------------------------------- arithmetic

def segments_of(sources, destinations):
    """Tuples grouped by family: [(af, tuples, sources, destinations)].

    Sources are address texts, destinations (address text, port) pairs. A v4
    source only reaches v4 destinations; IPv4 first.
    """
    segments = []
    for version, af in ((4, socket.AF_INET), (6, socket.AF_INET6)):
        srcs = [str(a) for a in sources if a.version == version]
        dsts = [(str(a), port) for a, port in destinations if a.version == version]
        if srcs and dsts:
            segments.append((af, len(srcs) * len(dsts), srcs, dsts))
    return segments


def tuple_at(p, segments):
    """(af, source, (destination, port)) of tuple p (0 <= p < all tuples).

    Destinations (address x port) first, then sources: connections 0 .. D - 1
    reach D different endpoints, and connection k of the run uses tuple k mod T,
    so k and k + T share a tuple. A worker opens its own range tuple by tuple
    (worker_order), which changes the order, not the tuple of a connection.
    """
    for af, t, srcs, dsts in segments:
        if p < t:
            break
        p -= t
    nd = len(dsts)
    return af, srcs[(p // nd) % len(srcs)], dsts[p % nd]


ROUTE_CHECK_MAX = 256        # distinct destination addresses checked at most


def routes_choose(segments):
    """True when every segment has one source, and it is the source this namespace's
    routes give every destination address of the segment: an unbound connect() then
    uses the same 4-tuples as a bound one, two system calls fewer per connection.

    The kernel's choice is read from a connected UDP socket (no packet is sent).
    """
    for af, _t, srcs, dsts in segments:
        addrs = set(a for a, _port in dsts)
        if len(srcs) != 1 or len(addrs) > ROUTE_CHECK_MAX:
            return False
        want = ipaddress.ip_address(srcs[0])
        for a in addrs:
            s = socket.socket(af, socket.SOCK_DGRAM)
            try:
                s.connect((a, 9))
                got = ipaddress.ip_address(s.getsockname()[0].split('%')[0])
            except (OSError, ValueError):
                return False
            finally:
                s.close()
            if got != want:
                return False
    return True


def parse_endpoints(text, field='--endpoints'):
    """[(address, port)] of 'ADDR:PORT,[V6]:PORT,...' (addresses only: names are resolved
    before the engine starts)."""
    return parse_list(text, field, _endpoint, 'endpoint')


def destinations_of(args):
    """[(address, port)]: --endpoints, or every port of --ports on every --targets address."""
    if args.endpoints:
        if args.targets or args.ports:
            raise Usage('--endpoints replaces --targets and --ports: give one or the other')
        return parse_endpoints(args.endpoints)
    if not args.targets or not args.ports:
        raise Usage('give where to connect: --targets ADDR,... --ports LO-HI, or --endpoints '
                    'ADDR:PORT,...')
    lo, hi = parse_ports(args.ports)
    return [(a, port) for a in parse_addresses(args.targets, '--targets')
            for port in range(lo, hi + 1)]


def worker_order(start_g, quota, tuples):
    """The connections start_g .. start_g + quota - 1 of one worker, in the order it opens
    them: tuple by tuple (g, g + T, g + 2T, ... for the range's first g, then for the
    next, T being the number of tuples).

    Which tuple each connection uses stays tuple_at(g mod T): only the order within the
    worker changes. A worker that stays on one tuple, as a blocking client on one port
    does, keeps the kernel's ephemeral-port search on one destination, and the server
    half's accepts on one listening socket. At 1,000,000 on 53 ports the client's port
    search came down to the naive baseline's, and the server half's CPU per connection
    fell by about an eighth (docs/sizing.md). With TLS the worker keeps index order:
    tuple by tuple, its first handshakes to each destination would all be full ones, with
    no session yet to resume (in a test of 3,000, 1,345 resumed instead of most).
    """
    end = start_g + quota
    return itertools.chain.from_iterable(
        range(g, end, tuples) for g in range(start_g, start_g + min(quota, tuples)))


def split_quota(target, workers):
    """(quotas, starts): connections per worker and the index of each one's first."""
    base, extra = divmod(target, workers)
    quotas = [base + (1 if i < extra else 0) for i in range(workers)]
    starts = []
    acc = 0
    for q in quotas:
        starts.append(acc)
        acc += q
    return quotas, starts


def client_workers(target, cap, cores, wanted, nofile):
    """How many client workers: enough for cap descriptors each, at least one per core."""
    need = -(-target // cap)
    wanted = parse_workers(wanted)
    if wanted == 'auto':
        return min(target, max(need, cores))
    if wanted < need:
        raise Usage('--workers %d: %d connections need at least %d workers at %d '
                    'descriptors each (RLIMIT_NOFILE %d - %d reserved)'
                    % (wanted, target, need, cap, nofile, RESERVE_FDS))
    return min(wanted, target)


def server_layout(endpoints, lanes, cap, fmax):
    """(lanes, group_size, groups, holder_cap, holders_per_group) of the server half.

    A holder needs its lane's listening sockets plus room for connections;
    the keeper of a group holds all lanes' listeners. Lanes only when there
    are few endpoints.
    """
    if endpoints * lanes > cap // 4:
        lanes = 1
    group_size = min(endpoints, max(1, cap // 2))
    groups = -(-endpoints // group_size)
    holder_cap = cap - group_size
    per_group = max(4 * lanes, min(8192, fmax // max(1, holder_cap) + 8) // groups + 2 * lanes)
    holders_per_group = min(per_group, max(4 * lanes, 8192 // groups))
    return lanes, group_size, groups, holder_cap, holders_per_group


# ------------------------------------------------------------------ plans

class ClientPlan(object):
    """Everything a client worker needs, computed before the first socket."""

    def __init__(self, args):
        self.target = args.connections
        if self.target < 1:
            raise Usage('--connections: give a number >= 1')
        self.destinations = destinations_of(args)
        self.targets = sorted(set(a for a, _port in self.destinations), key=str)
        self.nports = len(set(port for _a, port in self.destinations))
        self.sources = client_sources(args)
        self.freebind = bool(getattr(args, 'freebind', False))
        self.bind, self.bind_why = True, ''     # (probe_sources decides)
        if not args.allow_external:
            bad = [str(a) for a in self.targets if not is_safe_target(a)]
            if bad:
                raise Usage('--targets: %s outside private (RFC 1918, ULA), loopback, link-local '
                            'and benchmark (198.18.0.0/15) ranges; pass --allow-external if '
                            'you really mean to load that host' % ', '.join(bad))
        check_client_options(args)
        self.paced = args.rate > 0          # heartbeats run during a paced ramp only
        self.segments = segments_of(self.sources, self.destinations)
        if not self.segments:
            raise Usage('no source address has the same family (IPv4/IPv6) as a target')
        self.tuples = sum(s[1] for s in self.segments)
        self.port_lo, self.port_hi, self.port_count = local_port_range()
        self.check_capacity()
        self.plan_workers(args)
        self.quotas, self.starts = split_quota(self.target, self.workers)
        self.payload = b'h' * args.heartbeat_size
        self.plan_protocol(args)
        self.tls = None
        self.tls_server_name = getattr(args, 'tls_server_name', '') or ''
        if getattr(args, 'tls', False):
            if any(c.isspace() or c in '/\\' for c in self.tls_server_name):
                raise Usage('--tls-server-name %r: give a host name or an address'
                            % self.tls_server_name)
            self.tls = tls_mod.client_context(getattr(args, 'tls_ca', None),
                                              self.tls_server_name)
        elif getattr(args, 'tls_ca', None) or self.tls_server_name:
            raise Usage('--tls-ca and --tls-server-name need --tls')
        # A protocol alone reads each connection's first answer only: polled with the
        # handshakes (watch.py).
        needs = [w for w, on in (('heartbeats', args.heartbeat_interval > 0),
                                 ('TLS', self.tls is not None)) if on]
        plan_watch(self, args, 'client', ', '.join(needs))
        if self.watch == 'poll' and self.protocol != 'tcp':
            self.watch_why += ': the first answers polled with the handshakes'
        # Heartbeats alone (raw tcp) and an unpaced ramp: no heartbeat before the ramp's
        # end, so the held connections need no epoll item until then. They join the epoll
        # set at once when it is over (plan.watch_late); --watch epoll keeps them in it
        # from the start.
        self.watch_late = (self.watch == 'epoll' and needs == ['heartbeats'] and not self.paced
                           and self.protocol == 'tcp'
                           and (getattr(args, 'watch', 'auto') or 'auto') == 'auto')
        if self.watch_late:
            self.watch_why += ' after an unpaced ramp: the held connections join the epoll ' \
                              'set once it is over'

    def plan_protocol(self, args):
        """The request of each destination (http), or its upgrade request's parts (websocket)."""
        self.protocol = getattr(args, 'protocol', 'tcp') or 'tcp'
        self.requests = {}
        if self.protocol == 'tcp':
            return
        method, path = getattr(args, 'http_method', 'GET'), getattr(args, 'http_path', '/')
        if not method.isalpha() or not method.isupper():
            raise Usage('--http-method: give an HTTP method in capitals, like GET or HEAD')
        if not path.startswith('/') or any(c.isspace() for c in path):
            raise Usage('--http-path: give a path that starts with / and has no spaces')
        headers = []
        for h in getattr(args, 'http_header', None) or []:
            name, sep, value = h.partition(':')
            if not sep or not name.strip() or any(c in name for c in ' \t\r\n') \
                    or '\r' in value or '\n' in value:
                raise Usage('--http-header %r: write it as NAME:VALUE on one line' % h)
            headers.append((name.strip(), value.strip()))
        host = getattr(args, 'http_host', '')
        for a, port in set((str(a), port) for a, port in self.destinations):
            h = host or ipplan.endpoint_text(a, port)
            if self.protocol == 'http':
                self.requests[(a, port)] = protocol.http_request(method, path, h, headers)
            else:
                self.requests[(a, port)] = protocol.ws_request_parts(
                    path, h, headers, getattr(args, 'ws_subprotocol', ''))

    def check_capacity(self):
        """The 4-tuple arithmetic: fail when the target cannot fit, warn when it is tight."""
        capacity = self.tuples * self.port_count
        nsrc = sum(len(s[2]) for s in self.segments)
        ndst = sum(len(s[3]) for s in self.segments)
        self.arith = ('%d sources x %d endpoints (address:port) = %d tuples x %d local ports '
                      '(net.ipv4.ip_local_port_range %d-%d) = %d connections at most'
                      % (nsrc, ndst, self.tuples, self.port_count, self.port_lo,
                         self.port_hi, capacity))
        if capacity < self.target:
            need = -(-self.target // (len(self.destinations) * self.port_count))
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

    def plan_workers(self, args):
        """Descriptors per worker (the real RLIMIT_NOFILE), workers, workers at a time."""
        self.nofile_before, self.nofile, self.nofile_hard = raise_nofile()
        self.cap = self.nofile - RESERVE_FDS
        if self.cap < 1:
            raise Usage('RLIMIT_NOFILE is %d: too low to hold connections (need > %d)'
                        % (self.nofile, RESERVE_FDS))
        cores = cpu_count()
        self.workers = client_workers(self.target, self.cap, cores, args.workers, self.nofile)
        self.active = min(self.workers, args.concurrency or cores)

    def probe_sources(self):
        """Every source must be an address of this namespace (bind without a port); and
        whether the connections need to bind them at all (self.bind)."""
        probe_addresses(self.sources, 'source', '--sources', self.freebind)
        self.bind = not (not self.freebind and routes_choose(self.segments))
        self.bind_why = ('each connection binds its source (IP_BIND_ADDRESS_NO_PORT)'
                         if self.bind else 'one source per family, the one the routes choose '
                         'for every target: connections are not bound (the kernel picks it)')


class ServerPlan(object):
    """Endpoints (addresses x ports), their groups, lanes and holders."""

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
        lanes = parse_workers(args.workers)
        if lanes == 'auto':
            lanes = cpu_count()
        fmax = int(read_sysctl('/proc/sys/fs/file-max', '0') or 0) or 1 << 40
        (self.lanes, self.group_size, self.groups, self.holder_cap,
         self.holders_per_group) = server_layout(self.endpoints, lanes, self.cap, fmax)
        self.somaxconn = int(read_sysctl('/proc/sys/net/core/somaxconn', '4096') or 4096)
        self.backlog = args.backlog
        cert, key = getattr(args, 'tls_cert', None), getattr(args, 'tls_key', None)
        if bool(cert) != bool(key):
            raise Usage('--tls-cert and --tls-key go together (the certificate and its key)')
        self.tls = tls_mod.server_context(cert, key) if cert else None
        # A protocol without --echo: each request or upgrade is answered when its
        # connection is accepted, what a client sends later at the next watch pass
        # (watch.py); --echo answers it as it arrives (heartbeats).
        needs = [w for w, on in (('--echo', bool(getattr(args, 'echo', False))),
                                 ('TLS', self.tls is not None)) if on]
        plan_watch(self, args, 'server', ', '.join(needs))
        if self.watch == 'poll' and (getattr(args, 'protocol', 'tcp') or 'tcp') != 'tcp':
            self.watch_why += ': each request answered at accept, later ones at a pass'

    def endpoint(self, e):
        a = self.addrs[e // self.nports]
        return a, self.plo + e % self.nports

    def endpoint_name(self, e):
        a, port = self.endpoint(e)
        return ipplan.endpoint_text(a, port)

    def probe(self):
        probe_addresses(self.addrs, 'listen', '--listen')
