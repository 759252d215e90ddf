//! `arena-bootstrap`: parses the configuration, installs logging, runs the node.

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;

/// mimalloc: glibc's malloc keeps the freed pages of evicted documents and unloaded rooms
/// (resident per thread arena), mimalloc gives them back; it also packs small allocations
/// tighter (an idle room measured 30 KiB with glibc).
#[cfg(all(feature = "mimalloc", not(feature = "heap-stats")))]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(all(feature = "mimalloc", feature = "heap-stats"))]
#[global_allocator]
static ALLOC: arena_bootstrap::metrics::Counting<mimalloc::MiMalloc> =
    arena_bootstrap::metrics::Counting(mimalloc::MiMalloc);

#[cfg(all(not(feature = "mimalloc"), feature = "heap-stats"))]
#[global_allocator]
static ALLOC: arena_bootstrap::metrics::Counting<std::alloc::System> =
    arena_bootstrap::metrics::Counting(std::alloc::System);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cfg = arena_bootstrap::Config::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let listener =
        tokio::net::TcpListener::bind(cfg.http_addr).await.with_context(|| format!("binding {}", cfg.http_addr))?;
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        stop.cancel();
    });
    arena_bootstrap::run(cfg, listener, shutdown).await.context("bootstrap node failed")
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
