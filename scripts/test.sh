#!/usr/bin/env bash
# Every test of the workspace, from a fresh clone on Debian 12 (root or sudo, rustup stable).
# This is the README's test command (through .ci/run); it installs what the machine lacks.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n==> %s\n' "$*"; }
T0=$SECONDS
# One build of everything, nothing kept for a next one: incremental caches would only take disk.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
free_kib() { df -Pk . | awk 'NR == 2 { print $4 }'; }
echo "disk: $(( $(free_kib) / 1024 / 1024 )) GiB free here; a first run of this script leaves about 3.5 in target/ and target-wasm/"
[ "$(free_kib)" -ge $((5 * 1024 * 1024)) ] || echo "WARNING: less than 5 GiB free: the build may run out of disk"

step "system packages (wasm toolchain: rustc-web cargo-web rust-web-src lld binaryen)"
bash scripts/install-wasm-toolchain.sh

step "system packages (code execution: bubblewrap time python3 gcc g++ default-jdk-headless)"
bash scripts/install-toolchains.sh
# Code execution's tests must find these languages here, not skip them.
export ARENA_REQUIRE_TOOLCHAINS="${ARENA_REQUIRE_TOOLCHAINS:-1}"

step "npm packages, one workspace and one lockfile (yjs, y-protocols, y-websocket, the web room's; cached in node_modules/)"
command -v node >/dev/null || { echo "node is required (Node 20)"; exit 1; }
bash scripts/npm-install.sh

export ARENA_TRACES_DIR="${ARENA_TRACES_DIR:-$PWD/../shared/data/traces}"
[ -d "$ARENA_TRACES_DIR" ] || echo "WARNING: traces not found at $ARENA_TRACES_DIR: trace tests will say SKIPPED"

step "cargo test --workspace (unit, integration, doc tests)"
cargo test --workspace

step "benches and examples compile"
cargo build --workspace --all-targets

step "arena-core for wasm32-unknown-unknown"
bash scripts/build-wasm.sh

step "the web room: arena-web package, headless Chromium and yjs interop tests"
bash scripts/test-web.sh

du -sh target target-wasm 2>/dev/null || true
step "all green in $((SECONDS - T0)) s"
