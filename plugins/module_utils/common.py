# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Small helpers shared by every module of scalelab.testbed.

The one error type (TestbedError), the rule for names that reach the kernel
or the file system, where the module runs (container, systemd), and the
runner that turns errors into clean failures. Nothing here touches the
kernel; it is safe to import without root.
"""

from __future__ import annotations

import errno
import os
import re

from ansible_collections.scalelab.testbed.plugins.module_utils.ipplan import (
    IFNAME_MAX, NETNS_NAME_MAX)

# Names that reach the kernel or the file system (namespaces, interfaces,
# units) are restricted to a conservative alphabet: no shell metacharacters,
# no path separators, no whitespace.
_NAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.@-]*\Z')


class TestbedError(Exception):
    """A validation or apply error that names the field and the fix.

    rolled_back is True when changes had been made and were undone (the
    message says what was undone); otherwise nothing was changed.
    """

    def __init__(self, field, message, fix=None, rolled_back=False):
        self.field = field
        self.message = message
        self.fix = fix
        self.rolled_back = rolled_back
        text = '%s: %s' % (field, message)
        if fix:
            text += ' (fix: %s)' % fix
        super(TestbedError, self).__init__(text)


def validate_name(value, field, max_len=NETNS_NAME_MAX, what='name'):
    """Return value if it is a safe name, else raise TestbedError."""
    if not isinstance(value, str) or not value:
        raise TestbedError(field, 'an empty %s is not allowed' % what,
                           'give a non-empty %s' % what)
    if len(value) > max_len:
        raise TestbedError(field, '%s %r is %d characters long, the limit is %d'
                           % (what, value, len(value), max_len),
                           'use a %s of at most %d characters' % (what, max_len))
    if value in ('.', '..') or not _NAME_RE.match(value):
        raise TestbedError(field, '%s %r contains characters that are not allowed '
                           '(shell metacharacters, whitespace, "/" or ":")' % (what, value),
                           'use only letters, digits, ".", "_", "@" and "-", '
                           'starting with a letter or digit')
    return value


def validate_ifname(value, field):
    return validate_name(value, field, max_len=IFNAME_MAX, what='interface name')


# Inode numbers the kernel gives its initial PID and user namespaces
# (PROC_PID_INIT_INO, PROC_USER_INIT_INO in include/linux/proc_ns.h).
_INIT_PID_NS_INO = 0xEFFFFFFC
_INIT_USER_NS_INO = 0xEFFFFFFD


def _in_initial_namespaces():
    """True when this process shares the kernel's initial PID and user namespaces."""
    try:
        return (os.stat('/proc/self/ns/pid').st_ino == _INIT_PID_NS_INO
                and os.stat('/proc/self/ns/user').st_ino == _INIT_USER_NS_INO)
    except OSError:
        return False


def is_container():
    """True when this process runs inside a container (podman, docker, lxc).

    /run/.containerenv and container= in PID 1's environment are trusted.
    /.dockerenv alone is not: VM images built from a Docker image keep it, so
    it counts only when the process is not in the kernel's initial PID and
    user namespaces (which a container never is, unless run with --pid=host).
    """
    if os.path.exists('/run/.containerenv'):
        return True
    try:
        with open('/proc/1/environ', 'rb') as f:
            env = f.read().split(b'\0')
        if any(e.startswith(b'container=') for e in env):
            return True
    except OSError:
        pass
    if os.path.exists('/.dockerenv'):
        return not _in_initial_namespaces()
    return False


def systemd_running():
    """True when systemd is the running system manager (sd_booted(3))."""
    return os.path.isdir('/run/systemd/system')


def os_error_text(exc):
    """'ENOENT (errno 2: No such file or directory): /path' for an OSError."""
    code = getattr(exc, 'errno', None)
    text = '%s (errno %d: %s)' % (errno.errorcode.get(code, 'E?'), code, os.strerror(code)) \
        if isinstance(code, int) and code > 0 else str(exc)
    name = getattr(exc, 'filename', None)
    return '%s: %s' % (text, name) if name else text


def run_module(module, run, what='the kernel'):
    """exit_json with what run(module) returns; TestbedError and OSError fail cleanly.

    A TestbedError names its field (and, unless it says what was rolled back,
    that nothing was changed); an OSError (a socket, bind or read that failed)
    says what it was talking to, never a traceback.
    """
    try:
        result = run(module)
    except TestbedError as exc:
        module.fail_json(msg=str(exc) if exc.rolled_back else '%s; nothing was changed' % exc,
                         field=exc.field)
    except (IOError, OSError) as exc:
        module.fail_json(msg='talking to %s failed: %s' % (what, os_error_text(exc)))
    module.exit_json(**result)
