#!/usr/bin/env bash
# Assembles the web room served by `arena-bootstrap --static-dir examples/web-room/dist`:
# the page (examples/web-room/), the arena-web package (web-bindings/pkg, built by
# scripts/build-web.sh), Monaco (monaco-editor/min/vs from the npm registry) and a
# CodeMirror 6 bundle (esbuild). ARENA_SKIP_WASM=1 reuses an existing web-bindings/pkg.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
log() { printf 'build-web-room: %s\n' "$*" >&2; }
room=examples/web-room
dist="$room/dist"

if [[ "${ARENA_SKIP_WASM:-0}" != 1 || ! -f web-bindings/pkg/arena_web_bg.wasm ]]; then
    bash scripts/build-web.sh
else
    # The WASM module as it is, the JS glue as it is now (build-web.sh copies it the same way).
    cp -r web-bindings/js/. web-bindings/pkg/
fi
command -v npm >/dev/null || { log "npm is required (Node 20)"; exit 1; }
bash scripts/npm-install.sh
modules="$repo/node_modules"

rm -rf "$dist"
mkdir -p "$dist/pkg" "$dist/vendor/monaco"
cp "$room/index.html" "$room/app.js" "$room/call-ui.js" "$room/style.css" "$room/resume.html" "$room/resume.js" "$dist/"
cp -r web-bindings/pkg/. "$dist/pkg/"
cp -r "$modules/monaco-editor/min/vs" "$dist/vendor/monaco/vs"
cp "$room/monaco-worker.js" "$dist/vendor/"
NODE_PATH="$modules" "$modules/.bin/esbuild" "$room/codemirror-entry.js" \
    --bundle --format=esm --minify --log-level=warning --outfile="$dist/vendor/codemirror.js"
log "assembled $dist ($(du -sh "$dist" | cut -f1)); serve it with: arena-bootstrap --static-dir $dist"
