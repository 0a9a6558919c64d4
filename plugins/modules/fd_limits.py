#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: fd_limits
short_description: Open-file and process limits for logins and services, checked against fs.nr_open
version_added: 0.1.0
description:
  - Sets the nofile and nproc soft and hard limits of a pam_limits O(domain) in a file under
    C(/etc/security/limits.d/), updating only that domain's lines and keeping every other line.
  - Services started by systemd do not read C(limits.conf). Where systemd runs (see O(systemd)) the
    same limits also go to a drop-in for the system manager
    (C(/etc/systemd/system.conf.d/90-scalelab-testbed.conf), C(DefaultLimitNOFILE=soft:hard)), and
    to a drop-in for each of O(units) (C(/etc/systemd/system/<unit>.d/90-scalelab-testbed.conf),
    C(LimitNOFILE=)). The drop-ins take the file name of O(path). The manager is not
    re-executed; RV(systemd_reload_needed) and RV(systemd_actions) say what is needed.
  - Refuses a hard (or soft) nofile above C(fs.nr_open), the current value or the one given in
    O(nr_open), because setrlimit then fails for every new session, which breaks logins and
    sudo. Raise C(fs.nr_open) first with M(scalelab.testbed.sysctls). Refuses C(unlimited) for
    nofile, and a soft limit above the hard one.
  - Records the previous content of every file it writes (or its absence) in the O(journal) before
    writing, so M(scalelab.testbed.restore) can put it back (and re-execute or reload systemd as the
    drop-in needs). If one file cannot be written, the ones already written are put back.
  - Returns what a new login session would get (RV(login_limits), computed from C(limits.conf) and
    C(limits.d) in pam_limits order), what a new service would get (RV(service_limits)), and
    whether the running process could raise its own limit (RV(can_raise_own)). On a host
    without C(CAP_SYS_RESOURCE) it cannot; the limits then apply only to new sessions and services.
author:
  - scalelab.testbed developers (@scalelab)
extends_documentation_fragment:
  - scalelab.testbed.testbed
  - scalelab.testbed.testbed.journal
options:
  domain:
    description:
      - The pam_limits domain. One of V(*) (every user), a user name, C(@group), a uid range
        C(min:max), or a gid range C(@min:max). C(%) domains (maxlogins only) are refused.
      - Some PAM versions do not apply V(*) and C(@group) lines to root; use V(root) for root.
    type: str
    default: '*'
  nofile_soft:
    description:
      - Soft limit of open files. A whole number, at least 1 and at most C(fs.nr_open);
        C(unlimited) is refused.
      - Required with O(nofile_hard).
    type: raw
  nofile_hard:
    description: Hard limit of open files. A whole number at least O(nofile_soft) and at most C(fs.nr_open).
    type: raw
  nproc_soft:
    description: Soft limit of processes. A whole number or V(unlimited). Required with O(nproc_hard).
    type: raw
  nproc_hard:
    description: Hard limit of processes. A whole number or V(unlimited).
    type: raw
  path:
    description:
      - The limits file. It must be directly under C(/etc/security/limits.d/) and end in C(.conf)
        (pam_limits reads only those).
      - Files there are read after C(limits.conf), in name order. A later line for the same domain
        overrides an earlier one, and a user's own line wins over a group's, which wins over V(*).
    type: path
    default: /etc/security/limits.d/90-scalelab-testbed.conf
  systemd:
    description:
      - Whether to write the systemd drop-ins.
      - V(auto) writes them only when systemd is the running system manager.
      - V(always) writes them anyway (an image being prepared).
      - V(never) does not write them.
      - With O(state=absent), our drop-ins are removed unless V(never).
    type: str
    choices: [auto, always, never]
    default: auto
  units:
    description:
      - Units that also get a drop-in
        C(/etc/systemd/system/<unit>.d/<name of path>) with C(LimitNOFILE=) and C(LimitNPROC=).
      - Service, socket, mount or swap units. A name without a type means C(.service).
    type: list
    elements: str
    default: []
  nr_open:
    description:
      - The C(fs.nr_open) the same play raises before this task (with M(scalelab.testbed.sysctls)),
        for check mode, where that task changed nothing yet.
      - When the task runs for real, the live C(fs.nr_open) must already be at least the nofile
        limits. A hard nofile above it is never written, whatever this option says, so the host is
        safe at every step.
      - By default the current C(/proc/sys/fs/nr_open).
    type: int
  state:
    description:
      - V(present) sets the limits.
      - V(absent) removes the lines of O(domain) for the items given (both nofile and nproc when
        none is given) and our systemd drop-ins; a limits file left with nothing but our header
        is deleted.
    type: str
    choices: [present, absent]
    default: present
  backup:
    description: Keep a timestamped copy of each existing file before changing it.
    type: bool
    default: false
