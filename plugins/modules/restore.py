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
  - Replays the journal, the one record of what the testbed changed on a host, written by the
    modules of this collection at the moment they made each change (and by
    M(scalelab.testbed.journal) for the steps done by other modules). Each entry holds what was there
    before the testbed first changed it.
  - The whole journal is validated first; a malformed entry fails the task, naming its field, and
    nothing is restored.
  - In this order. Systemd units it wrote are stopped (unless they ran before) and their files put
    back. NOTRACK rules the testbed added are removed. Tagged aliases it added are removed from their
    interfaces. The veth pairs and the network namespaces it created are deleted. Files get their
    previous content back (written to a temporary file and moved into place atomically), or are
    deleted with the directories created for them when the testbed created them; systemd is
    reloaded, or re-executed for a manager drop-in. Kernel parameters, namespace by namespace and
    the host last, in the reverse of the order M(scalelab.testbed.sysctls) applies them. The conntrack
    hash size. Last the directories the testbed installed (the engine, its run directory).
  - Entries of a network namespace that no longer exists are forgotten and reported in
    RV(skipped_entries) with the reason C(namespace gone).
  - Every entry restored, or found already as recorded, is removed from the journal; the journal
    (and the directory it made) is deleted once empty. An entry that cannot be restored stays in
    the journal and the task fails after restoring everything else and saving the journal, naming
    the entry and the error. So does an entry that needs the Python library C(pyroute2) when it is
    missing.
  - The records of version 0.1.0 (C(topology.json), C(notrack.json) beside the journal) are folded
    into it and removed.
  - An absent or empty journal changes nothing.
author:
  - scalelab.testbed developers (@scalelab)
extends_documentation_fragment:
  - scalelab.testbed.testbed
  - scalelab.testbed.testbed.journal
requirements:
  - pyroute2 (only for entries of network namespaces, links, routes and aliases)
options:
  kinds:
    description:
      - Which kinds of entries to restore; entries of other kinds stay in the journal.
    type: list
    elements: str
    choices: [unit, notrack, aliases, route, link, netns, file, sysctl, hashsize, path]
    default: [unit, notrack, aliases, route, link, netns, file, sysctl, hashsize, path]
notes:
  - Needs root.
seealso:
  - module: scalelab.testbed.sysctls
  - module: scalelab.testbed.fd_limits
  - module: scalelab.testbed.journal
attributes:
  check_mode:
    support: full
    details: Reports what it would restore without restoring it.
  diff_mode:
    support: full
    details: The live values and the files before and after.
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

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.scalelab.testbed.plugins.module_utils.common import run_module
from ansible_collections.scalelab.testbed.plugins.module_utils.files import remove_file
from ansible_collections.scalelab.testbed.plugins.module_utils.journal import (
    DEFAULT_JOURNAL, KINDS, Journal)
from ansible_collections.scalelab.testbed.plugins.module_utils.restore import (
    Restorer, fold_legacy_records)


def _replay(module, journal):
    legacy = fold_legacy_records(journal)
    restorer = Restorer(module, journal, module.params['kinds']).run()
    if legacy and not restorer.failed and not module.check_mode \
            and set(module.params['kinds']) == set(KINDS):
        for path in legacy:
            remove_file(path)
    return restorer, legacy


def run(module):
    path = module.params['journal']
    journal = Journal(path)
    if module.check_mode:
        restorer, legacy = _replay(module, journal.load())
    else:
        with journal.session() as loaded:
            restorer, legacy = _replay(module, loaded)
    changed = bool(restorer.restored or restorer.skipped or legacy)
    result = dict(changed=changed, restored=restorer.restored, skipped_entries=restorer.skipped,
                  journal_removed=not os.path.exists(path))
    if module._diff:
        result['diff'] = restorer.diffs
    if restorer.failed:
        result['failed_entries'] = restorer.failed
        module.fail_json(msg='%d journal entries could not be restored and stay in %s (everything '
                             'else was restored): %s'
                             % (len(restorer.failed), path,
                                '; '.join('%s %s: %s' % (f['kind'], f['key'], f['error'])
                                          for f in restorer.failed)), **result)
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            journal=dict(type='path', default=DEFAULT_JOURNAL),
            kinds=dict(type='list', elements='str', choices=list(KINDS), default=list(KINDS)),
        ),
        supports_check_mode=True,
    )
    run_module(module, run)


if __name__ == '__main__':
    main()
