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
                 "file":   {"<path>": {"previous": "<content>" | null, ...}}}}

A ``previous`` of null for a file means the file did not exist before.
"""

from __future__ import annotations

import json
import os
import tempfile
import time

DEFAULT_JOURNAL = '/var/lib/scalelab_testbed/journal.json'
VERSION = 1


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
