//! Code execution through the node's Piston v2 API, with real bubblewrap and real
//! toolchains: every installed language, the hostile battery, malformed bodies, and what a
//! stranger can do.

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result};
use serde_json::{json, Value};
use support::{processes_with, Server};

/// Each test node runs its slots as its own uids (tests run in parallel).
static NEXT_UID: AtomicU32 = AtomicU32::new(62_000);

fn config(data: &Path) -> arena_bootstrap::Config {
    let mut cfg = arena_bootstrap::Config::for_tests(data);
    cfg.no_p2p = true;
    cfg.exec.exec_uid = NEXT_UID.fetch_add(16, Ordering::SeqCst);
    cfg.exec.exec_run_timeout_ms = 5_000;
    cfg.exec.exec_compile_timeout_ms = 60_000;
    cfg
}

async fn node() -> Result<(Server, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let server = Server::start_with(config(dir.path())).await?;
    Ok((server, dir))
}

/// An HTTP/1.1 request with extra header lines; (status, JSON body or Null).
async fn request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> Result<(u16, Value)> {
    let (status, body) = support::http_with(addr, method, path, headers, body).await?;
    Ok((status, serde_json::from_str(&body).unwrap_or(Value::Null)))
}

async fn execute(addr: std::net::SocketAddr, body: &Value) -> Result<(u16, Value)> {
    let headers = format!("Host: {addr}\r\nContent-Type: application/json\r\n");
    request(addr, "POST", "/api/v2/execute", &headers, &body.to_string()).await
}

/// Runs `code` as `language` and returns the answer (200 expected).
async fn run(addr: std::net::SocketAddr, language: &str, code: &str, extra: Value) -> Result<Value> {
    let mut body = json!({ "language": language, "version": "*", "files": [{ "content": code }] });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let (status, v) = execute(addr, &body).await?;
    anyhow::ensure!(status == 200, "{language}: {status} {v}");
    Ok(v)
}

async fn assert_healthy(addr: std::net::SocketAddr) -> Result<()> {
    let (status, v) = request(addr, "GET", "/health", &format!("Host: {addr}\r\n"), "").await?;
    assert_eq!((status, v["status"].as_str()), (200, Some("ok")), "{v}");
    // And it still runs code.
    let v = run(addr, "bash", "echo still here", json!({})).await?;
    assert_eq!(v["run"]["stdout"], "still here\n", "{v}");
    Ok(())
}

/// Every file under `dir` with its size.
fn snapshot(dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(p),
                Ok(m) => out.push((p.display().to_string(), m.len())),
                Err(_) => {}
            }
        }
    }
    out.sort();
    out
}

struct Program {
    language: &'static str,
    hello: &'static str,
    echo: &'static str,
}

const PROGRAMS: &[Program] = &[
    Program { language: "python", hello: "print('hello, world')", echo: "import sys\nprint(sys.stdin.read(), end='')" },
    Program {
        language: "javascript",
        hello: "console.log('hello, world')",
        echo: "process.stdout.write(require('fs').readFileSync(0, 'utf8'))",
    },
    Program { language: "bash", hello: "echo 'hello, world'", echo: "cat" },
    Program {
        language: "c",
        hello: "#include <stdio.h>\nint main(void){puts(\"hello, world\");return 0;}",
        echo: "#include <stdio.h>\nint main(void){int c;while((c=getchar())!=EOF)putchar(c);return 0;}",
    },
    Program {
        language: "c++",
        hello: "#include <iostream>\nint main(){std::cout<<\"hello, world\"<<std::endl;}",
        echo: "#include <iostream>\n#include <string>\nint main(){std::string l;bool first=true;while(std::getline(std::cin,l)){if(!first)std::cout<<'\\n';std::cout<<l;first=false;}std::cout<<'\\n';}",
    },
    Program {
        language: "java",
        hello: "public class Main { public static void main(String[] a) { System.out.println(\"hello, world\"); } }",
        echo: "public class Main { public static void main(String[] a) throws Exception { System.out.write(System.in.readAllBytes()); System.out.flush(); } }",
    },
    Program {
        language: "rust",
        hello: "fn main() { println!(\"hello, world\"); }",
        echo: "use std::io::Read; fn main() { let mut s = String::new(); std::io::stdin().read_to_string(&mut s).unwrap(); print!(\"{s}\"); }",
    },
    Program {
        language: "go",
        hello: "package main\nimport \"fmt\"\nfunc main() { fmt.Println(\"hello, world\") }",
        echo: "package main\nimport (\"io\"; \"os\")\nfunc main() { io.Copy(os.Stdout, os.Stdin) }",
    },
    Program { language: "ruby", hello: "puts 'hello, world'", echo: "print STDIN.read" },
    Program { language: "php", hello: "<?php echo \"hello, world\\n\";", echo: "<?php echo stream_get_contents(STDIN);" },
    Program { language: "perl", hello: "print \"hello, world\\n\";", echo: "print while <STDIN>;" },
    Program { language: "lua", hello: "print('hello, world')", echo: "io.write(io.read('a'))" },
];

