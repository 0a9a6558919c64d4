# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The C reference of benchmarks/connections.py builds with cc and holds a small count,
in the same kind of namespaces the benchmark makes, checked by sock_diag."""

from __future__ import annotations

import os
import subprocess
import sys

from ansible_collections.scalelab.testbed.plugins.module_utils.sockdiag import count_tcp_states

from enginelib import REPO, SERVER_ADDR

sys.path.insert(0, os.path.join(REPO, 'benchmarks'))


def test_the_c_reference_builds_and_holds_its_connections(netpair, tmp_path):
    import connections              # the benchmark module (needs root only to run phases)
    cref, why = connections.build_cref(str(tmp_path))
    assert cref, why                # setup installs a compiler with the build tools
    pair = netpair.up(sources=1)
    n = 3000
    srv = subprocess.Popen(['ip', 'netns', 'exec', pair.srv, cref, 'server', SERVER_ADDR, '10000',
                            str(n)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           universal_newlines=True, start_new_session=True)
    pair.others.append(srv)
    assert srv.stdout.readline().strip() == 'ready'
    cli = subprocess.Popen(['ip', 'netns', 'exec', pair.cli, cref, 'client', SERVER_ADDR, '10000',
                            str(n)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           universal_newlines=True, start_new_session=True)
    pair.others.append(cli)
    assert cli.stdout.readline().strip() == 'loaded'
    cli.stdin.write('go\n')
    cli.stdin.flush()
    done = cli.stdout.readline().split()
    assert done[0] == 'done' and int(done[1]) == n and int(done[3]) == 0, done
    assert srv.stdout.readline().split() == ['held', str(n)]
    assert count_tcp_states(netns=pair.cli, states=['established'],
                            remote_ports=[10000])['established'] == n
    assert count_tcp_states(netns=pair.srv, states=['established'],
                            local_ports=[10000])['established'] == n
    for p in (cli, srv):
        p.stdin.write('end\n')
        p.stdin.flush()
        assert p.wait(30) == 0


def test_the_c_reference_refuses_bad_arguments(tmp_path):
    import connections
    cref, why = connections.build_cref(str(tmp_path))
    assert cref, why
    res = subprocess.run([cref, 'server', 'not-an-address', '1', '1'], stderr=subprocess.PIPE,
                         universal_newlines=True, check=False)
    assert res.returncode == 2 and 'usage: cref server|client IPV4 PORT N' in res.stderr
