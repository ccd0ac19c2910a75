#!/usr/bin/env bash
# Boots systemd as PID 1 of the current (new) pid+mount namespace, on an overlay of / whose upper
# layer is a tmpfs: nothing written inside reaches the real root (see TESTING.md). Run as
#   setsid unshare --pid --fork --mount --propagation private boot.sh DIR
set -e
R=$1
mount -t tmpfs tmpfs "$R"
mkdir -p "$R/upper" "$R/work" "$R/root"
mount -t overlay overlay -o lowerdir=/,upperdir="$R/upper",workdir="$R/work" "$R/root"
mount -t proc proc "$R/root/proc"
mount --rbind /sys "$R/root/sys"
mount --rbind /dev "$R/root/dev"
mount -t tmpfs tmpfs "$R/root/tmp"
mount -t tmpfs tmpfs "$R/root/run"
mkdir -p "$R/root/etc/systemd/system"
printf '[Unit]\nDescription=test target\nDefaultDependencies=no\n' > "$R/root/etc/systemd/system/test.target"
cd "$R/root"
mkdir -p oldroot
pivot_root . oldroot
umount -l /oldroot
exec env container=prewarm-test /lib/systemd/systemd --unit=test.target --log-level=warning
