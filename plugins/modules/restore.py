#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: restore
short_description: Put back everything the testbed changed, from its journal
version_added: 0.1.0
description:
  - Replays the journal written by M(scalelab.testbed.sysctls) and M(scalelab.testbed.fd_limits).
    Each entry holds the value a key or a file had before the testbed first changed it.
  - Files first. A file that existed gets its previous content back (written to a temporary file
    and moved into place atomically); a file the testbed created is deleted, with the directories
    created for it when they are left empty.
  - Then kernel parameters, namespace by namespace and the host last, in the reverse of the order
    M(scalelab.testbed.sysctls) applies them. Entries for a network namespace that no longer
    exists are forgotten and reported in RV(skipped_entries) with the reason C(namespace gone).
  - Then the conntrack hash size.
  - Every entry restored, or found already at its previous value, is removed from the journal;
    the journal file is deleted once it is empty. An entry that cannot be restored stays in the
    journal and the task fails after restoring everything else, naming it and the error.
  - An absent or empty journal changes nothing.
author:
  - scalelab.testbed developers (@scalelab)
requirements:
  - pyroute2 (only for entries of a network namespace)
options:
  journal:
    description: The journal file to replay.
    type: path
    default: /var/lib/scalelab_testbed/journal.json
  kinds:
    description:
      - Which kinds of entries to restore; entries of other kinds stay in the journal.
      - V(sysctl) kernel parameters, V(file) files, V(hashsize) the conntrack hash size.
    type: list
    elements: str
    choices: [sysctl, file, hashsize]
    default: [sysctl, file, hashsize]
notes:
  - Needs root. Entries for a network namespace need the Python library C(pyroute2) on the target.
seealso:
  - module: scalelab.testbed.sysctls
  - module: scalelab.testbed.fd_limits
attributes:
  check_mode:
    description: Can run in check mode and report what it would restore without restoring it.
    support: full
  diff_mode:
    description: Returns the live values and the files before and after.
    support: full
  platform:
    description: Target OS families it can operate on.
    support: full
    platforms: linux
'''

EXAMPLES = r'''
- name: Put the host back as it was before the testbed
  scalelab.testbed.restore:

- name: Restore only the kernel parameters of a journal kept elsewhere
  scalelab.testbed.restore:
    journal: /tmp/testbed-journal.json
    kinds: [sysctl, hashsize]
'''

RETURN = r'''
restored:
  description: What was put back (or would be, in check mode), in the order it was done.
  returned: always
  type: list
  elements: dict
  contains:
    kind:
      description: V(sysctl), V(file) or V(hashsize).
      type: str
    key:
      description: The journal key, C(<netns or ->|<key>) for a sysctl, the path for a file.
      type: str
    from:
      description: The value before the restore (for a file, whether it was present and its size).
      type: str
    to:
      description: The value restored.
      type: str
  sample: [{"kind": "sysctl", "key": "-|net.core.somaxconn", "from": "65535", "to": "4096"}]
skipped_entries:
  description:
    - Entries removed from the journal without writing anything, with the reason (C(namespace gone),
      C(already at the recorded value), ...).
    - Not called C(skipped), which Ansible reserves for a skipped task.
  returned: always
  type: list
  elements: dict
  sample: [{"kind": "sysctl", "key": "tb-client|net.ipv4.ip_local_port_range", "reason": "namespace gone"}]
failed_entries:
  description: Entries that could not be restored; they stay in the journal.
  returned: when some entry failed
  type: list
  elements: dict
journal_removed:
  description: Whether the journal file is gone (it is deleted once empty).
  returned: always
  type: bool
