#!/usr/bin/env bash
# Installs Debian's chromium for the browser tests (playwright-core drives it; no browser
# is ever downloaded). Idempotent; needs root or sudo when chromium is missing.
set -euo pipefail
log() { printf 'install-chromium: %s\n' "$*" >&2; }
if [[ -x "${CHROMIUM:-/usr/bin/chromium}" ]]; then
    exit 0
fi
SUDO=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { log "need root (or sudo) to apt-get install chromium"; exit 1; }
    SUDO=(sudo -n)
fi
export DEBIAN_FRONTEND=noninteractive
opts=(-y -qq -o=Dpkg::Use-Pty=0 --no-install-recommends)
log "installing chromium"
if ! "${SUDO[@]}" apt-get install "${opts[@]}" chromium >/dev/null 2>&1; then
    "${SUDO[@]}" apt-get update -qq >/dev/null
    "${SUDO[@]}" apt-get install "${opts[@]}" chromium >/dev/null
fi
[[ -x /usr/bin/chromium ]] || { log "chromium still missing"; exit 1; }
log "done: $(/usr/bin/chromium --version 2>/dev/null || echo chromium)"
