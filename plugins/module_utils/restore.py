# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Replay the journal: every change the testbed made, put back.

The journal is validated whole before anything is restored (a malformed
entry names its field and nothing is touched). Kinds are replayed in
journal.KINDS order: systemd units (stopped first), NOTRACK rules, aliases, veths,
namespaces, files, sysctls (named namespaces first, the host last), the conntrack hash
size, installed paths; systemd is reloaded or re-executed once its files are
back. Each entry restored, or found already as recorded, is forgotten;
an entry that fails stays, with the reason. When a library is missing
(pyroute2, for namespaces), the entries that need it stay and everything
else is still restored and saved.
"""

from __future__ import annotations

import json
import os

from ansible_collections.scalelab.testbed.plugins.module_utils import netns as ns
from ansible_collections.scalelab.testbed.plugins.module_utils import sysctl as sc
from ansible_collections.scalelab.testbed.plugins.module_utils.common import (
    TestbedError, systemd_running)
from ansible_collections.scalelab.testbed.plugins.module_utils.files import (
    describe_content, read_text, remove_file, remove_tree, write_atomic)
from ansible_collections.scalelab.testbed.plugins.module_utils.journal import (
    KIND_ALIASES, KIND_FILE, KIND_HASHSIZE, KIND_LINK, KIND_NETNS, KIND_NOTRACK, KIND_PATH,
    KIND_ROUTE, KIND_SYSCTL, KIND_UNIT, KINDS, scoped_key, split_scoped_key)
from ansible_collections.scalelab.testbed.plugins.module_utils.transaction import error_text

# The records of version 0.1.0, beside the journal; folded into it on restore.
LEGACY_RECORDS = ('topology.json', 'notrack.json')


class Restorer(object):
    """Restores one journal (loaded, locked) with the help of an AnsibleModule."""

    def __init__(self, module, journal, kinds):
        self.module = module
        self.journal = journal
        self.kinds = [k for k in KINDS if k in kinds]
        self.check = module.check_mode
        self.restored, self.skipped, self.failed, self.diffs = [], [], [], []
        self.reloads = set()

    # --- bookkeeping
    def done(self, kind, key, before, after, diff=None):
        self.restored.append({'kind': kind, 'key': key, 'from': before, 'to': after})
        if diff:
            self.diffs.append(diff)
        self.forget(kind, key)

    def skip(self, kind, key, reason):
        self.skipped.append({'kind': kind, 'key': key, 'reason': reason})
        self.forget(kind, key)

    def fail(self, kind, key, error):
        self.failed.append({'kind': kind, 'key': key, 'error': error})

    def forget(self, kind, key):
        if not self.check:
            self.journal.forget(kind, key)

    def command(self, argv, netns=None, check=True):
        with ns.enter_netns(netns):
            rc, out, err = self.module.run_command(argv)
        if check and rc != 0:
            raise OSError('%s failed (rc %d): %s' % (' '.join(argv), rc, (err or out).strip()))
        return rc

    def needs_pyroute2(self, kind, key, entry):
        if kind in (KIND_ALIASES, KIND_LINK, KIND_NETNS, KIND_ROUTE):
            return True
        if kind == KIND_SYSCTL:
            return split_scoped_key(key)[0] is not None
        return bool(entry.get('netns'))

    # --- the replay
    def run(self):
        for kind in self.kinds:
            entries = dict(self.journal.entries(kind))
            if not ns.HAS_PYROUTE2:
                for key in sorted(k for k, e in entries.items() if self.needs_pyroute2(kind, k, e)):
                    self.fail(kind, key, 'needs the Python library pyroute2 on the target (%s)'
                              % ns.PYROUTE2_IMPORT_ERROR)
                    entries.pop(key)
            getattr(self, 'restore_' + kind)(entries)
            if kind == KIND_FILE:
                self.reload_systemd()
        return self

    def restore_notrack(self, entries):
        for key, entry in sorted(entries.items(), key=lambda kv: -kv[1].get('time', 0)):
            netns = entry.get('netns')
            if netns and not ns.netns_exists(netns):
                self.skip(KIND_NOTRACK, key, 'namespace gone')
                continue
            try:
                self._remove_rule(entry, netns)
            except (OSError, TestbedError) as exc:
                self.fail(KIND_NOTRACK, key, str(exc))
                continue
            self.done(KIND_NOTRACK, key, 'present', 'absent')

    def _remove_rule(self, entry, netns):
        if entry['backend'] == 'nft':
            nft = self.module.get_bin_path('nft', required=True)
            argv = [nft, 'list', 'table', entry['family'], entry['table']]
            if self.command(argv, netns, check=False) == 0 and not self.check:
                self.command([nft, 'delete', 'table', entry['family'], entry['table']], netns)
            return
        binary = self.module.get_bin_path('ip6tables' if entry['family'] == 'ipv6' else 'iptables',
                                          required=True)
        rule = [entry['chain']] + list(entry['rule'])
        if self.command([binary, '-t', entry['table'], '-C'] + rule, netns, check=False) == 0 \
                and not self.check:
            self.command([binary, '-t', entry['table'], '-D'] + rule, netns)

    def _each_scoped(self, kind, entries, remove, what):
        """Remove what each scoped entry made; remove(netns, name) says whether it was there."""
        for key in sorted(entries):
            netns, name = split_scoped_key(key)
            if netns is not None and not ns.netns_exists(netns):
                self.skip(kind, key, 'namespace gone (its %s went with it)' % what)
                continue
            try:
                found = True if self.check else remove(netns, name)
            except (OSError, TestbedError) as exc:
                self.fail(kind, key, error_text(exc))
                continue
            if found:
                self.done(kind, key, 'present', 'absent')
            else:
                self.skip(kind, key, 'already gone')

    def restore_aliases(self, entries):
        from ansible_collections.scalelab.testbed.plugins.module_utils import addresses
        self._each_scoped(KIND_ALIASES, entries, addresses.remove_tagged, 'addresses')

    def restore_route(self, entries):
        """Each route back to what it replaced, or removed where there was none."""
        from ansible_collections.scalelab.testbed.plugins.module_utils import links
        for key, entry in sorted(entries.items()):
            netns, name = split_scoped_key(key)
            if netns is not None and not ns.netns_exists(netns):
                self.skip(KIND_ROUTE, key, 'namespace gone (its routes went with it)')
                continue
            kind, _sep, dst = name.partition(' ')
            try:
                found = True if self.check else links.put_back_route(netns, kind, dst,
                                                                     entry['previous'])
            except (OSError, TestbedError) as exc:
                self.fail(KIND_ROUTE, key, error_text(exc))
                continue
            if found:
                self.done(KIND_ROUTE, key, 'present', entry['previous'] or 'absent')
            else:
                self.skip(KIND_ROUTE, key, 'already as it was')

    def restore_link(self, entries):
        from ansible_collections.scalelab.testbed.plugins.module_utils import links
        self._each_scoped(KIND_LINK, entries, links.delete_link, 'links')

    def restore_netns(self, entries):
        for name in sorted(entries):
            if not ns.netns_exists(name):
                self.skip(KIND_NETNS, name, 'already gone')
                continue
            pids = ns.netns_pids(name)
            if pids:
                self.module.warn('processes %s still run in network namespace %s: it is unnamed now '
                                 'but lives on until they exit' % (', '.join(map(str, pids[:10])), name))
            try:
                if not self.check:
                    ns.remove_netns(name)
            except (OSError, TestbedError) as exc:
                self.fail(KIND_NETNS, name, error_text(exc))
                continue
            self.done(KIND_NETNS, name, 'present', 'absent')

    def restore_unit(self, entries):
        systemctl = self.module.get_bin_path('systemctl') if systemd_running() else None
        for unit, entry in sorted(entries.items()):
            try:
                if systemctl and not entry.get('active') and not self.check:
                    self.command([systemctl, 'stop', unit], check=False)
                before = read_text(entry['path'])
                if before != entry['previous'] and not self.check:
                    if entry['previous'] is None:
                        remove_file(entry['path'])
                    else:
                        write_atomic(entry['path'], entry['previous'], module=self.module)
            except (IOError, OSError) as exc:
                self.fail(KIND_UNIT, unit, error_text(exc))
                continue
            self.reloads.add('daemon-reload')
            self.done(KIND_UNIT, unit, describe_content(before), describe_content(entry['previous']))

    def restore_file(self, entries):
        for path, entry in sorted(entries.items()):
            previous = entry['previous']
            try:
                now = read_text(path)
                if now == previous:
                    if previous is None and not self.check:
                        remove_file(path, entry.get('created_dirs'))    # the directories made for it
                    self.skip(KIND_FILE, path, 'already as recorded')
                    continue
                if not self.check:
                    if previous is None:
                        remove_file(path, entry.get('created_dirs'))
                    else:
                        write_atomic(path, previous, module=self.module)
            except (IOError, OSError) as exc:
                self.fail(KIND_FILE, path, error_text(exc))
                continue
            if entry.get('reload'):
                self.reloads.add(entry['reload'])
            self.done(KIND_FILE, path, describe_content(now), describe_content(previous),
                      {'before_header': path, 'after_header': path, 'before': now or '',
                       'after': previous or ''})

    def reload_systemd(self):
        """Reload (units, unit drop-ins) or re-execute (manager drop-ins) systemd once."""
        systemctl = self.module.get_bin_path('systemctl') if systemd_running() else None
        if not systemctl or self.check:
            return
        for action in ('daemon-reexec', 'daemon-reload'):
            if action in self.reloads:
                rc = self.command([systemctl, action], check=False)
                if rc != 0:
                    self.fail('systemd', action, 'systemctl %s exited %d' % (action, rc))
                if action == 'daemon-reexec':
                    break               # a re-execution reloads the units too
        self.reloads.clear()

    def restore_sysctl(self, entries):
        scopes = {}
        for key, entry in entries.items():
            netns, name = split_scoped_key(key)
            scopes.setdefault(netns, {})[name] = (key, entry['previous'])
        # named namespaces first (sorted), the host last
        for netns in sorted(s for s in scopes if s is not None) + ([None] if None in scopes else []):
            if netns is not None and not ns.netns_exists(netns):
                for name in sorted(scopes[netns]):
                    self.skip(KIND_SYSCTL, scopes[netns][name][0], 'namespace gone')
                continue
            self._sysctl_scope(netns, scopes[netns])

    def _sysctl_scope(self, netns, items):
        before, after = {}, {}
        with ns.enter_netns(netns):
            previous = dict((name, sc.tokens_of(value)) for name, (_k, value) in items.items())
            states = sc.probe(previous)
            current = dict((k, s['value']) for k, s in states.items() if s['readable'])
            for name in sc.order_keys(previous, previous, current, restore=True):
                key = items[name][0]
                if not states[name]['exists']:
                    self.skip(KIND_SYSCTL, key, 'key no longer exists')
                elif sc.values_equal(current.get(name), previous[name]):
                    self.skip(KIND_SYSCTL, key, 'already at the recorded value')
                else:
                    try:
                        if not self.check:
                            sc.write_tokens(name, previous[name])
                    except OSError as exc:
                        self.fail(KIND_SYSCTL, key, sc.errno_text(exc))
                        continue
                    before[name], after[name] = current.get(name), previous[name]
                    self.done(KIND_SYSCTL, key, sc.format_tokens(current.get(name)),
                              sc.format_tokens(previous[name]))
        if before:
            where = 'live values (netns %s)' % netns if netns else 'live values'
            self.diffs.append({'before_header': where, 'after_header': where,
                               'before': sc.render_values(before), 'after': sc.render_values(after)})

    def restore_hashsize(self, entries):
        for path, entry in sorted(entries.items()):
            if not os.path.exists(path):
                self.skip(KIND_HASHSIZE, path, 'nf_conntrack is no longer loaded (its hash size '
                                               'starts from the default when it loads again)')
                continue
            try:
                now = sc.read_tokens(sc.HASHSIZE_KEY)
                wanted = sc.tokens_of(entry['previous'])
                if sc.values_equal(now, wanted):
                    self.skip(KIND_HASHSIZE, path, 'already at the recorded value')
                    continue
                if not self.check:
                    sc.write_tokens(sc.HASHSIZE_KEY, wanted)
            except (IOError, OSError) as exc:
                self.fail(KIND_HASHSIZE, path, sc.errno_text(exc))
                continue
            self.done(KIND_HASHSIZE, path, ' '.join(now), entry['previous'],
                      {'before_header': path, 'after_header': path,
                       'before': ' '.join(now) + '\n', 'after': entry['previous'] + '\n'})

    def restore_path(self, entries):
        for path in sorted(entries, key=len, reverse=True):
            if not os.path.lexists(path):
                self.skip(KIND_PATH, path, 'already gone')
                continue
            try:
                if not self.check:
                    remove_tree(path)
            except (IOError, OSError) as exc:
                self.fail(KIND_PATH, path, error_text(exc))
                continue
            self.done(KIND_PATH, path, 'present', 'absent')


def fold_legacy_records(journal):
    """Entries from the 0.1.0 records (topology.json, notrack.json) beside the journal.

    Returns the paths of the records found; they are removed once restored.
    """
    directory = os.path.dirname(journal.path)
    found = []
    for name in LEGACY_RECORDS:
        path = os.path.join(directory, name)
        text = read_text(path)
        if text is None:
            continue
        found.append(path)
        try:
            data = json.loads(text)
        except ValueError:
            continue
        if name == 'topology.json' and isinstance(data, dict):
            for netns in data.get('netns') or []:
                journal.record(KIND_NETNS, str(netns), None)
            for interface in data.get('interfaces') or []:
                journal.record(KIND_ALIASES, scoped_key(None, str(interface)), None)
        elif name == 'notrack.json' and isinstance(data, list):
            for rule in data:
                port = rule.get('dport') or rule.get('sport')
                tokens = ['-p', 'tcp', '--dport' if rule.get('dport') else '--sport', str(port),
                          '-m', 'comment', '--comment', 'scalelab-testbed', '-j', 'NOTRACK']
                journal.record(KIND_NOTRACK, '|'.join(['iptables', 'ipv4', 'raw', rule['chain'],
                                                       ' '.join(tokens)]),
                               None, backend='iptables', family='ipv4', table='raw',
                               chain=rule['chain'], rule=tokens)
    return found
