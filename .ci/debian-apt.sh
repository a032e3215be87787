# Sourced by install-uml.sh and install-qemu.sh, which set NAME (their log prefix) first:
# what both need to fetch Debian packages from any suite without touching the host's apt.
# shellcheck shell=bash

KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

log() { printf '%s: %s\n' "$NAME" "$*"; }
warn() { printf '%s: WARNING: %s\n' "$NAME" "$*" >&2; }
die() { printf '%s: ERROR: %s\n' "$NAME" "$*" >&2; exit 1; }

# The mirror this machine already uses for Debian's main archive (deb822 or one-line).
host_mirror() {
    local f
    for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list \
             /etc/apt/sources.list; do
        if [ -r "$f" ]; then cat "$f"; fi
    done | grep -oE '(https?://[^ ]+/debian)/?( |$)' | grep -v -- '-security' |
        head -n 1 | tr -d ' ' || true
}

majmin() { sed -nE 's/^([0-9]+\.[0-9]+).*/\1/p' <<<"$1"; }

# missing_packages PKG...: those of PKG that dpkg does not have installed, one per line.
missing_packages() {
    local pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' \
            || echo "$pkg"
    done
}

# private_apt ARRAY APTDIR SUITE [OPTION...]: a private apt for SUITE of $MIRROR under
# APTDIR, its index fetched; ARRAY receives the options that make apt-get and apt-cache use
# it (plus OPTION...). Returns 1, with a warning, if the index cannot be fetched.
private_apt() {
    local -n _opts=$1
    local aptdir=$2 suite=$3
    shift 3
    mkdir -p "$aptdir/lists/partial" "$aptdir/cache/archives/partial"
    echo "deb [signed-by=$KEYRING] $MIRROR $suite main" >"$aptdir/sources.list"
    : >"$aptdir/status"
    _opts=(-o "Dir::Etc::SourceList=$aptdir/sources.list" -o Dir::Etc::SourceParts=/dev/null
        -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null
        -o "Dir::State::Lists=$aptdir/lists" -o "Dir::State::status=$aptdir/status"
        -o "Dir::Cache=$aptdir/cache" -o Acquire::Languages=none -o APT::Sandbox::User=root
        "$@")
    if ! apt-get "${_opts[@]}" -q update >"$aptdir/update.log" 2>&1; then
        warn "$suite: apt-get update failed (see $aptdir/update.log)"
        return 1
    fi
}
