# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures for the load engine tests (helpers in enginelib.py)."""

import fcntl
import os

import pytest

from enginelib import HEAVY_LOCK, NetPair


@pytest.fixture
def netpair(tmp_path):
    if os.geteuid() != 0:
        pytest.skip('needs root (network namespaces)')
    pair = NetPair(str(tmp_path))
    try:
        yield pair
    finally:
        pair.teardown()


@pytest.fixture
def heavy_lock():
    """Runs with more than 50,000 sockets hold the machine-wide heavy lock."""
    with open(HEAVY_LOCK, 'a') as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
