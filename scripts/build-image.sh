#!/usr/bin/env bash
# Builds the container image the molecule scenarios run on, without a
# registry: debootstrap (minbase + python3, iproute2, procps) into a scratch
# directory under images/, pyroute2 (the range pinned in requirements.txt)
# added to the system Python's dist-packages, then `podman import`.
#
#   bash scripts/build-image.sh            reuse the image if it is current
#   bash scripts/build-image.sh --rebuild  build it again regardless
#   bash scripts/build-image.sh --image localhost/NAME:TAG --suite bookworm
#   bash scripts/build-image.sh --systemd  the fleet's image: systemd as PID 1,
#       sshd (root by key only), dbus and nftables; localhost/scalelab-testbed-systemd
#
# "Current" means: the image exists and carries the label
# org.scalelab.testbed.recipe equal to the hash of this recipe (this script,
# the suite, the package list and the pyroute2 requirement). Editing any of
# them makes the next run rebuild.
#
# Environment: DEBOOTSTRAP_MIRROR (default http://deb.debian.org/debian),
# CONTAINERS_CONF (default: molecule/containers.conf of this repository),
# PIP (default: .venv/bin/pip, else python3 -m pip).
# Needs root, debootstrap and podman (scripts/setup.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

image=
suite=bookworm
rebuild=0
systemd=0
packages=python3,iproute2,procps
mirror=${DEBOOTSTRAP_MIRROR:-http://deb.debian.org/debian}

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --rebuild) rebuild=1 ;;
        --systemd) systemd=1 ;;
        --image) image=${2:?--image needs a value}; shift ;;
        --suite) suite=${2:?--suite needs a value}; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "build-image: unknown argument: $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done
if [ "$systemd" -eq 1 ]; then
    # systemd as PID 1 and sshd: the fleet scenario reaches its hosts over SSH;
    # nginx-light: the service under test its verifier starts on a host of the
    # group services (never at boot: its unit is disabled below)
    packages=$packages,systemd,systemd-sysv,dbus,openssh-server,nftables,nginx-light
    image=${image:-localhost/scalelab-testbed-systemd:bookworm}
fi
image=${image:-localhost/scalelab-testbed:bookworm}
case "$image" in
    *[!A-Za-z0-9._/:-]*|'') echo "build-image: --image $image: use letters, digits and . _ / : -" >&2; exit 2 ;;
esac
case "$suite" in
    *[!a-z0-9]*|'') echo "build-image: --suite $suite: use a Debian suite name such as bookworm" >&2; exit 2 ;;
esac

export CONTAINERS_CONF=${CONTAINERS_CONF:-$repo/molecule/containers.conf}
for tool in podman debootstrap tar sha256sum flock; do
    command -v "$tool" >/dev/null || { echo "build-image: $tool not found (run scripts/setup.sh as root)" >&2; exit 1; }
done
if [ "$(id -u)" -ne 0 ]; then
    echo "build-image: needs root (debootstrap, chroot, rootful podman)" >&2
    exit 1
fi

# pyroute2 is what the collection's modules import on the targets.
pyroute2_req=$(grep -E '^[[:space:]]*pyroute2([=<>!~ ]|$)' requirements.txt | sed 's/[[:space:]]*#.*//; s/[[:space:]]//g' | head -n1)
[ -n "$pyroute2_req" ] || { echo "build-image: no pyroute2 line in requirements.txt" >&2; exit 1; }
recipe=$( { cat "$0"; echo "$suite $packages $pyroute2_req"; } | sha256sum | cut -c1-16)

mkdir -p images
# One build at a time (both scenarios may ask for the image at once).
exec 9>images/.build.lock
flock 9

if [ "$rebuild" -eq 0 ] && podman image exists "$image"; then
    have=$(podman image inspect --format '{{ index .Labels "org.scalelab.testbed.recipe" }}' "$image" 2>/dev/null || true)
    if [ "$have" = "$recipe" ]; then
        echo "build-image: reusing $image (recipe $recipe)"
        exit 0
    fi
    echo "build-image: $image was built from another recipe (${have:-none}, now $recipe): rebuilding"
fi

if [ -n "${PIP:-}" ]; then
    read -r -a pip <<<"$PIP"
