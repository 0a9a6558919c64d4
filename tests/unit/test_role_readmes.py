# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Each role's README is made from its argument spec: they must not drift apart."""

from __future__ import annotations

import os
import subprocess
import sys

from testlib import REPO


def test_the_role_readmes_are_made_from_the_argument_specs():
    proc = subprocess.run([sys.executable, os.path.join(REPO, 'scripts', 'role-readme.py'), '--check'],
                          stdout=subprocess.PIPE, universal_newlines=True, check=False)
    assert proc.returncode == 0, proc.stdout
