#!/usr/bin/env bash
# Install the wasm-bindgen CLI whose version matches the wasm-bindgen crate in
# Cargo.lock (the two must agree exactly) into .tools/ at the repository root.
#
# Idempotent: does nothing when .tools/bin/wasm-bindgen already has the version.
# Compiles from crates.io (several minutes the first time). Prints the binary's path.
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="${ARENA_TOOLS_DIR:-$repo_root/.tools}"
log() { printf 'install-wasm-bindgen: %s\n' "$*" >&2; }

version="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$repo_root/Cargo.lock")"
[[ -n "$version" ]] || { log "error: no wasm-bindgen in Cargo.lock"; exit 1; }

bin="$tools/bin/wasm-bindgen"
if [[ -x "$bin" ]] && [[ "$("$bin" --version 2>/dev/null)" == "wasm-bindgen $version" ]]; then
    echo "$bin"; exit 0
fi
log "installing wasm-bindgen-cli $version into $tools (compiles for several minutes)"
# Use the native (rustup) cargo, not Debian's cargo-web.
# --locked first (the versions the release was tested with); some locked versions can be
# missing from the registry index (yanked), then resolve afresh.
cargo install wasm-bindgen-cli --version "=$version" --locked --root "$tools" --quiet >&2 \
    || cargo install wasm-bindgen-cli --version "=$version" --root "$tools" --quiet >&2
[[ "$("$bin" --version)" == "wasm-bindgen $version" ]] || { log "error: $bin is not version $version"; exit 1; }
echo "$bin"
