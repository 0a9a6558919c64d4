"""Offline stand-in for ansible-test's pip bootstrap script (get-pip).

ansible-test downloads get-pip-<version>.py from a host this machine cannot
reach, then runs it in each fresh virtual environment with pip-install
arguments. This does the same with the standard library's ensurepip and the
package index that pip is configured for. scripts/setup.sh copies it into
ansible-test's cache (~/.ansible/test/cache/get_pip_<version>.py).
"""
import ensurepip
import os
import subprocess
import sys

args = [a for a in sys.argv[1:] if a not in ('--no-setuptools', '--no-wheel')]
# ansible-test runs this with a scrubbed environment: keep the host's CA bundle
# (a TLS-inspecting proxy may sit between this host and the package index).
for bundle in ('/etc/ssl/certs/ca-certificates.crt', '/etc/pki/tls/certs/ca-bundle.crt'):
    if os.path.exists(bundle):
        args = ['--cert', bundle] + args
        break
ensurepip.bootstrap(upgrade=True)
subprocess.check_call([sys.executable, '-m', 'pip', 'install', '--disable-pip-version-check'] + args)
