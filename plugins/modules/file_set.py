#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: file_set
short_description: Keep the files of a directory equal to a set of contents, in one task
version_added: 0.3.0
description:
  - Writes each file of O(files) into the directory O(dest) whose content differs (or that is
    missing), atomically (a temporary file beside it, then a rename), and leaves the others
    alone. With O(prune), the other regular files of O(dest) are removed.
  - The contents travel with the module's arguments, so the whole set costs one module run.
    M(ansible.builtin.copy) of a directory, or in a loop, costs two module runs per file (about
    0.4 s each even when nothing changes), which for the load engine's package was 10 s a host.
  - Meant for a set of small text files (the collection uses it for the load engine's package,
    C(files/tcpscale/*.py)).
author:
  - scalelab.testbed developers (@scalelab)
extends_documentation_fragment:
  - scalelab.testbed.testbed
options:
  dest:
    description: The directory the files go in. It must exist (this module never creates it);
      in check mode a missing one is taken as empty.
    type: path
    required: true
  files:
    description:
      - File name (no directory part) to content (text, written as UTF-8).
      - A name with C(/), a leading dot or anything but letters, digits, C(_), C(-) and C(.)
        is refused.
    type: dict
    required: true
  mode:
    description: Mode of the files written (octal, as a string).
    type: str
    default: '0644'
  prune:
    description: Remove the regular files of O(dest) that are not in O(files) (symlinks and
      directories are left alone).
    type: bool
    default: false
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
notes:
  - The files are compared by content; a file whose content is right but whose mode differs is
    rewritten with O(mode).
seealso:
  - module: ansible.builtin.copy
'''

EXAMPLES = r'''
- name: Install the load engine's package (one module run for all its files)
  scalelab.testbed.file_set:
    dest: /opt/scalelab_testbed/tcpscale
    files: "{{ dict(engine_files | map('basename') | zip(query('ansible.builtin.file', *engine_files, rstrip=false))) }}"
    prune: true
  vars:
    engine_files: "{{ query('ansible.builtin.fileglob', role_path ~ '/../../files/tcpscale/*.py') | sort }}"
'''

RETURN = r'''
written:
  description: The names written (or that would be, in check mode), sorted.
  returned: always
  type: list
  elements: str
  sample: [client.py]
removed:
  description: The names removed by O(prune) (or that would be), sorted.
  returned: always
  type: list
  elements: str
unchanged:
  description: How many files of O(files) were already right.
  returned: always
  type: int
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.scalelab.testbed.plugins.module_utils.common import run_module
from ansible_collections.scalelab.testbed.plugins.module_utils.files import (
    apply_file_set, plan_file_set)


def run(module):
    p = module.params
    plan = plan_file_set(p['dest'], p['files'], p['mode'], p['prune'], module.check_mode)
    changed = bool(plan['write'] or plan['remove'])
    if changed and not module.check_mode:
        apply_file_set(plan, module)
    result = dict(changed=changed, written=sorted(plan['write']), removed=sorted(plan['remove']),
                  unchanged=plan['unchanged'])
    if module._diff:
        result['diff'] = plan['diff']
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            dest=dict(type='path', required=True),
            files=dict(type='dict', required=True),
            mode=dict(type='str', default='0644'),
            prune=dict(type='bool', default=False),
        ),
        supports_check_mode=True,
    )
    run_module(module, run)


if __name__ == '__main__':
    main()
