# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the roles' variables may hold, beyond what argument specs can say.

The argument specs (roles/*/meta/argument_specs.yml) check types and choices.
This checks the rest, every rule that a later step (a module, the engine, the
kernel) would otherwise enforce after something had changed: ranges, names
that reach the kernel or a unit file, paths, and combinations of variables.
It runs in the validation play, before any host is changed; each message
names the variable and the fix. Only the variables given are checked (a play
that uses some of the roles passes only theirs).
"""

from __future__ import annotations

import os
import re

from ansible.module_utils.parsing.convert_bool import boolean
from ansible_collections.scalelab.testbed.plugins.module_utils import ipplan
from ansible_collections.scalelab.testbed.plugins.module_utils import limits as lm
from ansible_collections.scalelab.testbed.plugins.module_utils import sysctl as sc
from ansible_collections.scalelab.testbed.plugins.module_utils.common import (
    TestbedError, validate_ifname, validate_name)

# Characters a path may not hold: it goes into argv lists and into the
# ExecStart= of a unit file, where systemd would split or expand them.
_UNSAFE_PATH = re.compile(r'[\s"\'\\$;`%]')


class Checks(object):
    """Typed reads of variables that collect every problem instead of stopping."""

    def __init__(self, variables):
        self.v = dict(variables or {})
        self.errors = []

    def has(self, name):
        return name in self.v

    def fail(self, name, message, fix=None):
        text = '%s: %s' % (name, message)
        if fix:
            text += ' (fix: %s)' % fix
        self.errors.append(text)
        return None

    def number(self, name, minimum=None, maximum=None, above=None, below=None, integer=False,
               fix=None):
        """The value as a number, or None (and an error) when it is not one in range."""
        if not self.has(name):
            return None
        value = self.v[name]
        try:
            if isinstance(value, bool):
                raise ValueError
            number = int(str(value)) if integer else float(value)
        except (TypeError, ValueError):
            what = 'a whole number' if integer else 'a number'
            return self.fail(name, '%r is not %s' % (value, what), fix)
        bounds = []
        if minimum is not None and number < minimum:
            bounds.append('at least %s' % minimum)
        if maximum is not None and number > maximum:
            bounds.append('at most %s' % maximum)
        if above is not None and number <= above:
            bounds.append('above %s' % above)
        if below is not None and number >= below:
            bounds.append('below %s' % below)
        if bounds:
            return self.fail(name, '%s is out of range: it must be %s' % (value, ' and '.join(bounds)),
                             fix)
        return number

    def integer(self, name, minimum=None, maximum=None, fix=None):
        return self.number(name, minimum, maximum, integer=True, fix=fix)

    def zero_or(self, name, minimum, maximum, fix):
        """0 (computed) or a whole number from minimum to maximum."""
        value = self.integer(name, 0, maximum, fix)
        if value not in (None, 0) and value < minimum:
            return self.fail(name, '%s is below %d' % (value, minimum), fix)
        return value

    def choice(self, name, choices):
        if self.has(name) and self.v[name] not in choices:
            return self.fail(name, '%r is not one of %s' % (self.v[name], ', '.join(choices)))
        return self.v.get(name)

    def workers(self, name):
        if self.has(name) and str(self.v[name]) != 'auto':
            return self.integer(name, 1, fix='give auto, or a whole number of at least 1')
        return None

    def raises(self, name, check, *args):
        """Run a TestbedError-raising validator from the modules on the value."""
        if not self.has(name):
            return None
        try:
            return check(self.v[name], *args)
        except TestbedError as exc:
            return self.fail(name, exc.message, exc.fix)

    def network(self, name, allow_empty=False):
        if not self.has(name) or (allow_empty and self.v[name] in ('', None)):
            return None
        try:
            return ipplan.network(self.v[name])
        except ValueError as exc:
            return self.fail(name, str(exc))

    def addresses(self, name):
        out = []
        for i, item in enumerate(self.v.get(name) or []):
            try:
                out.append(ipplan.address(item))
            except ValueError as exc:
                self.fail('%s[%d]' % (name, i), str(exc))
        return out

    def path(self, name, absolute=True):
        if not self.has(name):
            return None
        value = str(self.v[name])
        if absolute and not os.path.isabs(value):
            return self.fail(name, '%r is not an absolute path' % value, 'give a path from /')
        if _UNSAFE_PATH.search(value):
            return self.fail(name, '%r holds whitespace, a quote, a backslash, $, ;, ` or %%, which '
                                   'command lines and unit files would split or expand' % value,
                             'choose a path without them')
        return value


def _check_testbed(c):
    c.integer('testbed_connections', 1, fix='give the number of connections, e.g. 1000000')
    for name in ('testbed_install_dir', 'testbed_run_dir', 'testbed_state_dir', 'testbed_journal',
                 'testbed_python'):
        c.path(name)


def _check_topology(c):
    c.choice('topology_mode', ('netns', 'host'))
    c.choice('testbed_ip_family', ('ipv4', 'ipv6', 'dual'))
    sources = c.choice('topology_client_sources', ('aliases', 'anyip'))
    if sources == 'anyip' and c.v.get('topology_mode') == 'host':
        c.fail('topology_client_sources', 'anyip is for the one-box default (topology_mode netns): on a '
               'fleet the network between the hosts would have to route every client\'s prefix to it',
               'use aliases on a fleet, or topology_mode netns')
    if c.v.get('testbed_ip_family') == 'dual' and c.v.get('topology_mode') == 'host':
        c.fail('testbed_ip_family', 'dual on a fleet is not supported yet: a fleet run takes one '
               'address family', 'use ipv4 or ipv6 on a fleet (or topology_mode netns for dual)')
    first = c.integer('topology_server_port_first', 1, ipplan.PORT_MAX)
    count = c.integer('topology_server_port_count', 1, ipplan.PORT_MAX)
    if first is not None and count is not None and first + count - 1 > ipplan.PORT_MAX:
        c.fail('topology_server_port_count', 'topology_server_port_first %d + %d ports go past port '
               '65535' % (first, count), 'lower one of them')
    lo_hi = None
    if c.has('topology_port_range'):
        try:
            lo_hi = ipplan.port_range(c.v['topology_port_range'])
        except ValueError as exc:
            c.fail('topology_port_range', str(exc))
    if lo_hi and lo_hi[0] < 1024:
        c.fail('topology_port_range', '%d-%d starts below 1024: the ephemeral range must leave the '
               'privileged ports alone' % lo_hi, 'start it at 1024 or above')
    c.number('topology_port_fill', above=0, maximum=1, fix='give a fraction such as 0.25')
    c.integer('topology_client_source_count', 0)
    c.integer('topology_client_source_max', 1)
    c.integer('topology_server_address_count', 1)
    c.integer('topology_server_alias_offset', 0)
    c.integer('topology_server_alias_count', 0)
    c.integer('topology_client_offset', 0)
    c.integer('topology_alias_prefix_length', 0, 128)
    c.integer('topology_netns_prefix_length', 1, 128)
    c.integer('topology_netns_prefix_length6', 1, 128)
    names = [c.raises(n, validate_name, n, ipplan.NETNS_NAME_MAX, 'network namespace name')
             for n in ('topology_netns_server', 'topology_netns_client')]
    if names[0] and names[0] == names[1]:
        c.fail('topology_netns_client', 'the same name as topology_netns_server', 'give two names')
    veths = [c.raises(n, validate_ifname, n) for n in ('topology_veth_server', 'topology_veth_client')]
    if veths[0] and veths[0] == veths[1]:
        c.fail('topology_veth_client', 'the same name as topology_veth_server', 'give two names')
    if c.v.get('topology_interface'):
        c.raises('topology_interface', validate_ifname, 'topology_interface')
    for name in ('topology_netns_server_cidr', 'topology_netns_client_cidr',
                 'topology_netns_server_cidr6', 'topology_netns_client_cidr6'):
        c.network(name)
    for name in ('topology_server_alias_cidr', 'topology_client_cidr'):
        c.network(name, allow_empty=True)
    for name in ('topology_server_addresses', 'topology_client_addresses'):
        c.addresses(name)
    return lo_hi


def _check_tuning(c):
    c.choice('tuning_conntrack', ('size', 'notrack', 'leave'))
    c.choice('tuning_time_wait', ('reuse', 'leave'))
    c.choice('tuning_unavailable', ('auto', 'fail', 'warn'))
    c.number('tuning_kernel_bytes_per_connection', 0)
    c.number('tuning_user_bytes_per_connection', 0)
    c.number('tuning_epoll_bytes_per_connection', 0)
    c.number('tuning_tls_client_bytes_per_connection', 0)
    c.number('tuning_tls_server_bytes_per_connection', 0)
    c.number('tuning_memory_fraction', above=0, maximum=1, fix='give a fraction such as 0.85')
    c.zero_or('tuning_nofile', ipplan.NR_OPEN_MIN, ipplan.NR_OPEN_MAX,
              'give 0 to compute it, or %d to %d (what fs.nr_open can take)'
              % (ipplan.NR_OPEN_MIN, ipplan.NR_OPEN_MAX))
    c.integer('tuning_backlog', 0, ipplan.LIMITS['net.core.somaxconn'][1])
    c.number('tuning_ehash_factor', above=0)
    c.raises('tuning_persist_path', sc.validate_persist_path, 'tuning_persist_path')
    c.raises('tuning_limits_path', lm.validate_limits_path, 'tuning_limits_path')
    for i, domain in enumerate(c.v.get('tuning_limits_domains') or []):
        try:
            lm.validate_domain(domain, 'tuning_limits_domains[%d]' % i)
        except TestbedError as exc:
            c.fail(exc.field, exc.message, exc.fix)
    for key, value in (c.v.get('tuning_extra_sysctls') or {}).items():
        try:
            canonical = sc.normalize_key(key, 'tuning_extra_sysctls')[0]
            sc.normalize_value(canonical, value, 'tuning_extra_sysctls')
        except TestbedError as exc:
            c.fail(exc.field, exc.message, exc.fix)


def _check_halves(c):
    c.workers('server_workers')
    c.integer('server_backlog', 1)
    c.number('server_progress_interval', above=0)
    c.zero_or('server_nofile', ipplan.NR_OPEN_MIN, ipplan.NR_OPEN_MAX,
              'give 0 to take the tuning role\'s value, or up to fs.nr_open\'s maximum')
    c.integer('server_ready_timeout', 1)
    for name in ('server_unit', 'client_unit'):
        if c.has(name) and not str(c.v[name]).endswith('.service'):
            c.fail(name, '%r is not a service unit' % c.v[name], 'give a name ending in .service')
        else:
            c.raises(name, lm.validate_unit, name)
    c.workers('client_workers')
    hold = c.number('client_hold', 0)
    c.number('client_hold_tolerance', 0, below=1, fix='give a fraction from 0 to below 1, e.g. 0.001')
    rate = c.number('client_rate', 0, fix='give 0 for no limit, or connections per second')
    ramp = c.number('client_ramp', 0)
    if ramp and not rate:
        c.fail('client_ramp', 'a ramp of %s s needs a rate to ramp up to' % ramp, 'set client_rate')
    c.integer('client_inflight', 1)
    c.number('client_connect_timeout', above=0)
    c.integer('client_retries', 0)
    c.integer('client_concurrency', 0)
    c.number('client_heartbeat_interval', 0)
    size = c.integer('client_heartbeat_size', 1, 65536)
    _check_protocol(c, size)
    _check_tls(c)
    c.zero_or('client_nofile', ipplan.NR_OPEN_MIN, ipplan.NR_OPEN_MAX,
              'give 0 to take the tuning role\'s value, or up to fs.nr_open\'s maximum')
    c.number('client_progress_interval', above=0)
    c.integer('report_count_timeout', 1)
    _check_watch(c)
    c.integer('client_poll_interval', 1)
    c.integer('client_poll_rounds', 0)
    reach = c.integer('client_reach_timeout', 1)
    run = c.integer('client_run_timeout', 1)
    if None not in (reach, run, hold) and run < reach + hold + 60:
        c.fail('client_run_timeout', '%d s is less than client_reach_timeout %d + client_hold %s + '
               '60 s to stop: the asynchronous job would be killed before the run ends'
               % (run, reach, hold), 'raise it to %d or more' % (reach + hold + 60))


_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")    # an HTTP header name (RFC 9110)


def _check_protocol(c, size):
    """client_protocol and the request it sends (no CR/LF anywhere: one line each)."""
    proto = c.choice('client_protocol', ('tcp', 'http', 'websocket'))
    if c.has('client_http_method') and not re.match(r'^[A-Z]+$', str(c.v['client_http_method'])):
        c.fail('client_http_method', '%r is not an HTTP method' % c.v['client_http_method'],
               'give one in capitals, like GET or HEAD')
    path = c.v.get('client_http_path')
    if c.has('client_http_path') and (not str(path).startswith('/') or re.search(r'\s', str(path))):
        c.fail('client_http_path', '%r does not start with / or holds whitespace' % path,
               'give a path like /health')
    for name in ('client_http_host', 'client_ws_subprotocol'):
        if c.has(name) and re.search(r'[\s,]', str(c.v[name])):
            c.fail(name, '%r holds whitespace or a comma' % c.v[name], 'give one value')
    headers = c.v.get('client_http_headers') or {}
    if not isinstance(headers, dict):
        c.fail('client_http_headers', 'is not a mapping', 'give name: value pairs')
        headers = {}
    for key, value in headers.items():
        if not _TOKEN.match(str(key)) or re.search(r'[\r\n]', str(value)):
            c.fail('client_http_headers', '%r: %r is not a header name and a one-line value'
                   % (key, value), 'give a token name (letters, digits, -) and a value without '
                   'line breaks')
    if proto == 'websocket' and size is not None and size > 125:
        c.fail('client_heartbeat_size', '%d bytes do not fit in a WebSocket ping (125 at most)' % size,
               'give 125 or less with client_protocol websocket')
    given = c.v.get('testbed_service_endpoints')
    if given is not None and not isinstance(given, list):
        c.fail('testbed_service_endpoints', 'is not a list', 'give a list like ["10.240.0.1:8080"]')


def _check_tls(c):
    """client_tls and its verification: a CA file on the controller, a one-word name."""
    on = _flag(c, 'client_tls')
    verify = _flag(c, 'client_tls_verify')
    name = str(c.v.get('client_tls_server_name') or '')
    if name and (re.search(r'[\s,/\\]', name) or name.startswith('-')):
        c.fail('client_tls_server_name', '%r is not a host name or an address' % name,
               'give one name, like www.example.com')
    ca = str(c.v.get('client_tls_ca_file') or '')
    if verify and not on:
        c.fail('client_tls_verify', 'is on but client_tls is off', 'set client_tls: true, or '
               'client_tls_verify: false')
    if on and verify and not ca:
        c.fail('client_tls_verify', 'verification needs the CA certificates to verify against',
               'set client_tls_ca_file to a PEM file on the controller')
    elif ca and verify and not os.path.isfile(os.path.expanduser(ca)):
        c.fail('client_tls_ca_file', '%r is not a file on the controller' % ca,
               'give the path of a PEM file of CA certificates')


WATCH_MODES = ('auto', 'epoll', 'poll')


def _reads(v):
    """{half: [what makes it read data as it arrives]} of the role variables v.

    A protocol alone does not: the client polls each connection's first answer with
    the handshakes, the server half answers each request when it accepts the
    connection (files/tcpscale/watch.py). Its heartbeats do, on both halves: the
    server half answers them as they arrive (server_answers_at_once).
    """
    protocol = v.get('client_protocol', 'tcp') or 'tcp'
    heartbeats = _positive(v.get('client_heartbeat_interval'))
    tls = ['client_tls'] if boolean(v.get('client_tls'), strict=False) else []
    return {'client': (['client_heartbeat_interval %s' % v.get('client_heartbeat_interval')]
                       if heartbeats else []) + tls,
            'server': (['server_echo'] if boolean(v.get('server_echo'), strict=False) else [])
            + (['client_protocol %s with client_heartbeat_interval %s'
                % (protocol, v.get('client_heartbeat_interval'))]
               if protocol != 'tcp' and heartbeats else []) + tls}


def server_answers_at_once(v):
    """Whether the server half answers what clients send after their first words as it
    arrives (its --echo): server_echo, or an http or websocket client with heartbeats
    (each one a request or a ping the server half answers)."""
    protocol = v.get('client_protocol', 'tcp') or 'tcp'
    return boolean(v.get('server_echo'), strict=False) or (
        protocol != 'tcp' and _positive(v.get('client_heartbeat_interval')))


def watch_modes(v):
    """{half: 'poll' or 'epoll'}: how each half of the engine watches what it holds with
    the role variables v (client_watch, server_watch; auto: poll unless the half reads data
    as it arrives), as the engine's --watch resolves it (files/tcpscale/watch.py)."""
    reads = _reads(v)
    out = {}
    for half in ('client', 'server'):
        mode = v.get('%s_watch' % half, 'auto') or 'auto'
        out[half] = 'epoll' if mode == 'epoll' or reads[half] else 'poll'
    return out


def _check_watch(c):
    """client_/server_watch and their intervals: poll only where a half reads nothing as it
    arrives (the engine's --watch; files/tcpscale/watch.py)."""
    for half, reads in _reads(c.v).items():
        name = '%s_watch' % half
        if c.choice(name, WATCH_MODES) == 'poll' and reads:
            c.fail(name, 'poll cannot watch a half that reads data as it arrives (%s)'
                   % ', '.join(reads), 'give auto (epoll where it reads) or epoll')
        c.number('%s_watch_interval' % half, above=0)


def _positive(value):
    try:
        return float(value) > 0
    except (TypeError, ValueError):
        return False


def _flag(c, name):
    """A boolean variable, as Ansible reads one (yes/no, true/false, 1/0)."""
    return boolean(c.v.get(name), strict=False)


def _check_metrics(c):
    """client_/server_metrics_dir (absolute paths) and _metrics_listen (ADDRESS:PORT, an
    address and not a name: the engine binds it)."""
    listens = {}
    for half in ('client', 'server'):
        name = '%s_metrics_dir' % half
        if c.v.get(name):
            c.path(name)
        name = '%s_metrics_listen' % half
        value = c.v.get(name)
        if not value:
            continue
        try:
            host, port = ipplan.split_endpoint(str(value))
            ipplan.address(host)
        except ValueError as exc:
            c.fail(name, str(exc), 'give ADDRESS:PORT, [IPV6]:PORT for IPv6, like 127.0.0.1:9464, '
                   'or "" for no HTTP endpoint')
            continue
        listens[half] = (host, int(port))
    if c.v.get('topology_mode', 'netns') == 'netns' and len(listens) == 2 \
            and listens['client'][1] == listens['server'][1]:
        c.fail('client_metrics_listen', 'port %d is also server_metrics_listen\'s: on one box both '
               'halves listen in the host\'s namespace' % listens['client'][1],
               'give the halves different ports, like 9464 and 9465')


def check(variables):
    """Every problem with the variables given, as sentences; [] when they are fine."""
    c = Checks(variables)
    _check_testbed(c)
    _check_topology(c)
    _check_tuning(c)
    _check_halves(c)
    _check_metrics(c)
    c.integer('report_max_filter_addresses', 0)
    c.integer('restore_stop_timeout', 1)
    for i, name in enumerate(c.v.get('restore_netns') or []):
        try:
            validate_name(name, 'restore_netns[%d]' % i, what='network namespace name')
        except TestbedError as exc:
            c.fail(exc.field, exc.message, exc.fix)
    return c.errors
