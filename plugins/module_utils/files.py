# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""File helpers, in one place: read, write atomically, remove, describe.

Writes go to a temporary file beside the target and are renamed over it, so a
reader never sees half a file; with an AnsibleModule, module.atomic_move does
the rename (it keeps SELinux contexts), and a symlinked target stays a
symlink (the link's target is written).
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import stat
import tempfile

from ansible_collections.scalelab.testbed.plugins.module_utils.common import TestbedError


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


def make_dirs(dirs, mode=0o755):
    for directory in dirs:
        os.mkdir(directory, mode)


def write_atomic(path, content, mode=0o644, module=None, follow=True, exact_mode=False):
    """Write content (text or bytes) to a temporary file beside path, flushed to disk,
    then rename it over path.

    Missing directories are created. An existing file keeps its owner and
    mode when module (an AnsibleModule) does the move, unless exact_mode is
    True: then path ends with mode whatever it had, and is never more open
    than mode in between (module.atomic_move gives a new file the umask's
    mode, so path is first made, or set, to mode), as a private key needs.
    A symlink at path is followed (its target is written) unless follow is
    False: then the link itself is replaced by the file.
    """
    make_dirs(missing_dirs(path))
    target = os.path.realpath(path) if follow else os.path.abspath(path)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target), prefix='.scalelab-testbed.')
    placeholder = False
    try:
        with os.fdopen(fd, 'wb' if isinstance(content, bytes) else 'w') as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        if exact_mode:
            if os.path.islink(target):
                pass                # (follow False) the link goes, what it points to is not ours
            elif os.path.lexists(target):
                os.chmod(target, mode)
            else:
                os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode))
                placeholder = True
        if module is not None:
            module.atomic_move(tmp, target)
        else:
            os.rename(tmp, target)
        placeholder = False
        if exact_mode:
            os.chmod(target, mode)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if placeholder and os.path.exists(target) and os.path.getsize(target) == 0:
            os.unlink(target)


def remove_file(path, created_dirs=()):
    """Remove path (if present), then the created_dirs left empty."""
    if os.path.lexists(path):
        os.unlink(path)
    remove_empty_dirs(created_dirs)


def remove_empty_dirs(dirs):
    for directory in sorted(dirs or (), key=len, reverse=True):
        try:
            os.rmdir(directory)
        except OSError:
            pass


def remove_tree(path):
    """Remove a file or a directory with everything in it (absent is fine)."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def describe_content(content):
    if content is None:
        return 'absent'
    return 'present (%d bytes)' % len(content.encode('utf-8'))


# ------------------------------------------------------------------ file sets

FILE_NAME_MAX = 255
# a plain file name: no directory part, no leading dot, nothing a shell would read
_FILE_NAME_RE = re.compile(r'^[A-Za-z0-9_][A-Za-z0-9_.@-]*$')


def validate_file_name(name, field):
    if not isinstance(name, str) or not _FILE_NAME_RE.match(name) or len(name) > FILE_NAME_MAX:
        raise TestbedError(field, '%r is not a plain file name' % (name,),
                           'give a name of letters, digits, "_", "-", "." and "@" (no "/", '
                           'no leading dot), at most %d characters' % FILE_NAME_MAX)
    return name


def _mode(text):
    try:
        mode = int(str(text), 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o7777:
        raise TestbedError('mode', '%r is not an octal file mode' % (text,), 'give one like "0644"')
    return mode


def _digest(data):
    return hashlib.sha1(data).hexdigest()


def plan_file_set(dest, files, mode='0644', prune=False, check_mode=False):
    """What makes the directory dest hold exactly these files (name -> text), changing nothing.

    In check mode a missing dest is taken as empty (a task before would have made it).

    Returns {'dest', 'mode', 'write': {name: bytes}, 'remove': [names], 'unchanged': n,
    'diff': {'before', 'after'}}: a file is written when it is missing, its content differs
    or its mode is not mode; with prune, the other regular files of dest are removed.
    """
    mode = _mode(mode)
    if not os.path.isabs(dest):
        raise TestbedError('dest', '%r is not an absolute path' % dest, 'give a path from /')
    missing = not os.path.lexists(dest)
    if not os.path.isdir(dest) and not (check_mode and missing):
        raise TestbedError('dest', '%s is not a directory' % dest, 'create it first')
    if not isinstance(files, dict) or not files:
        raise TestbedError('files', 'no files given', 'give a mapping of file names to contents')
    wanted = {}
    for name, content in files.items():
        validate_file_name(name, 'files')
        if not isinstance(content, str):
            raise TestbedError('files', 'the content of %s is not text' % name,
                               'give each file\'s content as a string')
        wanted[name] = content.encode('utf-8')
    write, before, after = {}, [], []
    unchanged = 0
    for name in sorted(wanted):
        path = os.path.join(dest, name)
        data = wanted[name]
        try:
            st = os.lstat(path)
        except OSError:
            st = None
        old = None
        if st is not None and stat.S_ISREG(st.st_mode):
            with open(path, 'rb') as f:
                old = f.read()
        if old == data and stat.S_IMODE(st.st_mode) == mode:
            unchanged += 1
            continue
        write[name] = data
        before.append('%s %s\n' % (name, _digest(old) if old is not None else 'absent'))
        after.append('%s %s\n' % (name, _digest(data)))
    remove = []
    if prune and not missing:
        for name in sorted(os.listdir(dest)):
            if name not in wanted and os.path.isfile(os.path.join(dest, name)) \
                    and not os.path.islink(os.path.join(dest, name)):
                remove.append(name)
                before.append('%s present\n' % name)
                after.append('%s absent\n' % name)
    return {'dest': dest, 'mode': mode, 'write': write, 'remove': remove,
            'unchanged': unchanged,
            'diff': {'before': ''.join(before), 'after': ''.join(after),
                     'before_header': '%s (sha1 of each file)' % dest,
                     'after_header': '%s (sha1 of each file)' % dest}}


def apply_file_set(plan, module=None):
    """Carry out plan_file_set's plan: each file written atomically, then the removals."""
    dest = plan['dest']
    for name, data in sorted(plan['write'].items()):
        path = os.path.join(dest, name)
        # a symlink among the set's names is replaced, never written through (the plan
        # reads only regular files, so a followed link would be rewritten every run)
        write_atomic(path, data, plan['mode'], module, follow=False)
        # atomic_move gives the new file the old one's mode: the plan's mode wins
        os.chmod(path, plan['mode'])
    for name in plan['remove']:
        os.unlink(os.path.join(dest, name))