elif [ -x .venv/bin/pip ]; then
    pip=(.venv/bin/pip)
else
    pip=(python3 -m pip)
fi

start=$SECONDS
rootfs=$(mktemp -d "$repo/images/rootfs.XXXXXX")
cleanup() { rm -rf --one-file-system "$rootfs"; }
trap cleanup EXIT

mkdir -p images/debs
echo "build-image: debootstrap --variant=minbase --include=$packages $suite ($mirror)"
if ! debootstrap --variant=minbase --include="$packages" --cache-dir="$repo/images/debs" \
        "$suite" "$rootfs" "$mirror" >images/debootstrap.log 2>&1; then
    tail -n 20 images/debootstrap.log >&2
    echo "build-image: debootstrap failed (full log: images/debootstrap.log)" >&2
    exit 1
fi

site=$rootfs/usr/lib/python3/dist-packages
echo "build-image: pip install $pyroute2_req into the image's dist-packages"
"${pip[@]}" install -q --disable-pip-version-check --no-deps --no-compile \
    --target "$site" "$pyroute2_req"
rm -rf "$site"/bin
# Compile with the image's own interpreter, and prove the import works there.
chroot "$rootfs" /usr/bin/python3 -m compileall -q /usr/lib/python3/dist-packages/pyroute2 >/dev/null
version=$(chroot "$rootfs" /usr/bin/python3 -c 'import pyroute2, sys; sys.stdout.write(pyroute2.__version__)')
echo "build-image: pyroute2 $version imports in the image"

# Smaller image: no package caches, lists or documentation.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*

if [ "$systemd" -eq 1 ]; then
    # sshd: root by key only (the key is put in at create time), no DNS
    # lookups (the scenario network has no resolver), each container's own
    # host keys (made at its first boot, not baked into the image).
    cat >"$rootfs/etc/ssh/sshd_config.d/scalelab-testbed.conf" <<'SSHD'
PermitRootLogin prohibit-password
PasswordAuthentication no
UseDNS no
SSHD
    rm -f "$rootfs"/etc/ssh/ssh_host_*
    mkdir -p "$rootfs/etc/systemd/system/ssh.service.d"
    cat >"$rootfs/etc/systemd/system/ssh.service.d/scalelab-testbed.conf" <<'UNIT'
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
UNIT
    chroot "$rootfs" systemctl enable ssh.service >/dev/null 2>&1
    # nothing to do in a container: no getty, no remount of the root; nginx
    # only when a test starts it, with its own configuration
    rm -f "$rootfs/etc/systemd/system/multi-user.target.wants/nginx.service"
    for unit in getty.target console-getty.service systemd-remount-fs.service; do
        ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
    done
    mkdir -p "$rootfs/root/.ssh" && chmod 700 "$rootfs/root/.ssh"
    # PID 1 is systemd; podman stop sends it SIGRTMIN+3 (halt)
    cmd='["/lib/systemd/systemd"]'
    stop='--change STOPSIGNAL=SIGRTMIN+3'
else
    # PID 1 traps TERM so `podman stop`/`rm -f` ends it at once instead of
    # waiting 10 s to send KILL.
    cmd='["/bin/sh", "-c", "trap \"exit 0\" TERM INT; while :; do sleep 3600 & wait $!; done"]'
    stop=
fi
old_id=$(podman image inspect --format '{{ .Id }}' "$image" 2>/dev/null || true)
# shellcheck disable=SC2086  # $stop is one option or nothing
tar -C "$rootfs" --numeric-owner -cf - . | podman import \
    --change "CMD $cmd" $stop \
    --change "LABEL org.scalelab.testbed.recipe=$recipe" \
    --change "LABEL org.scalelab.testbed.pyroute2=$version" \
    --quiet --message "scalelab.testbed molecule image: debootstrap $suite minbase + $packages, pyroute2 $version" \
    - "$image" >/dev/null
# The tag moved to the new image; drop the old one unless a container still
# uses it (never with -f: that would remove the containers).
if [ -n "$old_id" ]; then
    podman image rm "$old_id" >/dev/null 2>&1 || echo "build-image: the previous image ${old_id:0:12} is still in use: kept"
fi
echo "build-image: built $image (recipe $recipe) in $((SECONDS - start)) s"
