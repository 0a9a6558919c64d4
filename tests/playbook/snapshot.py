# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Snapshot of what the testbed may change on a host, to compare before/after.

Kernel keys: every key the roles can set (host namespace), read from
/proc/sys, plus the conntrack hash size. Files: every file (path, mode,
content hash, symlink target) under the directories the roles and modules
write to. Runnable alone: ``python3 snapshot.py > before.json``.
"""

import hashlib
import json
import os
import sys

KEYS = [
    'fs/file-max', 'fs/nr_open',
    'net/core/netdev_max_backlog', 'net/core/somaxconn',
    'net/ipv4/ip_local_port_range', 'net/ipv4/tcp_child_ehash_entries',
    'net/ipv4/tcp_max_syn_backlog', 'net/ipv4/tcp_max_tw_buckets', 'net/ipv4/tcp_tw_reuse',
    'net/netfilter/nf_conntrack_max', 'net/netfilter/nf_conntrack_buckets',
]
EXTRA = ['/sys/module/nf_conntrack/parameters/hashsize']
DIRS = ['/etc/sysctl.d', '/etc/security/limits.d', '/etc/systemd']
FILES = ['/etc/sysctl.conf', '/etc/security/limits.conf']


def _read(path):
    try:
        with open(path) as f:
            return ' '.join(f.read().split())
    except OSError as exc:
        return '<%s>' % exc.__class__.__name__


def _file(path):
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if os.path.islink(path):
        return {'link': os.readlink(path)}
    if os.path.isdir(path):
        return {'dir': oct(st.st_mode & 0o7777)}
    with open(path, 'rb') as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    return {'mode': oct(st.st_mode & 0o7777), 'sha256': digest}


def snapshot():
    ours = ('tb-server', 'tb-client')
    snap = {'sysctl': {}, 'files': {}, 'netns': sorted(
        n for n in (os.listdir('/var/run/netns') if os.path.isdir('/var/run/netns') else [])
        if n in ours)}
    for key in KEYS:
        snap['sysctl'][key] = _read('/proc/sys/' + key)
    for path in EXTRA:
        snap['sysctl'][path] = _read(path)
    for top in DIRS:
        for root, dirs, files in os.walk(top):
            dirs.sort()
            for name in sorted(dirs) + sorted(files):
                path = os.path.join(root, name)
                snap['files'][path] = _file(path)
    for path in FILES:
        snap['files'][path] = _file(path)
    return snap


def diff(before, after):
    """Readable differences between two snapshots (empty when equal)."""
    out = []
    for kind in ('sysctl', 'files'):
        keys = sorted(set(before[kind]) | set(after[kind]))
        for k in keys:
            if before[kind].get(k) != after[kind].get(k):
                out.append('%s %s: %r -> %r' % (kind, k, before[kind].get(k), after[kind].get(k)))
    if before.get('netns') != after.get('netns'):
        out.append('netns: %r -> %r' % (before.get('netns'), after.get('netns')))
    return out


if __name__ == '__main__':
    json.dump(snapshot(), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write('\n')
