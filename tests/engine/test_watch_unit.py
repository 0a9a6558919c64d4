# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""watch.Poller: one poll() over groups of descriptors, each watched for its own events
(real pipes and a real poll(2))."""

from __future__ import annotations

import array
import os

import pytest

from enginelib import engine_package

watch = engine_package().watch


@pytest.fixture
def pipes():
    made = [os.pipe() for _i in range(3)]
    yield made
    for r, w in made:
        os.close(r)
        os.close(w)


def test_each_group_reports_only_its_own_events(pipes):
    """The handshakes' group is watched for POLLOUT, the answers' group for POLLIN: a
    readable descriptor of the first group and a writable one of the second stay quiet."""
    (r0, w0), (r1, w1), (r2, w2) = pipes
    os.write(w1, b'answer')
    os.write(w0, b'x')          # r0 readable, but in the POLLOUT group
    poller = watch.Poller()
    got = poller.ready(array.array('i', [w0, r0]), watch.POLLOUT, 0, (r2, watch.POLLIN),
                       ([r1, w2], watch.POLLIN))
    assert got == [(w0, watch.POLLOUT), (r1, watch.POLLIN)]
    # the wake-up pipe first when it is readable; an empty second group is no group
    os.write(w2, b'w')
    got = poller.ready(array.array('i', [w0]), watch.POLLOUT, 0, (r2, watch.POLLIN), ([], 0))
    assert got == [(r2, watch.POLLIN), (w0, watch.POLLOUT)]
    got = poller.ready(array.array('i', []), watch.POLLOUT, 0, (r2, watch.POLLIN),
                       ({r1: None}, watch.POLLIN))
    assert got == [(r2, watch.POLLIN), (r1, watch.POLLIN)]


def test_a_closed_peer_is_reported_whatever_was_asked(pipes):
    (r0, w0), _p1, _p2 = pipes
    os.close(w0)
    pipes[0] = (r0, os.dup(r0))         # (closed by the fixture)
    got = watch.Poller().ready(array.array('i', []), watch.POLLOUT, 0, None, ([r0], watch.POLLIN))
    assert len(got) == 1 and got[0][0] == r0 and got[0][1] & watch.POLLHUP


def test_a_workers_held_table_gives_poll_the_descriptors_it_marks(pipes):
    """A worker marks what it holds in a table of one byte per descriptor
    (system.held_table; the server half's entries are 1 + the endpoint): held_fds gives
    poll() those descriptors, in both groups, and none it unmarked."""
    system = engine_package().system
    (r0, w0), (r1, w1), (r2, w2) = pipes
    held = system.held_table(20000)
    assert len(held) == 20002 and not any(held)
    for fd in (r0, r1, r2):
        held[fd] = 1
    held[r0] = 0                        # dropped
    os.write(w0, b'x')
    os.write(w1, b'x')
    assert list(system.held_fds(held)) == sorted([r1, r2])
    poller = watch.Poller()
    assert poller.ready(system.held_fds(held), watch.POLLIN) == [(r1, watch.POLLIN)]
    os.write(w2, b'y')
    got = poller.ready(array.array('i', [w0]), watch.POLLOUT, 0, None,
                       (system.held_fds(held), watch.POLLIN))
    assert got == [(w0, watch.POLLOUT), (r1, watch.POLLIN), (r2, watch.POLLIN)]
    endpoints = system.fd_table(20000, 54)      # a holder's: 1 + the endpoint, 0 not held
    endpoints[r2] = 54
    assert list(system.held_fds(endpoints)) == [r2]
