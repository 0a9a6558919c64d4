# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers for the unit tests: the roles' real defaults as the core's input, and
modules of the repository that are not on the path (the engine's, the tests')."""

from __future__ import annotations

import importlib.util
import os

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROLES = ('testbed', 'topology', 'tuning', 'server', 'client', 'report', 'restore')


def load_module(name, *path):
    """The Python file at REPO/path..., imported as module name (no __pycache__ written
    next to it: the dont_write_bytecode of the caller holds)."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, *path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def role_defaults(**overrides):
    """Every role's defaults/main.yml (templated values left out), with overrides."""
    values = {}
    for role in ROLES:
        with open(os.path.join(REPO, 'roles', role, 'defaults', 'main.yml')) as f:
            values.update((k, v) for k, v in (yaml.safe_load(f) or {}).items()
                          if not (isinstance(v, str) and '{{' in v))
    values.update(overrides)
    return values
