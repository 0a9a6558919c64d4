# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: adding IP aliases with scalelab.testbed.ip_aliases.

Each method starts from a fresh namespace (tbb-bench-<pid>-<n>) holding a veth
pair that is up on both ends, and adds N (default 10,000) /32 aliases from the
same CIDR to one end; the count is then read back from the kernel, so a
method that silently did less is caught. Measured in the same run:

* ip_aliases, one Ansible task (ansible-playbook; the task time comes from the
  ansible.posix.json callback, the playbook wall time is measured around it),
  with /32 aliases (the default) and again with prefix_length 16 (one primary,
  the rest secondaries: the kernel's work per address is about halved),
* ip_aliases run as a bare module process (no Ansible controller): import,
  one dump, pipelined requests (netlink.py), the journal entry,
* pyroute2 IPRoute.addr('add') per address (one acknowledgement at a time),
* `ip addr add` run once per address (subprocess loop),
* `ip -batch` with N lines (the C floor),
* an Ansible task looping ansible.builtin.command (`ip addr add`) over 200
  addresses, for the per-address cost of the usual way.

With --anyip, sources made usable without aliases are compared with aliases
in the same run, at 10,000 and 65,536 sources (--anyip-counts): one
ip_aliases task against one scalelab.testbed.netns task that adds a local
route over the sources' prefix (AnyIP). Each is checked for real: the last
source is bound (with IP_FREEBIND for AnyIP) inside the namespace. With
--site N, `ansible-playbook site.yml -e testbed_connections=N` then runs
once with topology_client_sources aliases and once with anyip (4,096
sources; teardown after each), and the engine's rate of each is printed.

The module's journal goes to a scratch directory (never the host's own).
Times, per-address costs and ratios are printed; the last line is one JSON
object. Run it as root, holding the heavy lock:

    flock /tmp/scalelab-heavy.lock .venv/bin/python benchmarks/aliases.py
    flock /tmp/scalelab-heavy.lock .venv/bin/python benchmarks/aliases.py --skip-slow \
        --anyip --site 1000000
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
CIDR = '10.123.0.0/16'
DEV = 'tbb-bv0'


def run(argv, **kw):
    return subprocess.run(argv, check=True, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, **kw)


class Namespace(object):
    """A fresh namespace with a veth pair (both ends up), removed on exit."""
    serial = 0

    def __init__(self):
        Namespace.serial += 1
        self.name = 'tbb-bench-%d-%d' % (os.getpid(), Namespace.serial)

    def __enter__(self):
        run(['ip', 'netns', 'add', self.name])
        run(['ip', '-n', self.name, 'link', 'add', DEV, 'type', 'veth', 'peer',
             'name', 'tbb-bv1'])
        run(['ip', '-n', self.name, 'link', 'set', DEV, 'up'])
        run(['ip', '-n', self.name, 'link', 'set', 'tbb-bv1', 'up'])
        return self

    def __exit__(self, *exc):
        subprocess.run(['ip', 'netns', 'delete', self.name], check=False)

    def count(self):
        out = run(['ip', '-j', '-4', '-n', self.name, 'addr', 'show', 'dev', DEV]).stdout
        links = json.loads(out)
        return len(links[0].get('addr_info', [])) if links else 0


def hosts(n):
    net = ipaddress.ip_network(CIDR)
    first = int(net.network_address) + 1
    return [str(ipaddress.IPv4Address(first + i)) for i in range(n)]


def iso(ts):
    return datetime.datetime.strptime(ts.rstrip('Z'), '%Y-%m-%dT%H:%M:%S.%f')


def playbook(text, name):
    """Run a playbook; (task seconds by task name, wall seconds)."""
    with tempfile.TemporaryDirectory(prefix='tbb-bench-') as tmp:
        path = os.path.join(tmp, name + '.yml')
        with open(path, 'w') as f:
            f.write(text)
        env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK='ansible.posix.json',
                   ANSIBLE_CALLBACK_RESULT_FORMAT='json')
        start = time.perf_counter()
        proc = subprocess.run([os.path.join(BIN, 'ansible-playbook'), path], cwd=REPO,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, check=False)
        wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError('playbook %s failed:\n%s\n%s' % (name, proc.stdout[-3000:],
                                                            proc.stderr[-3000:]))
    data = json.loads(proc.stdout[proc.stdout.index('{'):])
    tasks = {}
    for task in data['plays'][0]['tasks']:
        d = task['task']['duration']
        tasks[task['task']['name']] = (iso(d['end']) - iso(d['start'])).total_seconds()
    return tasks, wall


