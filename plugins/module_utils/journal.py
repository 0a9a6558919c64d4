# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The journal: the one record of what the testbed changed on a host.

Every step that changes the host records the change here, with the previous
value, before it makes it (modules do so through transaction.Transaction).
The first previous value recorded for a key wins, so running a play twice
never replaces the host's original value with the testbed's own. Teardown
(scalelab.testbed.restore) validates the whole record, then replays it in
KINDS order and forgets each entry it put back.

Layout (JSON)::

    {"version": 2, "created_dirs": ["/var/lib/scalelab_testbed"],
     "entries": {KIND: {KEY: {"previous": ..., "time": <epoch>, ...}}}}

Kinds, in the order restore replays them (what KEY is; what previous holds):

* ``unit``     a systemd unit file written: the unit; its previous content or null.
  Extra: path, active (whether it ran before). Stopped first, before its network goes.
* ``notrack``  a NOTRACK rule added: ``<backend>|<family>|<table>|<chain>|<rule>``; null.
  Extra: backend (nft, iptables), family, table, chain, rule (list of tokens), netns.
* ``aliases``  tagged addresses added on an interface: ``<netns or ->|<interface>``; null.
* ``route``    a route added or replaced by scalelab.testbed.netns:
  ``<netns or ->|<type> <dst>`` (type ``unicast`` or ``local``); the route it replaced
  (``{gateway, dev}``) or null (there was none).
* ``link``     a veth pair created: ``<netns or ->|<name>``; null.
* ``netns``    a network namespace created: its name; null.
* ``file``     a file written or removed: its path; its previous content or null
  (absent). Extra: created_dirs, reload (``daemon-reload`` or ``daemon-reexec``,
  what systemd needs once the file is back).
* ``sysctl``   a kernel parameter: ``<netns or ->|<dotted key>``; its value.
* ``hashsize`` the conntrack hash size: the sysfs path; its value.
* ``path``     a directory or file the testbed installed: its path; null (removed
  with what it holds).

The file is locked (flock on its directory) while a task reads and writes it,
so that two plays on one host never lose each other's entries. The directory
is made when the first entry is saved and removed with the journal once the
last entry is forgotten, if the journal made it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time

from ansible_collections.scalelab.testbed.plugins.module_utils.common import TestbedError
from ansible_collections.scalelab.testbed.plugins.module_utils.files import (
    missing_dirs, read_text, remove_empty_dirs, write_atomic)

DEFAULT_JOURNAL = '/var/lib/scalelab_testbed/journal.json'
VERSION = 2
HOST_SCOPE = '-'

KIND_NOTRACK = 'notrack'
KIND_ALIASES = 'aliases'
KIND_LINK = 'link'
KIND_ROUTE = 'route'
KIND_NETNS = 'netns'
KIND_UNIT = 'unit'
KIND_FILE = 'file'
KIND_SYSCTL = 'sysctl'
KIND_HASHSIZE = 'hashsize'
KIND_PATH = 'path'
KINDS = (KIND_UNIT, KIND_NOTRACK, KIND_ALIASES, KIND_ROUTE, KIND_LINK, KIND_NETNS, KIND_FILE,
         KIND_SYSCTL, KIND_HASHSIZE, KIND_PATH)

# What 'previous' may hold, per kind; the extras each kind requires.
_PREVIOUS = {KIND_SYSCTL: (str,), KIND_HASHSIZE: (str,), KIND_FILE: (str, type(None)),
             KIND_ROUTE: (dict, type(None)),
             KIND_UNIT: (str, type(None))}
_REQUIRED = {KIND_NOTRACK: {'backend': str, 'family': str, 'table': str, 'chain': str,
                            'rule': list},
             KIND_UNIT: {'path': str}}
_SCOPED = (KIND_SYSCTL, KIND_ALIASES, KIND_LINK, KIND_ROUTE)
_PATHS = (KIND_FILE, KIND_HASHSIZE, KIND_PATH)


def scoped_key(netns, name):
    """Journal key of a thing in a network namespace: '<netns or ->|<name>'."""
    return '%s|%s' % (netns or HOST_SCOPE, name)


def split_scoped_key(key):
    """(netns or None, name) from a scoped journal key."""
    scope, _sep, name = key.partition('|')
    return (None if scope == HOST_SCOPE else scope), name


class JournalError(TestbedError):
    """The journal file cannot be used as it is."""


def _type_names(types):
    return ' or '.join('null' if t is type(None) else t.__name__ for t in types)


def _entry_errors(kind, key, entry):
    where = 'entries.%s[%r]' % (kind, key)
    if not isinstance(entry, dict):
        return ['%s: expected an object with "previous", got %s' % (where, type(entry).__name__)]
    errors = []
    if 'previous' not in entry:
        errors.append('%s: has no "previous"' % where)
    else:
        allowed = _PREVIOUS.get(kind, (type(None),))
        if not isinstance(entry['previous'], allowed):
            errors.append('%s.previous: expected %s, got %s'
                          % (where, _type_names(allowed), type(entry['previous']).__name__))
    for name, wanted in _REQUIRED.get(kind, {}).items():
        if not isinstance(entry.get(name), wanted):
            errors.append('%s.%s: expected %s' % (where, name, wanted.__name__))
    if kind == KIND_FILE and not isinstance(entry.get('created_dirs', []), list):
        errors.append('%s.created_dirs: expected a list' % where)
    if kind in _SCOPED and '|' not in key:
        errors.append('%s: the key must be "<netns or ->|<name>"' % where)
    if kind in _PATHS and not key.startswith('/'):
        errors.append('%s: the key must be an absolute path' % where)
    return errors


