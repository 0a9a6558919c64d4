# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Record the previous value, apply, roll back on failure: one task's changes.

Every module that changes the host runs its changes through a Transaction::

    with Transaction(module.check_mode, params['journal']) as tx:
        for key, old, new in plan:
            tx.change(KIND_SYSCTL, scoped_key(netns, key), old,
                      apply=lambda: write(key, new), undo=lambda: write(key, old),
                      what='set %s = %s' % (key, new), field='settings')

* In check mode nothing is recorded or applied; ``tx.planned`` lists what would be.
* Otherwise each change is recorded in the journal (the first previous value
  recorded for a key wins) and the journal saved *before* the change is made,
  so a task killed half way can still be torn down.
* When a change fails, the ones already made are undone in reverse order,
  their new journal entries are forgotten, and a TestbedError names the step
  that failed, the error and what was undone. The journal (and its directory,
  if this task made it) is left as it was before the task.
* ``tx.forget(kind, key)`` drops an entry when the task itself removed what
  the testbed had made (the host is back as it was for that key).
"""

from __future__ import annotations

import errno
import os

from ansible_collections.scalelab.testbed.plugins.module_utils.common import TestbedError
from ansible_collections.scalelab.testbed.plugins.module_utils.journal import (
    DEFAULT_JOURNAL, Journal)


def error_text(exc):
    """'EINVAL (errno 22: Invalid argument)' for OS and netlink errors, else str(exc)."""
    if isinstance(exc, TestbedError):
        return exc.message
    code = getattr(exc, 'errno', None)
    if not isinstance(code, int):
        code = getattr(exc, 'code', None)
    if isinstance(code, int) and code > 0:
        return '%s (errno %d: %s)' % (errno.errorcode.get(code, 'E?'), code, os.strerror(code))
    return str(exc)


class Transaction(object):

    def __init__(self, check_mode, journal=DEFAULT_JOURNAL):
        self.check = check_mode
        self.journal_path = journal
        self.planned = []           # what each change is, in order (also in check mode)
        self.done = []              # (what, undo, kind, key, new entry) of applied changes
        self.failed = None          # {what, kind, key} of the change that failed
        self._journal = None
        self._session = None

    @property
    def changed(self):
        return bool(self.planned)

    def _open(self):
        if self._journal is None:
            self._journal = Journal(self.journal_path)
            self._session = self._journal.session(create=True)
            self._session.__enter__()
        return self._journal

    def journal(self):
        """The loaded journal (opened and locked now, unless in check mode: None)."""
        return None if self.check else self._open()

    def change(self, kind, key, previous, apply, undo=None, what=None, field='journal', **extra):
        """One change: record it, make it, remember how to undo it."""
        what = what or '%s %s' % (kind, key)
        self.planned.append(what)
        if self.check:
            return
        journal = self._open()
        new = journal.record(kind, key, previous, **extra) if kind else False
        journal.save()
        try:
            apply()
        except BaseException as exc:
            if new:
                journal.forget(kind, key)
            self.failed = {'what': what, 'kind': kind, 'key': key}
            raise _Failed(what, field, exc)
        self.done.append((what, undo, kind, key, new))

    def step(self, apply, undo=None, what=None, field='journal'):
        """A change that needs no record of its own (covered by another entry)."""
        self.change(None, None, None, apply, undo, what, field)

    def forget(self, kind, key):
        if not self.check:
            self._open().forget(kind, key)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc is None:
                return False
            if isinstance(exc, _Failed):
                what, field, cause = exc.what, exc.field, exc.cause
            else:
                what, field, cause = None, getattr(exc, 'field', 'journal'), exc
            undone, problems = self._rollback()
            if what is None and not undone and not problems:
                return False            # failed before changing anything: as it was raised
            text = cause.message if isinstance(cause, TestbedError) else error_text(cause)
            message = '%s failed: %s' % (what, text) if what else text
            if undone:
                message += '; undid %d earlier change(s): %s' % (len(undone), '; '.join(undone))
            elif not problems:
                message += '; nothing was changed'
            if problems:
                message += '; UNDO INCOMPLETE: %s' % '; '.join(problems)
            fix = cause.fix if isinstance(cause, TestbedError) else \
                'fix the cause above and run the task again'
            raise TestbedError(getattr(cause, 'field', None) or field, message, fix,
                               rolled_back=True) from cause
        finally:
            if self._session is not None:
                session, self._session = self._session, None
                session.__exit__(None, None, None)

    def _rollback(self):
        """Undo what was done, last first: (what was undone, what could not be)."""
        undone, problems = [], []
        for what, undo, kind, key, new in reversed(self.done):
            try:
                if undo is not None:
                    undo()
            except Exception as exc:  # pylint: disable=broad-except  # keep undoing the rest
                problems.append('%s: %s' % (what, error_text(exc)))
                continue
            undone.append(what)
            if new:
                self._journal.forget(kind, key)
        self.done = []
        return undone, problems


class _Failed(Exception):
    """A change that failed: which one, the field it belongs to, and why."""

    def __init__(self, what, field, cause):
        super(_Failed, self).__init__(what)
        self.what = what
        self.field = field
        self.cause = cause
