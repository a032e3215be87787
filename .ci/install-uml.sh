#!/usr/bin/env bash
# Install the User Mode Linux kernels that kstream's kernel tests run in.
#
# Why: CI hosts (containers, sandboxed kernels) rarely offer AF_ALG, and AF_ALG behaves
# differently across kernel releases (key by serial needs >= 6.2, recv sizes, module
# dependencies). User Mode Linux runs a real kernel as an ordinary process with the host's
# filesystem as its root, so tests/conftest.py can boot it and run the kernel tests inside.
#
# What it installs:
#   - Debian's own user-mode-linux (6.1 on Debian 12, 6.12 on Debian 13), kmod (modprobe runs
#     inside UML to load af_alg & co.), patchelf, keyutils (keyctl for keyring tests), and gcc
#     with libc6-dev (the boot check builds tests/uml/xstate_shim.c, which lets UML builds
#     before ~6.13 run on hosts with AMX);
#   - user-mode-linux from Debian 13 (trixie) and Debian unstable (sid), each with its own
#     distribution's libc6, unpacked into $KSTREAM_UML_DIR/<label>-<major.minor>/ and
#     patchelf'ed to use that libc. The host's apt sources and libc are not touched: a private
#     apt configuration under $KSTREAM_UML_DIR/.apt/ is used to download them.
# Each kernel is boot-tested (tests/uml/bootcheck.py, the same check the tests make) before it
# is put in place. A broken kernel is not installed. One that cannot run on this host's CPU
# (UML builds before ~6.13 on CPUs with AMX when the xstate shim cannot help, see
# docs/testing.md) is kept, so that the tests report it as skipped with the reason. A suite
# that cannot be fetched (sid is sometimes mid-transition) only warns; the script fails if no
# kernel >= 6.2 runs on this host.
#
# Idempotent: installed packages and cached kernels are kept; the network is only used for
# what is missing. KSTREAM_UML_REFRESH=1 re-checks the suites for newer packages.
#
# Environment:
#   KSTREAM_UML_DIR      cache directory (default /var/cache/kstream-uml; the tests read it too)
#   KSTREAM_UML_MIRROR   Debian mirror (default: the first Debian archive in this host's apt sources)
#   KSTREAM_UML_SUITES   "suite:label ..." to fetch (default "trixie:deb13 sid:sid")
#   KSTREAM_UML_REFRESH  1 = look for newer packages even if a kernel is cached
set -euo pipefail

NAME=install-uml
source "$(dirname "$0")/debian-apt.sh"
CACHE=${KSTREAM_UML_DIR:-/var/cache/kstream-uml}
MIRROR=${KSTREAM_UML_MIRROR:-$(host_mirror)}
if [ -z "$MIRROR" ]; then
    echo "install-uml: cannot find a Debian mirror in the apt sources; set KSTREAM_UML_MIRROR" >&2
    exit 1
fi
SUITES=${KSTREAM_UML_SUITES:-trixie:deb13 sid:sid}
REFRESH=${KSTREAM_UML_REFRESH:-0}
BASE_PACKAGES=(user-mode-linux kmod patchelf keyutils gcc libc6-dev)

[ "$(id -u)" -eq 0 ] || die "run as root (it installs packages and writes $CACHE)"
command -v apt-get >/dev/null || die "needs a Debian-based system (apt-get)"
export DEBIAN_FRONTEND=noninteractive

# --- 1. distribution packages ----------------------------------------------------------------
mapfile -t missing < <(missing_packages "${BASE_PACKAGES[@]}")
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update
    apt-get install -y --no-install-recommends "${missing[@]}"
else
    log "packages already installed: ${BASE_PACKAGES[*]}"
fi

MODPROBE=$(PATH=/usr/sbin:/sbin:/usr/bin:/bin command -v modprobe) || die "modprobe not found"
mkdir -p "$CACHE"
WORK=$(mktemp -d /var/tmp/kstream-uml-install.XXXXXX)  # on the host fs, visible inside UML
trap 'rm -rf "$WORK"' EXIT

