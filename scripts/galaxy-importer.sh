#!/usr/bin/env bash
# Runs galaxy-importer, the checks a Galaxy server runs on upload, on the
# collection's tarball, offline.
#   bash scripts/galaxy-importer.sh             build the tarball, then check it
#   bash scripts/galaxy-importer.sh FILE.tar.gz check an existing tarball
# galaxy-importer pins attrs<24 (and pulls its own ansible-core), which fights
# the pins in requirements.txt, so it lives in a throw-away venv of its own:
# GALAXY_IMPORTER_VENV (default /tmp/scalelab-galaxy-importer-venv), created
# on first use from PyPI. Checks that run here: MANIFEST/FILES.json checksums,
# metadata, ansible-doc of every plugin, role argument specs, flake8 on
# plugins, changelog presence, ansible-lint (production profile, offline).
# Not run: ansible-test sanity in a container (needs a registry; run
# `bash scripts/test.sh sanity` for that). Exit status: 1 when the import
# fails or logs an ERROR; warnings are listed and counted, not fatal.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

version=${GALAXY_IMPORTER_VERSION:-0.4.44}
venv=${GALAXY_IMPORTER_VENV:-/tmp/scalelab-galaxy-importer-venv}
if ! "$venv/bin/python" -c "import galaxy_importer" 2>/dev/null; then
    echo "galaxy-importer: installing galaxy-importer==$version into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip
    "$venv/bin/pip" install -q "galaxy-importer==$version"
fi

work=$(mktemp -d /tmp/scalelab-galaxy-importer.XXXXXX)
trap 'rm -rf "$work"' EXIT

if [ $# -ge 1 ]; then
    tarball=$(readlink -f "$1")
else
    "$repo/.venv/bin/ansible-galaxy" collection build --output-path "$work" "$repo" >/dev/null
    tarball=$(ls "$work"/scalelab-testbed-*.tar.gz)
fi

cat > "$work/galaxy-importer.cfg" <<'EOF'
[galaxy-importer]
# No container runtime with a registry here: ansible-test is not run.
run_ansible_test = false
ansible_test_local_image = false
local_image_docker = false
run_ansible_doc = true
run_ansible_lint = true
offline_ansible_lint = true
run_flake8 = true
check_changelog = true
require_v1_or_greater = false
EOF

# The importer finds ansible-doc, ansible-lint and flake8 on PATH; it writes
# importer_result.json to the working directory.
log=$work/importer.log
set +e
(cd "$work" && env PATH="$venv/bin:$PATH" GALAXY_IMPORTER_CONFIG="$work/galaxy-importer.cfg" \
    "$venv/bin/python" -m galaxy_importer.main "$tarball") 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e

warnings=$(grep -c '^WARNING: ' "$log" || true)
errors=$(grep -c '^ERROR: ' "$log" || true)
echo "galaxy-importer $version on $(basename "$tarball"): exit $rc, $errors errors, $warnings warnings"
if [ "$rc" -ne 0 ] || [ "$errors" -ne 0 ] || ! grep -q '^Importer processing completed successfully' "$log"; then
    exit 1
fi
