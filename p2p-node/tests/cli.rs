//! The `arena-node` binary: `--help`, and a `join` peer with a data dir that is killed
//! with SIGKILL and restarted keeps everything it had acknowledged.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::Stdio;

use anyhow::{Context, Result};
use arena_core::Role;
use support::{wait_for, Peer, TestRoom, TIMEOUT};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_arena-node");

#[tokio::test]
async fn help_documents_every_subcommand() -> Result<()> {
    let out = Command::new(BIN).arg("--help").output().await?;
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout)?;
    for cmd in ["join", "record", "replay", "export", "verify"] {
        assert!(help.contains(cmd), "{cmd} missing from:\n{help}");
        let sub = Command::new(BIN).args([cmd, "--help"]).output().await?;
        assert!(sub.status.success(), "{cmd} --help");
    }
    // The flags that say what a reader of a recording trusts.
    for (cmd, flags) in [
        ("verify", &["--room", "--recorder-key", "--allow-incomplete"][..]),
        ("replay", &["--room", "--recorder-key", "--allow-incomplete", "--unverified"]),
        ("export", &["--room", "--recorder-key", "--allow-incomplete", "--unverified"]),
    ] {
        let sub = String::from_utf8(Command::new(BIN).args([cmd, "--help"]).output().await?.stdout)?;
        for f in flags {
            assert!(sub.contains(f), "{cmd} --help does not document {f}:\n{sub}");
        }
    }
    let bad = Command::new(BIN).args(["verify", "/nonexistent/recording"]).output().await?;
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("/nonexistent/recording"), "the error names the file");
    Ok(())
}

struct Cli {
    child: Child,
    lines: tokio::sync::mpsc::Receiver<String>,
}

fn spawn_join(room: &TestRoom, token: &str, bootstrap: &str, data_dir: &std::path::Path) -> Result<Cli> {
    let mut child = Command::new(BIN)
        .args(["join", &room.id.to_hex(), "--token", token, "--bootstrap", bootstrap, "--via", "libp2p"])
        .args(["--listen", "/ip4/127.0.0.1/tcp/0", "--name", "cli"])
        .arg("--data-dir")
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("starting arena-node")?;
    let stdout = child.stdout.take().context("stdout")?;
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            if tx.send(l).await.is_err() {
                break;
            }
        }
    });
    Ok(Cli { child, lines: rx })
}

impl Cli {
    async fn type_line(&mut self, line: &str) -> Result<()> {
        let stdin = self.child.stdin.as_mut().context("stdin")?;
        stdin.write_all(format!("{line}\n").as_bytes()).await?;
        stdin.flush().await?;
        Ok(())
    }

    /// Waits for a printed line containing `needle`.
    async fn printed(&mut self, needle: &str) -> Result<()> {
        tokio::time::timeout(TIMEOUT, async {
            while let Some(l) = self.lines.recv().await {
                if l.contains(needle) {
                    return Ok(());
                }
            }
            anyhow::bail!("arena-node exited before printing {needle:?}")
        })
        .await
        .with_context(|| format!("waiting for {needle:?}"))?
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_cli_peer_keeps_what_it_acknowledged() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let room = TestRoom::new("cli");
    let a = Peer::memory("cli-host").await?;
    a.join(&room, Some(room.token(Role::Host, 1)), "host").await?;
    let token = room.token(Role::Candidate, 2);
    let boot = a.addr().to_string();

    let mut cli = spawn_join(&room, &token, &boot, dir.path())?;
    cli.printed("joined room").await?;
    cli.type_line("typed in the cli").await?;
    // Seen by the host: the CLI flushed it before publishing.
    wait_for(TIMEOUT, "host sees the cli's line", || async {
        Ok(a.handle.code(room.id).await?.contains("typed in the cli").then_some(()))
    })
    .await?;
    cli.child.start_kill()?; // SIGKILL: no shutdown path runs
    cli.child.wait().await?;

    a.handle.splice(room.id, 0, 0, "while it was down\n").await?;
    let mut events = a.handle.subscribe();
    let mut cli = spawn_join(&room, &token, &boot, dir.path())?;
    // Straight from its data dir, before any peer answers ...
    cli.printed("typed in the cli").await?;
    // ... then what it missed.
    cli.printed("while it was down").await?;
    cli.type_line("after the restart").await?;
    wait_for(TIMEOUT, "host sees the restarted cli", || async {
        Ok(a.handle.code(room.id).await?.contains("after the restart").then_some(()))
    })
    .await?;
    // Its presence reaches the host over libp2p (renewed every 10 s), so browsers bridged
    // by a bootstrap node list it as here.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let ev = tokio::time::timeout_at(deadline, events.recv()).await.context("no presence from the cli")?;
        if let Ok(arena_node::NodeEvent::Presence { room: r, update, .. }) = ev {
            let u = <yrs::sync::AwarenessUpdate as yrs::updates::decoder::Decode>::decode_v1(&update)?;
            if r == room.id && u.clients.values().any(|e| e.json.contains("\"user\"")) {
                break;
            }
        }
    }
    cli.child.start_kill()?;
    a.stop().await?;
    Ok(())
}
