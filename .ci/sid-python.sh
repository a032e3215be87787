#!/usr/bin/env bash
# Run the test suite on the newest Pythons that Debian unstable (sid) ships: its python3
# (3.14) and python3.15, each in its own venv inside a cached sid chroot.
#
#   sudo bash .ci/sid-python.sh
#
# As root on a Debian machine. The chroot is built once with debootstrap from the Debian mirror
# this machine's apt already uses, and kept under $KSTREAM_SID_DIR (default
# /var/cache/kstream-sid); it is rebuilt when older than $KSTREAM_SID_MAX_AGE_DAYS (default 7)
# or when KSTREAM_SID_REBUILD=1. Each run copies the project into it afresh: the work tree's
# files that git knows or would add (in a fresh clone that is HEAD), or with
# KSTREAM_SID_SOURCE=head exactly `git archive HEAD`. Then, for each Python, a venv,
# `pip install -e '.[test]'` and `python -m pytest -m "not kernel"` (the README's test command
# without the kernel tests: there is no User Mode Linux kernel in the chroot).
# KSTREAM_SID_PYTHONS (default "python3 python3.15") chooses the interpreters;
# KSTREAM_SID_TIMEOUT (default 1800) bounds each install + test run, in seconds.
#
# Mounts (/dev, /dev/pts, /sys, a tmpfs on /dev/shm, /proc, and the local package indexes that
# pip's configuration names) are made only inside a private mount namespace (`unshare --mount
# --propagation private`), debootstrap's own included: none of them outlives the run, however it
# ends. Each such namespace also has a PID namespace of its own (`--pid --fork --kill-child`):
# if this script is killed (even by SIGKILL), or its run ends, every process left in there ends (a
# test's stray child would otherwise keep the namespace, and its mounts, alive), and /proc in
# the chroot is that namespace's own, so the PIDs the tests see are the ones /proc shows.
#
# Exit status: 0 every suite passed; 1 a suite (its pip install or its tests) failed;
# 3 the chroot could not be had (not root, no debootstrap/unshare, mirror unreachable, a failed
# debootstrap or apt-get): the reason is printed, and the caller decides what that means.
set -uo pipefail

UNAVAILABLE=3
SID_DIR=${KSTREAM_SID_DIR:-/var/cache/kstream-sid}
ROOT=$SID_DIR/root
PYTHONS=${KSTREAM_SID_PYTHONS:-python3 python3.15}
RUN_TIMEOUT=${KSTREAM_SID_TIMEOUT:-1800}
MAX_AGE_DAYS=${KSTREAM_SID_MAX_AGE_DAYS:-7}
# kmod: the UML harness looks for modprobe before it boots a kernel (tests/uml/test_harness.py)
CHROOT_PACKAGES="openssl git procps zsh keyutils kmod"
INCLUDE=python3,python3-venv,python3.15,python3.15-venv,ca-certificates
REPO=$(cd "$(dirname "$0")/.." && pwd)

say() { printf 'sid-python: %s\n' "$*"; }
unavailable() {
    say "UNAVAILABLE: $*"
    exit "$UNAVAILABLE"
}

# --- Inside the private mount namespace --------------------------------------------------------
# `$0 --inside ROOT CMD...`: mount what a chroot needs, then run CMD (a host command, typically
# `chroot ROOT ...`). Everything mounted here disappears with the namespace.
if [ "${1:-}" = --inside ]; then
    root=$2
    shift 2
    # Only ever in a mount namespace of our own (in_ns below), never in the host's.
    if [ "$(readlink /proc/self/ns/mnt)" = "$(readlink /proc/1/ns/mnt)" ]; then
        say "refusing to mount: not in a private mount namespace"
        exit "$UNAVAILABLE"
    fi
    for d in dev dev/pts sys; do
        mkdir -p "$root/$d"
        mount --bind "/$d" "$root/$d" || exit "$UNAVAILABLE"
    done
    mkdir -p "$root/proc"
    mount -t proc -o nosuid,nodev,noexec proc "$root/proc" || exit "$UNAVAILABLE"
    mkdir -p "$root/dev/shm"
    mount -t tmpfs -o mode=1777,nosuid,nodev shm "$root/dev/shm" || exit "$UNAVAILABLE"
    # Local package indexes and wheel folders that pip's configuration points at, read-only.
    for d in ${KSTREAM_SID_BIND_RO:-}; do
        mkdir -p "$root$d"
        if ! { mount --bind "$d" "$root$d" && mount -o remount,bind,ro "$root$d"; }; then
            say "warning: could not bind $d read-only"
        fi
    done
    exec "$@"