'''

import os

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.scalelab.testbed.plugins.module_utils import netns as ns
from ansible_collections.scalelab.testbed.plugins.module_utils import sysctl as sc
from ansible_collections.scalelab.testbed.plugins.module_utils.journal import (
    DEFAULT_JOURNAL, KIND_FILE, KIND_HASHSIZE, KIND_SYSCTL, KINDS, Journal, atomic_write,
    describe_content, plan_file_restore, read_text, remove_file, split_sysctl_key)


class Restorer(object):

    def __init__(self, module, journal):
        self.module = module
        self.journal = journal
        self.check = module.check_mode
        self.restored = []
        self.skipped = []
        self.failed = []
        self.diffs = []

    def forget(self, kind, key):
        if not self.check:
            self.journal.forget(kind, key)
        else:
            self.journal.dirty = True

    def skip(self, kind, key, reason):
        self.skipped.append({'kind': kind, 'key': key, 'reason': reason})
        self.forget(kind, key)

    # ------------------------------------------------------------- files
    def files(self):
        entries = dict(self.journal.entries(KIND_FILE))
        current = {}
        for path in entries:
            try:
                current[path] = read_text(path)
            except (IOError, OSError) as exc:
                self.failed.append({'kind': KIND_FILE, 'key': path, 'error': 'cannot read: %s' % exc})
        for action in plan_file_restore(dict((p, e) for p, e in entries.items() if p in current), current):
            path = action['path']
            if action['action'] == 'none':
                if action['content'] is None and action['created_dirs'] and not self.check:
                    remove_file(path, action['created_dirs'])  # the directories made for it
                self.skip(KIND_FILE, path, 'already as recorded')
                continue
            try:
                if not self.check:
                    if action['action'] == 'write':
                        atomic_write(self.module, path, action['content'])
                    else:
                        remove_file(path, action['created_dirs'])
            except (IOError, OSError) as exc:
                self.failed.append({'kind': KIND_FILE, 'key': path, 'error': str(exc)})
                continue
            self.restored.append({'kind': KIND_FILE, 'key': path, 'from': describe_content(action['before']),
                                  'to': describe_content(action['content'])})
            self.diffs.append({'before_header': path, 'after_header': path,
                               'before': action['before'] or '', 'after': action['content'] or ''})
            self.forget(KIND_FILE, path)

    # ----------------------------------------------------------- sysctls
    def sysctls(self):
        scopes = {}
        for jkey, entry in self.journal.entries(KIND_SYSCTL).items():
            netns, key = split_sysctl_key(jkey)
            scopes.setdefault(netns, {})[key] = (jkey, entry.get('previous'))
        # named namespaces first (sorted), the host last
        for netns in sorted((s for s in scopes if s is not None)) + ([None] if None in scopes else []):
            items = scopes[netns]
            if netns is not None and not ns.netns_exists(netns):
                for key in sorted(items):
                    self.skip(KIND_SYSCTL, items[key][0], 'namespace gone')
                continue
            if netns is not None and not ns.HAS_PYROUTE2:
                self.module.fail_json(msg=missing_required_lib('pyroute2'),
                                      exception=str(ns.PYROUTE2_IMPORT_ERROR))
            self._scope(netns, items)

    def _scope(self, netns, items):
        before, after = {}, {}
        with ns.enter_netns(netns):
            previous = {}
            for key in sorted(items):
                jkey, value = items[key]
                if value is None:
                    self.skip(KIND_SYSCTL, jkey, 'no previous value recorded')
                    continue
                previous[key] = sc.tokens_of(value)
            states = sc.probe(previous)
            current = dict((k, s['value']) for k, s in states.items() if s['readable'])
            for key in sc.order_keys(previous, previous, current, restore=True):
                jkey = items[key][0]
                if not states[key]['exists']:
                    self.skip(KIND_SYSCTL, jkey, 'key no longer exists')
                    continue
                if sc.values_equal(current.get(key), previous[key]):
                    self.skip(KIND_SYSCTL, jkey, 'already at the recorded value')
                    continue
                try:
                    if not self.check:
                        sc.write_tokens(key, previous[key])
                except OSError as exc:
                    self.failed.append({'kind': KIND_SYSCTL, 'key': jkey, 'error': sc.errno_text(exc)})
                    continue
                before[key], after[key] = current.get(key), previous[key]
                self.restored.append({'kind': KIND_SYSCTL, 'key': jkey,
                                      'from': sc.format_tokens(current.get(key)),
                                      'to': sc.format_tokens(previous[key])})
                self.forget(KIND_SYSCTL, jkey)
        if before:
            where = 'live values (netns %s)' % netns if netns else 'live values'
            self.diffs.append({'before_header': where, 'after_header': where,
                               'before': sc.render_values(before), 'after': sc.render_values(after)})

    # ---------------------------------------------------------- hashsize
    def hashsize(self):
        for path, entry in sorted(self.journal.entries(KIND_HASHSIZE).items()):
            value = entry.get('previous')
            if value is None:
                self.skip(KIND_HASHSIZE, path, 'no previous value recorded')
                continue
            if not os.path.exists(path):
                self.skip(KIND_HASHSIZE, path, 'nf_conntrack is no longer loaded (its hash size '
                                               'starts from the default when it loads again)')
                continue
            try:
                now = sc.read_tokens(sc.HASHSIZE_KEY)
                wanted = sc.tokens_of(value)
                if sc.values_equal(now, wanted):
                    self.skip(KIND_HASHSIZE, path, 'already at the recorded value')
                    continue
                if not self.check:
                    sc.write_tokens(sc.HASHSIZE_KEY, wanted)
            except (IOError, OSError) as exc:
                self.failed.append({'kind': KIND_HASHSIZE, 'key': path, 'error': sc.errno_text(exc)})
                continue
            self.restored.append({'kind': KIND_HASHSIZE, 'key': path, 'from': ' '.join(now), 'to': value})
            self.diffs.append({'before_header': path, 'after_header': path,
                               'before': ' '.join(now) + '\n', 'after': value + '\n'})
            self.forget(KIND_HASHSIZE, path)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            journal=dict(type='path', default=DEFAULT_JOURNAL),
            kinds=dict(type='list', elements='str', choices=list(KINDS), default=list(KINDS)),
        ),
        supports_check_mode=True,
    )
    path = module.params['journal']
    try:
        journal = Journal(path)
    except (ValueError, IOError, OSError) as exc:
        module.fail_json(msg='journal: cannot read %s: %s (fix it, or move it away if it is not a '
                             'scalelab.testbed journal)' % (path, exc))
    kinds = module.params['kinds']
    restorer = Restorer(module, journal)
    if KIND_FILE in kinds:
        restorer.files()
    if KIND_SYSCTL in kinds:
        restorer.sysctls()
    if KIND_HASHSIZE in kinds:
        restorer.hashsize()

    changed = bool(restorer.restored) or journal.dirty
    if not module.check_mode:
        try:
            journal.save()
        except (IOError, OSError) as exc:
            module.fail_json(msg='journal: restored %d entries but cannot write %s: %s'
                                 % (len(restorer.restored), path, exc),
                             restored=restorer.restored, changed=True)
    result = dict(changed=changed, restored=restorer.restored, skipped_entries=restorer.skipped,
                  journal_removed=not os.path.exists(path))
    if module._diff:
        result['diff'] = restorer.diffs
    if restorer.failed:
        result['failed_entries'] = restorer.failed
        module.fail_json(msg='%d journal entries could not be restored and stay in %s: %s'
                             % (len(restorer.failed), path,
                                '; '.join('%s %s: %s' % (f['kind'], f['key'], f['error'])
                                          for f in restorer.failed)), **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