notes:
  - Needs root.
  - Limits take effect for new login sessions and newly started services, never for processes
    already running.
seealso:
  - module: scalelab.testbed.sysctls
  - module: scalelab.testbed.restore
  - module: community.general.pam_limits
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: Each file before and after.
'''

EXAMPLES = r'''
- name: Raise fs.nr_open first
  scalelab.testbed.sysctls:
    settings:
      fs.nr_open: 2097152

- name: Two million open files for every login and service
  scalelab.testbed.fd_limits:
    nofile_soft: 2000000
    nofile_hard: 2000000
    nproc_soft: unlimited
    nproc_hard: unlimited
    nr_open: 2097152
    units: [tcpscale-server]
  register: limits

- name: Say what it means for the running process
  ansible.builtin.debug:
    msg: "{{ limits.can_raise_own.reason }}"

- name: Remove the limits again
  scalelab.testbed.fd_limits:
    state: absent
'''

RETURN = r'''
files:
  description: The files changed (or that would be, in check mode).
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: The file.
      type: str
    action:
      description: V(created), V(updated) or V(removed).
      type: str
    backup_file:
      description: The backup copy, when O(backup=true) and the file existed.
      type: str
  sample: [{"path": "/etc/security/limits.d/90-scalelab-testbed.conf", "action": "created"}]
login_limits:
  description:
    - What pam_limits would set for a new login session of O(domain) (for V(*), a user without
      entries of its own), from C(limits.conf) and C(limits.d) in pam_limits order, after this task.
    - C(null) values mean no line applies and the session keeps the limit of the process opening it.
  returned: always
  type: dict
  sample:
    subject: a user with no entries of its own or of its groups
    nofile: {soft: 1048576, hard: 1048576,
             soft_from: /etc/security/limits.d/90-scalelab-testbed.conf:3,
             hard_from: /etc/security/limits.d/90-scalelab-testbed.conf:4}
    nproc: {soft: null, hard: null, soft_from: null, hard_from: null}
service_limits:
  description:
    - What systemd would give a newly started service after this task, from C(system.conf) and its
      drop-ins (C(default)) and for each of O(units).
    - C(null) values mean systemd's built-in default applies.
  returned: always
  type: dict
  sample:
    systemd_running: false
    default: {nofile: {soft: 1048576, hard: 1048576, from: /etc/systemd/system.conf.d/90-scalelab-testbed.conf}}
    units: {}
can_raise_own:
  description: Whether the process running this module could raise its own hard nofile to O(nofile_hard).
  returned: always
  type: dict
  contains:
    can_raise:
      description: The answer.
      type: bool
    soft:
      description: This process's current soft nofile.
      type: int
    hard:
      description: This process's current hard nofile.
      type: int
    cap_sys_resource:
      description: Whether CAP_SYS_RESOURCE is in this process's effective capabilities.
      type: bool
    reason:
      description: Why, in words.
      type: str
  sample: {can_raise: false, soft: 20000, hard: 20000, cap_sys_resource: false, target_hard: 1048576,
           nr_open: 1048576, reason: "no CAP_SYS_RESOURCE in CapEff: ..."}