fi

# --- Preconditions -----------------------------------------------------------------------------
[ "$(id -u)" = 0 ] || unavailable "must run as root (debootstrap, chroot and mounts need it)"
for tool in unshare setpriv chroot mount flock timeout; do
    command -v "$tool" >/dev/null || unavailable "$tool is not installed"
done
export DEBIAN_FRONTEND=noninteractive
if ! command -v debootstrap >/dev/null; then
    say "installing debootstrap"
    { apt-get update -q && apt-get install -y -q debootstrap; } >/dev/null 2>&1 ||
        unavailable "debootstrap is missing and 'apt-get install debootstrap' failed"
fi

# The Debian mirror this machine's apt uses: the first URI of a deb entry for the main archive
# (not debian-security), from one-line .list files or deb822 .sources files.
apt_mirror() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        awk '$1 == "deb" {
                 for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/) { print $i; break }
             }' "$f"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        # One stanza per paragraph; keep URIs of stanzas whose Types include deb.
        awk 'BEGIN { RS = ""; FS = "\n" }
             {
                 deb = 0; uris = ""
                 for (i = 1; i <= NF; i++) {
                     if ($i ~ /^Types:/ && $i ~ /[[:space:]]deb([[:space:]]|$)/) deb = 1
                     if ($i ~ /^URIs:/) { uris = $i; sub(/^URIs:[[:space:]]*/, "", uris) }
                     if ($i ~ /^Enabled:[[:space:]]*no/) deb = 0
                 }
                 if (deb && uris != "") { split(uris, u, /[[:space:]]+/); print u[1] }
             }' "$f"
    done
}
MIRROR=${KSTREAM_SID_MIRROR:-$(apt_mirror | grep -E '/debian/?$' | grep -v -- '-security' | head -n1)}
[ -n "$MIRROR" ] || unavailable "no Debian mirror found in /etc/apt/sources.list{,.d/}"

mkdir -p "$SID_DIR" || unavailable "cannot create $SID_DIR"
exec 9>"$SID_DIR/lock"
flock -w 1800 9 || unavailable "another run holds $SID_DIR/lock"

# Refuse to delete or reuse a tree that still has something mounted in it (a bind mount of /dev
# under an rm -rf would be a disaster); with the namespaces below this cannot happen, but an
# older run by hand might have left one.
mounted_under() { awk -v p="$1/" 'index($2 "/", p) == 1 { print $2 }' /proc/self/mounts; }
for d in "$ROOT" "$SID_DIR/root.new"; do
    if [ -n "$(mounted_under "$d")" ]; then
        unavailable "mounts remain under $d (umount them first): $(mounted_under "$d" | tr '\n' ' ')"
    fi
done

# setpriv --pdeathsig: unshare (which ignores SIGTERM and SIGINT while it waits) dies with this
# script, and --kill-child then takes the namespace's processes with it.
NS=(setpriv --pdeathsig KILL unshare --mount --propagation private --pid --fork --kill-child)
in_ns() { KSTREAM_SID_BIND_RO=${BIND_RO:-} "${NS[@]}" -- "$0" --inside "$@"; }

# apt-get install $CHROOT_PACKAGES in the chroot at $1 (noted in it, so that a cached chroot
# gets a package added to the list later).
chroot_packages() {
    # The mirror may serve a dated snapshot of sid (as a snapshot-pinned apt source does) whose
    # Release file is past its Valid-Until; debootstrap does not mind, apt would refuse it.
    local apt="apt-get -o Acquire::Check-Valid-Until=false"
    say "apt-get install $CHROOT_PACKAGES (in the chroot)"
    if ! in_ns "$1" chroot "$1" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
        DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 sh -c \
        "$apt update -q && $apt install -y -q --no-install-recommends $CHROOT_PACKAGES && $apt clean" \
        >"$SID_DIR/apt.out" 2>&1; then
        tail -n 15 "$SID_DIR/apt.out" | sed 's/^/  /'
        unavailable "apt-get install $CHROOT_PACKAGES in the chroot failed"
    fi
    printf '%s' "$CHROOT_PACKAGES" >"$1/.kstream-sid-packages"
}

