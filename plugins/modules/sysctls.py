#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: sysctls
short_description: Set many kernel parameters in one task, safely, on the host or in a network namespace
version_added: 0.1.0
description:
  - Sets every key of O(settings) under C(/proc/sys) in one task, on the host or inside the
    named network namespace O(netns), and optionally persists them to a file under
    C(/etc/sysctl.d/), updating only those keys in it.
  - Every key is validated before any is written. A key must exist where it runs, be readable
    and writable (mode bits and a read-only mount are both checked), and its value must be well
    formed. A numeric key takes as many integers as the kernel shows, each a plain decimal (the
    kernel reads C(010) as octal, so leading zeros are refused). Known bounds are checked
    (C(ip_local_port_range) from C(ip_unprivileged_port_start) to 65535 with low <= high,
    C(fs.nr_open) from 64 to 2147483584, and others); for the rest the kernel decides and a
    refusal is rolled back.
  - Keys are written in a fixed, documented order. First C(fs.nr_open), then C(fs.file-max), then
    the conntrack hash size (O(conntrack_hashsize)), C(net.netfilter.nf_conntrack_buckets),
    C(net.netfilter.nf_conntrack_max); then every other key in alphabetical order. The one
    exception is C(net.ipv4.ip_unprivileged_port_start), which is written before
    C(net.ipv4.ip_local_port_range) when the new range starts below the current start.
  - If one write fails, the keys already written (and the persist file) are put back in reverse
    order, their journal entries are forgotten, and the task fails naming the key and the errno.
  - Values are compared token by token, so C(1024 65535) equals the kernel's C(1024<TAB>65535)
    and the task reports C(changed) only when a value differs.
  - The previous value of every key it changes (and the previous content of the persist file) is
    recorded in the O(journal) before writing, so that M(scalelab.testbed.restore) can put the
    host back. The first value recorded for a key is kept, so re-running a play never replaces
    the host's original value.
  - Inside a container (podman, docker, lxc), keys that are global to the host (C(fs.*),
    C(kernel.*), C(vm.*), the conntrack table size and hash, and every C(net.*) key when the
    container shares the host's network namespace) are never written, even when writable. They
    are reported as unavailable, as are keys that are read-only, or not per network namespace
    inside O(netns); O(unavailable) chooses between failing and warning. Nothing is ever skipped
    silently.
author:
  - scalelab.testbed developers (@scalelab)
extends_documentation_fragment:
  - scalelab.testbed.testbed
  - scalelab.testbed.testbed.netns
  - scalelab.testbed.testbed.journal
requirements:
  - pyroute2 (only with O(netns))
options:
  settings:
    description:
      - Kernel parameters to set, as a mapping of key to value.
      - Keys in dotted form (C(net.ipv4.ip_local_port_range)) or slashed form
        (C(net/ipv4/ip_local_port_range)). In the dotted form a dot inside one name (a VLAN
        interface) is written C(/), as with sysctl(8), for example C(net.ipv4.conf.eth0/100.rp_filter).
        Names with shell metacharacters, whitespace or empty components are refused.
      - Values are an integer, a string (several values separated by whitespace) or a list
        (C([1024, 65535])). Booleans and floats are refused.
      - Required unless O(conntrack_hashsize) is given.
    type: dict
  persist:
    description:
      - Also write the keys to this file so they survive a reboot. It must be directly under
        C(/etc/sysctl.d/) and end in C(.conf).
      - Only the lines for the keys of O(settings) are changed (every occurrence, since the last
        one wins); other lines and comments are kept byte for byte; missing keys are appended.
        The file is written to a temporary file and moved into place atomically (a symlinked
        file stays a symlink).
      - A warning names any later file (C(99-sysctl.conf), C(/etc/sysctl.conf), ...) that sets one
        of the keys to another value and so overrides it at boot.
      - Keys reported as unavailable are not persisted. O(conntrack_hashsize) is not persisted
        (it is a module parameter); persist C(net.netfilter.nf_conntrack_buckets) instead.
      - Mutually exclusive with O(netns), since files in C(/etc/sysctl.d/) apply to the host.
    type: path
  conntrack_hashsize:
    description:
      - Number of buckets of the conntrack hash table, written to
        C(/sys/module/nf_conntrack/parameters/hashsize) before C(nf_conntrack_max).
        C(nf_conntrack_max) alone makes the chains longer, not the table bigger.
      - The kernel rounds it up to a whole page of buckets (a multiple of 512 with 4 KiB pages);
        the comparison takes that into account.
      - The C(nf_conntrack) module must be loaded; if it is not, the task fails and says so.
      - Host-wide, so it cannot be combined with O(netns), and inside a container it is
        reported as unavailable.
    type: int
  unavailable:
    description:
      - What to do with a key that cannot be set where the task runs, because it is read-only,
        not per network namespace, or global to the host inside a container.
      - V(fail) fails the task before anything is written, listing each such key and why.
      - V(warn) sets the other keys and warns once for each unavailable key, naming it and why.
    type: str
    choices: [fail, warn]
    default: fail
notes:
  - Needs root.
  - O(netns) applies only C(net.*) keys, inside the named namespace (needs the Python library
    C(pyroute2) on the target); O(netns) and O(persist) are mutually exclusive, since files in
    C(/etc/sysctl.d/) apply to the host.
  - The journal and the persist file are not touched in check mode.
seealso:
  - module: scalelab.testbed.restore
  - module: scalelab.testbed.fd_limits
  - module: ansible.posix.sysctl
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: The live values and the persist file, before and after.
'''

EXAMPLES = r'''
- name: Tune the kernel for a million connections
  scalelab.testbed.sysctls:
    settings:
      fs.nr_open: 2097152
      fs.file-max: 4194304
      net.core.somaxconn: 65535
      net.ipv4.tcp_max_syn_backlog: 65535
      net.ipv4.ip_local_port_range: "1024 65535"
      net.netfilter.nf_conntrack_max: 2097152
    conntrack_hashsize: 524288
    persist: /etc/sysctl.d/90-scalelab-testbed.conf

- name: Port range inside a network namespace (per-namespace keys only)
  scalelab.testbed.sysctls:
    netns: tb-client
    settings:
      net.ipv4.ip_local_port_range: [1024, 65535]
      net.ipv4.tcp_fin_timeout: 15

- name: In a container, set what is namespaced there and warn about the global keys
  scalelab.testbed.sysctls:
    settings:
      net.ipv4.ip_local_port_range: "1024 65535"
      fs.file-max: 4194304
    unavailable: warn
  register: tuning

- name: Put everything back (teardown)
  scalelab.testbed.restore:
'''

RETURN = r'''
previous:
  description:
    - Each key's value before the task, as the kernel shows it with tokens joined by one space.
    - The conntrack hash size appears under the key C(conntrack_hashsize).
  returned: always
  type: dict
  sample: {"net.core.somaxconn": "4096", "net.ipv4.ip_local_port_range": "32768 60999"}
current:
  description:
    - Each key's value after the task (read back from the kernel; in check mode, the value it
      would have). Unavailable keys keep their previous value.
  returned: always
  type: dict
  sample: {"net.core.somaxconn": "65535", "net.ipv4.ip_local_port_range": "1024 65535"}
