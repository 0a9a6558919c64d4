# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Named network namespaces, through pyroute2's public netns helpers.

This file (with addresses.py) is where pyroute2 is touched, so that a change
in its API is mended in one place. Entering a namespace never creates it:
pyroute2's setns() defaults to O_CREAT, so flags=0 is passed on purpose.
"""

from __future__ import annotations

import contextlib
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
    the body raises.
    """
    if name is None:
        yield
        return
    require_netns(name)
    original = os.open('/proc/self/ns/net', os.O_RDONLY)
    try:
        _pr_netns.setns(name, flags=0)
        try:
            yield
        finally:
            _pr_netns.setns(original, flags=0)
    finally:
        os.close(original)


def create_netns(name):
    _pr_netns.create(name)


def remove_netns(name):
    _pr_netns.remove(name)


def netns_pids(name):
    """PIDs of the processes whose network namespace is the named one."""
    return sorted(_pr_netns.ns_pids().get(name, []))