def bench_ip_aliases_task(n, prefix_length=32, cidr=CIDR, then=None):
    """n aliases of cidr in one ip_aliases task: (task s, playbook s, then(ns) or None)."""
    with Namespace() as ns, tempfile.TemporaryDirectory(prefix='tbb-bench-') as scratch:
        tasks, wall = playbook('''
- hosts: localhost
  gather_facts: false
  tasks:
    - name: aliases
      scalelab.testbed.ip_aliases:
        interface: %s
        netns: %s
        cidr: %s
        count: %d
        prefix_length: %d
        journal: %s/state/journal.json
''' % (DEV, ns.name, cidr, n, prefix_length, scratch), 'ip_aliases')
        assert ns.count() == n, 'ip_aliases task added %d, not %d' % (ns.count(), n)
        return tasks['aliases'], wall, then(ns) if then else None


def bench_ip_aliases_module(n):
    with Namespace() as ns, tempfile.TemporaryDirectory(prefix='tbb-bench-') as scratch:
        with tempfile.NamedTemporaryFile('w', suffix='.json', prefix='tbb-bench-') as f:
            json.dump({'ANSIBLE_MODULE_ARGS': {
                'interface': DEV, 'netns': ns.name, 'cidr': CIDR, 'count': n,
                'journal': os.path.join(scratch, 'state', 'journal.json')}}, f)
            f.flush()
            env = dict(os.environ, PYTHONPATH=os.path.join(REPO, '.collections'))
            start = time.perf_counter()
            out = run([sys.executable,
                       os.path.join(REPO, 'plugins', 'modules', 'ip_aliases.py'), f.name],
                      env=env).stdout
            seconds = time.perf_counter() - start
        result = json.loads(out)
        assert result.get('changed') and result['count'] == n, result.get('msg')
        assert ns.count() == n
        return seconds


def bench_pyroute2_one_by_one(n):
    code = '''
import sys, time
from pyroute2 import IPRoute
t = time.perf_counter()
ipr = IPRoute(groups=0)
idx = ipr.link_lookup(ifname=sys.argv[1])[0]
for a in sys.stdin.read().split():
    ipr.addr('add', index=idx, address=a, prefixlen=32)
print(time.perf_counter() - t)
'''
    with Namespace() as ns:
        proc = run(['ip', 'netns', 'exec', ns.name, sys.executable, '-c', code, DEV],
                   input='\n'.join(hosts(n)))
        assert ns.count() == n
        return float(proc.stdout.strip())


def bench_ip_loop(n):
    with Namespace() as ns:
        start = time.perf_counter()
        for a in hosts(n):
            run(['ip', '-n', ns.name, 'addr', 'add', a + '/32', 'dev', DEV])
        seconds = time.perf_counter() - start
        assert ns.count() == n
        return seconds


def bench_ip_batch(n):
    with Namespace() as ns:
        text = ''.join('addr add %s/32 dev %s\n' % (a, DEV) for a in hosts(n))
        start = time.perf_counter()
        run(['ip', '-n', ns.name, '-batch', '-'], input=text)
        seconds = time.perf_counter() - start
        assert ns.count() == n
        return seconds


def bench_command_loop(n):
    with Namespace() as ns:
        tasks, wall = playbook('''
- hosts: localhost
  gather_facts: false
  tasks:
    - name: loop
      ansible.builtin.command:
        argv: [ip, -n, %s, addr, add, "{{ item }}/32", dev, %s]
      loop: %s
      changed_when: true
''' % (ns.name, DEV, json.dumps(hosts(n))), 'command_loop')
        assert ns.count() == n
        return tasks['loop'], wall


ANYIP_CIDR = '10.122.0.0/15'        # room for 65,536 sources and more


def can_bind(ns, address, freebind):
    """Whether address can be bound (no port) inside ns, as the engine binds a source."""
    code = ('import socket; s = socket.socket(); s.setsockopt(socket.IPPROTO_IP, 24, 1)\n'
            'if %r: s.setsockopt(socket.IPPROTO_IP, 15, 1)\n'
            's.bind((%r, 0))' % (freebind, address))
    return subprocess.run(['ip', 'netns', 'exec', ns, sys.executable, '-c', code],
                          check=False, capture_output=True).returncode == 0