/// Languages CI installs: with ARENA_REQUIRE_TOOLCHAINS=1 they must all be offered.
const REQUIRED: &[&str] = &["python", "javascript", "bash", "c", "c++", "java"];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_installed_language_says_hello_and_echoes_stdin() -> Result<()> {
    let (server, _dir) = node().await?;
    let addr = server.addr;
    let (status, runtimes) = request(addr, "GET", "/api/v2/runtimes", &format!("Host: {addr}\r\n"), "").await?;
    assert_eq!(status, 200, "{runtimes}");
    let offered: Vec<String> = runtimes
        .as_array()
        .context("runtimes")?
        .iter()
        .filter_map(|r| r["language"].as_str().map(str::to_owned))
        .collect();
    if std::env::var("ARENA_REQUIRE_TOOLCHAINS").as_deref() == Ok("1") {
        for want in REQUIRED {
            assert!(offered.iter().any(|o| o == want), "{want} is not installed (offered: {offered:?})");
        }
    }
    let mut ran = Vec::new();
    for p in PROGRAMS {
        if !offered.iter().any(|o| o == p.language) {
            eprintln!("SKIPPED: {} is not installed on this machine (offered: {offered:?})", p.language);
            continue;
        }
        let v = run(addr, p.language, p.hello, json!({})).await?;
        assert_eq!(v["language"], p.language, "{v}");
        assert_eq!(v["run"]["stdout"], "hello, world\n", "{}: {v}", p.language);
        assert_eq!(v["run"]["code"], 0, "{}: {v}", p.language);
        assert!(v["run"]["status"].is_null(), "{}: {v}", p.language);
        let input = "line one\nline two ünïcode\n";
        let v = run(addr, p.language, p.echo, json!({ "stdin": input })).await?;
        assert_eq!(v["run"]["stdout"], input, "{}: {v}", p.language);
        ran.push(p.language);
    }
    eprintln!("ran hello and echo in {ran:?}");
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fork_bomb_is_contained() -> Result<()> {
    let (server, _dir) = node().await?;
    let bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n";
    let v = run(server.addr, "python", bomb, json!({ "run_timeout": 2000 })).await?;
    assert_eq!(v["run"]["status"], "TO", "{v}");
    assert!(v["run"]["message"].as_str().is_some_and(|m| m.contains("time limit")), "{v}");
    let v = run(server.addr, "bash", ":(){ :|:& };:\nsleep 30", json!({ "run_timeout": 2000 })).await?;
    assert!(!v["run"]["status"].is_null(), "{v}");
    assert_healthy(server.addr).await?;
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_memory_bomb_hits_the_memory_limit() -> Result<()> {
    let (server, _dir) = node().await?;
    let bomb = "x = []\nwhile True:\n    x.append(bytearray(16 << 20))\n";
    let v = run(server.addr, "python", bomb, json!({ "run_memory_limit": 128 << 20 })).await?;
    assert_eq!(v["run"]["status"], "RE", "{v}");
    assert!(v["run"]["stderr"].as_str().is_some_and(|e| e.contains("MemoryError")), "{v}");
    let c = "#include <stdlib.h>\n#include <string.h>\nint main(void){for(;;){char*p=malloc(1<<24);if(!p)return 3;memset(p,1,1<<24);}}";
    let v = run(server.addr, "c", c, json!({ "run_memory_limit": 128 << 20 })).await?;
    assert_eq!(v["run"]["code"], 3, "malloc fails at the limit: {v}");
    let js = "const a = []; for (;;) a.push(new Array(1e6).fill(1.5));";
    let v = run(server.addr, "javascript", js, json!({ "run_memory_limit": 128 << 20 })).await?;
    assert!(!v["run"]["status"].is_null(), "{v}");
    assert_healthy(server.addr).await?;
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_infinite_loop_times_out() -> Result<()> {
    let (server, _dir) = node().await?;
    let v = run(server.addr, "c", "int main(void){for(;;){}}", json!({ "run_timeout": 1000 })).await?;
    assert_eq!(v["run"]["status"], "TO", "{v}");
    assert_eq!(v["run"]["signal"], "SIGKILL", "{v}");
    assert!(v["run"]["code"].is_null(), "{v}");
    assert_healthy(server.addr).await?;
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sleeping_past_the_timeout_keeps_the_output_so_far() -> Result<()> {
    let (server, _dir) = node().await?;
    let code = "import sys, time\nprint('before', flush=True)\nprint('err', file=sys.stderr, flush=True)\ntime.sleep(60)\nprint('after')";
    let v = run(server.addr, "python", code, json!({ "run_timeout": 1500 })).await?;
    assert_eq!(v["run"]["status"], "TO", "{v}");
    assert_eq!(v["run"]["stdout"], "before\n", "{v}");
    assert_eq!(v["run"]["stderr"], "err\n", "{v}");
    // Two pipes: their order in `output` is the order the node read them in.
    let output = v["run"]["output"].as_str().unwrap_or_default();
    assert!(output == "before\nerr\n" || output == "err\nbefore\n", "{v}");
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_megabytes_of_output_is_truncated_not_killed() -> Result<()> {
    let (server, _dir) = node().await?;
    let code = "import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(100):\n    sys.stdout.write(chunk)\nsys.stdout.flush()\nprint('done', file=sys.stderr)\n";
    let v = run(server.addr, "python", code, json!({})).await?;
    let cap = 256 * 1024;
    assert_eq!(v["run"]["status"], "OL", "{}", v["run"]["message"]);
    assert_eq!(v["run"]["code"], 0, "it ran to the end: {}", v["run"]["message"]);
    assert_eq!(v["run"]["stdout"].as_str().map(str::len), Some(cap));
    assert_eq!(v["run"]["stdout_truncated"], true);
    assert_eq!(v["run"]["stderr"], "done\n", "the program was not killed");
    assert!(v["run"]["message"].as_str().is_some_and(|m| m.contains("stdout")), "{}", v["run"]["message"]);
    assert_healthy(server.addr).await?;
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_huge_file_stops_at_the_limits_and_leaves_nothing() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let work = tempfile::tempdir()?;
    let mut cfg = config(dir.path());
    cfg.exec.exec_work_dir = Some(work.path().to_owned());
    let server = Server::start_with(cfg).await?;
    // In the working directory, then in /tmp: the file size limit (16 MiB) stops both.
    for path in ["big.bin", "/tmp/big.bin"] {
        let code = format!(
            "import os\nf = open('{path}', 'wb')\nn = 0\ntry:\n    while True:\n        f.write(b'x' * (1 << 20)); f.flush(); n += 1\nexcept OSError as e:\n    print('stopped at', n, 'MiB:', e)\n"
        );
        let v = run(server.addr, "python", &code, json!({})).await?;
        let out = format!("{} {}", v["run"]["stdout"], v["run"]["message"]);
        assert!(out.contains("stopped at 16 MiB") || out.contains("size limit"), "{path}: {v}");
    }
    // Many files: the run's tmpfs (64 MiB) is full before the disk.
    let code = "n = 0\ntry:\n    while True:\n        open(f'f{n}', 'wb').write(b'x' * (8 << 20)); n += 1\nexcept OSError as e:\n    print('full after', n, e)\n";
    let v = run(server.addr, "python", code, json!({})).await?;
    assert!(v["run"]["stdout"].as_str().is_some_and(|s| s.starts_with("full after")), "{v}");
    // Nothing was written outside the run: no big file in the data dir, nothing left of the
    // run in the work dir.
    let big: Vec<_> =
        snapshot(dir.path()).into_iter().filter(|(p, n)| *n >= 8 << 20 || p.ends_with("big.bin")).collect();
    assert!(big.is_empty(), "{big:?}");
    let left = snapshot(work.path());
    assert!(left.is_empty(), "{left:?}");
    assert_healthy(server.addr).await?;
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sockets_go_nowhere() -> Result<()> {
    let (server, _dir) = node().await?;
    let port = server.addr.port();
    let code = format!(
        "import socket\nfor host, port in [('127.0.0.1', {port}), ('1.1.1.1', 53), ('localhost', {port})]:\n    try:\n        s = socket.create_connection((host, port), timeout=2)\n        print('CONNECTED', host, port)\n    except OSError as e:\n        print('refused', host, port, type(e).__name__)\ntry:\n    socket.getaddrinfo('example.org', 80)\n    print('RESOLVED')\nexcept OSError:\n    print('no dns')\n"
    );
    let v = run(server.addr, "python", &code, json!({})).await?;
    let out = v["run"]["stdout"].as_str().unwrap_or_default();
    assert!(!out.contains("CONNECTED") && !out.contains("RESOLVED"), "{v}");
    assert_eq!(out.matches("refused").count(), 3, "{v}");
    assert_healthy(server.addr).await?;
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_data_dir_keys_and_secrets_are_not_visible() -> Result<()> {
    let (server, dir) = node().await?;
    let data = dir.path().canonicalize()?;
    let code = format!(
        "import os\nfor p in ['{}', '/etc/shadow', '/etc/passwd', '/root', '/home', '/work', '/proc/1/environ', '/var']:\n    try:\n        if os.path.isdir(p):\n            print('LISTED', p, os.listdir(p))\n        else:\n            print('READ', p, len(open(p, 'rb').read()))\n    except OSError as e:\n        print('hidden', p, type(e).__name__)\n",
        data.display()
    );
    let v = run(server.addr, "python", &code, json!({})).await?;
    let out = v["run"]["stdout"].as_str().unwrap_or_default();
    // /proc/1/environ is the program's own (it is the sandbox's init): allowed.
    for line in out.lines().filter(|l| !l.contains("/proc/1/environ")) {
        assert!(line.starts_with("hidden"), "{line}\n{v}");
    }
    assert_eq!(out.lines().count(), 8, "{v}");
    // Nothing of the node's environment (its variables may hold the operator token).
    let v = run(server.addr, "python", "import os\nprint(sorted(os.environ))", json!({})).await?;
    assert_eq!(v["run"]["stdout"], "['HOME', 'LANG', 'PATH', 'PWD', 'TMPDIR']\n", "{v}");
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_its_parent_and_everything_hurts_only_itself() -> Result<()> {
    let (server, _dir) = node().await?;
    let code = "import os, signal\nprint('ppid', os.getppid(), flush=True)\nfor pid in [os.getppid(), 1, -1]:\n    try:\n        os.kill(pid, signal.SIGKILL)\n    except OSError as e:\n        print('no', pid, type(e).__name__, flush=True)\n";
    let v = run(server.addr, "python", code, json!({})).await?;
    assert!(v["run"].is_object(), "{v}");
    let v = run(server.addr, "bash", "kill -9 -1; kill -9 $PPID; echo alive", json!({})).await?;
    assert!(v["run"].is_object(), "{v}");
    assert_healthy(server.addr).await?;
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_background_process_outlives_its_run() -> Result<()> {
    let (server, _dir) = node().await?;
    let marker = "987654.321";
    let code = format!(
        "(sleep {marker} &)\nsetsid sleep {marker} &\nnohup sleep {marker} >/dev/null 2>&1 &\ndisown -a\necho started"
    );
    let v = run(server.addr, "bash", &code, json!({})).await?;
    assert_eq!(v["run"]["stdout"], "started\n", "{v}");
    let left = processes_with(marker);
    assert!(left.is_empty(), "survivors: {left:?}");
    // Also when the run times out.
    let code = format!("sleep {marker} &\nsetsid sleep {marker} &\nsleep {marker}");
    let v = run(server.addr, "bash", &code, json!({ "run_timeout": 500 })).await?;
    assert_eq!(v["run"]["status"], "TO", "{v}");
    let left = processes_with(marker);
    assert!(left.is_empty(), "survivors: {left:?}");
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn compile_bombs_fail_the_compile_stage() -> Result<()> {
    let (server, _dir) = node().await?;
    // Deeply recursive templates: the template depth limit.
    let templates = "template<int N> struct F { static constexpr long v = F<N-1>::v + F<N-2>::v; };\ntemplate<> struct F<0> { static constexpr long v = 0; };\ntemplate<> struct F<1> { static constexpr long v = 1; };\nint main() { return F<100000>::v; }";
    // Including itself, and an endless file.
    let itself = "#include __FILE__\nint main() {}";
    let zero = "#include \"/dev/zero\"\nint main() {}";
    for (what, code) in [("templates", templates), ("itself", itself), ("/dev/zero", zero)] {
        let v = run(server.addr, "c++", code, json!({ "compile_timeout": 10_000 })).await?;
        assert!(v["run"].is_null(), "{what}: nothing runs: {v}");
        assert!(!v["compile"]["status"].is_null(), "{what}: {v}");
        assert!(v["compile"]["message"].is_string(), "{what}: {v}");
    }
    assert_healthy(server.addr).await?;
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_bodies_get_400_with_a_message() -> Result<()> {
    let (server, _dir) = node().await?;
    let addr = server.addr;
    let json_headers = format!("Host: {addr}\r\nContent-Type: application/json\r\n");
    let cases: &[(&str, &str)] = &[
        ("not json", "nope {"),
        ("no language", r#"{"files":[{"content":"print(1)"}]}"#),
        ("files not an array", r#"{"language":"python","files":"print(1)"}"#),
        ("no files", r#"{"language":"python","files":[]}"#),
        ("unknown runtime", r#"{"language":"html","version":"5.0.0","files":[{"content":"x"}]}"#),
        ("version not installed", r#"{"language":"python","version":"2.7","files":[{"content":"x"}]}"#),
        ("timeout above the maximum", r#"{"language":"python","files":[{"content":"x"}],"run_timeout":99999999}"#),
        ("negative timeout", r#"{"language":"python","files":[{"content":"x"}],"run_timeout":-5}"#),
        ("memory above the maximum", r#"{"language":"python","files":[{"content":"x"}],"run_memory_limit":1e15}"#),
        ("path in a file name", r#"{"language":"python","files":[{"name":"../../etc/x","content":"x"}]}"#),
        ("hidden file name", r#"{"language":"python","files":[{"name":".bashrc","content":"x"}]}"#),
        (
            "same name twice",
            r#"{"language":"python","files":[{"name":"a.py","content":"x"},{"name":"a.py","content":"y"}]}"#,
        ),
        ("bad base64", r#"{"language":"python","files":[{"content":"!!","encoding":"base64"}]}"#),
        ("unknown encoding", r#"{"language":"python","files":[{"content":"x","encoding":"rot13"}]}"#),
        ("args not strings", r#"{"language":"python","files":[{"content":"x"}],"args":[1,2]}"#),
        ("NUL in an argument", r#"{"language":"python","files":[{"content":"x"}],"args":["a\u0000b"]}"#),
        ("null", "null"),
        ("a number", "42"),
    ];
    for (what, body) in cases {
        let (status, v) = request(addr, "POST", "/api/v2/execute", &json_headers, body).await?;
        assert_eq!(status, 400, "{what}: {v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {v}");
    }
    let (status, v) = request(
        addr,
        "POST",
        "/api/v2/execute",
        &json_headers,
        r#"{"language":"html","version":"5.0.0","files":[{"content":"x"}]}"#,
    )
    .await?;
    assert_eq!((status, v["message"].as_str()), (400, Some("html-5.0.0 runtime is unknown")));
    // Not JSON at all: a cross-site form cannot run code on a loopback node.
    let (status, v) = request(
        addr,
        "POST",
        "/api/v2/execute",
        &format!("Host: {addr}\r\nContent-Type: text/plain\r\n"),
        r#"{"language":"python","files":[{"content":"print(1)"}]}"#,
    )
    .await?;
    assert_eq!(status, 415, "{v}");
    // Too big a body (over 1 MiB); one over the rest of the API's 64 KiB is fine here.
    let big = format!(r#"{{"language":"python","files":[{{"content":"{}"}}]}}"#, "x".repeat(2 << 20));
    let (status, _) = request(addr, "POST", "/api/v2/execute", &json_headers, &big).await?;
    assert_eq!(status, 413);
    let input = "y".repeat(200 << 10);
    let body = json!({ "language": "bash", "files": [{ "content": "wc -c" }], "stdin": input });
    let (status, v) = execute(addr, &body).await?;
    assert_eq!((status, v["run"]["stdout"].as_str().map(str::trim)), (200, Some("204800")), "{v}");
    assert_healthy(addr).await?;
    server.stop().await
}

/// The request body of Piston's documented example (docs/api-v2.md), byte for byte.
const PISTON_EXAMPLE: &str = r#"{
  "language": "js",
  "version": "24.16.0",
  "files": [
    {
      "name": "my_cool_code.js",
      "content": "console.log(process.argv)"
    }
  ],
  "stdin": "",
  "args": ["1", "2", "3"],
  "compile_timeout": 10000,
  "run_timeout": 3000,
  "compile_memory_limit": -1,
  "run_memory_limit": -1
}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pistons_documented_example_gets_a_piston_shaped_answer() -> Result<()> {
    let (server, _dir) = node().await?;
    let addr = server.addr;
    // The documented version is Piston's node; ask for whichever is installed.
    let body = PISTON_EXAMPLE.replace("\"24.16.0\"", "\"*\"");
    let (status, v) =
        request(addr, "POST", "/api/v2/execute", &format!("Host: {addr}\r\nContent-Type: application/json\r\n"), &body)
            .await?;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["language"], "javascript");
    assert!(v["version"].is_string());
    assert!(v.get("compile").is_none(), "javascript has no compile stage: {v}");
    let r = &v["run"];
    for key in ["stdout", "stderr", "output"] {
        assert!(r[key].is_string(), "{key}: {v}");
    }
    assert_eq!(r["code"], 0);
    assert!(r["signal"].is_null() && r["status"].is_null() && r["message"].is_null(), "{v}");
    let flat: String = r["stdout"].as_str().unwrap_or_default().split_whitespace().collect();
    assert!(flat.contains("'/box/my_cool_code.js','1','2','3'"), "{v}");
    assert_eq!(r["output"], r["stdout"]);
    assert!(r["cpu_time"].is_u64() && r["wall_time"].is_u64() && r["memory"].is_u64(), "{v}");
    // The documented version itself, not installed here: Piston's 400.
    let (status, v) = request(
        addr,
        "POST",
        "/api/v2/execute",
        &format!("Host: {addr}\r\nContent-Type: application/json\r\n"),
        PISTON_EXAMPLE,
    )
    .await?;
    assert!(status == 200 || (status == 400 && v["message"] == "js-24.16.0 runtime is unknown"), "{status} {v}");
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn strangers_need_the_operator_token_beyond_loopback() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cfg = config(dir.path());
    // Reachable from elsewhere (a public URL), with an operator token.
    cfg.public_url = Some("https://arena.example.org".into());
    cfg.admin_token = Some("operator-token-0123456789".parse().map_err(anyhow::Error::msg)?);
    let server = Server::start_with(cfg).await?;
    let addr = server.addr;
    let body = r#"{"language":"bash","files":[{"content":"echo hi"}]}"#;
    let base = "Host: arena.example.org\r\nContent-Type: application/json\r\n".to_owned();
    // Room invite tokens are no operator token.
    let room = {
        let h = format!(
            "Host: {addr}\r\nContent-Type: application/json\r\nAuthorization: Bearer operator-token-0123456789\r\n"
        );
        let (status, v) = request(addr, "POST", "/api/rooms", &h, r#"{"title":"t"}"#).await?;
        assert_eq!(status, 201, "{v}");
        v
    };
    for token in [
        None,
        Some("wrong-token-000000000000"),
        room["tokens"]["candidate"].as_str(),
        room["tokens"]["observer"].as_str(),
        room["tokens"]["host"].as_str(),
    ] {
        let h = match token {
            Some(t) => format!("{base}Authorization: Bearer {t}\r\n"),
            None => base.clone(),
        };
        let (status, v) = request(addr, "POST", "/api/v2/execute", &h, body).await?;
        assert_eq!(status, 401, "{token:?}: {v}");
        assert!(v["message"].is_string(), "{v}");
        let (status, _) = request(addr, "GET", "/api/v2/runtimes", &h, "").await?;
        assert_eq!(status, 401, "{token:?}");
    }
    let h = format!("{base}Authorization: Bearer operator-token-0123456789\r\n");
    let (status, v) = request(addr, "POST", "/api/v2/execute", &h, body).await?;
    assert_eq!((status, v["run"]["stdout"].as_str()), (200, Some("hi\n")), "{v}");
    server.stop().await?;

    // A loopback node without a token: a page on another site that rebinds its DNS name to
    // 127.0.0.1 sends its own Host, and is refused.
    let dir = tempfile::tempdir()?;
    let server = Server::start_with(config(dir.path())).await?;
    let (status, v) = request(
        server.addr,
        "POST",
        "/api/v2/execute",
        "Host: evil.example:8080\r\nContent-Type: application/json\r\n",
        body,
    )
    .await?;
    assert_eq!(status, 403, "{v}");
    let (status, _) =
        request(server.addr, "POST", "/api/v2/execute", "Host: localhost\r\nContent-Type: application/json\r\n", body)
            .await?;
    assert_eq!(status, 200);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_queue_answers_busy() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cfg = config(dir.path());
    cfg.exec.exec_concurrency = 1;
    cfg.exec.exec_queue = 1;
    let server = Server::start_with(cfg).await?;
    let addr = server.addr;
    // Warm the toolchain list, then: one runs, one waits, the third is refused.
    run(addr, "bash", "true", json!({})).await?;
    let slow = json!({ "language": "bash", "files": [{ "content": "sleep 3; echo slow" }] });
    let a = tokio::spawn({
        let s = slow.clone();
        async move { execute(addr, &s).await }
    });
    support::wait_for(std::time::Duration::from_secs(60), "one run running", || async {
        let (_, h) = request(addr, "GET", "/health", &format!("Host: {addr}\r\n"), "").await?;
        Ok((h["exec"]["running"] == 1).then_some(()))
    })
    .await?;
    let b = tokio::spawn({
        let s = slow.clone();
        async move { execute(addr, &s).await }
    });
    support::wait_for(std::time::Duration::from_secs(60), "one run queued", || async {
        let (_, h) = request(addr, "GET", "/health", &format!("Host: {addr}\r\n"), "").await?;
        Ok((h["exec"]["queued"] == 1).then_some(()))
    })
    .await?;
    let (status, v) = execute(addr, &slow).await?;
    assert_eq!(status, 503, "{v}");
    assert!(v["message"].as_str().is_some_and(|m| m.contains("busy")), "{v}");
    for t in [a, b] {
        let (status, v) = t.await??;
        assert_eq!((status, v["run"]["stdout"].as_str()), (200, Some("slow\n")), "{v}");
    }
    server.stop().await
}

/// A stand-in Piston v2 API that answers with the JSON of Piston's README byte for byte, and
/// keeps the bodies it was sent.
async fn fake_piston() -> Result<(std::net::SocketAddr, std::sync::Arc<std::sync::Mutex<Vec<Value>>>)> {
    use axum::http::StatusCode;
    use axum::routing::{get, post};
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Value>::new()));
    let runtimes = r#"[
  {
    "language": "bash",
    "version": "5.1.0",
    "aliases": ["sh"]
  },
  {
    "language": "javascript",
    "version": "24.16.0",
    "aliases": ["node-javascript", "node-js", "javascript", "js"],
    "runtime": "node"
  }
]"#;
    let ok = r#"{
    "language": "js",
    "version": "15.10.0",
    "run": {
        "stdout": "[\n  '/piston/packages/node/15.10.0/bin/node',\n  '/piston/jobs/9501b09d-0105-496b-b61a-e5148cf66384/my_cool_code.js',\n  '1',\n  '2',\n  '3'\n]\n",
        "stderr": "",
        "output": "[\n  '/piston/packages/node/15.10.0/bin/node',\n  '/piston/jobs/9501b09d-0105-496b-b61a-e5148cf66384/my_cool_code.js',\n  '1',\n  '2',\n  '3'\n]\n",
        "code": 0,
        "signal": null,
        "message": null,
        "status": null,
        "cpu_time": 8,
        "wall_time": 154,
        "memory": 1160000
    }
}"#;
    let timeout = r#"{"language":"c++","version":"10.2.0","compile":{"stdout":"","stderr":"","output":"","code":0,"signal":null,"message":null,"status":null,"cpu_time":300,"wall_time":400,"memory":9000000},"run":{"stdout":"partial","stderr":"","output":"partial","code":null,"signal":"SIGKILL","message":"Wall time limit exceeded","status":"TO","cpu_time":3000,"wall_time":3010,"memory":1200000}}"#;
    let seen2 = seen.clone();
    let app = axum::Router::new()
        .route("/api/v2/runtimes", get(move || async move { ([("content-type", "application/json")], runtimes) }))
        .route(
            "/api/v2/execute",
            post(move |body: String| {
                let seen = seen2.clone();
                async move {
                    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                    let lang = v["language"].as_str().unwrap_or_default().to_owned();
                    if let Ok(mut s) = seen.lock() {
                        s.push(v);
                    }
                    let json = [("content-type", "application/json")];
                    match lang.as_str() {
                        "js" => (StatusCode::OK, json, ok.to_owned()),
                        "c++" => (StatusCode::OK, json, timeout.to_owned()),
                        "html" => {
                            (StatusCode::BAD_REQUEST, json, r#"{"message":"html-5.0.0 runtime is unknown"}"#.to_owned())
                        }
                        _ => (StatusCode::INTERNAL_SERVER_ERROR, json, "<h1>oops</h1>".to_owned()),
                    }
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((addr, seen))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_piston_backend_forwards_and_maps_pistons_answers() -> Result<()> {
    let (piston, seen) = fake_piston().await?;
    let dir = tempfile::tempdir()?;
    let mut cfg = config(dir.path());
    cfg.exec.exec_backend = arena_bootstrap::exec::Backend::Piston;
    cfg.exec.piston_url = Some(format!("http://{piston}"));
    let server = Server::start_with(cfg).await?;
    let addr = server.addr;
    let headers = format!("Host: {addr}\r\nContent-Type: application/json\r\n");
    // Runtimes pass through.
    let (status, v) = request(addr, "GET", "/api/v2/runtimes", &format!("Host: {addr}\r\n"), "").await?;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v[1]["runtime"], "node");
    assert_eq!(v[0]["aliases"], json!(["sh"]));
    assert!(v[0].get("runtime").is_none(), "{v}");
    // Piston's documented example, through us, to Piston and back.
    let (status, v) = request(addr, "POST", "/api/v2/execute", &headers, PISTON_EXAMPLE).await?;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["run"]["wall_time"], 154);
    assert_eq!(v["run"]["memory"], 1_160_000);
    assert!(v["run"]["stdout"].as_str().is_some_and(|s| s.contains("my_cool_code.js")));
    let sent = seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.last().cloned().context("nothing sent")?;
    assert_eq!(sent["language"], "js");
    assert_eq!(sent["version"], "24.16.0");
    assert_eq!(sent["files"], json!([{ "name": "my_cool_code.js", "content": "console.log(process.argv)" }]));
    assert_eq!(sent["args"], json!(["1", "2", "3"]));
    assert_eq!((sent["run_timeout"].as_u64(), sent["compile_timeout"].as_u64()), (Some(3000), Some(10000)));
    assert_eq!((sent["run_memory_limit"].as_i64(), sent["compile_memory_limit"].as_i64()), (Some(-1), Some(-1)));
    // A timeout keeps its status, signal and partial output; the compile stage is there.
    let (status, v) =
        execute(addr, &json!({ "language": "c++", "version": "*", "files": [{ "content": "int main(){for(;;);}" }] }))
            .await?;
    assert_eq!(status, 200, "{v}");
    assert_eq!((v["run"]["status"].as_str(), v["run"]["signal"].as_str()), (Some("TO"), Some("SIGKILL")));
    assert_eq!(v["run"]["stdout"], "partial");
    assert_eq!(v["compile"]["code"], 0);
    // Piston's 400 is ours, with its message; its 500 is a 502 that says so.
    let (status, v) =
        execute(addr, &json!({ "language": "html", "version": "5.0.0", "files": [{ "content": "x" }] })).await?;
    assert_eq!((status, v["message"].as_str()), (400, Some("html-5.0.0 runtime is unknown")));
    let (status, v) = execute(addr, &json!({ "language": "cobol", "files": [{ "content": "x" }] })).await?;
    assert_eq!(status, 502, "{v}");
    assert!(v["message"].as_str().is_some_and(|m| m.contains("500")), "{v}");
    server.stop().await?;

    // Piston down: 503 with a reason.
    let dir = tempfile::tempdir()?;
    let mut cfg = config(dir.path());
    cfg.exec.exec_backend = arena_bootstrap::exec::Backend::Piston;
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await?.local_addr()?;
    cfg.exec.piston_url = Some(format!("http://{dead}/"));
    let server = Server::start_with(cfg).await?;
    let (status, v) = execute(server.addr, &json!({ "language": "js", "files": [{ "content": "x" }] })).await?;
    assert_eq!(status, 503, "{v}");
    assert!(v["message"].as_str().is_some_and(|m| m.contains("unreachable")), "{v}");
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crashes_report_their_signal() -> Result<()> {
    let (server, _dir) = node().await?;
    let v = run(server.addr, "c", "int main(void){volatile int *p = 0; return *p;}", json!({})).await?;
    assert_eq!((v["run"]["status"].as_str(), v["run"]["signal"].as_str()), (Some("SG"), Some("SIGSEGV")), "{v}");
    assert!(v["run"]["code"].is_null(), "{v}");
    let v = run(server.addr, "c", "#include <stdlib.h>\nint main(void){abort();}", json!({})).await?;
    assert_eq!(v["run"]["signal"], "SIGABRT", "{v}");
    // A program may signal itself (it is not the sandbox's init).
    let v = run(
        server.addr,
        "python",
        "import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\nprint('alive')",
        json!({}),
    )
    .await?;
    assert_eq!((v["run"]["signal"].as_str(), v["run"]["stdout"].as_str()), (Some("SIGTERM"), Some("")), "{v}");
    let v = run(server.addr, "python", "raise SystemExit(3)", json!({})).await?;
    assert_eq!((v["run"]["status"].as_str(), v["run"]["code"].as_u64()), (Some("RE"), Some(3)), "{v}");
    server.stop().await
}
