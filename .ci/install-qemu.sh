#!/usr/bin/env bash
# Install Debian's packaged amd64 kernels that kstream's kernel tests boot under QEMU.
#
# Why: User Mode Linux kernels are not what users boot. They have only the generic C AES (no
# ctr-aes-aesni* drivers), and no UML build of Linux 7.3 exists, whose crypto.af_alg_restrict=1
# default changes who may use AF_ALG at all. QEMU with TCG (-accel tcg -cpu max: AES-NI, AVX2)
# boots the very kernels Debian ships; tests/qemu/ boots them with the host's root shared
# read-only over 9p and runs the kernel tests inside, as root and as an unprivileged user.
#
# What it installs: qemu-system-x86, busybox-static (the guest's initramfs), kmod (modprobe
# runs inside the guest from the host's root); and for each suite the kernel image and modules
# of its linux-image-amd64, unpacked into $KSTREAM_QEMU_DIR/<label>-<major.minor>/ as
#   vmlinuz, lib/modules/<release>/ (depmod'ed), .package-version
# with a private apt configuration under $KSTREAM_QEMU_DIR/.apt/ (the host's apt sources and
# packages are not touched). A suite that cannot be fetched (experimental comes and goes) only
# warns: its kernel's tests are then not run, and the pytest summary says which kernels ran.
#
# Idempotent: cached kernels are kept; KSTREAM_QEMU_REFRESH=1 looks for newer packages.
#
# Environment:
#   KSTREAM_QEMU_DIR      cache directory (default /var/cache/kstream-qemu; the tests read it)
#   KSTREAM_QEMU_MIRROR   Debian mirror (default: the first Debian archive in the apt sources)
#   KSTREAM_QEMU_SUITES   "suite:label ..." (default "bookworm:deb12 trixie:deb13 sid:sid
#                         experimental:exp")
#   KSTREAM_QEMU_REFRESH  1 = look for newer packages even if a kernel is cached
set -euo pipefail

NAME=install-qemu
source "$(dirname "$0")/debian-apt.sh"
CACHE=${KSTREAM_QEMU_DIR:-/var/cache/kstream-qemu}
MIRROR=${KSTREAM_QEMU_MIRROR:-$(host_mirror)}
SUITES=${KSTREAM_QEMU_SUITES:-bookworm:deb12 trixie:deb13 sid:sid experimental:exp}
REFRESH=${KSTREAM_QEMU_REFRESH:-0}
BASE_PACKAGES=(qemu-system-x86 busybox-static kmod keyutils)

[ "$(id -u)" -eq 0 ] || die "run as root (it installs packages and writes $CACHE)"
command -v apt-get >/dev/null || die "needs a Debian-based system (apt-get)"
[ -n "$MIRROR" ] || die "cannot find a Debian mirror in the apt sources; set KSTREAM_QEMU_MIRROR"
export DEBIAN_FRONTEND=noninteractive