nr_open:
  description: The fs.nr_open the limits were checked against, and where it came from.
  returned: always
  type: dict
  sample: {value: 1048576, source: fs.nr_open}
systemd_reload_needed:
  description: Whether a systemd drop-in changed, so systemd must re-read its configuration.
  returned: always
  type: bool
systemd_actions:
  description: What to run for the systemd changes to take effect (this module runs none of it).
  returned: always
  type: list
  elements: str
  sample: ["systemctl daemon-reexec", "systemctl daemon-reload", "systemctl restart tcpscale-server.service"]
'''

import grp
import os
import pwd
import resource

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.scalelab.testbed.plugins.module_utils import limits as lm
from ansible_collections.scalelab.testbed.plugins.module_utils.common import (
    TestbedError, run_module, systemd_running)
from ansible_collections.scalelab.testbed.plugins.module_utils.files import (
    missing_dirs, read_text, remove_file, write_atomic)
from ansible_collections.scalelab.testbed.plugins.module_utils.ipplan import (
    NR_OPEN_MAX, NR_OPEN_MIN)
from ansible_collections.scalelab.testbed.plugins.module_utils.journal import (
    DEFAULT_JOURNAL, KIND_FILE)
from ansible_collections.scalelab.testbed.plugins.module_utils.transaction import Transaction


def _listdir(directory):
    try:
        return sorted(os.listdir(directory))
    except OSError:
        return []


def _subject(domain):
    subject = {'user': None, 'uid': None, 'gid': None, 'groups': []}
    if domain.startswith('@') and ':' not in domain:
        subject['groups'] = [domain[1:]]
    elif ':' in domain:
        low = domain.lstrip('@').split(':')
        number = int(low[0] or low[1])
        subject['gid' if domain.startswith('@') else 'uid'] = number
    elif domain != '*':
        subject['user'] = domain
        try:
            entry = pwd.getpwnam(domain)
            subject.update(uid=entry.pw_uid, gid=entry.pw_gid)
            subject['groups'] = [g.gr_name for g in grp.getgrall() if domain in g.gr_mem]
            try:
                subject['groups'].append(grp.getgrgid(entry.pw_gid).gr_name)
            except KeyError:
                pass
        except KeyError:
            pass
    return subject


def _login_limits(domain, planned, nr_open):
    """Limits of a new session for domain, with the planned limits.d content.

    planned: {path under limits.d: content or None}. pam_limits reads
    limits.conf, then limits.d/*.conf in name order.
    """
    names = set(n for n in _listdir(lm.LIMITS_DIR) if n.endswith('.conf'))
    names.update(os.path.basename(f) for f in planned)
    files = []
    conf = _safe_read(lm.LIMITS_CONF)
    if conf is not None:
        files.append((lm.LIMITS_CONF, conf))
    for name in sorted(names):
        path = os.path.join(lm.LIMITS_DIR, name)
        content = planned[path] if path in planned else _safe_read(path)
        if content is not None:
            files.append((path, content))
    result = lm.effective_login_limits(files, _subject(domain), nr_open)
    result['subject'] = lm.describe_subject(domain)
    return result


def _safe_read(path):
    try:
        return read_text(path)
    except (IOError, OSError):
        return None


def _service_limits(units, planned):
    def files_for(main, dirs):
        listing = [(d, _listdir(d)) for d in dirs]
        for path in planned:
            directory, name = os.path.split(path)
            for index, (d, names) in enumerate(listing):
                if d == directory and name not in names:
                    listing[index] = (d, sorted(names + [name]))
        out = []
        for path in ([main] if main else []) + lm.conf_dropin_order(listing):
            content = planned[path] if path in planned else _safe_read(path)
            if content is not None:
                out.append((path, content))
        return out

    default = lm.effective_service_limits(files_for(lm.SYSTEM_CONF, lm.SYSTEM_CONF_DIRS), 'DefaultLimit')
    result = {'systemd_running': systemd_running(), 'default': default, 'units': {}}
    for unit in units:
        main = next((os.path.join(d, unit) for d in lm.UNIT_DIRS if os.path.exists(os.path.join(d, unit))), None)
        own = lm.effective_service_limits(files_for(main, [os.path.join(d, unit + '.d') for d in lm.UNIT_DIRS]),
                                          'Limit')
        for item in lm.ITEMS:
            if own[item]['from'] is None:
                own[item] = dict(default[item])
        result['units'][unit] = own
    return result


def _can_raise_own(target_hard, nr_open):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        with open('/proc/self/status') as f:
            caps = lm.cap_effective(f.read())
    except (IOError, OSError):
        caps = 0
    return lm.can_raise(soft, hard, bool(caps & (1 << lm.CAP_SYS_RESOURCE)), target_hard, nr_open)


def _nr_open(module, given):
    """The fs.nr_open to check the limits against, and where it comes from."""
    try:
        live = lm.read_nr_open()
    except (IOError, OSError, ValueError) as exc:
        raise TestbedError('nr_open', 'cannot read %s: %s' % (lm.NR_OPEN_PATH, exc),
                           'run on Linux with /proc mounted, as root')
    if given is None:
        return {'value': live, 'source': 'fs.nr_open'}
    if not NR_OPEN_MIN <= given <= NR_OPEN_MAX:
        raise TestbedError('nr_open', '%d is not a value fs.nr_open can take (%d to %d)'
                           % (given, NR_OPEN_MIN, NR_OPEN_MAX))
    if module.check_mode:
        return {'value': given, 'source': 'nr_open (the fs.nr_open this play sets)'}
    # for real: never above the live value, so the host is safe at every step
    return {'value': min(given, live), 'source': 'fs.nr_open' if live < given else
            'nr_open (the fs.nr_open this play sets)'}


def _validate(module):
    """(domain, desired, path, units, nr_open) from the options; TestbedError when wrong."""
    p = module.params
    domain = lm.validate_domain(p['domain'])
    desired = {}
    for item in lm.ITEMS:
        soft = lm.validate_value(item, 'soft', p['%s_soft' % item])
        hard = lm.validate_value(item, 'hard', p['%s_hard' % item])
        if soft is not None or hard is not None:
            desired[item] = {'soft': soft, 'hard': hard}
    path = lm.validate_limits_path(p['path'])
    units = []
    for name in p['units']:
        unit = lm.validate_unit(name)
        if unit not in units:
            units.append(unit)
    nr_open = _nr_open(module, p['nr_open'])
    if p['state'] == 'present':
        lm.validate_limits(desired, nr_open['value'], nr_open['source'])
    return domain, desired, path, units, nr_open


def _plan_files(p, domain, desired, path, units, use_systemd):
    """[(path, old content, new content or None to delete, systemd reload it needs)]."""
    state = p['state']
    old = read_text(path)
    plans = [(path, old, lm.plan_limits_file(old, domain, desired, state), None)]
    if p['systemd'] != 'never' and (use_systemd or state == 'absent'):
        name = os.path.basename(path)
        dropins = [(lm.system_dropin_path(name), lm.render_system_dropin(desired) if desired else None,
                    'daemon-reexec')]
        dropins += [(lm.unit_dropin_path(u, name), lm.render_unit_dropin(u, desired) if desired else None,
                     'daemon-reload') for u in units]
        for dropin, new, reload in dropins:
            plans.append((dropin, read_text(dropin), None if state == 'absent' else new, reload))
    return plans


def _made_by_us(tx, path):
    """The journal entry of a file the testbed created (its previous is null), or None."""
    journal = tx.journal()
    entry = journal.get(KIND_FILE, path) if journal is not None else None
    return entry if entry is not None and entry['previous'] is None else None


def _apply(module, tx, changes, files):
    for index, (path, old, new, reload) in enumerate(changes):
        dirs = missing_dirs(path) if new is not None else []
        if module.params['backup'] and old is not None and not module.check_mode:
            files[index]['backup_file'] = module.backup_local(path)
        ours = _made_by_us(tx, path) if new is None else None

        def write(path=path, new=new, ours=ours):
            if new is None:
                # a file the testbed created goes with the directories made for it
                remove_file(path, ours.get('created_dirs') if ours else ())
            else:
                write_atomic(path, new, module=module)

        def undo(path=path, old=old, dirs=tuple(dirs)):
            if old is None:
                remove_file(path, dirs)
            else:
                write_atomic(path, old, module=module)
        extra = {'created_dirs': dirs}
        if reload:
            extra['reload'] = reload
        tx.change(KIND_FILE, path, old, apply=write, undo=undo,
                  what='%s %s' % ('remove' if new is None else 'write', path), field='path', **extra)
        if ours:
            tx.forget(KIND_FILE, path)      # absent again, as it was before the testbed


def _systemd_actions(path, units, changed_paths):
    actions = []
    if lm.system_dropin_path(os.path.basename(path)) in changed_paths:
        actions.append('systemctl daemon-reexec')
    unit_changed = [u for u in units if lm.unit_dropin_path(u, os.path.basename(path)) in changed_paths]
    if unit_changed:
        actions.append('systemctl daemon-reload')
        actions.extend('systemctl restart %s' % u for u in unit_changed)
    return actions


def run(module):
    p = module.params
    domain, desired, path, units, nr_open = _validate(module)
    use_systemd = p['systemd'] == 'always' or (p['systemd'] == 'auto' and systemd_running())
    if units and p['state'] == 'present' and not use_systemd:
        module.warn('units: no drop-in written for %s: %s' % (', '.join(units), (
            'systemd is not running here (systemd=always writes them anyway)' if p['systemd'] == 'auto'
            else 'systemd=never')))
    plans = _plan_files(p, domain, desired, path, units, use_systemd)
    changes = [c for c in plans if c[1] != c[2]]
    files = [{'path': f, 'action': 'created' if o is None else ('removed' if n is None else 'updated')}
             for f, o, n, _r in changes]
    with Transaction(module.check_mode, p['journal']) as tx:
        _apply(module, tx, changes, files)
    planned = dict((f, n) for f, _o, n, _r in plans)
    systemd_changed = [f for f, _o, _n, _r in changes if f != path]
    target = desired.get('nofile', {}).get('hard') if p['state'] == 'present' else None
    result = dict(
        changed=bool(changes), files=files,
        login_limits=_login_limits(domain, {path: planned[path]}, nr_open['value']),
        service_limits=_service_limits(units, dict((f, n) for f, n in planned.items() if f != path)),
        can_raise_own=_can_raise_own(target, nr_open['value']), nr_open=nr_open,
        systemd_reload_needed=bool(systemd_changed),
        systemd_actions=_systemd_actions(path, units, systemd_changed),
    )
    if module._diff:
        result['diff'] = [{'before_header': f, 'after_header': f, 'before': o or '', 'after': n or ''}
                          for f, o, n, _r in changes]
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            domain=dict(type='str', default='*'),
            nofile_soft=dict(type='raw'),
            nofile_hard=dict(type='raw'),
            nproc_soft=dict(type='raw'),
            nproc_hard=dict(type='raw'),
            path=dict(type='path', default=lm.DEFAULT_LIMITS_FILE),
            systemd=dict(type='str', choices=['auto', 'always', 'never'], default='auto'),
            units=dict(type='list', elements='str', default=[]),
            nr_open=dict(type='int'),
            state=dict(type='str', choices=['present', 'absent'], default='present'),
            backup=dict(type='bool', default=False),
            journal=dict(type='path', default=DEFAULT_JOURNAL),
        ),
        required_together=[('nofile_soft', 'nofile_hard'), ('nproc_soft', 'nproc_hard')],
        required_if=[('state', 'present', ('nofile_soft', 'nproc_soft'), True)],
        supports_check_mode=True,
    )
    run_module(module, run)


if __name__ == '__main__':
    main()