def validate(data, path=DEFAULT_JOURNAL):
    """The journal data, upgraded to VERSION, or JournalError naming every broken field."""
    fix = 'repair it or move it away: %s is not a journal this collection can replay' % path
    if not isinstance(data, dict):
        raise JournalError('journal', '%s holds %s, not a journal object'
                           % (path, type(data).__name__), fix)
    if data.get('version') not in (1, VERSION):
        raise JournalError('journal.version', '%s: unknown journal version %r'
                           % (path, data.get('version')), fix)
    entries = data.get('entries', {})
    if not isinstance(entries, dict):
        raise JournalError('journal.entries', '%s: "entries" is %s, not an object'
                           % (path, type(entries).__name__), fix)
    errors = []
    for kind, bucket in entries.items():
        if kind not in KINDS:
            errors.append('entries.%s: unknown kind (known: %s)' % (kind, ', '.join(KINDS)))
        elif not isinstance(bucket, dict):
            errors.append('entries.%s: expected an object of entries, got %s'
                          % (kind, type(bucket).__name__))
        else:
            for key, entry in bucket.items():
                errors.extend(_entry_errors(kind, key, entry))
    if not isinstance(data.get('created_dirs', []), list):
        errors.append('created_dirs: expected a list')
    if errors:
        raise JournalError('journal', '%s: %s' % (path, '; '.join(errors)), fix)
    return {'version': VERSION, 'created_dirs': list(data.get('created_dirs', [])),
            'entries': dict((k, dict(v)) for k, v in entries.items() if v)}


class Journal(object):
    """The journal at path. Use it inside session(); entries() etc. on the loaded data."""

    def __init__(self, path=DEFAULT_JOURNAL):
        self.path = path
        self.data = {'version': VERSION, 'created_dirs': [], 'entries': {}}
        self.dirty = False
        self._lock_fd = None

    # --- reading and writing the file
    def load(self):
        text = read_text(self.path)
        if text is None:
            self.data = {'version': VERSION, 'created_dirs': [], 'entries': {}}
        else:
            try:
                loaded = json.loads(text)
            except ValueError as exc:
                raise JournalError('journal', '%s is not valid JSON: %s' % (self.path, exc),
                                   'repair it or move it away: %s' % self.path)
            self.data = validate(loaded, self.path)
        self.dirty = False
        return self

    def save(self):
        """Write atomically; once empty, remove the file and the directories it made."""
        if not self.dirty:
            return
        if self.is_empty():
            if os.path.lexists(self.path):
                os.unlink(self.path)
            remove_empty_dirs(self.data.get('created_dirs'))
        else:
            made = missing_dirs(self.path)
            self.data['created_dirs'] = sorted(set(self.data.get('created_dirs', []) + made))
            write_atomic(self.path, json.dumps(self.data, indent=1, sort_keys=True) + '\n')
        self.dirty = False

    @contextlib.contextmanager
    def session(self, create=False):
        """Locked, loaded, saved on the way out (whatever happened inside).

        create: the directory may be made (it is removed again when nothing
        is left to record). Without it a missing directory means an empty
        journal and nothing is locked.
        """
        directory = os.path.dirname(self.path) or '.'
        made = []
        if create and not os.path.isdir(directory):
            made = missing_dirs(self.path)
            for d in made:
                os.mkdir(d, 0o755)
        if os.path.isdir(directory):
            self._lock_fd = os.open(directory, os.O_RDONLY)
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            self.load()
            if made:
                self.data['created_dirs'] = sorted(set(self.data['created_dirs'] + made))
            yield self
        finally:
            try:
                if made and self.is_empty():
                    self.dirty = True
                self.save()
            finally:
                if self._lock_fd is not None:
                    os.close(self._lock_fd)
                    self._lock_fd = None

    # --- entries
    def entries(self, kind):
        return self.data['entries'].get(kind, {})

    def get(self, kind, key):
        return self.entries(kind).get(key)

    def record(self, kind, key, previous, **extra):
        """Record previous for key unless an earlier value is recorded; True when new."""
        if kind not in KINDS:
            raise ValueError('unknown journal kind %r' % kind)
        bucket = self.data['entries'].setdefault(kind, {})
        if key in bucket:
            return False
        entry = {'previous': previous, 'time': round(time.time(), 3)}
        entry.update(extra)
        problems = _entry_errors(kind, key, entry)
        if problems:
            raise ValueError('; '.join(problems))
        bucket[key] = entry
        self.dirty = True
        return True

    def forget(self, kind, key):
        bucket = self.data['entries'].get(kind, {})
        if key in bucket:
            del bucket[key]
            if not bucket:
                del self.data['entries'][kind]
            self.dirty = True

    def is_empty(self):
        return not any(self.data['entries'].values())
