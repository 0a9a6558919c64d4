# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures of the default scenario's verifier (testinfra, podman backend).

The containers are reached with testinfra's podman backend directly
(``podman://server``), not through Ansible. What converge planned and
reported is read from molecule's scratch directory
(MOLECULE_EPHEMERAL_DIRECTORY): plan.json, tuning-<host>.json,
report/report.json, host-globals.json (written by prepare). The helpers are
in verifylib.py (shared with the fleet scenario's verifier).
"""

import os
import sys

import pytest
import testinfra

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from verifylib import install_module_utils, make_counter, read_json, target_from_env  # noqa: E402  pylint: disable=wrong-import-position


@pytest.fixture(scope='session')
def target():
    return target_from_env()


@pytest.fixture(scope='session')
def server():
    return testinfra.get_host('podman://server')


@pytest.fixture(scope='session')
def client():
    return testinfra.get_host('podman://client')


@pytest.fixture(scope='session')
def hosts(server, client):
    return {'server': server, 'client': client}


@pytest.fixture(scope='session')
def plan():
    return read_json('plan.json')


@pytest.fixture(scope='session')
def tuning():
    return {name: read_json('tuning-%s.json' % name) for name in ('server', 'client')}


@pytest.fixture(scope='session')
def report():
    return read_json('report/report.json')


@pytest.fixture(scope='session')
def host_baseline():
    return read_json('host-globals.json')


@pytest.fixture(scope='session')
def sockdiag(hosts):
    """count(host, **kwargs) -> {state: count}, counted inside the container by the
    collection's sockdiag.py (copied in as a package, see install_module_utils)."""
    counters, installed = {}, []
    try:
        def count(host, **kwargs):
            if id(host) not in counters:
                directory = install_module_utils(host, 'sockdiag')
                installed.append((host, directory))
                counters[id(host)] = make_counter(host, directory)
            return counters[id(host)](**kwargs)
        yield count
    finally:
        for host, directory in installed:
            host.run('rm -rf %s', directory)


@pytest.fixture(scope='session')
def sysctl_rules():
    """plugins/module_utils/sysctl.py, imported from the collection on the host."""
    from ansible_collections.scalelab.testbed.plugins.module_utils import sysctl
    return sysctl
