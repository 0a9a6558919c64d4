#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: journal
short_description: Record in the testbed's journal what a following task is about to change
version_added: 0.2.0
description:
  - The modules of this collection record their own changes. This module records, before it
    happens, a change that a task of another module makes (M(ansible.builtin.file),
    M(ansible.builtin.copy), M(ansible.builtin.template)), so that M(scalelab.testbed.restore)
    puts it back like every other change.
  - V(path) records a directory or file the testbed is about to create. Nothing is recorded when it
    exists already (it is not the testbed's, and teardown leaves it).
  - V(file) records the content of a file (or its absence) before it is written.
  - V(unit) records a systemd unit file before it is written, and whether the unit was active;
    teardown stops the unit (unless it ran before), puts the file back and reloads systemd.
  - The first record of a key wins, so running the play again changes nothing.
author:
  - scalelab.testbed developers (@scalelab)
extends_documentation_fragment:
  - scalelab.testbed.testbed
  - scalelab.testbed.testbed.journal
options:
  path:
    description: The directory or file about to be created or written (the unit file for V(unit)).
    type: path
    required: true
  kind:
    description: What is recorded (see the description).
    type: str
    choices: [path, file, unit]
    default: path
  unit:
    description: The unit the file of O(path) defines, for O(kind=unit).
    type: str
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
notes:
  - Needs root.
seealso:
  - module: scalelab.testbed.restore
'''

EXAMPLES = r'''
- name: Record the install directory before it is made
  scalelab.testbed.journal:
    path: /opt/scalelab_testbed

- name: Record the unit file before it is written
  scalelab.testbed.journal:
    kind: unit
    path: /etc/systemd/system/scalelab-testbed-server.service
    unit: scalelab-testbed-server.service

- name: Write it
  ansible.builtin.template:
    src: server.service.j2
    dest: /etc/systemd/system/scalelab-testbed-server.service
    mode: "0644"
'''

RETURN = r'''
recorded:
  description: Whether an entry was added (or would be, in check mode).
  returned: always
  type: bool
kind:
  description: The journal kind of the entry (C(path), C(file), C(unit)).
  returned: always
  type: str
key:
  description: The journal key of the entry (the path, or the unit).
  returned: always
  type: str
'''

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.scalelab.testbed.plugins.module_utils import limits as lm
from ansible_collections.scalelab.testbed.plugins.module_utils.common import (
    TestbedError, run_module, systemd_running)
from ansible_collections.scalelab.testbed.plugins.module_utils.files import read_text
from ansible_collections.scalelab.testbed.plugins.module_utils.journal import (
    DEFAULT_JOURNAL, KIND_FILE, KIND_PATH, KIND_UNIT, Journal)


def _unit_active(module, unit):
    if not systemd_running():
        return False
    systemctl = module.get_bin_path('systemctl')
    if systemctl is None:
        return False
    rc, _out, _err = module.run_command([systemctl, 'is-active', '--quiet', unit])
    return rc == 0


def _entry(module):
    """(kind, key, previous, extra) of what to record, or None when nothing is."""
    p = module.params
    path = os.path.normpath(p['path'])
    if not os.path.isabs(path):
        raise TestbedError('path', '%r is not an absolute path' % p['path'], 'give a path from /')
    if p['kind'] == 'path':
        return None if os.path.lexists(path) else (KIND_PATH, path, None, {})
    if p['kind'] == 'file':
        return KIND_FILE, path, read_text(path), {}
    if not p['unit']:
        raise TestbedError('unit', 'kind unit needs the unit name', 'give unit: NAME.service')
    unit = lm.validate_unit(p['unit'], 'unit')
    return KIND_UNIT, unit, read_text(path), {'path': path, 'active': _unit_active(module, unit)}


def run(module):
    entry = _entry(module)
    kind = key = None
    recorded = False
    if entry is not None:
        kind, key, previous, extra = entry
        journal = Journal(module.params['journal'])
        if module.check_mode:
            journal.load()
            recorded = journal.get(kind, key) is None
        else:
            with journal.session(create=True):
                recorded = journal.record(kind, key, previous, **extra)
    return dict(changed=recorded, recorded=recorded, kind=kind or module.params['kind'],
                key=key or os.path.normpath(module.params['path']))


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type='path', required=True),
            kind=dict(type='str', choices=['path', 'file', 'unit'], default='path'),
            unit=dict(type='str'),
            journal=dict(type='path', default=DEFAULT_JOURNAL),
        ),
        required_if=[('kind', 'unit', ('unit',))],
        supports_check_mode=True,
    )
    run_module(module, run)


if __name__ == '__main__':
    main()
