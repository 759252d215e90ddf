#!/usr/bin/env bash
# Builds the npm package web-bindings/pkg/ (arena-web): the WASM module and the JS glue.
#
#   scripts/build-web.sh            # release build, optimised
#   ARENA_WEB_PROFILE=dev scripts/build-web.sh   # faster, bigger, with panic messages
#
#   ARENA_WEB_SIGNING=static scripts/build-web.sh  # ed25519-dalek's static tables (arena-web's
#                                                  # fast-signing): +36 KiB gzip, verifying ~10% faster
#
# By default the module ships no ed25519 basepoint table: the signing table is built at
# runtime on the first key derivation, as fast as the static one (arena-core's
# identity/fixed_base.rs). ARENA_WEB_SIGNING=runtime is the default (`small` is accepted for
# it, `fast` for `static`).
#
# Steps: arena-web for wasm32-unknown-unknown (scripts/build-wasm.sh; size-tuned release
# profile: opt-level z, LTO, one codegen unit, panic=immediate-abort, no panic locations, std
# rebuilt with optimize_for_size on the Debian route), the wasm-bindgen CLI
# pinned to the wasm-bindgen crate's version in Cargo.lock (scripts/install-wasm-bindgen.sh,
# into .tools/), `wasm-bindgen --target web`, `wasm-opt -Oz --converge`, then the
# glue from web-bindings/js/ and a package.json. Prints the module's size, raw and gzipped.
#
# wasm-opt is binaryen 132 from the npm registry (scripts/install-wasm-opt.sh, into .tools/):
# it also orders the functions by name (`--reorder-functions-by-name`: a generic's copies and a
# module's functions side by side, 3.2 KiB less gzip). Without node/npm the build falls back
# to Debian's wasm-opt 108, which keeps rustc's order.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
log() { printf 'build-web: %s\n' "$*" >&2; }

bash scripts/install-wasm-toolchain.sh
wasm_bindgen="$(bash scripts/install-wasm-bindgen.sh)"
reorder=(--reorder-functions-by-name)
if ! wasm_opt="$(bash scripts/install-wasm-opt.sh)"; then
    command -v wasm-opt >/dev/null || { log "wasm-opt missing (npm binaryen, or Debian package binaryen)"; exit 1; }
    wasm_opt=wasm-opt reorder=()
    log "binaryen from npm unavailable: Debian's wasm-opt, without --reorder-functions-by-name (~3 KiB more gzip)"
fi

profile="${ARENA_WEB_PROFILE:-release}"
if [[ $profile == release ]]; then
    export CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_LTO=true CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1
    export CARGO_PROFILE_RELEASE_OPT_LEVEL=z CARGO_PROFILE_RELEASE_PANIC=abort
    # No panic machinery at all (arena-core does not panic on input) and no file/line strings
    # for panics and `Location`s: a smaller module. (`-Zfmt-debug=none` would save 1.3 KiB
    # more, but dependencies' error messages that use Debug would come out empty.) -Z flags
    # on a stable rustc: the Debian route sets RUSTC_BOOTSTRAP=1, and so do we.
    export RUSTC_BOOTSTRAP=1
    export RUSTFLAGS="${RUSTFLAGS:-} -Zunstable-options -Cpanic=immediate-abort -Zlocation-detail=none"
    # std (rebuilt from source on the Debian route) picks its size-optimised variants, e.g.
    # small sorts instead of driftsort/ipnsort per element type (-16 KiB gzip).
    export ARENA_WASM_BUILD_STD_FEATURES="${ARENA_WASM_BUILD_STD_FEATURES-optimize_for_size}"
fi
# No reference types: Debian 12's binaryen (wasm-opt 108) miscompiles modules with two tables
# (it points wasm-bindgen's exported externref table at the function table), so wasm-bindgen
# keeps JS objects in its own heap slab instead.
export RUSTFLAGS="${RUSTFLAGS:-} -Ctarget-feature=-reference-types,-multivalue"
features=()
case "${ARENA_WEB_SIGNING:-runtime}" in
    runtime|small) ;;
    static|fast) features=(--features fast-signing) ;;
    *) log "ARENA_WEB_SIGNING must be runtime or static"; exit 1 ;;
esac
if [[ $profile == release ]]; then
    # The curve arithmetic at opt-level "s" rather than "z": signing and verifying ~12% faster
    # in V8 (examples/web-room/bench/wasm-node.mjs) for ~0.7 KB of gzip (opt-level 1-3 gain
    # ~30% but cost 7-9 KB). Only here: native release builds keep opt-level 3.
    bash scripts/build-wasm.sh -p arena-web --release \
        --config 'profile.release.package.curve25519-dalek.opt-level="s"' "${features[@]+"${features[@]}"}"
    wasm="target-wasm/wasm32-unknown-unknown/release/arena_web.wasm"
else
    bash scripts/build-wasm.sh -p arena-web "${features[@]+"${features[@]}"}"
    wasm="target-wasm/wasm32-unknown-unknown/debug/arena_web.wasm"
fi

pkg="web-bindings/pkg"
rm -rf "$pkg"
mkdir -p "$pkg"
"$wasm_bindgen" --target web --out-dir "$pkg" --out-name arena_web "$wasm"
if [[ $profile == release ]]; then
    # The name section (kept by wasm-bindgen) is what the functions are ordered by; it goes after,
    # with the target_features section (for linkers): browsers read neither.
    "$wasm_opt" -Oz --converge "${reorder[@]+"${reorder[@]}"}" --strip-debug --strip-producers --strip-target-features \
        --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals \
        "$pkg/arena_web_bg.wasm" -o "$pkg/arena_web_bg.wasm.opt"
    mv "$pkg/arena_web_bg.wasm.opt" "$pkg/arena_web_bg.wasm"
fi
cp -r web-bindings/js/. "$pkg/"
cp web-bindings/README.md "$pkg/README.md" 2>/dev/null || true
version="$(awk -F'"' '/^\[workspace.package\]/{w=1} w && /^version/{print $2; exit}' Cargo.toml)"
cat > "$pkg/package.json" <<JSON
{
  "name": "arena-web",
  "version": "$version",
  "description": "InterviewArena in the browser: signed collaborative rooms (WASM), transports and editor adapters",
  "license": "MIT OR Apache-2.0",
  "type": "module",
  "main": "index.js",
  "module": "index.js",
  "types": "index.d.ts",
  "exports": {
    ".": { "types": "./index.d.ts", "default": "./index.js" },
    "./codemirror": { "types": "./adapters/codemirror.d.ts", "default": "./adapters/codemirror.js" },
    "./wasm": { "types": "./arena_web.d.ts", "default": "./arena_web.js" },
    "./arena_web_bg.wasm": "./arena_web_bg.wasm"
  },
  "files": ["*.js", "*.d.ts", "adapters/", "arena_web_bg.wasm", "README.md"],
  "sideEffects": false,
  "peerDependencies": { "@codemirror/state": "^6", "@codemirror/view": "^6" },
  "peerDependenciesMeta": { "@codemirror/state": { "optional": true }, "@codemirror/view": { "optional": true } }
}
JSON
raw=$(stat -c %s "$pkg/arena_web_bg.wasm")
gz=$(gzip -9c "$pkg/arena_web_bg.wasm" | wc -c)
log "built $pkg ($profile): arena_web_bg.wasm $raw bytes raw, $gz bytes gzip -9"
