# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Jinja adapters over the core in plugins/module_utils.

The product's logic lives in pure modules there, unit-tested directly:
plan.py (the run plan and the checks of every role variable, variables.py),
tuning.py (the kernel values for one host), service.py (what caps a service
under test) and report.py (the aggregation and the verdict). These filters only hand the roles' data to them.
"""

from __future__ import annotations

import socket

from ansible.errors import AnsibleFilterError

from ansible_collections.scalelab.testbed.plugins.module_utils import plan as plan_core
from ansible_collections.scalelab.testbed.plugins.module_utils import service as service_core
from ansible_collections.scalelab.testbed.plugins.module_utils import tuning as tuning_core
from ansible_collections.scalelab.testbed.plugins.module_utils.report import report_from_records


def testbed_plan(variables, servers, clients, host_inputs=None, services=None):
    """The run plan from the role variables (by name) and the inventory groups."""
    if not isinstance(variables, dict):
        raise AnsibleFilterError('testbed_plan expects a dict of role variables')
    return plan_core.build(variables, servers, clients, host_inputs, resolve=resolve_name,
                           services=services)


def resolve_name(name, versions):
    """The addresses (text) of a host name in the given IP versions, resolved here (the
    controller); [] when it does not resolve."""
    families = {4: socket.AF_INET, 6: socket.AF_INET6}
    out = []
    for version in versions:
        try:
            infos = socket.getaddrinfo(name, None, families[version], socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError):
            continue
        out += [i[4][0] for i in infos if i[4][0] not in out]
    return out


def testbed_tuning(plan, host, kernel, variables):
    """The kernel values for host's share of the plan."""
    if not isinstance(plan, dict) or not plan.get('ok'):
        raise AnsibleFilterError('testbed_tuning expects a valid plan (testbed_plan)')
    return tuning_core.compute(plan, host, kernel, variables)


def testbed_report(records, clients, servers, target, missing=None, finished=None,
                   services=None):
    """The report and its verdict over the whole run."""
    return report_from_records(records, clients, servers, target, missing=missing,
                               finished=finished, services=services)


def testbed_service_preflight(results, hosts, tuned=None, conntrack=None, ports=None, netns=False):
    """What caps a service under test, per host read (kernel_info results)."""
    if not isinstance(results, list) or not isinstance(hosts, dict):
        raise AnsibleFilterError('testbed_service_preflight expects a list of kernel_info results '
                                 'and a dict of hosts')
    return service_core.preflight(results, hosts, tuned=tuned, conntrack=conntrack,
                                  ports=ports or [], netns=bool(netns))


class FilterModule(object):

    def filters(self):
        return {
            'testbed_plan': testbed_plan,
            'testbed_tuning': testbed_tuning,
            'testbed_report': testbed_report,
            'testbed_service_preflight': testbed_service_preflight,
        }
