# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Documentation shared by the modules of scalelab.testbed.

``scalelab.testbed.testbed`` describes the attributes (each module states its
own support); ``.journal`` and ``.netns`` are the options several modules
share.
"""

from __future__ import annotations


class ModuleDocFragment(object):

    DOCUMENTATION = r'''
options: {}
attributes:
  check_mode:
    description: Can run in check mode and return what it would change without changing anything.
  diff_mode:
    description: Returns what changed (or would change, in check mode) before and after, in diff mode.
  platform:
    description: Target OS families it can operate on.
    support: full
    platforms: linux
'''

    JOURNAL = r'''
options:
  journal:
    description:
      - The journal in which every change is recorded, with the previous value, before it is
        made, for M(scalelab.testbed.restore). The first value recorded for a key is kept, so
        running a play twice never replaces the host's original value.
      - Locked while the task reads and writes it. Its directory is made when the first entry is
        saved and removed with it once it is empty. Nothing is written in check mode.
    type: path
    default: /var/lib/scalelab_testbed/journal.json
'''

    NETNS = r'''
options:
  netns:
    description:
      - Name of an existing network namespace (as C(ip netns list) shows it) to work in; the
        namespace of the module's own process when left out.
      - It is never created by this option (see M(scalelab.testbed.netns)). A name with shell
        metacharacters, whitespace or C(/) is refused.
    type: str
'''
