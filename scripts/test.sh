#!/usr/bin/env bash
# Runs the project's tests. CI (.ci/run) calls this same script.
#   bash scripts/test.sh            every stage
#   bash scripts/test.sh unit lint  only the named stages
# Stages: unit sanity lint integration engine playbook molecule
# Needs root (real namespaces, veths, sysctls) and scripts/setup.sh first.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
# shellcheck disable=SC1091
. .venv/bin/activate
export ANSIBLE_COLLECTIONS_PATH="$repo/.collections"
export PYTHONPATH="$repo/.collections${PYTHONPATH:+:$PYTHONPATH}"

all_stages=(unit sanity lint integration engine playbook molecule)
stages=("$@")
[ "${#stages[@]}" -gt 0 ] || stages=("${all_stages[@]}")

# ansible-test insists on running from .../ansible_collections/NS/NAME, with
# the real path; a copy of the working tree (tracked and new files) goes there.
scratch=$(mktemp -d /tmp/scalelab-test.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
collection_copy() {
    local dest=$scratch/ansible_collections/scalelab/testbed
    if [ ! -d "$dest" ]; then
        mkdir -p "$dest"
        git ls-files -z --cached --others --exclude-standard \
            | tar --null --ignore-failed-read -T - -cf - 2>/dev/null \
            | tar -C "$dest" -xf -
        # ansible-test sanity wants a git repository to list files
        (cd "$dest" && git init -q && git add -A >/dev/null)
    fi
    echo "$dest"
}

failed=()
run_stage() {
    local name=$1
    shift
    echo "=== stage: $name"
    local start=$SECONDS
    # the output is kept too: a failed stage's errors are repeated at the end,
    # where a CI log cut to its tail still shows them
    if "$@" 2>&1 | tee "$scratch/stage-$name.log"; then
        echo "=== stage $name: ok ($((SECONDS - start)) s)"
    else
        echo "=== stage $name: FAILED ($((SECONDS - start)) s)"
        failed+=("$name")
    fi
}

stage_unit() { python -m pytest -q tests/unit ${PYTEST_ARGS:-}; }
stage_sanity() {
    # SANITY_ARGS narrows it, e.g. SANITY_ARGS="--test validate-modules"
    local dest; dest=$(collection_copy)
    local pyver; pyver=$(python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    # shellcheck disable=SC2086
    (cd "$dest" && ansible-test sanity --python "$pyver" --requirements --color no ${SANITY_ARGS:-})
}
stage_lint() { ansible-lint --offline --profile production --nocolor; }
stage_integration() {
    local dest; dest=$(collection_copy)
    # INTEGRATION_TARGETS narrows it, e.g. INTEGRATION_TARGETS="sysctls netns"
    # shellcheck disable=SC2086
    (cd "$dest" && ansible-test integration --local --allow-destructive --allow-root --color no ${INTEGRATION_TARGETS:-})
}
stage_engine() { python -m pytest -q tests/engine; }
stage_playbook() { python -m pytest -q --durations=12 tests/playbook; }
stage_molecule() {
    # MOLECULE_SCENARIOS narrows or widens it, e.g. MOLECULE_SCENARIOS="default fleet".
    # By default ipv6 (the two-container layout of "default", over IPv6) and fleet
    # (systemd hosts over SSH): "default" repeats ipv6's layout over IPv4, and CI
    # stays within its 30 minutes without it.
    local s rc=0
    for s in ${MOLECULE_SCENARIOS:-ipv6 fleet}; do
        echo "--- molecule test -s $s"
        molecule test -s "$s" || { echo "--- molecule scenario $s: FAILED"; rc=1; }
    done
    return "$rc"
}

# unit, sanity and lint change nothing on the host and keep about one core busy
# each: two or more of them run at once, their outputs printed one after the
# other once all are done (about 50 s less on 2 cores)
run_static() {
    local s rc t pids=() start=$SECONDS
    echo "=== stages at once: $*"
    for s in "$@"; do
        (
            set +e
            t=$SECONDS
            "stage_$s" > "$scratch/stage-$s.log" 2>&1
            echo "$? $((SECONDS - t))" > "$scratch/stage-$s.rc"
        ) &
        pids+=("$!")
    done
    wait "${pids[@]}" || true
    for s in "$@"; do
        echo "=== stage: $s"
        cat "$scratch/stage-$s.log"
        read -r rc t < "$scratch/stage-$s.rc" || { rc=1; t=?; }
        if [ "$rc" = 0 ]; then
            echo "=== stage $s: ok ($t s, alongside the others)"
        else
            echo "=== stage $s: FAILED ($t s, alongside the others)"
            failed+=("$s")
        fi
    done
    echo "=== stages $*: $((SECONDS - start)) s"
}
asked=("${stages[@]}")
static=()
for s in "${stages[@]}"; do
    case "$s" in
        unit) [ ! -d tests/unit ] || static+=("$s") ;;
        sanity|lint) static+=("$s") ;;
    esac
done
if [ "${#static[@]}" -gt 1 ]; then
    collection_copy > /dev/null     # made once, before the stages that share it start
    run_static "${static[@]}"
    rest=()
    for s in "${stages[@]}"; do
        case "$s" in unit|sanity|lint) ;; *) rest+=("$s") ;; esac
    done
    stages=("${rest[@]+"${rest[@]}"}")
fi

for s in "${stages[@]+"${stages[@]}"}"; do
    case "$s" in
        unit|sanity|lint|integration|engine|playbook|molecule)
            if [ "$s" = molecule ] || [ -d "tests/$s" ] || [ "$s" = sanity ] || [ "$s" = lint ] || [ "$s" = integration ]; then
                run_stage "$s" "stage_$s"
            fi ;;
        *) echo "unknown stage: $s (known: ${all_stages[*]})" >&2; exit 2 ;;
    esac
done

if [ "${#failed[@]}" -gt 0 ]; then
    for s in "${failed[@]}"; do
        echo "=== what failed in stage $s (the lines that say so, from its output above):"
        # pytest's, ansible-test's and ansible-lint's verdicts (lint: each rule broken and
        # where), and the last Ansible task failure that was not ignored (with its task
        # and integration target); long lines are cut
        awk -v stage="$s" '/^Running .* integration test role/ { target = $0 }
             /^TASK \[/ { task = $0 }
             /^(fatal|failed): / { line = $0; getline after
                                   if (after !~ /ignoring/) { last = target "\n" task "\n" line } }
             /^FAILED |^ERROR: |violation\(s\) that are fatal|[0-9]+ failure\(s\)/ { print substr($0, 1, 400) }
             stage == "lint" && /^[a-z][a-z0-9-]*(\[[a-z0-9-]+\])?: / { line = $0; getline where
                                                   print substr(line, 1, 400) "\n" substr(where, 1, 200) }
             END { if (last != "") print last }' "$scratch/stage-$s.log" \
            | cut -c 1-600 | tail -n 30 || true
    done
    echo "FAILED stages: ${failed[*]}"
    exit 1
fi
echo "all stages passed: ${asked[*]}"
