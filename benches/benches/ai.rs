//! The AI analyzers' offline paths: the resume analyzer on a two-page resume against a job
//! description (issue #25's target: ≤ 50 ms), and the code analyzer on a 300-line file in
//! Python and in Rust (≤ 20 ms). Inputs are generated here, deterministically.

// A benchmark whose setup fails has nothing to measure: stop loudly.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::hint::black_box;

use arena_bootstrap::ai::{code, resume};
use criterion::{criterion_group, criterion_main, Criterion};

/// About 900 words in 70 lines: two printed pages.
fn two_page_resume() -> String {
    let mut s = String::from("Dana Reyes\nSenior Backend Engineer · dana@example.org · +1 555 0100\n\nSummary\n");
    s.push_str(
        "Backend engineer with ten years of experience building distributed systems in Rust, Go and Python, \
running them on Kubernetes in AWS, and leading small teams through migrations and incident response.\n\nExperience\n",
    );
    let verbs = ["Led", "Built", "Designed", "Reduced", "Migrated", "Mentored", "Automated", "Shipped"];
    let things = [
        "the migration of 40 services from VMs to k8s, cutting deploy time from 45 to 6 minutes",
        "a Rust ingestion pipeline on Kafka handling 2M events per second with exactly-once delivery",
        "Postgres schemas and query plans for the billing service, reducing p99 latency by 35%",
        "on-call load by 60% with Prometheus alerts, Grafana dashboards and runbooks for every page",
        "the CI/CD pipeline to GitHub Actions with Docker layer caching, saving 20 minutes per build",
        "four junior engineers through code reviews, pairing and a weekly design reading group",
        "Terraform modules for our AWS accounts: VPCs, EKS clusters, IAM roles and S3 buckets",
        "a gRPC gateway in Go in front of twelve microservices, with OAuth and rate limiting",
    ];
    for job in 0..4 {
        s.push_str(&format!("\nCompany {job}, Senior Software Engineer (201{job}-202{job})\n"));
        for i in 0..14 {
            s.push_str(&format!(
                "- {} {} (project {job}.{i}).\n",
                verbs[(i + job) % verbs.len()],
                things[(i * 3 + job) % things.len()]
            ));
        }
    }
    s.push_str(
        "\nEducation\nB.Sc. Computer Science, University of Example, 2012\n\nSkills\nRust, Go, Python, \
PostgreSQL, Kafka, Redis, Docker, Kubernetes, Terraform, AWS, Linux, gRPC, Prometheus, Grafana\n",
    );
    s
}

const JD: &str = "Staff Backend Engineer\n\nAbout the role\nYou will own the platform that runs our payments \
services and lead the team that builds it.\n\nRequirements:\n- 8+ years building backend services\n- Must have \
production experience with Kubernetes and PostgreSQL\n- Strong Rust or Go\n- Terraform is required\n- Experience \
leading incident response and mentoring engineers\n\nNice to have:\n- Kafka or another log-based message queue\n- \
GraphQL\n- Bonus: AWS certifications, Snowflake, dbt\n";

/// A 300-line file: the fixture's functions repeated under new names.
fn three_hundred_lines(unit: &str, rename: impl Fn(&str, usize) -> String) -> String {
    let mut s = String::new();
    let mut k = 0;
    while s.lines().count() < 300 {
        s.push_str(&rename(unit, k));
        s.push('\n');
        k += 1;
    }
    s.lines().take(300).collect::<Vec<_>>().join("\n")
}

const PY: &str = "def average_N(xs):\n    total = 0\n    unused = 42\n    for x in xs:\n        total += x\n    return total / len(xs)\n\n\
def dupes_N(items):\n    out = []\n    for a in items:\n        for b in items:\n            if a == b and a is not None:\n                out.append(a)\n    return out\n\n\
def search_N(xs, t):\n    lo, hi = 0, len(xs) - 1\n    while lo <= hi:\n        mid = (lo + hi) // 2\n        if xs[mid] == t:\n            return mid\n        elif xs[mid] < t:\n            lo = mid + 1\n        else:\n            hi = mid - 1\n    return -1\n";

const RS: &str = "fn mean_N(v: &[f64]) -> f64 {\n    let sum: f64 = v.iter().sum();\n    sum / v.len() as f64\n}\n\n\
fn pairs_N(xs: &[i32]) -> usize {\n    let mut n = 0;\n    for a in xs.iter() {\n        for b in xs.iter() {\n            if a == b {\n                n += 1;\n            }\n        }\n    }\n    n\n}\n\n\
fn search_N(xs: &[i32], t: i32) -> Option<usize> {\n    let (mut lo, mut hi) = (0usize, xs.len());\n    while lo < hi {\n        let mid = (lo + hi) / 2;\n        match xs[mid].cmp(&t) {\n            std::cmp::Ordering::Equal => return Some(mid),\n            std::cmp::Ordering::Less => lo = mid + 1,\n            std::cmp::Ordering::Greater => hi = mid,\n        }\n    }\n    None\n}\n";

fn ai(c: &mut Criterion) {
    let cv = two_page_resume();
    assert!(cv.split_whitespace().count() > 800, "{} words", cv.split_whitespace().count());
    let py = three_hundred_lines(PY, |u, k| u.replace("_N", &format!("_{k}")));
    let rs = three_hundred_lines(RS, |u, k| u.replace("_N", &format!("_{k}")));
    assert_eq!(py.lines().count(), 300);
    let mut g = c.benchmark_group("ai_offline");
    g.bench_function("resume_two_pages", |b| b.iter(|| resume::analyze(black_box(&cv), black_box(JD)).unwrap()));
    g.bench_function("code_python_300_lines", |b| b.iter(|| code::analyze("python", black_box(&py)).unwrap()));
    g.bench_function("code_rust_300_lines", |b| b.iter(|| code::analyze("rust", black_box(&rs)).unwrap()));
    g.finish();
}

criterion_group!(benches, ai);
criterion_main!(benches);
