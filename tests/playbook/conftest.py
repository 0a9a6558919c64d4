# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared by the playbook tests: a SIGTERM (a CI timeout, a run stopped by hand) ends
the session the way Ctrl-C does, so the finally blocks and fixtures that put the host
back (a sysctl a test changed, the testbed's namespaces) still run. Python's default
for SIGTERM ends the process at once."""

from __future__ import annotations

import signal


def _interrupt(_signum, _frame):
    raise KeyboardInterrupt('SIGTERM')


def pytest_configure(config):  # pylint: disable=unused-argument
    signal.signal(signal.SIGTERM, _interrupt)