# --- Build (or reuse) the chroot ---------------------------------------------------------------
STAMP=$ROOT/.kstream-sid-built
build_started=$SECONDS
if [ "${KSTREAM_SID_REBUILD:-0}" = 1 ] || [ ! -e "$STAMP" ] ||
    [ -n "$(find "$STAMP" -mtime +"$MAX_AGE_DAYS" 2>/dev/null)" ]; then
    NEW=$SID_DIR/root.new
    rm -rf --one-file-system "$NEW"
    mkdir -p "$NEW"
    say "building a sid chroot in $ROOT from $MIRROR (debootstrap; a few minutes)"
    # debootstrap mounts /proc and /sys in the target itself: in a namespace of its own, too.
    if ! "${NS[@]}" -- debootstrap --variant=minbase \
        --include="$INCLUDE" sid "$NEW" "$MIRROR" >"$SID_DIR/debootstrap.out" 2>&1; then
        tail -n 15 "$SID_DIR/debootstrap.out" | sed 's/^/  /'
        [ -r "$NEW/debootstrap/debootstrap.log" ] &&
            tail -n 15 "$NEW/debootstrap/debootstrap.log" | sed 's/^/  log: /'
        unavailable "debootstrap of sid from $MIRROR failed (output in $SID_DIR/debootstrap.out)"
    fi
    cp -L /etc/resolv.conf "$NEW/etc/resolv.conf" 2>/dev/null || true
    printf '#!/bin/sh\nexit 101\n' >"$NEW/usr/sbin/policy-rc.d" && chmod +x "$NEW/usr/sbin/policy-rc.d"
    chroot_packages "$NEW"
    date -u +%FT%TZ >"$NEW/.kstream-sid-built"
    rm -rf --one-file-system "$ROOT"
    mv "$NEW" "$ROOT"
    say "chroot built in $((SECONDS - build_started)) s"
else
    say "reusing the sid chroot in $ROOT (built $(cat "$STAMP"))"
    if [ "$(cat "$ROOT/.kstream-sid-packages" 2>/dev/null)" != "$CHROOT_PACKAGES" ]; then
        cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
        chroot_packages "$ROOT"
    fi
fi

# --- What the host trusts and how it reaches PyPI, into the chroot ------------------------------
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
[ -r /etc/hosts ] && cp -L /etc/hosts "$ROOT/etc/hosts"
# The host's CA bundle replaces the chroot's (it may hold a CA that the host's proxy uses).
HOST_CA=
for f in "${PIP_CERT:-}" "${REQUESTS_CA_BUNDLE:-}" "${SSL_CERT_FILE:-}" /etc/ssl/certs/ca-certificates.crt; do
    if [ -n "$f" ] && [ -r "$f" ]; then HOST_CA=$f; break; fi
done
if [ -n "$HOST_CA" ]; then
    mkdir -p "$ROOT/etc/ssl/certs"
    cp -L "$HOST_CA" "$ROOT/etc/ssl/certs/ca-certificates.crt"
fi
# pip's configuration files, where they exist, at the same places (we run as root in there).
rm -rf "$ROOT/etc/pip.conf" "$ROOT/etc/xdg/pip" "$ROOT/root/.config/pip" "$ROOT/root/.pip"
[ -r /etc/pip.conf ] && cp -L /etc/pip.conf "$ROOT/etc/pip.conf"
[ -d /etc/xdg/pip ] && mkdir -p "$ROOT/etc/xdg" && cp -rL /etc/xdg/pip "$ROOT/etc/xdg/pip"
USER_PIP=${XDG_CONFIG_HOME:-$HOME/.config}/pip
[ -d "$USER_PIP" ] && mkdir -p "$ROOT/root/.config" && cp -rL "$USER_PIP" "$ROOT/root/.config/pip"
[ -d "$HOME/.pip" ] && cp -rL "$HOME/.pip" "$ROOT/root/.pip"
[ -n "${PIP_CONFIG_FILE:-}" ] && [ -r "$PIP_CONFIG_FILE" ] &&
    mkdir -p "$ROOT$(dirname "$PIP_CONFIG_FILE")" && cp -L "$PIP_CONFIG_FILE" "$ROOT$PIP_CONFIG_FILE"
