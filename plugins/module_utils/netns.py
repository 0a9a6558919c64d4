# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Named network namespaces, through pyroute2's public netns helpers.

The one place that enters a namespace for the collection's own
standard-library sockets (:func:`enter_netns`, used by netlink.NetlinkSocket
and by the sysctl and restore code), creates one (:func:`create_netns`) and
removes one (:func:`remove_netns`). pyroute2 sockets in a namespace are opened
with ``IPRoute(netns=name, flags=0)`` (links.py) instead.

Entering a namespace never creates it: pyroute2's setns() defaults to
O_CREAT, so flags=0 is passed on purpose.
"""

from __future__ import annotations

import contextlib
import errno
import os

from ansible_collections.scalelab.testbed.plugins.module_utils.common import (
    TestbedError, validate_name)

try:
    from pyroute2 import netns as _pr_netns
    HAS_PYROUTE2 = True
    PYROUTE2_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - reported by the modules
    _pr_netns = None
    HAS_PYROUTE2 = False
    PYROUTE2_IMPORT_ERROR = exc

NETNS_RUN_DIR = '/var/run/netns'


def fail_without_pyroute2(module, needed=True, reason='to enter a network namespace'):
    """Fail the module, as Ansible does for a missing library, when pyroute2 is needed here."""
    if needed and not HAS_PYROUTE2:
        from ansible.module_utils.basic import missing_required_lib
        module.fail_json(msg=missing_required_lib('pyroute2', reason=reason),
                         exception=str(PYROUTE2_IMPORT_ERROR))


def netns_path(name):
    return os.path.join(NETNS_RUN_DIR, name)


def list_netns():
    """Names of the named network namespaces (exact names, sorted)."""
    try:
        return sorted(os.listdir(NETNS_RUN_DIR))
    except OSError:
        return []


def netns_exists(name):
    return name in list_netns()


def require_netns(name, field='netns'):
    """Validate name and fail clearly when the namespace does not exist."""
    validate_name(name, field, what='network namespace name')
    if not netns_exists(name):
        raise TestbedError(field, 'network namespace %r does not exist' % name,
                           'create it first (scalelab.testbed.netns) or fix the name')
    return name


@contextlib.contextmanager
def enter_netns(name):
    """Run the body with this process (thread) inside netns name.

    name None means "stay where we are". Sockets opened inside keep their
    namespace after we return. The original namespace is restored even if
    the body raises. A missing namespace, or a name under /var/run/netns
    that is no namespace (its mount vanished), raises TestbedError (field
    netns) naming the cause; so does a missing pyroute2.
    """
    if name is None:
        yield
        return
    require_netns(name)
    if not HAS_PYROUTE2:
        raise TestbedError('netns', 'entering network namespace %r needs the Python library '
                           'pyroute2 (%s)' % (name, PYROUTE2_IMPORT_ERROR),
                           'install pyroute2 on the target (pip install "pyroute2>=0.9.7,<0.10")')
    original = os.open('/proc/self/ns/net', os.O_RDONLY)
    try:
        try:
            _pr_netns.setns(name, flags=0)
        except OSError as exc:
            raise TestbedError('netns', 'cannot enter network namespace %r: %s'
                               % (name, _errno_text(exc)),
                               'check that it exists (ip netns list) and is a network namespace, '
                               'and that the task runs as root')
        try:
            yield
        finally:
            _pr_netns.setns(original, flags=0)
    finally:
        os.close(original)


def _errno_text(exc):
    code = getattr(exc, 'errno', None)
    if isinstance(code, int) and code > 0:
        return '%s (errno %d: %s)' % (errno.errorcode.get(code, 'E?'), code, os.strerror(code))
    return str(exc)


def create_netns(name):
    """Create the named network namespace (as ip netns add)."""
    _pr_netns.create(name)


def remove_netns(name):
    """Remove the named network namespace, as ip netns delete does.

    True when it was removed, False when there was none by that name. The
    namespace itself lives on while processes still run in it (see
    netns_pids); veths inside are deleted by the kernel once it is gone, so
    delete them first (links.delete_link) to have their peers go at once.
    Raises OSError when the kernel refuses (EBUSY: mounted twice; EPERM).
    """
    if not netns_exists(name):
        return False
    try:
        _pr_netns.remove(name)
    except FileNotFoundError:       # removed meanwhile
        return False
    return True


def netns_pids(name):
    """PIDs of the processes whose network namespace is the named one."""
    return sorted(_pr_netns.ns_pids().get(name, []))