mapfile -t missing < <(missing_packages "${BASE_PACKAGES[@]}")
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
DEPMOD=$(PATH=/usr/sbin:/sbin:/usr/bin:/bin command -v depmod) || die "depmod not found"
mkdir -p "$CACHE"
WORK=$(mktemp -d /var/tmp/kstream-qemu-install.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# install_suite SUITE LABEL: SUITE's linux-image-amd64 kernel into $CACHE/LABEL-<maj.min>.
install_suite() {
    local suite=$1 label=$2 aptdir=$CACHE/.apt/$1
    local stamp=$aptdir/installed ver image pkgs name dl new deb kdir release
    if [ "$REFRESH" != 1 ] && [ -s "$stamp" ] && [ -f "$CACHE/$(cat "$stamp")/vmlinuz" ]; then
        log "$suite: $(cat "$stamp") cached ($(cat "$CACHE/$(cat "$stamp")/.package-version"))"
        return 0
    fi
    local apt
    private_apt apt "$aptdir" "$suite" -o APT::Architecture=amd64 || return 1
    show() { apt-cache "${apt[@]}" show "$1" 2>/dev/null; }
    # linux-image-amd64 -> linux-image-<release>-amd64, which is the kernel itself (bookworm,
    # trixie) or depends on linux-{base,binary,modules}-<release> packages (sid, experimental).
    ver=$(show linux-image-amd64 | sed -n 's/^Version: //p' | sort -V | tail -n 1)
    [ -n "$ver" ] || { warn "$suite: no linux-image-amd64"; return 1; }
    image=$(show "linux-image-amd64=$ver" | sed -n 's/^Depends: //p' | tr ',' '\n' |
        grep -oE 'linux-image-[^ ]+-amd64' | head -n 1)
    [ -n "$image" ] || { warn "$suite: linux-image-amd64 $ver names no kernel image"; return 1; }
    pkgs=("$image")
    pkgs+=($(show "$image" | sed -n 's/^Depends: //p' | tr ',|' '\n\n' |
        grep -oE '^ *linux-(base|binary|modules)-[^ ]+-amd64' | tr -d ' ' | sort -u))
    name=$label-$(majmin "$ver")
    if [ -f "$CACHE/$name/.package-version" ] \
        && [ "$(cat "$CACHE/$name/.package-version")" = "$ver" ]; then
        log "$suite: $name is up to date ($ver)"
    else
        log "$suite: downloading ${pkgs[*]} ($ver)"
        dl=$(mktemp -d "$WORK/dl.XXXXXX")
        if ! (cd "$dl" && apt-get "${apt[@]}" -q download "${pkgs[@]}") \
            >"$aptdir/download.log" 2>&1; then
            warn "$suite: download failed (see $aptdir/download.log)"
            return 1
        fi
        new=$CACHE/.new-$name
        rm -rf "$new" "$WORK/x"
        mkdir -p "$new/lib/modules" "$WORK/x"
        for deb in "$dl"/*.deb; do dpkg-deb -x "$deb" "$WORK/x"; done
        kdir=$(find "$WORK/x/lib/modules" "$WORK/x/usr/lib/modules" -mindepth 1 -maxdepth 1 \
            -type d 2>/dev/null | head -n 1)
        release=$(basename "${kdir:-none}")
        # boot/vmlinuz-<release> (bookworm, trixie) or <modules dir>/vmlinuz (sid, experimental)
        for image in "$WORK/x/boot/vmlinuz-$release" "$kdir/vmlinuz"; do
            if [ -n "$kdir" ] && [ -f "$image" ]; then mv "$image" "$new/vmlinuz"; break; fi
        done
        if [ ! -f "$new/vmlinuz" ]; then
            warn "$suite: no kernel image with its modules in ${pkgs[*]}"
            rm -rf "$new" "$WORK/x"
            return 1
        fi
        mv "$kdir" "$new/lib/modules/$release"
        "$DEPMOD" -b "$new" "$release"
        echo "$ver" >"$new/.package-version"
        rm -rf "$WORK/x" "$dl" "$CACHE/$name"
        mv "$new" "$CACHE/$name"
        local old
        for old in "$CACHE/$label"-*; do  # e.g. sid-7.1 after sid moved to 7.2
            [ "$old" = "$CACHE/$name" ] || [ ! -d "$old" ] || { log "removing $old"; rm -rf "$old"; }
        done
    fi
    echo "$name" >"$stamp"
    rm -rf "$aptdir/lists" "$aptdir/cache"
}

for entry in $SUITES; do
    install_suite "${entry%%:*}" "${entry#*:}" \
        || warn "${entry%%:*}: no kernel installed from this suite (tests run without it)"
done
log "kernels in $CACHE:"
for dir in "$CACHE"/*/; do
    [ -f "$dir/vmlinuz" ] && log "  $(basename "$dir") $(cat "$dir/.package-version")"
done
exit 0
