# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures of the molecule verifier (testinfra, podman backend).

The containers are reached with testinfra's podman backend directly
(``podman://server``), not through Ansible. What converge planned and
reported is read from molecule's scratch directory
(MOLECULE_EPHEMERAL_DIRECTORY): plan.json, tuning-<host>.json,
report/report.json, host-globals.json (written by prepare).
"""

import json
import os
import pathlib

import pytest
import testinfra

PROJECT = pathlib.Path(os.environ.get('MOLECULE_PROJECT_DIRECTORY')
                       or pathlib.Path(__file__).resolve().parents[3])
SOCKDIAG = PROJECT / 'plugins' / 'module_utils' / 'sockdiag.py'

# Runs the collection's own sock_diag counter inside a container: the source
# of plugins/module_utils/sockdiag.py (standard library only when no netns
# is named) followed by one call, its keyword arguments given as JSON.
_SOCKDIAG_CALL = '''
import json as _json, sys as _sys
_sys.stdout.write(_json.dumps(count_tcp_states(**_json.loads(_sys.argv[1]))))
'''


def _scratch():
    path = os.environ.get('MOLECULE_EPHEMERAL_DIRECTORY')
    if not path:
        pytest.fail('MOLECULE_EPHEMERAL_DIRECTORY is not set: run the verifier through molecule '
                    '(molecule verify)')
    return pathlib.Path(path)


def _read_json(name):
    path = _scratch() / name
    if not path.is_file():
        pytest.fail('%s is missing: converge (or prepare) did not write it' % path)
    return json.loads(path.read_text())


@pytest.fixture(scope='session')
def target():
    value = os.environ.get('TESTBED_CONNECTIONS', '')
    if not value.isdigit():
        pytest.fail('TESTBED_CONNECTIONS must be set to the target by molecule.yml (verifier.env), '
                    'got %r' % value)
    return int(value)


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
    return _read_json('plan.json')


@pytest.fixture(scope='session')
def tuning():
    return {name: _read_json('tuning-%s.json' % name) for name in ('server', 'client')}


@pytest.fixture(scope='session')
def report():
    return _read_json('report/report.json')


@pytest.fixture(scope='session')
def host_baseline():
    return _read_json('host-globals.json')


@pytest.fixture(scope='session')
def sockdiag():
    """count(host, **kwargs) -> {state: count}, counted inside the container."""
    source = SOCKDIAG.read_text() + _SOCKDIAG_CALL

    def count(host, **kwargs):
        out = host.check_output('python3 -c %s %s', source, json.dumps(kwargs))
        return json.loads(out)
    return count
