#!/bin/sh
# Writes a minimal Debian bookworm root filesystem tarball for "$PLATFORM" to "$OUT" (both set by the
# orchestrator). The mirror is the one this host's apt already uses. A foreign architecture's
# second stage runs under QEMU (binfmt_misc), like the foreign builds that follow.
set -eu
: "${OUT:?OUT must name the tarball to write}"
case "${PLATFORM:-linux/amd64}" in
  linux/amd64) arch=amd64 ;;
  linux/arm64) arch=arm64 ;;
  linux/arm/v7) arch=armhf ;;
  linux/386) arch=i386 ;;
  linux/ppc64le) arch=ppc64el ;;
  linux/s390x) arch=s390x ;;
  *) echo "no Debian architecture for $PLATFORM" >&2; exit 1 ;;
esac
mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)
[ -n "$mirror" ] || mirror=$(awk '$1 == "deb" { print $2; exit }' /etc/apt/sources.list)
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
debootstrap --arch="$arch" --variant=minbase bookworm "$rootfs" "$mirror" >&2
rm -rf "$rootfs"/var/cache/apt/* "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/*
tar --numeric-owner -C "$rootfs" -cf "$OUT" .
