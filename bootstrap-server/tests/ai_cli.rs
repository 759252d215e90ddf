//! `arena-bootstrap resume RESUME JD`: the report and the JSON, offline.

use std::process::Command;

use anyhow::Result;

#[test]
fn resume_command() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (cv, jd) = (dir.path().join("cv.txt"), dir.path().join("jd.txt"));
    std::fs::write(
        &cv,
        "- Led the migration of 40 services to k8s, cutting deploy time by 80%.\n- Built Rust services on Postgres.\n",
    )?;
    std::fs::write(&jd, "Requirements:\n- Must know Kubernetes and PostgreSQL\n- Terraform required\n")?;
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_arena-bootstrap"))
            .arg("resume")
            .args([&cv, &jd])
            .args(extra)
            .env("ARENA_LLM_BASE_URL", "off")
            .output()
    };
    let out = run(&[])?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text} {}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("Match score: ") && text.contains("(backend: offline)"), "{text}");
    assert!(text.contains("+ Kubernetes (required)") && text.contains("- Terraform (required)"), "{text}");
    assert!(text.contains("  3. "), "{text}");
    let out = run(&["--json"])?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(v["backend"], "offline");
    assert_eq!(v["questions"].as_array().map(Vec::len), Some(3));
    // A missing file: a clear error, a failing exit status.
    let out = Command::new(env!("CARGO_BIN_EXE_arena-bootstrap"))
        .args(["resume", "/nonexistent/cv.pdf", "/nonexistent/jd"])
        .output()?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("reading /nonexistent/cv.pdf"));
    Ok(())
}
