# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What caps a service under test: the preflight sentences from its hosts' readings."""

from __future__ import annotations

from ansible_collections.scalelab.testbed.plugins.filter import testbed as tb
from ansible_collections.scalelab.testbed.plugins.module_utils import service as sv

HOSTS = {'svc1': {'connections': 300000, 'ports': [8080]},
         'svc2': {'connections': 300000, 'ports': [8080]}}
NGINX = [{'pid': 10, 'comm': 'nginx', 'hands_down': True, 'nofile_soft': 1024, 'open_files': 8},
         {'pid': 11, 'comm': 'nginx', 'hands_down': False, 'nofile_soft': 200000, 'open_files': 9}]


def reading(host, **sysctls):
    base = {'net.core.somaxconn': '4096', 'net.netfilter.nf_conntrack_max': '262144',
            'net.netfilter.nf_conntrack_count': '12'}
    base.update(sysctls)
    return {'item': host, 'changed': False, 'sysctls': base, 'listeners': NGINX,
            'listener_warnings': []}


def test_a_host_with_room_has_nothing_to_say():
    out = sv.preflight([reading('svc1', **{'net.netfilter.nf_conntrack_max': '1048576'})], HOSTS)
    assert out == [{'host': 'svc1', 'reachable': True, 'readable': True, 'warnings': []}]


def test_conntrack_and_the_backlog_are_warned_of_with_figures():
    out = sv.preflight([reading('svc1', **{'net.core.somaxconn': '128'})], HOSTS)
    text = ' '.join(out[0]['warnings'])
    assert 'net.netfilter.nf_conntrack_max is 262,144 with 12 tracked' in text
    assert "the service's 300,000 connections" in text
    assert 'net.core.somaxconn is 128' in text


def test_a_tuned_host_is_not_warned_of_what_the_tuning_fixes():
    results = [reading('svc1', **{'net.core.somaxconn': '128'})]
    out = sv.preflight(results, HOSTS, tuned={'svc1': True}, conntrack={'svc1': 'notrack'})
    assert out[0]['warnings'] == []
    # leave: conntrack is still the host's own
    out = sv.preflight(results, HOSTS, tuned={'svc1': True}, conntrack={'svc1': 'leave'})
    assert len(out[0]['warnings']) == 1 and 'nf_conntrack_max' in out[0]['warnings'][0]
    # the one-box tuning raises the backlog in the namespaces, not where the service listens
    out = sv.preflight(results, HOSTS, tuned={'svc1': True}, conntrack={'svc1': 'size'}, netns=True)
    assert [w.split(':')[0] for w in out[0]['warnings']] == ['net.core.somaxconn is 128']


def test_unreachable_unreadable_and_silent_hosts_are_named():
    results = [{'item': 'svc1', 'unreachable': True, 'msg': 'ssh: connect to host 10.0.0.9 port 22: '
                'No route to host', 'changed': False},
               {'item': 'svc2', 'failed': False, 'msg': 'pyroute2 is needed'},
               dict(reading('svc3'), listeners=[])]
    out = sv.preflight(results, dict(HOSTS, svc3={'connections': 1}), ports=[8080])
    assert [(o['host'], o['reachable'], o['readable']) for o in out] == [
        ('svc1', False, False), ('svc2', True, False), ('svc3', True, True)]
    assert 'cannot be reached (ssh: connect to host 10.0.0.9' in out[0]['warnings'][0]
    assert "side of the count will not be verified there" in out[0]['warnings'][0]
    assert 'could not be read (pyroute2 is needed)' in out[1]['warnings'][0]
    assert 'nothing listens on port(s) 8080 there' in out[2]['warnings'][-1]


def test_the_listeners_nofile_warning_is_passed_on():
    r = dict(reading('svc1', **{'net.netfilter.nf_conntrack_max': '1048576'}),
             listener_warnings=['the processes listening on port(s) 8080 can open 19,000 more files'])
    assert sv.preflight([r], HOSTS)[0]['warnings'] == [
        'the processes listening on port(s) 8080 can open 19,000 more files']


def test_skipped_items_and_the_filter():
    assert sv.preflight([{'item': 'svc1', 'skipped': True}], HOSTS) == []
    assert tb.testbed_service_preflight([reading('svc1')], HOSTS, ports=[8080]) == \
        sv.preflight([reading('svc1')], HOSTS, ports=[8080])
