#!/usr/bin/env bash
# Starts the y-websocket reference server (y-websocket@1.5.4 bin/server.js, npm, installed as y-websocket-server) on
# 127.0.0.1:$PORT, in memory (no YPERSISTENCE), for the load generator.
set -euo pipefail
cd "$(dirname "$0")/../.."
HOST=127.0.0.1 PORT="${PORT:?}" exec node node_modules/y-websocket-server/bin/server.js
