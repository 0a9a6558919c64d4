# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the testbed may change on a fleet host, as one JSON document on stdout.

Run inside a host (prepare.yml runs it with ansible.builtin.script before
converge; the verifier runs it again after teardown and compares):

* every readable key under /proc/sys/net (the host's own network namespace:
  its sysctls) and the global fs keys the tuning role touches;
* every file (mode, sha256, link target) under limits.d, sysctl.d, the
  systemd unit directories (drop-ins, units, transient units) and the
  testbed's own directories;
* the nftables ruleset and, where installed, iptables-save of the raw table;
* the addresses of every interface (pyroute2, as the collection reads them),
  the named network namespaces, the testbed's systemd units, and the
  manager's default nofile limits (systemctl show).

Standard library, plus pyroute2 (the image has it: the collection's modules
need it on the targets).
"""

import hashlib
import json
import os
import subprocess
import sys

SYSCTL_TREES = ['/proc/sys/net']
SYSCTL_FILES = ['/proc/sys/fs/file-max', '/proc/sys/fs/nr_open']
# counters and per-boot values, not settings
VOLATILE = ('nf_conntrack_count', 'nf_conntrack_events_retry_timeout', 'stable_secret',
            'tcp_fastopen_key', 'base_reachable_time', 'flush')
# directories of the system, by their contents (systemd makes
# /run/systemd/transient for the first transient unit and keeps it, empty)
SYSTEM_DIRS = ['/etc/sysctl.d', '/etc/security/limits.d', '/etc/systemd/system',
               '/etc/systemd/system.conf.d', '/run/systemd/system', '/run/systemd/transient']
# the testbed's own: whether they exist at all, and their contents
OWN_DIRS = ['/var/lib/scalelab_testbed', '/opt/scalelab_testbed', '/run/scalelab_testbed']
FILES = ['/etc/sysctl.conf', '/etc/security/limits.conf', '/etc/systemd/system.conf']


def _read(path):
    try:
        with open(path) as f:
            return ' '.join(f.read().split())
    except OSError as exc:
        return '<%s>' % exc.__class__.__name__


def sysctls():
    out = {}
    for top in SYSCTL_TREES:
        for root, dirs, files in os.walk(top):
            dirs.sort()
            for name in sorted(files):
                if name in VOLATILE:
                    continue
                path = os.path.join(root, name)
                if os.stat(path).st_mode & 0o444:
                    out[path[len('/proc/sys/'):]] = _read(path)
    for path in SYSCTL_FILES:
        out[path[len('/proc/sys/'):]] = _read(path)
    return out


def _file(path):
    st = os.lstat(path)
    if os.path.islink(path):
        return {'link': os.readlink(path)}
    if os.path.isdir(path):
        return {'dir': oct(st.st_mode & 0o7777)}
    with open(path, 'rb') as f:
        return {'mode': oct(st.st_mode & 0o7777), 'sha256': hashlib.sha256(f.read()).hexdigest()}


def files():
    out = {}
    for top in SYSTEM_DIRS + OWN_DIRS:
        if top in OWN_DIRS:
            out[top] = _file(top) if os.path.lexists(top) else None
        for root, dirs, names in os.walk(top):
            dirs.sort()
            for name in sorted(dirs) + sorted(names):
                path = os.path.join(root, name)
                out[path] = _file(path)
    for path in FILES:
        out[path] = _file(path) if os.path.lexists(path) else None
    return out


def _run(argv):
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    except OSError as exc:
        return '<%s>' % exc.__class__.__name__
    return proc.stdout.decode('utf-8', 'replace').strip()


def addresses():
    from pyroute2 import IPRoute  # pylint: disable=import-outside-toplevel
    with IPRoute() as ipr:
        names = dict((link['index'], link.get_attr('IFLA_IFNAME')) for link in ipr.get_links())
        return sorted('%s %s/%d' % (names.get(a['index'], a['index']),
                                    a.get_attr('IFA_ADDRESS'), a['prefixlen'])
                      for a in ipr.get_addr())


def units():
    listing = _run(['systemctl', 'list-units', '--all', '--plain', '--no-legend', '--full',
                    'scalelab*', 'tcpscale*'])
    return sorted(line.split()[0] for line in listing.splitlines() if line.strip())


def snapshot():
    return {
        'sysctl': sysctls(),
        'files': files(),
        'nft': _run(['nft', 'list', 'ruleset']),
        'iptables': _run(['iptables-save', '-t', 'raw']) if os.path.exists('/usr/sbin/iptables-save') else None,
        'addresses': addresses(),
        'netns': sorted(os.listdir('/run/netns')) if os.path.isdir('/run/netns') else [],
        'units': units(),
        'manager': _run(['systemctl', 'show', '--property', 'DefaultLimitNOFILE',
                         '--property', 'DefaultLimitNOFILESoft']).split(),
    }


def diff(before, after):
    """Readable differences between two snapshots (empty when equal)."""
    out = []
    for kind in ('sysctl', 'files'):
        for key in sorted(set(before[kind]) | set(after[kind])):
            if before[kind].get(key) != after[kind].get(key):
                out.append('%s %s: %r -> %r' % (kind, key, before[kind].get(key), after[kind].get(key)))
    for kind in ('nft', 'iptables', 'addresses', 'netns', 'units', 'manager'):
        if before.get(kind) != after.get(kind):
            out.append('%s: %r -> %r' % (kind, before.get(kind), after.get(kind)))
    return out


if __name__ == '__main__':
    json.dump(snapshot(), sys.stdout, sort_keys=True)
    sys.stdout.write('\n')
