#!/usr/bin/env bash
# The web tests, from a fresh clone on Debian 12 (root or sudo, rustup stable, Node 20):
# installs what is missing (chromium, the wasm toolchain, the wasm-bindgen CLI, the npm
# packages), builds the arena-web package, the web room and arena-bootstrap, then runs
# the package's own tests (web-bindings/tests/js: links, bind, signatures) and the web room's
# (examples/web-room/tests) with node's test runner:
#   room.test.mjs  the room in headless Chromium (playwright-core), Monaco by default
#                  (ARENA_WEB_EDITOR=textarea|codemirror to test another adapter)
#   mesh.test.mjs  the WebRTC mesh: two pages converge over a data channel with /yws cut,
#                  the node catches up afterwards; garbage on /signal is ignored
#   call.test.mjs  the 1-on-1 call (fake camera and microphone): host and candidate decode
#                  each other's video, mute / camera off, device switch, ICE restart, an
#                  observer receives and sends nothing, hostile and garbage call messages,
#                  a page denied the camera still receives
#   robust.test.mjs bad input: the node SIGKILLed under two pages and restarted on its port
#                  and data dir (offline status, typing goes on, reconnect, a late joiner has
#                  everything); invite tokens expired before and while a page is open
#   links.test.mjs the session with two links (Node, fake links): interleaved fragments
#   bind.test.mjs  bindEditor's consistency check (Node, a WASM room, a faulty adapter)
#   yjs.test.mjs   the WASM room and a stock yjs + y-websocket client converge through /yws
#   signatures.test.mjs the WASM module's Ed25519 verdicts equal the native ones on every vector
#   profiles.test.mjs a user created through a Clerk webhook shows their real name in the room
#                  (node-signed profile records, checked in the page; a deletion removes it)
# Screenshots go to target/web-room/.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n==> %s\n' "$*"; }
T0=$SECONDS

step "chromium (Debian package)"
bash scripts/install-chromium.sh

step "arena-web package and the web room (wasm build, wasm-bindgen, wasm-opt, npm ci, Monaco, CodeMirror)"
command -v node >/dev/null || { echo "node is required (Node 20)"; exit 1; }
bash scripts/build-web-room.sh

step "arena-bootstrap, and arena-node (the recorder in call-record.test.mjs)"
cargo build -p arena-bootstrap -p arena-node

step "browser and interop tests"
node --test web-bindings/tests/js/*.test.mjs examples/web-room/tests/*.test.mjs

step "web tests green in $((SECONDS - T0)) s"
