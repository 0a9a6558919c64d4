# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The journal: what the testbed changed on a host, with previous values.

Modules record a key the moment they change it. The first previous value
recorded for a key wins, so applying the same play twice never replaces the
host's original value with the testbed's own. Teardown replays the journal
and forgets each entry it restored.

Layout (JSON)::

    {"version": 1,
     "entries": {"sysctl": {"<scope>|<key>": {"previous": "...", "time": ...}},
                 "file":   {"<path>": {"previous": "<content>" | null, ...}},
                 "hashsize": {"<sysfs path>": {"previous": "<int>", ...}}}}

``<scope>`` is the name of the network namespace the key was set in, or
``-`` for the host. A ``previous`` of null for a file means the file did not
exist before; ``created_dirs`` lists directories made for it (removed on
restore when empty).

Besides the Journal class this file holds the small helpers the modules use
to record and restore files (read_text, atomic_write, remove_file) and the
pure restore planning (plan_file_restore).
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
import time

DEFAULT_JOURNAL = '/var/lib/scalelab_testbed/journal.json'
VERSION = 1

KIND_SYSCTL = 'sysctl'
KIND_FILE = 'file'
KIND_HASHSIZE = 'hashsize'
KINDS = (KIND_SYSCTL, KIND_FILE, KIND_HASHSIZE)
HOST_SCOPE = '-'


def sysctl_key(netns, key):
    """Journal key of a sysctl: '<netns or ->|<dotted key>'."""
    return '%s|%s' % (netns or HOST_SCOPE, key)


def split_sysctl_key(jkey):
    """(netns or None, dotted key) from a journal key."""
    scope, _sep, key = jkey.partition('|')
    if not _sep:
        return None, jkey
    return (None if scope == HOST_SCOPE else scope), key


class Journal(object):

    def __init__(self, path=DEFAULT_JOURNAL):
        self.path = path
        self.data = {'version': VERSION, 'entries': {}}
        self.dirty = False
        if path and os.path.exists(path):
            with open(path) as f:
                loaded = json.load(f)
            if loaded.get('version') != VERSION:
                raise ValueError('%s: unknown journal version %r'
                                 % (path, loaded.get('version')))
            self.data = loaded

    def entries(self, kind):
        return self.data['entries'].get(kind, {})

    def has(self, kind, key):
        return key in self.entries(kind)

    def record(self, kind, key, previous, **extra):
        """Record previous for key unless an earlier value is recorded."""
        bucket = self.data['entries'].setdefault(kind, {})
        if key in bucket:
            return False
        entry = {'previous': previous, 'time': round(time.time(), 3)}
        entry.update(extra)
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

    def save(self):
        """Write atomically; remove the file once nothing is left in it."""
        if not self.dirty or not self.path:
            return
        if self.is_empty():
            if os.path.exists(self.path):
                os.unlink(self.path)
            self.dirty = False
            return
        directory = os.path.dirname(self.path) or '.'
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o755)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix='.journal.')
        try:
            with os.fdopen(fd, 'w') as f:
                json.dump(self.data, f, indent=1, sort_keys=True)
                f.write('\n')
            os.rename(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        self.dirty = False


# ------------------------------------------------------------------ files

def read_text(path):
    """The content of path, or None when it does not exist."""
    try:
        with open(path) as f:
            return f.read()
    except (IOError, OSError) as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise


def missing_dirs(path):
    """Directories that must be created (outermost first) to hold path."""
    dirs = []
    directory = os.path.dirname(path)
    while directory and directory != '/' and not os.path.isdir(directory):
        dirs.insert(0, directory)
        directory = os.path.dirname(directory)
    return dirs


def atomic_write(module, path, content, mode=0o644):
    """Write content to a temp file beside path, then module.atomic_move.

    A symlinked path stays a symlink (atomic_move writes to its target);
    an existing file keeps its owner and mode.
    """
    for directory in missing_dirs(path):
        os.mkdir(directory, 0o755)
    # atomic_move renames over its destination: give it the symlink's target
    # so that the link itself stays in place.
    target = os.path.realpath(path)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target), prefix='.scalelab-testbed.')
    try:
        with os.fdopen(fd, 'w') as f:
            f.write(content)
        os.chmod(tmp, mode)
        module.atomic_move(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def remove_file(path, created_dirs=()):
    """Remove path (if present) and then the created_dirs left empty."""
    if os.path.lexists(path):
        os.unlink(path)
    for directory in sorted(created_dirs or (), key=len, reverse=True):
        try:
            os.rmdir(directory)
        except OSError:
            pass


def describe_content(content):
    if content is None:
        return 'absent'
    return 'present (%d bytes)' % len(content.encode('utf-8'))


def plan_file_restore(entries, current):
    """Journal file entries + current contents -> restore actions.

    entries: {path: entry}; current: {path: content or None}. Returns a list
    of dicts {path, action ('write'|'remove'|'none'), content, before,
    created_dirs}, sorted by path.
    """
    actions = []
    for path in sorted(entries):
        entry = entries[path]
        previous = entry.get('previous')
        now = current.get(path)
        if previous == now:
            action = 'none'
        elif previous is None:
            action = 'remove'
        else:
            action = 'write'
        actions.append({'path': path, 'action': action, 'content': previous, 'before': now,
                        'created_dirs': entry.get('created_dirs') or []})
    return actions
