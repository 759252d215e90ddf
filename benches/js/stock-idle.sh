#!/usr/bin/env bash
# Memory per idle room with stock clients (benches/js/stock-idle.mjs): arena-bootstrap (release
# build), y-websocket 1.5.4's server and @hocuspocus/server, one real npm client per room.
#   bash benches/js/stock-idle.sh [--servers arena,yws,hocuspocus] [--rooms 2000,4000] [--wait 40] ...
# Every client and every server holds a socket per room: the open-file limit goes up first
# (to the hard limit where 65536 is not allowed).
set -euo pipefail
cd "$(dirname "$0")/../.."
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
bash scripts/npm-install.sh
[[ -x target/release/arena-bootstrap ]] || { echo "build it first: cargo build --release -p arena-bootstrap" >&2; exit 1; }
exec node benches/js/stock-idle.mjs "$@"
