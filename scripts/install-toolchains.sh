#!/usr/bin/env bash
# Install what arena-bootstrap's code execution (the `local` backend) uses, from Debian 12's
# packages:
#
#   scripts/install-toolchains.sh          bubblewrap, GNU time (each run's CPU time and peak
#                                          memory), poppler-utils (pdftotext: the resume
#                                          analyzer's fallback PDF reader, when the pure-Rust
#                                          one fails) and the default toolchains (what CI
#                                          needs: python3, bash, gcc, g++, a JDK; node.js
#                                          is checked, not installed: the tests need Node 20)
#   scripts/install-toolchains.sh --all    also Rust, Go, Ruby, PHP, Perl and Lua, for
#                                          operators who want them (not run by CI)
#
# Only what is missing (per dpkg-query, or the command already on PATH) is installed.
# Idempotent, non-interactive, quiet. Needs root or sudo when something is missing. The
# node finds toolchains in /usr/local/bin, /usr/bin and /bin (what its sandbox shows) when
# it starts: restart it after installing more.
set -euo pipefail

log() { printf 'install-toolchains: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# package:command — a command already on the sandbox's PATH counts as installed.
DEFAULT=(bubblewrap:bwrap time:time poppler-utils:pdftotext python3:python3 bash:bash gcc:gcc g++:g++ default-jdk-headless:javac ffmpeg:ffmpeg)
EXTRA=(rustc:rustc golang-go:go ruby:ruby php-cli:php perl:perl lua5.4:lua5.4)

want=("${DEFAULT[@]}")
case "${1:-}" in
    --all) want+=("${EXTRA[@]}") ;;
    "") ;;
    *) die "usage: $0 [--all]" ;;
esac

command -v dpkg >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 \
    || die "no dpkg/apt-get: install bubblewrap and the toolchains with this system's package manager"

installed() { [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]; }
on_sandbox_path() { [[ -x /usr/local/bin/$1 || -x /usr/bin/$1 || -x /bin/$1 ]]; }

missing=()
for pc in "${want[@]}"; do
    pkg=${pc%%:*} cmd=${pc##*:}
    installed "$pkg" || on_sandbox_path "$cmd" || missing+=("$pkg")
done

[[ -x /usr/bin/node || -x /usr/local/bin/node ]] \
    || log "note: node.js is not in /usr/bin or /usr/local/bin: the sandbox will not offer javascript"

if [[ ${#missing[@]} -eq 0 ]]; then
    log "already installed: ${want[*]%%:*}"
    exit 0
fi

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "need root (or sudo) to install: ${missing[*]}"
    SUDO=(sudo -n)
fi

log "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt_opts=(-y -qq --no-install-recommends -o=Dpkg::Use-Pty=0 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
# Refresh the package index only when needed: a fresh container has no index (packages
# unknown) and an old index may point at superseded .debs.
if ! "${SUDO[@]}" apt-get install "${apt_opts[@]}" "${missing[@]}" >/dev/null 2>&1; then
    log "running apt-get update"
    "${SUDO[@]}" apt-get update -qq >/dev/null
    "${SUDO[@]}" apt-get install "${apt_opts[@]}" "${missing[@]}" >/dev/null
fi
for p in "${missing[@]}"; do
    installed "$p" || die "package $p is still not installed"
done

# bubblewrap needs user namespaces; say so now rather than at the node's start.
if ! bwrap --unshare-all --die-with-parent --ro-bind /usr /usr --symlink usr/bin /bin \
        --symlink usr/lib /lib --symlink usr/lib64 /lib64 /bin/true 2>/dev/null; then
    log "warning: bubblewrap is installed but cannot make a sandbox here (user namespaces off?);"
    log "         arena-bootstrap's local backend will refuse to start (see docs/exec.md)"
fi
log "done: $(bwrap --version 2>/dev/null || echo 'bwrap ?')"