# Absolute paths those settings name (find-links folders, file:// indexes, constraint files)
# outside what was just copied: bound read-only at the same place inside the namespace.
BIND_RO=
for p in $( { cat /etc/pip.conf /etc/xdg/pip/*.conf "$USER_PIP"/*.conf "$HOME"/.pip/*.conf \
    "${PIP_CONFIG_FILE:-/dev/null}" 2>/dev/null; env | grep '^PIP_'; } |
    grep -oE '(file://)?/[^[:space:]"'\'',;]+' | sed 's|^file://||' | sort -u); do
    case $p in /etc/* | /root/* | "$HOME"/* | /dev/* | /proc/* | /sys/*) continue ;; esac
    # A file index names .../simple: bind the folder that holds it, with its files/ beside it.
    [ "$(basename "$p")" = simple ] && p=$(dirname "$p")
    [ -d "$p" ] && BIND_RO="$BIND_RO $p"
done
[ -n "$BIND_RO" ] && say "pip's local indexes, bound read-only: $BIND_RO"

# The environment the suites get: a clean one, plus what pip and the network need.
RUN_ENV=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
    LANG=C.UTF-8 SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt SSL_CERT_DIR=/etc/ssl/certs
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt)
while IFS= read -r kv; do
    case $kv in
        PIP_CERT=*) RUN_ENV+=(PIP_CERT=/etc/ssl/certs/ca-certificates.crt) ;;
        PIP_* | http_proxy=* | https_proxy=* | no_proxy=* | HTTP_PROXY=* | HTTPS_PROXY=* | \
            NO_PROXY=* | CI=* | TERM=*) RUN_ENV+=("$kv") ;;
    esac
done < <(env)

# --- The suites --------------------------------------------------------------------------------
LOGS=$SID_DIR/logs
mkdir -p "$LOGS"
failed=0
summary=()
for py in $PYTHONS; do
    started=$SECONDS
    if ! chroot "$ROOT" /usr/bin/env -i "${RUN_ENV[@]}" "$py" -c '' 2>/dev/null; then
        say "$py: not in the chroot"
        summary+=("$py: MISSING from the chroot")
        failed=1
        continue
    fi
    version=$(chroot "$ROOT" /usr/bin/env -i "${RUN_ENV[@]}" "$py" -VV | head -n1)
    work=/kstream/$py
    rm -rf --one-file-system "${ROOT:?}$work"
    mkdir -p "$ROOT$work"
    if [ "${KSTREAM_SID_SOURCE:-tree}" = head ]; then
        git -C "$REPO" archive HEAD | tar -x --no-same-owner -C "$ROOT$work" || unavailable "git archive failed"
    elif git -C "$REPO" rev-parse --git-dir >/dev/null 2>&1; then
        # Tracked and untracked-but-not-ignored files that exist (not .venv, caches, builds).
        (cd "$REPO" && git ls-files -z -c -o --exclude-standard |
            while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
            tar --null -T - -cf -) | tar -x --no-same-owner -C "$ROOT$work" || unavailable "copying $REPO failed"
    else
        tar -C "$REPO" --exclude=./.venv --exclude=./.git -cf - . | tar -x --no-same-owner -C "$ROOT$work" ||
            unavailable "copying $REPO failed"
    fi
    # The copy becomes a git work tree of its own, every file staged: the tests that copy
    # "the repository's tracked files" (tests/test_readme.py) ask git for them.
    log=$LOGS/$py.log
    say "=== $py: $version: pip install -e '.[test]' and pytest -m 'not kernel' (log: $log)"
    # shellcheck disable=SC2016
    in_ns "$ROOT" timeout --kill-after=30 "$RUN_TIMEOUT" chroot "$ROOT" /usr/bin/env -i \
        "${RUN_ENV[@]}" sh -c 'cd "$1" && git init -q . && git add -A . && "$2" -m venv .venv &&
            .venv/bin/pip install -q -e ".[test]" &&
            echo "+ python -m pytest -m \"not kernel\" -p no:cacheprovider" &&
            exec .venv/bin/python -m pytest -m "not kernel" -p no:cacheprovider' \
        sh "$work" "$py" </dev/null >"$log" 2>&1
    rc=$?
    # pytest's closing line, e.g. "==== 1200 passed, 30 skipped in 300.00s ====".
    line=$(grep -E '^=+ .*( in [0-9.]+s).* =+$' "$log" | tail -n1)
    if [ $rc = 0 ]; then
        outcome="passed"
    else
        failed=1
        grep -q '^+ python -m pytest' "$log" || line="pip install -e '.[test]' failed"
        [ $rc = 124 ] && line="timed out after $RUN_TIMEOUT s; $line"
        outcome="FAILED (exit $rc)"
        grep -E '^(FAILED|ERROR) ' "$log" | head -n 40 | sed 's/^/  /'
        grep -q '^+ python -m pytest' "$log" || tail -n 25 "$log" | sed 's/^/  /'
    fi
    say "$py ($version): $outcome in $((SECONDS - started)) s: ${line:-no pytest summary line}"
    summary+=("$py ($version): $outcome: ${line:-no pytest summary line}")
done

say "summary (total $((SECONDS - build_started)) s):"
for s in "${summary[@]}"; do say "  $s"; done
exit $failed
