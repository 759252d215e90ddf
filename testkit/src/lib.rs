//! Test support shared by every crate's tests and by the benches, so that each exists once:
//! waiting for a condition ([`wait_for`]), the wall clock in milliseconds ([`now_ms`]), and
//! the real editing traces with their positions converted to the UTF-16 units the room
//! document counts in ([`traces`]), and a member on a node's `/yws` socket built on
//! arena-core's own client ([`yws::YwsPeer`]).
//!
//! The traces are read from `$ARENA_TRACES_DIR`, by default `../shared/data/traces` beside
//! the workspace, and never copied into the repository. A test that cannot find them says
//! `SKIPPED` loudly ([`traces::find`]) and passes.

pub mod traces;
pub mod yws;

use std::future::Future;
use std::time::Duration;

use anyhow::{bail, Result};

/// How long tests wait for anything over the network before they fail.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Polls `f` every 20 ms until it returns `Some`, fails with its error, or `timeout` passes
/// (then the error names `what`).
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await? {
            return Ok(v);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{what}: not met within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wait_for_returns_the_value_or_names_what_it_waited_for() -> Result<()> {
        let mut n = 0;
        let v = wait_for(Duration::from_secs(5), "n reaches 3", || {
            n += 1;
            let v = (n >= 3).then_some(n);
            async move { Ok(v) }
        })
        .await?;
        assert_eq!(v, 3);
        let e = wait_for(Duration::from_millis(50), "never", || async { Ok(None::<()>) }).await.unwrap_err();
        assert!(e.to_string().contains("never: not met"), "{e}");
        let e = wait_for(Duration::from_secs(5), "fails", || async { bail!("broken") as Result<Option<()>> })
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), "broken");
        Ok(())
    }

    #[test]
    fn now_ms_is_after_2020() {
        assert!(now_ms() > 1_577_836_800_000);
    }
}
