# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The processes listening on a port and their nofile limits, for real: a listener
that forks a worker (the nginx shape: the parent hands the socket down), read
through sock_diag and /proc; and the pure parts (the limits text, the warning)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from ansible_collections.scalelab.testbed.plugins.module_utils import listeners as ls

LISTENER = r'''
import os, resource, socket, sys, time
resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), int(sys.argv[1])))
s = socket.socket()
s.bind(('127.0.0.1', 0))
s.listen(16)
if os.fork() == 0:          # the worker: it accepts (here: it sleeps)
    time.sleep(60)
    os._exit(0)
print(s.getsockname()[1], flush=True)
time.sleep(60)
'''


@pytest.fixture
def listener():
    proc = subprocess.Popen([sys.executable, '-c', LISTENER, '3000'], stdout=subprocess.PIPE,
                            universal_newlines=True)
    port = int(proc.stdout.readline())
    yield proc, port
    proc.kill()
    proc.wait()
    time.sleep(0.1)


@pytest.mark.skipif(os.geteuid() != 0, reason='reads other processes\' fds (root)')
def test_the_listening_processes_and_their_limits_are_found(listener):
    proc, port = listener
    found = []
    deadline = time.monotonic() + 10
    while len(found) < 2 and time.monotonic() < deadline:
        found = ls.listeners([port])
        time.sleep(0.1)
    assert [p['pid'] for p in found][0] == proc.pid, found
    parent, worker = found
    assert parent['hands_down'] is True and worker['hands_down'] is False
    assert worker['ppid'] == proc.pid
    assert parent['ports'] == [port] and worker['ports'] == [port]
    assert worker['nofile_soft'] == 3000 and worker['nofile_hard'] == 3000
    assert worker['comm'].startswith('python')
    # the worker alone counts: 3,000 files less what it has open
    room = 3000 - worker['open_files']
    assert ls.capacity_warnings(found, room, [port]) == []
    warning = ls.capacity_warnings(found, 10000, [port])[0]
    assert ('can open %s more files together' % '{:,}'.format(room)) in warning
    assert 'fewer than the 10,000 connections' in warning and 'worker_rlimit_nofile' in warning


def test_nothing_listening_is_no_process():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    assert ls.listeners([port]) == []
    assert ls.capacity_warnings([], 100, [port]) == []


def test_the_limits_text_and_the_parent_pid():
    text = ('Limit                     Soft Limit           Hard Limit           Units\n'
            'Max open files            19000                20000                files\n')
    assert ls.parse_limits(text) == (19000, 20000)
    assert ls.parse_limits('Max open files            unlimited            unlimited  files') \
        == (None, None)
    assert ls.parse_limits('') == (None, None)
    assert ls.parse_ppid('42 (nginx: worker (x)) S 41 42 42 0') == 41


def test_unlimited_or_handing_down_only_warns_of_nothing():
    procs = [{'pid': 1, 'comm': 'a', 'nofile_soft': None, 'open_files': 3, 'hands_down': False}]
    assert ls.capacity_warnings(procs, 10 ** 9, [80]) == []
    procs = [{'pid': 1, 'comm': 'a', 'nofile_soft': 10, 'open_files': 3, 'hands_down': True}]
    assert ls.capacity_warnings(procs, 10 ** 9, [80]) == []
