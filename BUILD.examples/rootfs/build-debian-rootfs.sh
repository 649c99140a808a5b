#!/bin/sh
# Writes a minimal Debian bookworm root filesystem tarball to "$OUT" (set by the orchestrator).
# The mirror is the one this host's apt already uses.
set -eu
: "${OUT:?OUT must name the tarball to write}"
mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)
[ -n "$mirror" ] || mirror=$(awk '$1 == "deb" { print $2; exit }' /etc/apt/sources.list)
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >&2
rm -rf "$rootfs"/var/cache/apt/* "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/*
tar --numeric-owner -C "$rootfs" -cf "$OUT" .