# major.minor of the single module release under <root>/usr/lib/uml/modules/.
release_of() {
    local dir
    for dir in "$1"/usr/lib/uml/modules/*/; do
        [ -f "$dir/modules.dep" ] && basename "$dir"
    done | sort -V | tail -n 1
}

# boot_check ROOT: boot ROOT/usr/bin/linux.uml once with a trivial init that loads the AF_ALG
# modules and binds ctr(aes): the same check the pytest harness makes (tests/uml/bootcheck.py).
# Prints the kernel's `uname -r`. Returns 0 if it works, 3 if it cannot run on this host (e.g.
# an old UML build on a CPU with AMX: kept, the tests report it as skipped), 1 if it is broken.
BOOTCHECK=$(cd "$(dirname "$0")/.." && pwd)/tests/uml/bootcheck.py
boot_check() {
    local root=$1 line status release reason rc=0
    line=$(python3 "$BOOTCHECK" "$root") || rc=$?
    IFS=$'\t' read -r _ status release reason <<<"$line"
    case $rc in
        0) echo "$release" ;;
        3) warn "${root%/}/usr/bin/linux.uml: $reason (kept; its tests will be skipped here)"
           echo "$release" ;;
        *) warn "boot check of ${root%/}/usr/bin/linux.uml failed: ${reason:-$line}" ;;
    esac
    return "$rc"
}

declare -A have=()  # major.minor -> where it is installed (whether or not it runs here)
declare -A runs=()  # major.minor -> installed and passes the boot check on this host
summary=()
release=''
state=''

# accept ROOT: boot-check ROOT; sets $release and $state; fails if the kernel is broken.
accept() {
    local rc=0
    release=$(boot_check "$1") || rc=$?
    case $rc in
        0) state=runs ;;
        3) state="cannot run on this host" ;;
        *) return 1 ;;
    esac
}

# keep NAME WHERE: record an accepted kernel (after `accept`).
keep() {
    local mm
    mm=$(majmin "$release")
    have[$mm]=$2
    if [ "$state" = runs ]; then runs[$mm]=$2; fi
    summary+=("$(printf '%-12s %-10s %-40s %s' "$1" "$release" "$2" "$state")")
}

# --- 2. the distribution's own kernel ---------------------------------------------------------
if accept /; then
    keep distro /usr/bin/linux.uml
else
    warn "the distribution's /usr/bin/linux.uml does not pass the boot check"
fi

# --- 3. kernels from other suites -------------------------------------------------------------
# install_suite SUITE LABEL: fetch SUITE's user-mode-linux + libc6 into $CACHE/LABEL-<maj.min>.
install_suite() {
    local suite=$1 label=$2
    local aptdir=$CACHE/.apt/$suite stamp=$CACHE/.apt/$suite/installed
    local name ver mm dl root interp libdir release old deb

    if [ "$REFRESH" != 1 ] && [ -s "$stamp" ]; then
        name=$(cat "$stamp")
        if [[ $name == same-as:* ]]; then
            log "$suite: same kernel as ${name#same-as:} (cached decision)"
            return 0
        fi
        if [ -x "$CACHE/$name/usr/bin/linux.uml" ] && accept "$CACHE/$name" \
            && [ -z "${have[$(majmin "$release")]:-}" ]; then
            keep "$name" "$CACHE/$name"
            return 0
        fi
    fi

    local apt
    private_apt apt "$aptdir" "$suite" || return 1
    ver=$(apt-cache "${apt[@]}" show user-mode-linux 2>/dev/null \
        | sed -n 's/^Version: //p' | sort -V | tail -n 1)
    [ -n "$ver" ] || { warn "$suite: no user-mode-linux package"; return 1; }
    mm=$(majmin "${ver%%um*}")  # versions look like 6.12um1+b22, 7.2um1
    [ -n "$mm" ] || { warn "$suite: cannot read a kernel version from $ver"; return 1; }
    name=$label-$mm
    if [ -n "${have[$mm]:-}" ] && [ "${have[$mm]}" != "$CACHE/$name" ]; then
        log "$suite: user-mode-linux $ver is kernel $mm, already at ${have[$mm]}; skipped"
        echo "same-as:${have[$mm]}" >"$stamp"
        rm -rf "$aptdir/lists" "$aptdir/cache"
        return 0
    fi
    if [ -f "$CACHE/$name/.package-version" ] \
        && [ "$(cat "$CACHE/$name/.package-version")" = "$ver" ] \
        && accept "$CACHE/$name"; then
        log "$suite: $name is up to date ($ver)"
    else
        log "$suite: downloading user-mode-linux $ver and libc6"
        dl=$(mktemp -d "$WORK/dl.XXXXXX")
        if ! (cd "$dl" && apt-get "${apt[@]}" -q download user-mode-linux libc6) \
            >"$aptdir/download.log" 2>&1; then
            warn "$suite: download failed (see $aptdir/download.log)"
            return 1
        fi
        # Unpack next to the cached kernel, then swap; the old one comes back if the new fails.
        root=$CACHE/$name
        rm -rf "$CACHE/.new-$name" "$CACHE/.old-$name"
        mkdir -p "$CACHE/.new-$name"
        for deb in "$dl"/*.deb; do dpkg-deb -x "$deb" "$CACHE/.new-$name"; done
        # Use the suite's own loader and libc (newer kernels need a newer glibc than the host's).
        # Both are absolute paths, so they name the final location.
        interp=$(patchelf --print-interpreter "$CACHE/.new-$name/usr/bin/linux.uml")
        if [ -e "$CACHE/.new-$name/usr$interp" ]; then interp=/usr$interp; fi
        libdir=$(cd "$CACHE/.new-$name" && dirname "$(find . -name libc.so.6 -print -quit)")
        libdir=${libdir#.}
        if [ ! -e "$CACHE/.new-$name$interp" ] || [ -z "$libdir" ]; then
            warn "$suite: no loader/libc in the downloaded libc6"
            rm -rf "$CACHE/.new-$name"
            return 1
        fi
        patchelf --set-interpreter "$root$interp" --set-rpath "$root$libdir" \
            "$CACHE/.new-$name/usr/bin/linux.uml"
        [ ! -d "$root" ] || mv "$root" "$CACHE/.old-$name"
        mv "$CACHE/.new-$name" "$root"
        if ! accept "$root"; then
            warn "$suite: user-mode-linux $ver is broken; keeping what was cached"
            rm -rf "$root"
            [ ! -d "$CACHE/.old-$name" ] || mv "$CACHE/.old-$name" "$root"
            return 1
        fi
        rm -rf "$CACHE/.old-$name"
        echo "$ver" >"$root/.package-version"
        # An older kernel of the same suite (e.g. sid-7.1 after sid moved to 7.2) is dropped.
        for old in "$CACHE/$label"-*; do
            [ "$old" = "$root" ] || [ ! -d "$old" ] || { log "removing $old"; rm -rf "$old"; }
        done
    fi
    keep "$name" "$CACHE/$name"
    echo "$name" >"$stamp"
    rm -rf "$aptdir/lists" "$aptdir/cache"  # ~10 MB each; a refresh downloads them again
}

for entry in $SUITES; do
    install_suite "${entry%%:*}" "${entry#*:}" \
        || warn "${entry%%:*}: no kernel installed from this suite (tests run without it)"
done

# --- 4. result --------------------------------------------------------------------------------
log "kernels available to the tests:"
for line in "${summary[@]}"; do log "  $line"; done
for mm in "${!runs[@]}"; do
    if [ "$(printf '%s\n' 6.2 "$mm" | sort -V | head -n 1)" = 6.2 ]; then
        exit 0
    fi
done
die "no kernel >= 6.2 boots on this host (needed for key-by-serial tests; see docs/testing.md)"
