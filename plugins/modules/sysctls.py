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
  - If one write fails, the keys already written are put back in reverse order and the task
    fails, naming the key and the errno.
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
  netns:
    description:
      - Name of an existing network namespace (as listed by C(ip netns)) to apply O(settings) in.
      - Only C(net.*) keys exist per network namespace; any other key is an error. A C(net.*)
        key that exists only in the host's namespace is reported as unavailable.
      - The namespace is never created.
    type: str
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
  journal:
    description:
      - The journal file in which previous values are recorded for M(scalelab.testbed.restore).
    type: path
    default: /var/lib/scalelab_testbed/journal.json
notes:
  - Needs root. O(netns) needs the Python library C(pyroute2) on the target.
  - The journal and the persist file are not touched in check mode.
seealso:
  - module: scalelab.testbed.restore
  - module: scalelab.testbed.fd_limits
  - module: ansible.posix.sysctl
attributes:
  check_mode:
    description: Can run in check mode and return the changes it would make without making them.
    support: full
  diff_mode:
    description: Returns the live values and the persist file before and after.
    support: full
  platform:
    description: Target OS families it can operate on.
    support: full
    platforms: linux
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

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.scalelab.testbed.plugins.module_utils import sysctl as sc
from ansible_collections.scalelab.testbed.plugins.module_utils.common import (
    TestbedError, is_container)
from ansible_collections.scalelab.testbed.plugins.module_utils.journal import (
    DEFAULT_JOURNAL, KIND_FILE, KIND_HASHSIZE, KIND_SYSCTL, Journal, atomic_write,
    read_text, sysctl_key)
from ansible_collections.scalelab.testbed.plugins.module_utils import netns as ns


def _fail(module, errors, **extra):
    if len(errors) == 1:
        msg = errors[0] + '; nothing was changed'
    else:
        msg = '%d problems, nothing was changed: %s' % (len(errors), '; '.join(errors))
    module.fail_json(msg=msg, errors=errors, **extra)


def _desired(module):
    """Normalize settings and conntrack_hashsize; returns (desired, errors)."""
    desired, errors, spelled = {}, [], {}
    for name, value in (module.params['settings'] or {}).items():
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
    if module.params['conntrack_hashsize'] is not None:
        if 'net.netfilter.nf_conntrack_buckets' in desired:
            errors.append('settings: net.netfilter.nf_conntrack_buckets and conntrack_hashsize both size the '
                          'conntrack hash table (fix: give only one of them)')
        desired[sc.HASHSIZE_KEY] = [str(module.params['conntrack_hashsize'])]
    return desired, errors


def _read_back(keys, netns):
    values = {}
    with ns.enter_netns(netns):
        for key in keys:
            if key != sc.HASHSIZE_KEY:
                values[key] = sc.read_tokens(key)
    if sc.HASHSIZE_KEY in keys:
        values[sc.HASHSIZE_KEY] = sc.read_tokens(sc.HASHSIZE_KEY)
    return values


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
            if not name.endswith('.conf') or name in seen:
                continue
            seen.add(name)
            if os.path.realpath(path) == ours:
                continue
            try:
                others[path] = read_text(path)
            except (IOError, OSError):
                continue
    if os.path.realpath('/etc/sysctl.conf') != ours and '99-sysctl.conf' not in seen:
        try:
            others['/etc/sysctl.conf'] = read_text('/etc/sysctl.conf')
        except (IOError, OSError):
            pass
    return others


