#!/usr/bin/env bash
# Installs the repository's one npm workspace (package.json, package-lock.json at the root):
# the interop peers of the Rust tests, the web room's packages, the benches' peer servers.
# Skips the install when node_modules/ is newer than the lockfile.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v npm >/dev/null || { echo "npm-install: npm is required (Node 20)" >&2; exit 1; }
if [[ ! -d node_modules/.package-lock.json && ! -f node_modules/.package-lock.json ]] || [[ package-lock.json -nt node_modules/.package-lock.json ]]; then
    npm ci --no-audit --no-fund --loglevel=error
fi
