# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``python3 DIR COMMAND ...``: run the package from its directory, no install step.

Python runs this file with DIR itself first on sys.path. That entry goes
(the modules here must not be importable as top-level names), and the
directory is loaded as the package ``tcpscale`` whatever it is called, so
that its modules import each other relatively.

The modules are compiled in a forked child, which hands the code objects
over (marshal, as a .pyc holds them) and exits. Compiling them in this
process would leave the compiler's freed memory all over the heap; the
workers forked later allocate into it and so copy those pages: +0.7 MB of
private memory per worker, +35% user memory per connection (measured at
200,000 and 1,000,000 connections on this machine). Nothing is written:
no __pycache__ next to the sources, on the targets or in the collection.
"""

import importlib.util
import marshal
import os
import sys

PACKAGE = 'tcpscale'


def compile_in_child(here):
    """{module: code object} of DIR/*.py, compiled in a forked child ({} if that failed)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_fd)
            codes = {}
            for name in sorted(os.listdir(here)):
                if name.endswith('.py') and name != '__main__.py':
                    path = os.path.join(here, name)
                    with open(path, 'rb') as f:
                        codes[name[:-3]] = compile(f.read(), path, 'exec', dont_inherit=True)
            with os.fdopen(write_fd, 'wb') as f:
                f.write(marshal.dumps(codes))
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, 'rb') as f:
        data = f.read()
    os.waitpid(pid, 0)
    try:
        return marshal.loads(data)
    except (EOFError, ValueError, TypeError):
        return {}                           # a syntax error: the plain import below says where


class Precompiled(object):
    """Finder and loader of the package's modules from their code objects."""

    def __init__(self, here, codes):
        self.here = here
        self.codes = codes

    def key(self, fullname):
        if fullname == PACKAGE:
            return '__init__'
        if fullname.startswith(PACKAGE + '.'):
            return fullname[len(PACKAGE) + 1:]
        return None

    def find_spec(self, fullname, path=None, target=None):
        key = self.key(fullname)
        if key not in self.codes:
            return None
        return importlib.util.spec_from_file_location(
            fullname, os.path.join(self.here, key + '.py'), loader=self,
            submodule_search_locations=[self.here] if key == '__init__' else None)

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        exec(self.codes[self.key(module.__name__)], module.__dict__)


def load():
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    if PACKAGE not in sys.modules:
        finder = Precompiled(here, compile_in_child(here))
        sys.meta_path.insert(0, finder)
        spec = finder.find_spec(PACKAGE) or importlib.util.spec_from_file_location(
            PACKAGE, os.path.join(here, '__init__.py'), submodule_search_locations=[here])
        package = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = package
        spec.loader.exec_module(package)
    from tcpscale.cli import main
    return main


if __name__ == '__main__':
    sys.dont_write_bytecode = True          # the fallback imports write no __pycache__ either
    sys.exit(load()())