changed_keys:
  description:
    - Keys whose live value was changed (or would be, in check mode), in the order written.
    - C(conntrack_hashsize) stands for the conntrack hash size.
  returned: always
  type: list
  elements: str
  sample: ["net.core.somaxconn", "net.ipv4.ip_local_port_range"]
unavailable:
  description: Keys that could not be set where the task ran, with the reason.
  returned: always
  type: dict
  sample: {"fs.file-max": "global key: it would change the container host; set it on the host"}
persist:
  description: The persist file, whether it changed, and later files overriding some of its keys.
  returned: when O(persist) is given
  type: dict
  contains:
    path:
      description: The file.
      type: str
      sample: /etc/sysctl.d/90-scalelab-testbed.conf
    changed:
      description: Whether its content changed (or would, in check mode).
      type: bool
    overridden_by:
      description: Keys set to another value by a file read later at boot.
      type: list
      elements: dict
      sample: [{"key": "net.core.somaxconn", "file": "/etc/sysctl.conf", "value": "1024"}]
netns:
  description: The network namespace the keys were applied in, or null for the host's.
  returned: always
  type: str
  sample: tb-client
'''

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.scalelab.testbed.plugins.module_utils import netns as ns
from ansible_collections.scalelab.testbed.plugins.module_utils import sysctl as sc
from ansible_collections.scalelab.testbed.plugins.module_utils.common import (
    TestbedError, is_container, run_module)
from ansible_collections.scalelab.testbed.plugins.module_utils.files import (
    read_text, remove_file, write_atomic)
from ansible_collections.scalelab.testbed.plugins.module_utils.journal import (
    DEFAULT_JOURNAL, KIND_FILE, KIND_HASHSIZE, KIND_SYSCTL, scoped_key, split_scoped_key)
from ansible_collections.scalelab.testbed.plugins.module_utils.transaction import Transaction


def _fail(module, errors, **extra):
    """Fail with every problem found before anything was written."""
    if len(errors) == 1:
        msg = errors[0] + '; nothing was changed'
    else:
        msg = '%d problems, nothing was changed: %s' % (len(errors), '; '.join(errors))
    module.fail_json(msg=msg, errors=errors, **extra)


def _checked(check, *args):
    """[] when check(*args) passes, else [the TestbedError's text]."""
    try:
        check(*args)
    except TestbedError as exc:
        return [str(exc)]
    return []


def _desired(params):
    """settings and conntrack_hashsize as {key: tokens}; and the problems found."""
    desired, errors, spelled = {}, [], {}
    for name, value in (params['settings'] or {}).items():
        try:
            key = sc.normalize_key(name)[0]
            if key == sc.HASHSIZE_KEY:
                raise TestbedError('settings', '%r is not a sysctl' % name,
                                   'use the conntrack_hashsize option')
            if key in desired:
                raise TestbedError('settings', 'key %s is given twice (%r and %r)'
                                   % (key, spelled[key], name), 'keep one of them')
            desired[key] = sc.normalize_value(key, value)
            spelled[key] = name
        except TestbedError as exc:
            errors.append(str(exc))
    if params['conntrack_hashsize'] is not None:
        if 'net.netfilter.nf_conntrack_buckets' in desired:
            errors.append('settings: net.netfilter.nf_conntrack_buckets and conntrack_hashsize both '
                          'size the conntrack hash table (fix: give only one of them)')
        desired[sc.HASHSIZE_KEY] = [str(params['conntrack_hashsize'])]
    if not desired and not errors:
        errors.append('settings: no key given (fix: give at least one key, or conntrack_hashsize)')
    return desired, errors


def _probe(desired, netns):
    """What the kernel shows for every key, where it will be written."""
    keys = [k for k in desired if k != sc.HASHSIZE_KEY]
    related_keys = sorted(set(r for k in keys for r in sc.RELATED_KEYS.get(k, ()) if r not in desired))
    with ns.enter_netns(netns):
        states = sc.probe(keys)
        related = dict((k, s['value']) for k, s in sc.probe(related_keys).items() if s['readable'])
        init_netns = sc.in_init_netns()
    if sc.HASHSIZE_KEY in desired:
        states[sc.HASHSIZE_KEY] = sc.probe_key(sc.HASHSIZE_KEY)
    host_exists = {}
    if netns is not None:
        host_exists = dict((k, sc.probe_key(k)['exists']) for k in keys if not states[k]['exists'])
    return sc.plan(desired, states, netns=netns, in_container=is_container(),
                   init_netns=init_netns, host_exists=host_exists, related=related,
                   page_size=os.sysconf('SC_PAGE_SIZE'))


def _other_sysctl_files(persist):
    """Contents of the other files sysctl reads at boot (for override warnings)."""
    ours = os.path.realpath(persist)
    seen, others = set(), {}
    for directory in sc.SYSCTL_DIRS:
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            continue
        for name in names:
            path = os.path.join(directory, name)
            if name.endswith('.conf') and name not in seen:
                seen.add(name)
                if os.path.realpath(path) != ours:
                    others[path] = read_text(path)
    if os.path.realpath('/etc/sysctl.conf') != ours and '99-sysctl.conf' not in seen:
        others['/etc/sysctl.conf'] = read_text('/etc/sysctl.conf')
    return others


def _persist_plan(module, persist, desired, plan):
    """(old text, new text, result) of the persist file; warnings for later overrides."""
    wanted = dict((k, desired[k]) for k in plan['expected'] if k != sc.HASHSIZE_KEY)
    old = read_text(persist)
    new = sc.plan_persist(old, wanted)
    overrides = sc.persist_overrides(persist, wanted, _other_sysctl_files(persist))
    for key, path, tokens in overrides:
        module.warn('persist: %s sets %s = %s and is read after %s at boot, so it overrides the '
                    'value persisted here' % (path, key, ' '.join(tokens), persist))
    return old, new, {'path': persist, 'changed': new != old,
                      'overridden_by': [{'key': k, 'file': p, 'value': ' '.join(t)}
                                        for k, p, t in overrides]}


def _apply(module, tx, netns, plan, persist):
    """Every change through the transaction: recorded first, undone on a failure."""
    for key, old, new in plan['changes']:
        if key == sc.HASHSIZE_KEY:
            kind, jkey = KIND_HASHSIZE, sc.HASHSIZE_PATH
        else:
            kind, jkey = KIND_SYSCTL, scoped_key(netns, key)

        def write(tokens, key=key):
            with ns.enter_netns(None if key == sc.HASHSIZE_KEY else netns):
                sc.write_tokens(key, tokens)
        tx.change(kind, jkey, sc.format_tokens(old), apply=lambda w=write, n=new: w(n),
                  undo=(lambda w=write, o=old: w(o)) if old is not None else None,
                  what='set %s = %s' % (key, ' '.join(new)), field='settings')
    if persist and persist[2]['changed']:
        path, (old, new) = persist[2]['path'], persist[:2]
        tx.change(KIND_FILE, path, old, apply=lambda: write_atomic(path, new, module=module),
                  undo=lambda: remove_file(path) if old is None else write_atomic(path, old, module=module),
                  what='write %s' % path, field='persist')


def _after(plan, netns, applied):
    """The values after the task: read back when written, predicted otherwise."""
    previous = plan['previous']
    current = dict((k, list(v)) for k, v in previous.items())
    if not applied:
        current.update((k, list(new)) for k, _old, new in plan['changes'])
        return current
    with ns.enter_netns(netns):
        for key in previous:
            if key != sc.HASHSIZE_KEY:
                current[key] = sc.read_tokens(key)
    if sc.HASHSIZE_KEY in previous:
        current[sc.HASHSIZE_KEY] = sc.read_tokens(sc.HASHSIZE_KEY)
    return current


def run(module):
    p = module.params
    netns = p['netns']
    desired, errors = _desired(p)
    if netns is not None:
        ns.fail_without_pyroute2(module)
        errors += _checked(ns.require_netns, netns)
    if p['persist'] is not None:
        errors += _checked(sc.validate_persist_path, p['persist'])
    if errors:
        _fail(module, errors)
    plan = _probe(desired, netns)
    unavailable = plan['unavailable']
    if plan['errors']:
        _fail(module, plan['errors'], unavailable=unavailable)
    lines = ['%s: %s' % (k, unavailable[k]) for k in sorted(unavailable)]
    if lines and p['unavailable'] == 'fail':
        module.fail_json(msg='%d key(s) cannot be set here, nothing was changed (unavailable=warn '
                             'sets the others): %s' % (len(lines), '; '.join(lines)),
                         unavailable=unavailable)
    for line in lines:
        module.warn('not set: ' + line)
    persist = None
    if p['persist'] is not None:
        persist = _persist_plan(module, sc.validate_persist_path(p['persist']), desired, plan)
    tx = Transaction(module.check_mode, p['journal'])
    try:
        with tx:
            _apply(module, tx, netns, plan, persist)
    except TestbedError as exc:
        failed = tx.failed or {}
        key = failed.get('key')
        if failed.get('kind') == KIND_SYSCTL:
            key = split_scoped_key(key)[1]
        module.fail_json(msg=str(exc), field=exc.field, failed_key=key)
    current = _after(plan, netns, tx.changed and not module.check_mode)
    for key, _old, new in plan['changes']:
        if not module.check_mode and not sc.values_equal(current.get(key), new):
            module.warn('%s: the kernel stored %r after %r was written; the next run will write it '
                        'again' % (key, ' '.join(current.get(key) or []), ' '.join(new)))
    return _result(module, netns, plan, current, persist, tx.changed)


def _result(module, netns, plan, current, persist, changed):
    previous = plan['previous']
    keys = sorted(previous)
    result = dict(changed=changed, netns=netns,
                  previous=dict((k, sc.format_tokens(previous[k])) for k in keys),
                  current=dict((k, sc.format_tokens(current[k])) for k in keys if k in current),
                  changed_keys=[c[0] for c in plan['changes']], unavailable=plan['unavailable'])
    if persist is not None:
        result['persist'] = persist[2]
    if module._diff:
        where = 'live values (netns %s)' % netns if netns else 'live values'
        result['diff'] = [{'before_header': where, 'after_header': where,
                           'before': sc.render_values(previous, keys),
                           'after': sc.render_values(current, keys)}]
        if persist is not None:
            result['diff'].append({'before_header': persist[2]['path'], 'after_header': persist[2]['path'],
                                   'before': persist[0] or '', 'after': persist[1]})
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            settings=dict(type='dict'),
            netns=dict(type='str'),
            persist=dict(type='path'),
            conntrack_hashsize=dict(type='int'),
            unavailable=dict(type='str', choices=['fail', 'warn'], default='fail'),
            journal=dict(type='path', default=DEFAULT_JOURNAL),
        ),
        required_one_of=[('settings', 'conntrack_hashsize')],
        mutually_exclusive=[('netns', 'persist')],
        supports_check_mode=True,
    )
    run_module(module, run)


if __name__ == '__main__':
    main()
