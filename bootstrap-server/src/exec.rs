//! Code execution: the `Executor` trait and its two backends, and the Piston v2 API the
//! node serves.
//!
//! - `local` (the default) runs the installed toolchains inside bubblewrap: no network, a
//!   private working directory, read-only system directories, a cgroup per stage where
//!   the node can make one (memory and processes of the whole run) and rlimits, a wall-clock
//!   timeout that kills the whole sandbox, output capped and marked truncated (never
//!   killed for it), a few runs at a time with a bounded queue. See `docs/exec.md`.
//! - `piston` forwards to a Piston v2 API.

mod api;
mod cgroup;
mod config;
mod local;
mod piston;
mod sandbox;
mod spawn;
mod toolchains;
mod types;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub(crate) use api::{routes, Access, Maxima};
pub use config::{Backend, CgroupMode, ExecConfig};
pub use local::LocalExecutor;
pub use piston::PistonExecutor;
pub use types::{
    BoxFuture, ExecError, ExecOutcome, ExecRequest, Executor, Limits, LiveChunk, LiveOutput, Runtime, SourceFile,
    StageOutcome, Status,
};

/// The executor `cfg` asks for (`None` when execution is off). `hidden` are paths no run
/// may see (the data dir).
pub async fn build(cfg: &ExecConfig, hidden: Vec<PathBuf>) -> Result<Option<Arc<dyn Executor>>, ExecError> {
    Ok(match cfg.exec_backend {
        Backend::Off => None,
        Backend::Local => Some(Arc::new(LocalExecutor::start(cfg, hidden).await?)),
        Backend::Piston => {
            let url = cfg.piston_url.as_deref().ok_or_else(|| {
                ExecError::Unavailable("--exec-backend piston needs --piston-url (e.g. http://127.0.0.1:2000)".into())
            })?;
            Some(Arc::new(PistonExecutor::new(url)?))
        }
    })
}

/// The maxima (and defaults) of every run.
pub(crate) fn maxima(cfg: &ExecConfig) -> Maxima {
    Maxima {
        run_timeout: Duration::from_millis(cfg.exec_run_timeout_ms),
        compile_timeout: Duration::from_millis(cfg.exec_compile_timeout_ms),
        memory: cfg.exec_memory_mb << 20,
    }
}
