# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A service the testbed did not deploy, on the fleet (README, "Testing your own
server"): Debian's nginx-light, started by this test on server1, and the
three clients holding HTTP keep-alive connections to it.

The inventory is the fleet's, regrouped: no group servers (the server half is
not deployed), the clients, and a group services of three hosts:

* server1 runs nginx and opts in to tuning (tuning_services: true): the count
  is verified there with sock_diag, on nginx's port; teardown puts it back;
* server2 is only read: nothing listens there, which the preflight says, and
  it is left exactly as it was (snapshot of prepare);
* gone is an address nobody answers: the preflight says it cannot be reached,
  and the report says the service's side was counted on the others only.

Runs on the torn-down fleet, after the other tests."""

import json
import subprocess

import pytest
import yaml

from conftest import CLIENTS, inventory, play_argv, play_env, scratch, take_snapshot

import snapshot as snapshot_lib

SERVICE = 'server1'
READ_ONLY = 'server2'
GONE = 'gone'
PORT = 8080
CONNECTIONS = 15000            # 5,000 per client
NGINX_DIR = '/tmp/scalelab-fleet-nginx'
CONFIG = '''user root;
worker_processes 2;
worker_rlimit_nofile 10000;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 10000; }}
http {{
    access_log off;
    keepalive_timeout 600s;
    keepalive_requests 1000000;
    server {{
        listen {port} reuseport backlog=4096;
        root {dir}/www;
        location / {{ index index.html; }}
    }}
}}
'''


def service_inventory(path):
    """The fleet's hosts, as molecule reaches them, in the groups of a service run."""
    out = subprocess.run(['ansible-inventory', '-i', inventory(), '--list'], env=play_env(),
                         stdout=subprocess.PIPE, check=True).stdout
    hostvars = json.loads(out)['_meta']['hostvars']
    gone = dict(hostvars['client3'], ansible_host='10.215.0.99', ansible_ssh_retries=0,
                ansible_ssh_common_args=(hostvars['client3'].get('ansible_ssh_common_args', '')
                                         + ' -o ConnectTimeout=3').strip())
    data = {'all': {'children': {
        'servers': {'hosts': {}},
        'clients': {'hosts': dict((c, hostvars[c]) for c in CLIENTS)},
        'services': {'hosts': {SERVICE: dict(hostvars[SERVICE], tuning_services=True),
                               READ_ONLY: hostvars[READ_ONLY], GONE: gone}}}}}
    with open(path, 'w') as f:
        yaml.safe_dump(data, f)
    return path


def play(inventory_path, playbook_name, *extra):
    argv = play_argv(playbook_name, *extra)
    argv[argv.index('-i') + 1] = inventory_path
    proc = subprocess.run(argv, env=play_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=1200, check=False)
    return proc.returncode, proc.stdout.decode('utf-8', 'replace')


@pytest.fixture(scope='module')
def service_run(hosts, tmp_path_factory):
    nginx = hosts[SERVICE]
    conf = '%s/nginx.conf' % NGINX_DIR
    nginx.check_output('mkdir -p %s/www && echo ok > %s/www/index.html', NGINX_DIR, NGINX_DIR)
    nginx.check_output('python3 -c %s', 'open(%r, "w").write(%r)'
                       % (conf, CONFIG.format(dir=NGINX_DIR, port=PORT)))
    nginx.check_output('nginx -p %s -c %s', NGINX_DIR, conf)
    # each host as it is before the run (test_4 restarted client3, so prepare's
    # snapshot no longer holds for it: its firewall and addresses were not kept)
    before = dict((name, take_snapshot(hosts[name])) for name in (SERVICE, READ_ONLY) + CLIENTS)
    path = service_inventory(str(tmp_path_factory.mktemp('service') / 'inventory.yml'))
    reports = scratch() / 'service-report'
    extra = ['-e', json.dumps({
        'testbed_connections': CONNECTIONS,
        'testbed_service_endpoints': ['10.215.0.10:%d' % PORT],
        'client_protocol': 'http', 'client_hold': 5,
        'report_dir': str(reports), 'report_latest_link': '',
        'client_fetch_dir': str(scratch() / 'service-fetched')})]
    try:
        rc, out = play(path, 'site.yml', *extra)
        (scratch() / 'service-play.log').write_text(out)
        assert (reports / 'report.json').exists(), 'no report (rc %d):\n%s' % (rc, out[-6000:])
        with open(str(reports / 'report.json')) as f:
            report = json.load(f)
        yield {'rc': rc, 'out': out, 'report': report, 'inventory': path, 'extra': extra,
               'before': before}
    finally:
        nginx.run('nginx -p %s -c %s -s quit', NGINX_DIR, conf)
        nginx.run('for i in $(seq 50); do [ -e %s/nginx.pid ] || break; sleep 0.2; done; rm -rf %s',
                  NGINX_DIR, NGINX_DIR)


def test_the_run_passes_and_names_what_it_could_not_count(service_run):
    assert service_run['rc'] == 0, service_run['out'][-4000:]
    report = service_run['report']
    assert report['verified_ok'], report['reasons']
    assert report['verified_on'] == 'partial'
    assert report['verification_note'].startswith(
        "the service's side was counted on %s, %s only" % (SERVICE, READ_ONLY))
    assert '%s could not be reached' % GONE in report['verification_note']
    assert 'Note: the service' in service_run['out']


def test_the_count_is_verified_on_nginx_side(service_run):
    services = service_run['report']['services']
    # every connection went to server1's nginx, counted there by sock_diag at both ends of the hold
    assert services[SERVICE]['start'] >= CONNECTIONS and services[SERVICE]['end'] >= CONNECTIONS
    assert services[READ_ONLY]['start'] == 0 and services[READ_ONLY]['reachable'] is True
    assert services[GONE]['reachable'] is False and services[GONE]['start'] is None
    assert service_run['report']['verified_client_side'] == CONNECTIONS
    assert service_run['report']['protocol']['responses_by_status'] == {'200': CONNECTIONS}


def test_the_preflight_warns_of_each_service_host(service_run):
    out = service_run['out']
    assert 'Warning: %s: nothing listens on port(s) %d there' % (READ_ONLY, PORT) in out
    assert 'Warning: %s: cannot be reached' % GONE in out


def test_a_service_host_that_did_not_opt_in_is_left_as_it_was(service_run, hosts):
    before = service_run['before'][READ_ONLY]
    assert snapshot_lib.diff(before, take_snapshot(hosts[READ_ONLY])) == []


def test_the_host_that_opted_in_was_tuned_and_teardown_puts_every_host_back(service_run, hosts):
    before = service_run['before']
    tuned = take_snapshot(hosts[SERVICE])
    assert snapshot_lib.diff(before[SERVICE], tuned) != [], \
        'tuning_services true changed nothing on server1'
    rc, out = play(service_run['inventory'], 'teardown.yml', *service_run['extra'])
    assert rc == 0, out[-3000:]
    for name in (SERVICE, READ_ONLY) + CLIENTS:
        assert snapshot_lib.diff(before[name], take_snapshot(hosts[name])) == [], name
