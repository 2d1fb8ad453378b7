#!/usr/bin/env bash
# Build the lab node image WITHOUT a container registry.
#
#   build.sh IMAGE_REF            e.g. build.sh spark-lab-node:1a2b3c4d5e6f
#
# 1. debootstrap --variant=minbase --include=python3 trixie  -> base rootfs
#    (stripped, tarred: it is shipped inside the node as /opt/spark-lab/base-rootfs.tar,
#    so a node can `docker import` a base image without a registry)
# 2. a copy of it + the packages of packages.txt + overlay/ + container tweaks
# 3. tar | docker import (CMD systemd, ENV container=docker), twice: IMAGE_REF is the
#    NetworkManager flavour (like DGX OS), IMAGE_REF-networkd the systemd-networkd one
#
# Usually called by `lab/spark_lab.py image`, which names the image after a hash of
# this directory (so it is rebuilt only when the recipe changes).
# Env: SPARK_LAB_MIRROR (Debian mirror; default: the first .../debian URI found in
# /etc/apt/sources.list*, else http://deb.debian.org/debian), TMPDIR.
set -euo pipefail

IMAGE=${1:?usage: build.sh IMAGE_REF}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SUITE=trixie
BASE_INCLUDE=python3

log() { printf '[image] %s\n' "$*" >&2; }

[ "$(id -u)" = 0 ] || { log "must run as root (debootstrap, chroot, mount)"; exit 1; }

if ! command -v debootstrap >/dev/null 2>&1; then
    log "installing debootstrap"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi

mirror_from_sources() {
    local u
    for u in $( { cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true; } |
                  awk '$1=="deb" {for (i = 2; i <= NF; i++) if ($i ~ /^https?:\/\//) {print $i; break}}'
                { cat /etc/apt/sources.list.d/*.sources 2>/dev/null || true; } |
                  awk '$1=="URIs:" {for (i = 2; i <= NF; i++) print $i}' ); do
        case "${u%/}" in
            */debian) echo "${u%/}"; return ;;
        esac
    done
    echo http://deb.debian.org/debian
}
MIRROR=${SPARK_LAB_MIRROR:-$(mirror_from_sources)}

KEYRING_ARGS=()
[ -f /usr/share/keyrings/debian-archive-keyring.gpg ] &&
    KEYRING_ARGS=(--keyring=/usr/share/keyrings/debian-archive-keyring.gpg)

WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/spark-lab-image.XXXXXX")
BASE=$WORK/base
ROOT=$WORK/root

cleanup() {
    local m
    for m in "$ROOT/dev/pts" "$ROOT/dev" "$ROOT/proc" "$ROOT/sys"; do
        mountpoint -q "$m" 2>/dev/null && umount -l "$m"
    done
    [ -n "${SPARK_LAB_KEEP_WORK:-}" ] && { log "kept $WORK"; return; }
    rm -rf "$WORK"
}
trap cleanup EXIT

# Remove what a container does not need: docs, man pages, translations, caches.
strip_rootfs() {
    local r=$1
    rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/*.bin "$r"/var/cache/apt/archives/*.deb \
           "$r"/var/cache/debconf/*-old "$r"/var/lib/dpkg/*-old "$r"/var/log/* \
           "$r"/usr/share/man/* "$r"/usr/share/info/* "$r"/usr/share/lintian "$r"/usr/share/bug \
           "$r"/tmp/* "$r"/var/tmp/*
    find "$r"/usr/share/doc -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
    find "$r"/usr/share/doc -mindepth 1 -type d -empty -delete 2>/dev/null || true
    find "$r"/usr/share/locale -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} + 2>/dev/null || true
    find "$r" -xdev -name '__pycache__' -type d -prune -exec rm -rf {} + 2>/dev/null || true
    # per-container identity: systemd generates a machine-id at first boot
    : > "$r"/etc/machine-id
    rm -f "$r"/var/lib/dbus/machine-id
    : > "$r"/etc/resolv.conf   # docker bind-mounts its own
}

log "mirror $MIRROR, workdir $WORK"
log "phase 1/4: debootstrap --variant=minbase --include=$BASE_INCLUDE $SUITE (base rootfs)"
t0=$SECONDS
debootstrap --variant=minbase --include="$BASE_INCLUDE" "${KEYRING_ARGS[@]}" \
    "$SUITE" "$BASE" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
    { tail -n 30 "$WORK/debootstrap.log" >&2; exit 1; }
install -D -m 0644 "$HERE/overlay/etc/dpkg/dpkg.cfg.d/01-spark-lab-nodoc" \
    "$BASE/etc/dpkg/dpkg.cfg.d/01-spark-lab-nodoc"
strip_rootfs "$BASE"
log "  base rootfs done in $((SECONDS - t0)) s ($(du -sh "$BASE" | cut -f1))"

log "phase 2/4: install packages.txt into a copy"
t0=$SECONDS
mkdir -p "$ROOT"
tar -C "$BASE" -cf "$WORK/base-rootfs.tar" .
tar -C "$ROOT" -xf "$WORK/base-rootfs.tar"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
printf '#!/bin/sh\nexit 101\n' > "$ROOT/usr/sbin/policy-rc.d"   # no service starts in the chroot
chmod 0755 "$ROOT/usr/sbin/policy-rc.d"
mount -t proc proc "$ROOT/proc"
mount --bind /dev "$ROOT/dev"
mount --bind /dev/pts "$ROOT/dev/pts"
mapfile -t PKGS < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$HERE/packages.txt" | grep -v '^$')
APT=(chroot "$ROOT" env DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8
     apt-get -q -o Dpkg::Options::=--force-unsafe-io -o Dpkg::Use-Pty=0)
"${APT[@]}" update >"$WORK/apt.log" 2>&1 || { tail -n 30 "$WORK/apt.log" >&2; exit 1; }
"${APT[@]}" install -y --no-install-recommends "${PKGS[@]}" >>"$WORK/apt.log" 2>&1 ||
    { tail -n 40 "$WORK/apt.log" >&2; exit 1; }
"${APT[@]}" clean >/dev/null
log "  $(grep -c '^Setting up' "$WORK/apt.log") packages set up in $((SECONDS - t0)) s"

log "phase 3/4: configure the rootfs for systemd in a container"
# overlay files owned by root whoever checked the repo out; existing dirs keep their modes
tar -C "$HERE/overlay" --owner=0 --group=0 -cf - . | tar -C "$ROOT" --no-overwrite-dir -xf -
# Flavour "networkmanager" (the default, like DGX OS): NetworkManager renders netplan
# (01-network-manager-all.yaml) and manages eth0 (the management link) through the
# profile spark-lab-mgmt-profile writes at boot; systemd-networkd is off.
chmod 0600 "$ROOT"/etc/netplan/*.yaml
chroot "$ROOT" systemctl disable systemd-networkd.service systemd-networkd-wait-online.service \
    systemd-networkd.socket >/dev/null 2>&1 || true
chroot "$ROOT" systemctl enable NetworkManager.service NetworkManager-wait-online.service \
    spark-lab-mgmt-profile.service spark-lab-mgmt-handover.service >/dev/null 2>&1
# Units that fail or only waste time in a container. udevadm stays (netplan calls it).
for u in getty@.service serial-getty@.service console-getty.service getty.target \
         systemd-udevd.service systemd-udevd-control.socket systemd-udevd-kernel.socket \
         systemd-udev-trigger.service systemd-udev-settle.service \
         systemd-hwdb-update.service systemd-timesyncd.service systemd-firstboot.service \
         apt-daily.timer apt-daily-upgrade.timer apt-daily.service apt-daily-upgrade.service \
         e2scrub_all.timer e2scrub_all.service e2scrub_reap.service fstrim.timer \
         dpkg-db-backup.timer systemd-remount-fs.service \
         sys-kernel-config.mount sys-kernel-debug.mount sys-kernel-tracing.mount \
         dev-hugepages.mount run-rpc_pipefs.mount; do
    ln -sfn /dev/null "$ROOT/etc/systemd/system/$u"
done
# NFS has no kernel support in the lab (lab-facts.md): the server is installed but not
# started at boot; a role that starts it sees the real failure (nothing is faked).
chroot "$ROOT" systemctl disable nfs-server.service >/dev/null 2>&1 || true
# Size: udev's hwdb (no udevd here) and containerd tools docker does not use.
rm -f "$ROOT"/usr/lib/udev/hwdb.bin "$ROOT"/etc/udev/hwdb.bin \
      "$ROOT"/usr/bin/ctr "$ROOT"/usr/bin/containerd-shim "$ROOT"/usr/bin/containerd-shim-runc-v1
rm -f "$ROOT/usr/sbin/policy-rc.d"
for m in "$ROOT/dev/pts" "$ROOT/dev" "$ROOT/proc"; do umount "$m"; done
strip_rootfs "$ROOT"
rm -f "$ROOT/etc/hostname"
install -D -m 0644 "$WORK/base-rootfs.tar" "$ROOT/opt/spark-lab/base-rootfs.tar"
log "  rootfs $(du -sh "$ROOT" | cut -f1)"

import_rootfs() {   # import_rootfs REF FLAVOUR
    tar --numeric-owner -C "$ROOT" -c . | docker import \
        --change 'CMD ["/lib/systemd/systemd"]' \
        --change 'ENV container=docker' \
        --change "LABEL spark-lab.recipe=${IMAGE##*:}" \
        --change "LABEL spark-lab.flavour=$2" \
        - "$1" >/dev/null
}
log "phase 4/4: docker import $IMAGE (networkmanager flavour) and $IMAGE-networkd"
t0=$SECONDS
import_rootfs "$IMAGE" networkmanager
# Flavour "networkd": today's server-style nodes. NetworkManager stays installed but
# masked, no global renderer, systemd-networkd renders netplan and keeps eth0
# (overlay/etc/systemd/network/90-spark-lab-mgmt.network).
rm -f "$ROOT/etc/netplan/01-network-manager-all.yaml"
chroot "$ROOT" systemctl disable NetworkManager.service NetworkManager-wait-online.service \
    spark-lab-mgmt-profile.service spark-lab-mgmt-handover.service >/dev/null 2>&1 || true
for u in NetworkManager.service NetworkManager-wait-online.service NetworkManager-dispatcher.service; do
    ln -sfn /dev/null "$ROOT/etc/systemd/system/$u"
done
chroot "$ROOT" systemctl enable systemd-networkd.service >/dev/null 2>&1
import_rootfs "$IMAGE-networkd" networkd
log "  imported in $((SECONDS - t0)) s: $IMAGE, $IMAGE-networkd"
