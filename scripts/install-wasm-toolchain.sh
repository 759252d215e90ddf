#!/usr/bin/env bash
# Install what scripts/build-wasm.sh needs to build arena-core for
# wasm32-unknown-unknown.
#
# * If rustup's active toolchain already has the wasm32-unknown-unknown target,
#   nothing is installed (build-wasm.sh uses rustup normally).
# * Otherwise (e.g. rustup present but unable to download rust-std for wasm32),
#   install Debian 12's "web" Rust toolchain, which can rebuild std for wasm32
#   from source with -Zbuild-std:
#       rustc-web cargo-web rust-web-src lld binaryen
#   Only the packages that are missing (per dpkg-query) are installed.
#   /usr/bin/rustc and /usr/bin/cargo come from rustc-web / cargo-web; a
#   rustup install in ~/.cargo/bin keeps working and keeps precedence on PATH.
#
# Idempotent, non-interactive, quiet. Needs root or sudo when something is
# missing. Environment:
#   ARENA_WASM_FORCE_DEBIAN=1  install the Debian packages even if rustup has
#                              the wasm32 target.
set -euo pipefail

TARGET=wasm32-unknown-unknown
PACKAGES=(rustc-web cargo-web rust-web-src lld binaryen)

log() { printf 'install-wasm-toolchain: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# 1. rustup with the target installed -> nothing to do.
if [[ "${ARENA_WASM_FORCE_DEBIAN:-0}" != 1 ]] && command -v rustup >/dev/null 2>&1 \
   && (cd "$repo_root" && rustup target list --installed 2>/dev/null) | grep -qx "$TARGET"; then
    log "rustup toolchain already has $TARGET; nothing to install."
    exit 0
fi

# 2. Debian route.
command -v dpkg >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 \
    || die "no rustup $TARGET target and no dpkg/apt-get. Run 'rustup target add $TARGET' on a machine with network access to static.rust-lang.org."

installed() { [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]; }

missing=()
for p in "${PACKAGES[@]}"; do
    installed "$p" || missing+=("$p")
done

# Plain bookworm's rustc-web is 1.85; bookworm-security ships 1.96. The size-tuned web
# build (-Cpanic=immediate-abort) needs the newer one, and a stale package index installs
# the older: upgrade the three -web packages when what is installed is older than 1.90.
deb_minor() { /usr/bin/rustc -V 2>/dev/null | sed -n 's/^rustc 1\.\([0-9]*\).*/\1/p'; }
if [[ ${#missing[@]} -eq 0 ]]; then
    minor="$(deb_minor)"
    if [[ -n $minor && $minor -lt 90 ]]; then
        missing=(rustc-web cargo-web rust-web-src)
        log "rustc-web is 1.$minor; upgrading (apt-get update first)"
        FORCE_UPDATE=1
    else
        log "Debian wasm toolchain already installed ($(/usr/bin/rustc -V 2>/dev/null || echo 'rustc ?'))."
        exit 0
    fi
fi

# rustc-web/cargo-web/rust-web-src declare Conflicts with Debian's own `rustup`
# package (not with a rustup-init install under ~/.cargo); apt-get -y would
# silently remove it, so refuse instead.
if installed rustup; then
    die "Debian package 'rustup' is installed and conflicts with rustc-web/cargo-web/rust-web-src. Use 'rustup target add $TARGET' instead, or remove the rustup package first."
fi
for p in rustc cargo rust-src; do
    if installed "$p"; then
        log "note: Debian package '$p' will be replaced by its -web counterpart."
    fi
done

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "need root (or sudo) to install: ${missing[*]}"
    SUDO=(sudo -n)
fi

log "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt_opts=(-y -qq -o=Dpkg::Use-Pty=0 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
# Refresh the package index only when needed: a fresh container has no index
# (packages unknown) and an old index may point at superseded .debs.
if [[ ${FORCE_UPDATE:-0} == 1 ]] || ! "${SUDO[@]}" apt-get install "${apt_opts[@]}" "${missing[@]}" >/dev/null 2>&1; then
    log "running apt-get update"
    "${SUDO[@]}" apt-get update -qq >/dev/null
    "${SUDO[@]}" apt-get install "${apt_opts[@]}" "${missing[@]}" >/dev/null
fi

minor="$(deb_minor)"
if [[ -n $minor && $minor -lt 90 && ${FORCE_UPDATE:-0} != 1 ]]; then
    log "got rustc-web 1.$minor from a stale index: apt-get update and upgrade"
    "${SUDO[@]}" apt-get update -qq >/dev/null
    "${SUDO[@]}" apt-get install "${apt_opts[@]}" rustc-web cargo-web rust-web-src >/dev/null
fi
for p in "${missing[@]}"; do
    installed "$p" || die "package $p is still not installed"
done
log "done: $(/usr/bin/rustc -V), $(/usr/bin/cargo -V), $(wasm-ld --version 2>/dev/null | head -n1)"
