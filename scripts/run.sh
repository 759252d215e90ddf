#!/usr/bin/env bash
# Builds everything the web room needs and serves it: open http://127.0.0.1:8080/ and
# create a room. Arguments go to arena-bootstrap (e.g. --http-addr 0.0.0.0:8080
# --public-url https://arena.example.org; see arena-bootstrap --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build-web-room.sh
cargo build --release -p arena-bootstrap
exec target/release/arena-bootstrap --static-dir examples/web-room/dist "$@"
