# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the molecule verifiers share (default and fleet): the collection's own
code run inside a container, and the files converge left in molecule's
scratch directory.

The verifiers use the collection's code, never a copy of its rules:

* on the host, plugins/module_utils is imported as the package
  ansible_collections.scalelab.testbed (sysctl.py: key_path,
  is_global_in_container);
* inside a container, the module_utils files the sock_diag counter needs
  (sockdiag.py and what it imports, found by reading the imports) are copied
  as that package into a scratch directory and imported with PYTHONPATH set.
"""

import ast
import base64
import io
import json
import os
import pathlib
import sys
import tarfile

import pytest

PROJECT = pathlib.Path(os.environ.get('MOLECULE_PROJECT_DIRECTORY')
                       or pathlib.Path(__file__).resolve().parents[3])
MODULE_UTILS = PROJECT / 'plugins' / 'module_utils'
PACKAGE = 'ansible_collections.scalelab.testbed.plugins.module_utils'

if str(PROJECT / '.collections') not in sys.path:
    sys.path.insert(0, str(PROJECT / '.collections'))

# Extracts a base64 tar (argv[2]) into a directory (argv[1]), in the container.
_UNPACK = ('import base64, io, sys, tarfile; '
           'tar = tarfile.open(fileobj=io.BytesIO(base64.b64decode(sys.argv[2]))); '
           'tar.extractall(sys.argv[1], **({"filter": "data"} if hasattr(tarfile, "data_filter") '
           'else {}))')
# One call of the collection's counter; its keyword arguments as JSON (argv[1]).
_COUNT = ('import json, sys; '
          'from %s.sockdiag import count_tcp_states; '
          'sys.stdout.write(json.dumps(count_tcp_states(**json.loads(sys.argv[1]))))' % PACKAGE)


def target_from_env():
    """The run's target, as molecule.yml gives it to the verifier (TESTBED_CONNECTIONS)."""
    value = os.environ.get('TESTBED_CONNECTIONS', '')
    if not value.isdigit():
        pytest.fail('TESTBED_CONNECTIONS must be set to the target by molecule.yml (verifier.env), '
                    'got %r' % value)
    return int(value)


def module_utils_closure(*names):
    """The module_utils files names need (themselves included), by reading their imports."""
    wanted, todo = set(), list(names)
    while todo:
        current = todo.pop()
        if current in wanted:
            continue
        wanted.add(current)
        tree = ast.parse((MODULE_UTILS / (current + '.py')).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module == PACKAGE:
                    todo.extend(alias.name for alias in node.names)
                elif node.module.startswith(PACKAGE + '.'):
                    todo.append(node.module[len(PACKAGE) + 1:].split('.')[0])
    return sorted(wanted)


def package_archive(names):
    """A tar (bytes) of ansible_collections/scalelab/testbed/plugins/module_utils/<names>.py
    with the __init__.py files that make each directory a package."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode='w') as tar:
        def add(path, data):
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
        parts = PACKAGE.split('.')
        for depth in range(1, len(parts) + 1):
            add('/'.join(parts[:depth] + ['__init__.py']), b'')
        for name in names:
            add('/'.join(parts + [name + '.py']), (MODULE_UTILS / (name + '.py')).read_bytes())
    return out.getvalue()


def install_module_utils(host, *names):
    """Copy names (and what they import) into a scratch directory of host; its path."""
    directory = host.check_output('mktemp -d /tmp/scalelab-verify.XXXXXX')
    payload = base64.b64encode(package_archive(module_utils_closure(*names))).decode()
    host.check_output('python3 -c %s %s %s', _UNPACK, directory, payload)
    return directory


def make_counter(host, directory):
    """count(**kwargs) -> {state: count}, by sockdiag.count_tcp_states inside host."""
    def count(**kwargs):
        out = host.check_output('env PYTHONPATH=%s python3 -c %s %s', directory, _COUNT,
                                json.dumps(kwargs))
        return json.loads(out)
    return count


def scratch():
    path = os.environ.get('MOLECULE_EPHEMERAL_DIRECTORY')
    if not path:
        pytest.fail('MOLECULE_EPHEMERAL_DIRECTORY is not set: run the verifier through molecule '
                    '(molecule verify)')
    return pathlib.Path(path)


def read_json(name):
    path = scratch() / name
    if not path.is_file():
        pytest.fail('%s is missing: converge (or prepare) did not write it' % path)
    return json.loads(path.read_text())
