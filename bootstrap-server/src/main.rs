//! `arena-bootstrap`: parses the configuration, installs logging, runs the node.

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;

/// mimalloc: glibc's malloc keeps the freed pages of evicted documents and unloaded rooms
/// (resident per thread arena), mimalloc gives them back; it also packs small allocations
/// tighter (an idle room measured 30 KiB with glibc). Around it: room documents in a heap of
/// their own (`SeparateHeaps`), large zeroed blocks from the OS (`LargeFromOs`); see
/// `arena_bootstrap::reclaim`.
#[cfg(all(feature = "mimalloc", not(feature = "heap-stats")))]
#[global_allocator]
static ALLOC: arena_bootstrap::reclaim::LargeFromOs<arena_bootstrap::reclaim::SeparateHeaps> =
    arena_bootstrap::reclaim::LargeFromOs::new(arena_bootstrap::reclaim::SeparateHeaps);

#[cfg(all(feature = "mimalloc", feature = "heap-stats"))]
#[global_allocator]
static ALLOC: arena_bootstrap::metrics::Counting<
    arena_bootstrap::reclaim::LargeFromOs<arena_bootstrap::reclaim::SeparateHeaps>,
> = arena_bootstrap::metrics::Counting(arena_bootstrap::reclaim::LargeFromOs::new(
    arena_bootstrap::reclaim::SeparateHeaps,
));

#[cfg(all(not(feature = "mimalloc"), feature = "heap-stats"))]
#[global_allocator]
static ALLOC: arena_bootstrap::metrics::Counting<std::alloc::System> =
    arena_bootstrap::metrics::Counting(std::alloc::System);

fn main() -> anyhow::Result<()> {
    no_transparent_huge_pages();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    rt.on_thread_park(give_back_freed_pages);
    rt.build().context("starting the runtime")?.block_on(serve())
}

/// What each runtime thread runs as it goes idle (see `arena_bootstrap::reclaim`): after
/// rooms released memory, the allocator gives back what it can.
fn give_back_freed_pages() {
    arena_bootstrap::reclaim::on_park(|| {
        // SAFETY: mi_collect takes a flag and works on the calling thread's heap and the
        // process's free segments; any thread may call it at any time.
        #[cfg(feature = "mimalloc")]
        #[allow(unsafe_code)]
        unsafe {
            libmimalloc_sys::mi_collect(true);
        }
        #[cfg(feature = "mimalloc")]
        arena_bootstrap::reclaim::collect_heaps();
        // SAFETY: malloc_trim takes an integer and works on glibc's own state.
        #[cfg(all(not(feature = "mimalloc"), target_os = "linux"))]
        #[allow(unsafe_code)]
        unsafe {
            libc::malloc_trim(0);
        }
    });
}

/// Transparent huge pages off for this process, unless `MIMALLOC_ALLOW_THP` says otherwise.
/// mimalloc asks for them (`madvise`) on the memory it takes from the OS, and a huge page is
/// resident as a whole: on a machine whose THP setting is `madvise` (Debian's default), the
/// idle-room command read 8.9, 8.5 and 9.3 KiB of RSS per idle room with them against 6.9,
/// 6.6 and 7.0 without (8,000 rooms, the same binary, runs alternating; the live heap was
/// 4.9–5.0 KiB in each), and the throughput command passed 104,611 edits/s with them
/// against 124,481 twice without. `prctl(PR_SET_THP_DISABLE)` is what mimalloc itself does for
/// `MIMALLOC_ALLOW_THP=0`; done here before the runtime's threads start.
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        #[allow(unsafe_code)]
        // SAFETY: prctl with PR_SET_THP_DISABLE takes integer arguments only and changes a
        // flag of this process; no memory is passed.
        let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
        if rc != 0 {
            eprintln!("note: could not turn transparent huge pages off ({})", std::io::Error::last_os_error());
        }
    }
}

async fn serve() -> anyhow::Result<()> {
    // `arena-bootstrap resume RESUME JD`: the resume analyzer on two files.
    if std::env::args_os().nth(1).is_some_and(|a| a == "resume") {
        let cmd = arena_bootstrap::ai::cli::ResumeCmd::parse_from(std::env::args_os().skip(1));
        println!("{}", arena_bootstrap::ai::cli::run(&cmd).await?);
        return Ok(());
    }
    // `arena-bootstrap users reconcile --from FILE`: the user directory against Clerk's export.
    if std::env::args_os().nth(1).is_some_and(|a| a == "users") {
        let cmd = arena_bootstrap::users::cli::UsersCmd::parse_from(std::env::args_os().skip(1));
        println!("{}", arena_bootstrap::users::cli::run(&cmd).await?);
        return Ok(());
    }
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