def run(module):
    params = module.params
    netns = params['netns']
    desired, errors = _desired(module)
    if not desired and not errors:
        module.fail_json(msg='settings: no key given; give at least one key (or conntrack_hashsize)')

    if netns is not None:
        if not ns.HAS_PYROUTE2:
            module.fail_json(msg=missing_required_lib('pyroute2'), exception=str(ns.PYROUTE2_IMPORT_ERROR))
        try:
            ns.require_netns(netns)
        except TestbedError as exc:
            errors.append(str(exc))
            _fail(module, errors)
    persist = params['persist']
    if persist is not None:
        try:
            persist = sc.validate_persist_path(persist)
        except TestbedError as exc:
            errors.append(str(exc))
    try:
        journal = Journal(params['journal'])
    except (ValueError, IOError, OSError) as exc:
        errors.append('journal: cannot read %s: %s (fix or remove it)' % (params['journal'], exc))
        journal = None

    # Probe everything where it will be written.
    sysctl_keys = [k for k in desired if k != sc.HASHSIZE_KEY]
    related_keys = sorted(set(r for k in sysctl_keys for r in sc.RELATED_KEYS.get(k, ())
                              if r not in desired))
    with ns.enter_netns(netns):
        states = sc.probe(sysctl_keys)
        related_states = sc.probe(related_keys)
        init_netns = sc.in_init_netns()
    if sc.HASHSIZE_KEY in desired:
        states[sc.HASHSIZE_KEY] = sc.probe_key(sc.HASHSIZE_KEY)
    host_exists = {}
    if netns is not None:
        host_exists = dict((k, sc.probe_key(k)['exists']) for k in sysctl_keys if not states[k]['exists'])
    related = dict((k, s['value']) for k, s in related_states.items() if s['readable'])

    plan = sc.plan(desired, states, netns=netns, in_container=is_container(), init_netns=init_netns,
                   host_exists=host_exists, related=related,
                   page_size=os.sysconf('SC_PAGE_SIZE'))
    errors.extend(plan['errors'])
    unavailable = plan['unavailable']
    if errors:
        _fail(module, errors, unavailable=unavailable)
    if unavailable:
        lines = ['%s: %s' % (k, unavailable[k]) for k in sorted(unavailable)]
        if params['unavailable'] == 'fail':
            module.fail_json(msg='%d key(s) cannot be set here, nothing was changed (unavailable=warn '
                                 'sets the others): %s' % (len(lines), '; '.join(lines)),
                             unavailable=unavailable)
        for line in lines:
            module.warn('not set: ' + line)

    # The persist file.
    persist_result = None
    old_text = new_text = None
    if persist is not None:
        persist_desired = dict((k, desired[k]) for k in plan['expected'] if k != sc.HASHSIZE_KEY)
        try:
            old_text = read_text(persist)
        except (IOError, OSError) as exc:
            module.fail_json(msg='persist: cannot read %s: %s; nothing was changed' % (persist, exc))
        new_text = sc.plan_persist(old_text, persist_desired)
        overrides = sc.persist_overrides(persist, persist_desired, _other_sysctl_files(persist))
        for key, path, tokens in overrides:
            module.warn('persist: %s sets %s = %s and is read after %s at boot, so it overrides the '
                        'value persisted here' % (path, key, ' '.join(tokens), persist))
        persist_result = {'path': persist, 'changed': new_text != old_text,
                          'overridden_by': [{'key': k, 'file': p, 'value': ' '.join(t)}
                                            for k, p, t in overrides]}

    changes = plan['changes']
    persist_changed = bool(persist_result and persist_result['changed'])
    changed = bool(changes) or persist_changed

    if changed and not module.check_mode:
        newly = []
        for key, old, _new in changes:
            if key == sc.HASHSIZE_KEY:
                entry = (KIND_HASHSIZE, sc.HASHSIZE_PATH)
            else:
                entry = (KIND_SYSCTL, sysctl_key(netns, key))
            if journal.record(entry[0], entry[1], sc.format_tokens(old), netns=netns, name=key):
                newly.append(entry)
        if persist_changed and journal.record(KIND_FILE, persist, old_text):
            newly.append((KIND_FILE, persist))
        try:
            journal.save()
        except (IOError, OSError) as exc:
            module.fail_json(msg='journal: cannot write %s: %s; nothing was changed'
                                 % (params['journal'], exc))

        def forget_new():
            for kind, jkey in newly:
                journal.forget(kind, jkey)
            journal.save()

        written = []
        try:
            with ns.enter_netns(netns):
                written = sc.apply_changes(changes)
        except sc.ApplyError as exc:
            if not exc.rollback_failures:
                forget_new()
            module.fail_json(msg=str(exc), failed_key=exc.key, errno=exc.errno,
                             rollback_failures=[list(f) for f in exc.rollback_failures])
        if persist_changed:
            try:
                atomic_write(module, persist, new_text)
            except Exception as exc:  # pylint: disable=broad-except
                with ns.enter_netns(netns):
                    failures = sc.rollback(written)
                if not failures:
                    forget_new()
                module.fail_json(msg='persist: writing %s failed: %s; the live values were put back%s'
                                     % (persist, exc, ' except %s' % failures if failures else ''))

    previous = plan['previous']
    if changed and not module.check_mode:
        current = _read_back([k for k in desired if k in previous], netns)
        for key, _old, new in changes:
            if not sc.values_equal(current.get(key), new):
                module.warn('%s: the kernel stored %r after %r was written; the next run will write '
                            'it again' % (key, ' '.join(current.get(key) or []), ' '.join(new)))
    else:
        current = dict((k, list(v)) for k, v in previous.items())
        for key, _old, new in changes:
            current[key] = list(new)

    keys = sorted(previous)
    result = dict(
        changed=changed,
        netns=netns,
        previous=dict((k, sc.format_tokens(previous[k])) for k in keys),
        current=dict((k, sc.format_tokens(current[k])) for k in keys if k in current),
        changed_keys=[c[0] for c in changes],
        unavailable=unavailable,
    )
    if persist_result is not None:
        result['persist'] = persist_result
    if module._diff:
        where = 'live values (netns %s)' % netns if netns else 'live values'
        diff = [{'before_header': where, 'after_header': where,
                 'before': sc.render_values(previous, keys),
                 'after': sc.render_values(current, keys)}]
        if persist_result is not None:
            diff.append({'before_header': persist, 'after_header': persist,
                         'before': old_text or '', 'after': new_text})
        result['diff'] = diff
    module.exit_json(**result)


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
    run(module)


if __name__ == '__main__':
    main()
