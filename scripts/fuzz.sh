#!/usr/bin/env bash
# Fuzzes every target in fuzz/ with libFuzzer (cargo fuzz, nightly), a minute each by default,
# then minimizes each corpus. Not part of .ci/run: CI replays fuzz/corpus as a normal test
# (`cargo test`: core/, bootstrap-server/ and p2p-node/ tests/fuzz_corpus.rs).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]   fuzz (default: 60 s, every target)
#   scripts/fuzz.sh seed                    rewrite the seed inputs (seed-NN) in fuzz/corpus
#
# New inputs that reach new code go into fuzz/corpus/<target>/ (commit the minimized corpus);
# a crash stops its target and lands in fuzz/artifacts/<target>/: reproduce it with
# `cargo +nightly fuzz run <target> <file>`, fix it, keep the input in
# fuzz/regressions/<target>/ (replayed by the same tests, never pruned) and name it in a
# regression test. Logs are in fuzz/logs/.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_INCREMENTAL=0
TARGETS=(update_gate wire grant json ws_frame recording)

if [ "${1:-}" = seed ]; then
  cargo test -p arena-core --test fuzz_corpus -- --ignored write_seeds
  cargo test -p arena-bootstrap --test fuzz_corpus -- --ignored write_seeds
  cargo test -p arena-node --test fuzz_corpus -- --ignored write_seeds
  exit
fi

secs=60
if [[ "${1:-}" =~ ^[0-9]+$ ]]; then secs=$1; shift; fi
[ $# -gt 0 ] && TARGETS=("$@")

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# libFuzzer needs nightly rustc flags: the nightly toolchain if there is one, else stable
# told to allow them.
if cargo +nightly --version >/dev/null 2>&1; then tc=(+nightly); else tc=(); export RUSTC_BOOTSTRAP=1; fi

mkdir -p fuzz/logs
for t in "${TARGETS[@]}"; do cargo "${tc[@]}" fuzz build "$t"; done
status=0
for t in "${TARGETS[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  echo "==> $t: ${secs} s"
  mkdir -p "fuzz/regressions/$t"
  if cargo "${tc[@]}" fuzz run "$t" "fuzz/corpus/$t" "fuzz/regressions/$t" -- -max_total_time="$secs" -timeout=10 -rss_limit_mb=4096 \
      -print_final_stats=1 >"fuzz/logs/$t.log" 2>&1; then
    grep -E '^(Done|stat::number_of_executed_units|stat::new_units_added)' "fuzz/logs/$t.log" || true
  else
    echo "    CRASH: see fuzz/logs/$t.log and fuzz/artifacts/$t/"
    status=1
  fi
  # Keep the corpus small: only inputs that reach code no smaller one does (edges, not hit
  # counts).
  cargo "${tc[@]}" fuzz cmin "$t" "fuzz/corpus/$t" -- -use_counters=0 >>"fuzz/logs/$t.log" 2>&1 ||
    echo "    cmin failed: see the log"
  echo "    corpus: $(ls "fuzz/corpus/$t" | wc -l) inputs"
done
exit $status
