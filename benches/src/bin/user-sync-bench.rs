//! User sync's costs (issue #27), against a running release `arena-bootstrap`: Clerk
//! webhooks accepted durably per second (each answered only after its event and jobs are
//! fsynced: the node's group commit), and the latency from sending a webhook to its user's
//! directory entry being readable (`GET /api/users/{id}`), p50/p99.
//!
//! `cargo build --release -p arena-bootstrap -p arena-benches --bin user-sync-bench &&
//!  target/release/user-sync-bench [--events N] [--conns C] [--samples S]`
//! (starts `target/release/arena-bootstrap`, or `$ARENA_BOOTSTRAP_BIN`, on a temp data dir).

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use arena_bootstrap::users::svix;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const TOKEN: &str = "bench-operator-token-0123456789";

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    addr: SocketAddr,
    s: BufReader<TcpStream>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Result<Self> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(Conn { addr, s: BufReader::new(s) })
    }

    /// A request; the status.
    async fn send(&mut self, method: &str, path: &str, headers: &str, body: &str) -> Result<u16> {
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n{headers}Content-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        self.s.get_mut().write_all(req.as_bytes()).await?;
        let mut line = String::new();
        self.s.read_line(&mut line).await?;
        let status: u16 = line.split(' ').nth(1).context("no status")?.parse()?;
        let mut len = 0usize;
        loop {
            line.clear();
            self.s.read_line(&mut line).await?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse()?;
                }
            }
        }
        let mut body = vec![0u8; len];
        self.s.read_exact(&mut body).await?;
        Ok(status)
    }
}

fn event(id: &str) -> String {
    serde_json::json!({"object": "event", "type": "user.created", "data": {
        "id": id, "object": "user", "first_name": "Bench", "last_name": id,
        "email_addresses": [{"id": "e1", "email_address": format!("{id}@example.org")}],
        "primary_email_address_id": "e1", "updated_at": 1,
    }})
    .to_string()
}

fn signed_headers(secret: &svix::Secret, id: &str, body: &str) -> String {
    let ts = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let sig = svix::sign(secret, id, ts, body.as_bytes());
    format!("Content-Type: application/json\r\nsvix-id: {id}\r\nsvix-timestamp: {ts}\r\nsvix-signature: {sig}\r\n")
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn pct(v: &mut [Duration], q: f64) -> f64 {
    v.sort();
    v.get(((v.len().saturating_sub(1)) as f64 * q).round() as usize).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() -> Result<()> {
    let (events, conns, samples) = (arg("--events", 20_000), arg("--conns", 32), arg("--samples", 2_000));
    let bin = std::env::var("ARENA_BOOTSTRAP_BIN").unwrap_or_else(|_| "target/release/arena-bootstrap".into());
    let dir = tempfile::tempdir()?;
    let mut child = tokio::process::Command::new(&bin)
        .args(["--http-addr", "127.0.0.1:0", "--no-p2p", "--data-dir"])
        .arg(dir.path())
        .env("RUST_LOG", "warn")
        .env("ARENA_ADMIN_TOKEN", TOKEN)
        .env("ARENA_CLERK_WEBHOOK_SECRET", SECRET)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {bin}"))?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let line = lines.next_line().await?.context("no output")?;
    let addr: SocketAddr = line.strip_prefix("listening on http://").context("first line")?.parse()?;
    let secret: svix::Secret = SECRET.parse().map_err(anyhow::Error::msg)?;

    // Throughput: `conns` connections, each sending its share back to back.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..conns {
        let secret = secret.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(addr).await?;
            let mut ok = 0usize;
            for i in (c..events).step_by(conns) {
                let id = format!("user_t{i}");
                let body = event(&id);
                if conn
                    .send("POST", "/webhooks/clerk", &signed_headers(&secret, &format!("msg_t{i}"), &body), &body)
                    .await?
                    == 200
                {
                    ok += 1;
                }
            }
            anyhow::Ok(ok)
        }));
    }
    let mut accepted = 0;
    for t in tasks {
        accepted += t.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    if accepted != events {
        bail!("{accepted} of {events} webhooks accepted");
    }
    println!(
        "| webhooks accepted durably | {events} in {secs:.2} s, {conns} connections | {:.0}/s |",
        events as f64 / secs
    );

    // Let the throughput phase's jobs drain before measuring latency.
    let mut admin = Conn::open(addr).await?;
    let auth = format!("Authorization: Bearer {TOKEN}\r\n");
    let drain = Instant::now();
    while admin.send("GET", &format!("/api/users/user_t{}", events - 1), &auth, "").await? != 200 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "| directory caught up after the burst | {:.2} s after the last answer | |",
        drain.elapsed().as_secs_f64()
    );

    // Latency: one webhook at a time, then polling its user until the entry is there.
    let mut hook = Conn::open(addr).await?;
    let mut lat = Vec::with_capacity(samples);
    for i in 0..samples {
        let id = format!("user_l{i}");
        let body = event(&id);
        let t0 = Instant::now();
        if hook.send("POST", "/webhooks/clerk", &signed_headers(&secret, &format!("msg_l{i}"), &body), &body).await?
            != 200
        {
            bail!("webhook {i} refused");
        }
        while admin.send("GET", &format!("/api/users/{id}"), &auth, "").await? != 200 {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        lat.push(t0.elapsed());
    }
    let (p50, p99) = (pct(&mut lat, 0.5), pct(&mut lat, 0.99));
    println!("| webhook → directory entry | {samples} sequential | p50 {p50:.2} ms, p99 {p99:.2} ms |");
    child.start_kill()?;
    let _ = child.wait().await;
    Ok(())
}