def last_source(n):
    net = ipaddress.ip_network(ANYIP_CIDR)
    return str(net.network_address + n)


def bench_sources_aliases(n):
    """n aliases of ANYIP_CIDR in one ip_aliases task: (task s, the last one binds)."""
    task, _playbook_s, binds = bench_ip_aliases_task(
        n, cidr=ANYIP_CIDR, then=lambda ns: can_bind(ns.name, last_source(n), False))
    return task, binds


def bench_sources_anyip(n):
    """One local route over the prefix of n sources: (task s, the last one binds)."""
    net = ipaddress.ip_network(ANYIP_CIDR)
    with Namespace() as ns, tempfile.TemporaryDirectory(prefix='tbb-bench-') as scratch:
        tasks, _wall = playbook('''
- hosts: localhost
  gather_facts: false
  tasks:
    - name: sources
      scalelab.testbed.netns:
        name: %s
        routes:
          - dst: %s
            dev: lo
            type: local
        journal: %s/state/journal.json
''' % (ns.name, net, scratch), 'sources_anyip')
        assert ns.count() == 0, 'AnyIP added addresses'
        return tasks['sources'], can_bind(ns.name, last_source(n), True)


def site_rate(n, sources):
    """site.yml at n with topology_client_sources=sources, then teardown: report figures."""
    with tempfile.TemporaryDirectory(prefix='tbb-bench-') as reports:
        argv = [os.path.join(BIN, 'ansible-playbook'), 'site.yml', '-e', 'testbed_connections=%d' % n,
                '-e', 'client_hold=3', '-e', 'topology_client_sources=%s' % sources,
                '-e', 'report_base_dir=%s' % reports]
        if sources == 'anyip':
            argv += ['-e', 'topology_client_source_count=4096']
        start = time.perf_counter()
        proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - start
        subprocess.run([os.path.join(BIN, 'ansible-playbook'), 'teardown.yml'], cwd=REPO,
                       capture_output=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError('site.yml with %s failed:\n%s' % (sources, proc.stdout[-3000:]))
        with open(os.path.join(reports, 'latest', 'report.json')) as f:
            r = json.load(f)
    return {'wall_s': round(wall, 1), 'seconds_to_target': r['seconds_to_target'],
            'connections_per_s': r['connections_per_s'], 'verified': r['verified'],
            'sources': sources}


def bench_anyip(args, res):
    res['sources'] = {}
    for n in args.anyip_counts:
        al, al_ok = bench_sources_aliases(n)
        ai, ai_ok = bench_sources_anyip(n)
        res['sources'][str(n)] = {'aliases_task_s': round(al, 3), 'anyip_task_s': round(ai, 3),
                                  'aliases_bind_ok': al_ok, 'anyip_bind_ok': ai_ok,
                                  'aliases_vs_anyip': round(al / ai, 1) if ai else None}
        print('%6d sources: aliases %7.2f s task (last one binds: %s), anyip %6.2f s task '
              '(binds: %s): %.1fx' % (n, al, al_ok, ai, ai_ok, al / ai if ai else float('nan')))
    if args.site:
        res['site'] = {}
        for sources in ('aliases', 'anyip'):
            res['site'][sources] = site_rate(args.site, sources)
            print('site.yml at %d with %-7s: %s s to the target, %s connections/s, verified %s'
                  % (args.site, sources, res['site'][sources]['seconds_to_target'],
                     res['site'][sources]['connections_per_s'], res['site'][sources]['verified']))
        a, b = (res['site'][k]['connections_per_s'] for k in ('aliases', 'anyip'))
        res['site']['anyip_vs_aliases_rate'] = round(b / a, 2) if a and b else None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    parser.add_argument('--count', type=int, default=10000,
                        help='aliases per method (default 10000)')
    parser.add_argument('--loop-count', type=int, default=200,
                        help='addresses for the ansible.builtin.command loop (default 200)')
    parser.add_argument('--skip-slow', action='store_true',
                        help='skip the per-address ip and pyroute2 loops')
    parser.add_argument('--anyip', action='store_true',
                        help='compare AnyIP (one local route) with aliases for sources')
    parser.add_argument('--anyip-counts', type=int, nargs='+', default=[10000, 65536],
                        help='source counts for --anyip (default 10000 65536)')
    parser.add_argument('--site', type=int, default=0,
                        help='with --anyip: also site.yml at this many connections with each')
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit('run as root (namespaces, addresses)')
    n = args.count
    res = {'count': n, 'loop_count': args.loop_count, 'kernel': os.uname().release,
           'loadavg_start': round(os.getloadavg()[0], 2)}
    print('load average at start: %.2f (the machine is shared; rerun if it is high)'
          % res['loadavg_start'])

    res['ip_aliases_task_s'], res['ip_aliases_playbook_s'] = bench_ip_aliases_task(n)[:2]
    print('ip_aliases, one Ansible task:     %7.2f s task, %7.2f s playbook (%d aliases)'
          % (res['ip_aliases_task_s'], res['ip_aliases_playbook_s'], n))
    res['ip_aliases_task_p16_s'] = bench_ip_aliases_task(n, 16)[0]
    print('  the same with prefix_length 16:  %7.2f s task (secondaries of one primary share '
          'their local routes\' fib_info: less kernel work)' % res['ip_aliases_task_p16_s'])
    res['ip_aliases_module_s'] = bench_ip_aliases_module(n)
    print('ip_aliases, bare module process:  %7.2f s' % res['ip_aliases_module_s'])
    res['ip_batch_s'] = bench_ip_batch(n)
    print('ip -batch:                        %7.2f s' % res['ip_batch_s'])
    if not args.skip_slow:
        res['pyroute2_one_by_one_s'] = bench_pyroute2_one_by_one(n)
        print('pyroute2 addr() one at a time:    %7.2f s' % res['pyroute2_one_by_one_s'])
        res['ip_addr_loop_s'] = bench_ip_loop(n)
        print('ip addr add, one process each:    %7.2f s' % res['ip_addr_loop_s'])
    res['command_loop_task_s'], res['command_loop_playbook_s'] = bench_command_loop(
        args.loop_count)
    print('ansible.builtin.command loop:     %7.2f s task for %d addresses'
          % (res['command_loop_task_s'], args.loop_count))

    per = {
        'ip_aliases_task': res['ip_aliases_task_s'] / n,
        'ip_aliases_module': res['ip_aliases_module_s'] / n,
        'ip_batch': res['ip_batch_s'] / n,
        'command_loop_task': res['command_loop_task_s'] / args.loop_count,
    }
    if not args.skip_slow:
        per['pyroute2_one_by_one'] = res['pyroute2_one_by_one_s'] / n
        per['ip_addr_loop'] = res['ip_addr_loop_s'] / n
    res['per_address_us'] = dict((k, round(v * 1e6, 1)) for k, v in per.items())
    print('\nper address (microseconds):')
    for k, v in sorted(res['per_address_us'].items(), key=lambda kv: kv[1]):
        print('  %-22s %10.1f' % (k, v))
    ratios = {
        'command_loop_vs_ip_aliases_task': per['command_loop_task'] / per['ip_aliases_task'],
        'ip_aliases_task_vs_ip_batch': per['ip_aliases_task'] / per['ip_batch'],
        'ip_aliases_module_vs_ip_batch': per['ip_aliases_module'] / per['ip_batch'],
    }
    if not args.skip_slow:
        ratios['ip_addr_loop_vs_ip_aliases_task'] = per['ip_addr_loop'] / per['ip_aliases_task']
        ratios['pyroute2_one_by_one_vs_ip_aliases_module'] = (
            per['pyroute2_one_by_one'] / per['ip_aliases_module'])
    res['ratios'] = dict((k, round(v, 2)) for k, v in ratios.items())
    print('\nratios (per address):')
    for k, v in res['ratios'].items():
        print('  %-42s %8.2f' % (k, v))
    if args.anyip:
        print('\nsources without aliases (AnyIP) against aliases:')
        bench_anyip(args, res)
    res['loadavg_end'] = round(os.getloadavg()[0], 2)
    res['goal_task_under_2s'] = res['ip_aliases_task_s'] < 2.0
    res['goal_50x_command_loop'] = ratios['command_loop_vs_ip_aliases_task'] >= 50
    print('\ngoal: %d aliases in < 2 s of task time: %s (%.2f s); >= 50x faster per address '
          'than the command loop: %s (%.0fx)'
          % (n, 'met' if res['goal_task_under_2s'] else 'NOT met', res['ip_aliases_task_s'],
             'met' if res['goal_50x_command_loop'] else 'NOT met',
             ratios['command_loop_vs_ip_aliases_task']))
    print(json.dumps(res, sort_keys=True))


if __name__ == '__main__':
    main()
