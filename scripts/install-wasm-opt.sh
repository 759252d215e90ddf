#!/usr/bin/env bash
# Install binaryen's wasm-opt, pinned, from the npm registry (the `binaryen` package: Node
# builds of binaryen's tools) into .tools/binaryen/ at the repository root. Prints the path of
# its wasm-opt.
#
# scripts/build-web.sh needs a wasm-opt that has `--reorder-functions-by-name` (binaryen 117
# and later; Debian 12 ships 108): functions of the same generic and the same module placed
# side by side compress better, 3.2 KiB less of the gzipped module
# (benches/results/2026-12-08-wasm-size.md).
#
# Idempotent: does nothing when the pinned version is there. Needs node and npm.
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="${ARENA_TOOLS_DIR:-$repo_root/.tools}"
version=132.0.0
log() { printf 'install-wasm-opt: %s\n' "$*" >&2; }

bin="$tools/binaryen/node_modules/.bin/wasm-opt"
if [[ -x "$bin" ]] && [[ "$("$bin" --version 2>/dev/null)" == "wasm-opt version ${version%%.*} "* ]]; then
    echo "$bin"; exit 0
fi
command -v npm >/dev/null || { log "error: npm is needed (Node 20)"; exit 1; }
log "installing binaryen $version (npm) into $tools/binaryen"
mkdir -p "$tools/binaryen"
npm install --prefix "$tools/binaryen" --no-audit --no-fund --no-save --loglevel=error "binaryen@$version" >&2
[[ "$("$bin" --version)" == "wasm-opt version ${version%%.*} "* ]] || { log "error: $bin is not binaryen $version"; exit 1; }
echo "$bin"
