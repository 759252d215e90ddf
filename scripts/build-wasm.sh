#!/usr/bin/env bash
# Build workspace crates for wasm32-unknown-unknown into target-wasm/.
#
#   scripts/build-wasm.sh                      # = build -p arena-core --no-default-features
#   scripts/build-wasm.sh --release            # same package selection, release profile
#   scripts/build-wasm.sh check -p arena-core --no-default-features
#   scripts/build-wasm.sh -p arena-web         # any cargo args
#
# Arguments are passed to `cargo build` (or to `cargo check|doc|rustc` when the
# first argument is one of those). When the arguments select no package
# (-p/--package/--workspace/--all/--manifest-path), `-p arena-core
# --no-default-features` is added: arena-core's default `store` feature (sled)
# is native only, and other members pull in tokio/libp2p.
#
# Toolchain choice (ARENA_WASM_TOOLCHAIN=auto|rustup|debian, default auto):
#   rustup  - rustup's active toolchain has the wasm32-unknown-unknown target:
#             plain `cargo build --target wasm32-unknown-unknown`.
#   debian  - Debian 12's rustc-web/cargo-web/rust-web-src + lld (install with
#             scripts/install-wasm-toolchain.sh): std is rebuilt from source,
#               RUSTC_BOOTSTRAP=1 cargo build -Zbuild-std=std,panic_abort
#             linked with wasm-ld. Override paths with ARENA_WASM_CARGO,
#             ARENA_WASM_RUSTC (defaults /usr/bin/cargo, /usr/bin/rustc) and
#             CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER (default wasm-ld).
#             bookworm-security ships rustc-web 1.96; plain bookworm has 1.85,
#             which is exactly the newest rust-version in arena-core's wasm
#             dependency graph (getrandom 0.4, zeroize 1.9, async-lock 3.5).
#             Network access to crates.io is needed: -Zbuild-std fetches std's
#             own dependencies (dlmalloc, compiler_builtins deps, ...).
#             ARENA_WASM_BUILD_STD_FEATURES (e.g. optimize_for_size) is passed
#             as -Zbuild-std-features (scripts/build-web.sh sets it for release).
set -euo pipefail

TARGET=wasm32-unknown-unknown
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

log() { printf 'build-wasm: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---- arguments ---------------------------------------------------------------
subcmd=build
case "${1:-}" in
    build|check|doc|rustc) subcmd="$1"; shift ;;
esac
args=("$@")
selects_package=0
for a in "${args[@]+"${args[@]}"}"; do
    case "$a" in
        -p|-p*|--package|--package=*|--workspace|--all|--manifest-path|--manifest-path=*) selects_package=1 ;;
        --) break ;;
    esac
done
if [[ $selects_package -eq 0 ]]; then
    args=(-p arena-core --no-default-features "${args[@]+"${args[@]}"}")
fi

export CARGO_TARGET_DIR="$repo_root/target-wasm"

# ---- toolchain detection -----------------------------------------------------
rustup_has_target() {
    command -v rustup >/dev/null 2>&1 \
        && rustup target list --installed 2>/dev/null | grep -qx "$TARGET"
}

deb_cargo="${ARENA_WASM_CARGO:-/usr/bin/cargo}"
deb_rustc="${ARENA_WASM_RUSTC:-/usr/bin/rustc}"
deb_linker="${CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER:-wasm-ld}"
deb_problem=""
debian_usable() {
    deb_problem=""
    if [[ ! -x "$deb_rustc" ]]; then
        deb_problem="$deb_rustc not found (package rustc-web)"; return 1
    fi
    if [[ ! -x "$deb_cargo" ]]; then
        deb_problem="$deb_cargo not found (package cargo-web)"; return 1
    fi
    if ! "$deb_rustc" --print target-list 2>/dev/null | grep -qx "$TARGET"; then
        deb_problem="$deb_rustc does not know target $TARGET"; return 1
    fi
    local sysroot
    sysroot="$("$deb_rustc" --print sysroot 2>/dev/null)" || { deb_problem="$deb_rustc --print sysroot failed"; return 1; }
    if [[ ! -f "$sysroot/lib/rustlib/src/rust/library/Cargo.lock" ]]; then
        deb_problem="no std sources at $sysroot/lib/rustlib/src/rust/library (package rust-web-src)"; return 1
    fi
    if ! command -v "$deb_linker" >/dev/null 2>&1; then
        deb_problem="linker '$deb_linker' not found (package lld provides wasm-ld)"; return 1
    fi
}

toolchain="${ARENA_WASM_TOOLCHAIN:-auto}"
case "$toolchain" in
    auto)
        if rustup_has_target; then
            toolchain=rustup
        elif debian_usable; then
            toolchain=debian
        else
            die "no toolchain can build for $TARGET:
  - rustup: $(command -v rustup >/dev/null 2>&1 && echo "active toolchain lacks the $TARGET target (rustup target add $TARGET)" || echo "not installed")
  - debian: $deb_problem
Run scripts/install-wasm-toolchain.sh (installs rustc-web cargo-web rust-web-src lld binaryen on Debian 12)."
        fi
        ;;
    rustup)
        rustup_has_target || die "ARENA_WASM_TOOLCHAIN=rustup but rustup's active toolchain lacks $TARGET (rustup target add $TARGET)"
        ;;
    debian)
        debian_usable || die "ARENA_WASM_TOOLCHAIN=debian but: $deb_problem. Run scripts/install-wasm-toolchain.sh."
        ;;
    *) die "ARENA_WASM_TOOLCHAIN must be auto, rustup or debian (got '$toolchain')" ;;
esac

# ---- build -------------------------------------------------------------------
if [[ $toolchain == rustup ]]; then
    # The toolchain whose target list we checked (honours rust-toolchain files
    # and RUSTUP_TOOLCHAIN), even if a non-rustup cargo comes first on PATH.
    active="$(rustup show active-toolchain | cut -d' ' -f1)"
    log "toolchain: rustup $active ($(rustup run "$active" rustc -V)); target dir: target-wasm/"
    set -x
    exec rustup run "$active" cargo "$subcmd" --target "$TARGET" "${args[@]}"
fi

# Debian route. RUSTC/RUSTDOC must be absolute: the first `rustc` on PATH is
# usually rustup's proxy, whose toolchain has no wasm32 std. RUSTC_BOOTSTRAP=1
# lets the stable Debian cargo/rustc accept -Zbuild-std and compile std.
export RUSTC="$deb_rustc"
export RUSTDOC="${ARENA_WASM_RUSTDOC:-$(dirname "$deb_rustc")/rustdoc}"
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER="$deb_linker"
# Don't let rustup's proxies pick a toolchain for anything cargo spawns.
unset RUSTUP_TOOLCHAIN
log "toolchain: debian ($("$deb_rustc" -V), $("$deb_cargo" -V | cut -d' ' -f1-2), linker $deb_linker); target dir: target-wasm/"
set -x
build_std=(-Zbuild-std=std,panic_abort)
if [[ -n ${ARENA_WASM_BUILD_STD_FEATURES:-} ]]; then
    build_std+=("-Zbuild-std-features=$ARENA_WASM_BUILD_STD_FEATURES")
fi
exec "$deb_cargo" "$subcmd" --target "$TARGET" "${build_std[@]}" "${args[@]}"
