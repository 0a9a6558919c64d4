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
import os
import shutil
import tempfile


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


def write_atomic(path, content, mode=0o644, module=None):
    """Write content to a temporary file beside path, then rename it over path.

    Missing directories are created. An existing file keeps its owner and
    mode when module (an AnsibleModule) does the move.
    """
    make_dirs(missing_dirs(path))
    target = os.path.realpath(path)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target), prefix='.scalelab-testbed.')
    try:
        with os.fdopen(fd, 'w') as f:
            f.write(content)
        os.chmod(tmp, mode)
        if module is not None:
            module.atomic_move(tmp, target)
        else:
            os.rename(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


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
