# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures of the module-level tests (root; real namespaces; names start with tbm-)."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest


@pytest.fixture
def root():
    if os.geteuid() != 0:
        pytest.skip('needs root (real namespaces and files)')


@pytest.fixture
def scratch_netns(root):
    name = 'tbm-%s' % uuid.uuid4().hex[:8]
    subprocess.run(['ip', 'netns', 'add', name], check=True)
    subprocess.run(['ip', '-n', name, 'link', 'set', 'lo', 'up'], check=True)
    try:
        yield name
    finally:
        subprocess.run(['ip', 'netns', 'del', name], check=False)
