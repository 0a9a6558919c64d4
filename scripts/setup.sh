#!/usr/bin/env bash
# Installs everything the testbed and its tests need, on a fresh Debian or
# Ubuntu host, as root. Safe to run again: it only adds what is missing.
#   apt: iproute2, procps, podman + runc + debootstrap + nftables (molecule), git,
#        nginx-light (a server under test; the tests start their own),
#        prometheus + promtool (scrape the engine's metrics), chromium (renders the report),
#        gcc + libc6-dev (builds the C reference of benchmarks/connections.py),
#        linux-perf (benchmarks/connections.py --perf profiles the ramp)
#   pip: requirements.txt (the one place dependencies are pinned) into .venv
# and links this checkout as the collection scalelab.testbed (.collections/).
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(iproute2 procps git python3 python3-venv python3-pip
              podman runc debootstrap slirp4netns uidmap iptables nftables
              nginx-light prometheus chromium gcc libc6-dev linux-perf)
missing=()
for p in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: run as root to install: ${missing[*]}" >&2
        exit 1
    fi
    echo "setup: apt-get install ${missing[*]}"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
stamp=.venv/.requirements.sha
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup: pip install -r requirements.txt into .venv"
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -r requirements.txt
    echo "$want" > "$stamp"
fi

mkdir -p .collections/ansible_collections/scalelab
ln -sfn ../../.. .collections/ansible_collections/scalelab/testbed
echo "setup: ready (activate with: . .venv/bin/activate)"

# ansible-test bootstraps pip in its sanity venvs from a script it downloads
# from a host that is not reachable here; give it an offline equivalent.
pip_version=$(grep -oE "pip='[0-9.]+'" .venv/lib/python3*/site-packages/ansible_test/_internal/python_requirements.py | head -n1 | tr -dc '0-9.')
if [ -n "$pip_version" ]; then
    mkdir -p ~/.ansible/test/cache
    cp scripts/ansible-test-get-pip.py ~/.ansible/test/cache/get_pip_${pip_version//./_}.py
fi
