//! The offline code analyzer on fixtures, one or more per language, each with the findings
//! it must report (rule and first line) and a few it must not.

#![allow(clippy::panic, reason = "tests fail loudly")]

use arena_bootstrap::ai::code::{analyze, CodeReport, Severity};

fn report(lang: &str, code: &str) -> CodeReport {
    let r = analyze(lang, code).unwrap_or_else(|e| panic!("{lang}: {e}"));
    // Deterministic: a second run says exactly the same.
    assert_eq!(analyze(lang, code).ok().as_ref(), Some(&r), "{lang}: not deterministic");
    r
}

fn has(r: &CodeReport, rule: &str, line: u32) -> bool {
    r.findings.iter().any(|f| f.rule == rule && f.line_start == line)
}

#[track_caller]
fn expect(r: &CodeReport, want: &[(&str, u32)]) {
    for (rule, line) in want {
        assert!(has(r, rule, *line), "missing {rule} at line {line}; got {:#?}", r.findings);
    }
}

#[track_caller]
fn expect_not(r: &CodeReport, rule: &str) {
    assert!(!r.findings.iter().any(|f| f.rule == rule), "unexpected {rule}: {:#?}", r.findings);
}

const PYTHON: &str = r#"def average(xs):
    total = 0
    unused = 42
    for x in xs:
        total += x
    return total / len(xs)

def fact(n):
    return n * fact(n - 1)

def wait(i, n):
    while i < n:
        print(i)

def dupes(items):
    out = []
    for a in items:
        for b in items:
            if a == b:
                out.append(a)
    return out

def early(x):
    return x
    print("never")

def first(values):
    if not values:
        return None
    return values[0]

def spin(list):
    for list in range(3):
        pass
"#;

#[test]
fn python() {
    let r = report("python", PYTHON);
    expect(
        &r,
        &[
            ("unused-variable", 3),
            ("empty-input", 6),
            ("recursion-without-base-case", 9),
            ("loop-condition-unchanged", 12),
            ("quadratic-loop", 18),
            ("unreachable-code", 25),
            ("shadowing", 32),
            ("shadowing", 33),
        ],
    );
    // `first` checks for empty input; `total` and `x` are used.
    assert!(!has(&r, "empty-input", 30), "{:#?}", r.findings);
    assert!(!r.findings.iter().any(|f| f.message.contains("`total`") || f.message.contains("`x`")));
    assert_eq!(r.functions.len(), 7);
    let fact = r.functions.iter().find(|f| f.name == "fact").map(|f| f.complexity);
    assert_eq!(fact, Some(1));
    assert!(r.summary.contains("Python") && r.summary.contains("7 functions"), "{}", r.summary);
    // Sorted by line.
    let ls: Vec<u32> = r.findings.iter().map(|f| f.line_start).collect();
    assert!(ls.windows(2).all(|w| w[0] <= w[1]), "{ls:?}");
}

const JAVASCRIPT: &str = r#"function maxOf(arr) {
  let best = arr[0];
  for (const v of arr) {
    if (v > best) best = v;
  }
  return best;
}

function hasDup(arr) {
  for (let i = 0; i < arr.length; i++) {
    for (let j = i + 1; j < arr.length; j++) {
      if (arr[i] === arr[j]) return true;
    }
  }
  return false;
}

function f(a, b) {
  const tmp = a * 2;
  return a;
  console.log(tmp);
}

const loop = (n) => {
  let i = 0;
  while (i < n) {
    console.log(n);
  }
};
"#;

#[test]
fn javascript_and_typescript() {
    let r = report("javascript", JAVASCRIPT);
    expect(
        &r,
        &[
            ("empty-input", 2),
            ("quadratic-loop", 11),
            ("unused-parameter", 18),
            ("unreachable-code", 21),
            ("loop-condition-unchanged", 26),
        ],
    );
    assert!(r.functions.iter().any(|f| f.name == "loop"), "{:#?}", r.functions);
    let ts = "function id(x: number, unused: string): number {\n  const y: number = 1;\n  return x;\n}\n";
    let r = report("typescript", ts);
    expect(&r, &[("unused-parameter", 1), ("unused-variable", 2)]);
}

const C: &str = r#"#include <stdio.h>

int sum(int *a, int n) {
    int s = 0;
    int dead;
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < n; j++) {
            s += a[i] * a[j];
        }
    }
    return s;
}

int forever(void) {
    while (1) {
        printf("x");
    }
}

int after(int x) {
    if (x) {
        return 1;
        x++;
    }
    return 0;
}
"#;

#[test]
fn c_and_cpp() {
    let r = report("c", C);
    expect(&r, &[("unused-variable", 5), ("quadratic-loop", 7), ("infinite-loop", 15), ("unreachable-code", 23)]);
    expect_not(&r, "recursion-without-base-case");
    let cpp = "int fib(int n) {\n    return fib(n - 1) + fib(n - 2);\n}\nint ok(int n) {\n    if (n < 2) return n;\n    return ok(n - 1);\n}\n";
    let r = report("cpp", cpp);
    expect(&r, &[("recursion-without-base-case", 2)]);
    assert!(!has(&r, "recursion-without-base-case", 6), "{:#?}", r.findings);
}

const JAVA: &str = r#"class Solution {
    int count(int[] nums, int target) {
        int c = 0;
        int i = 0;
        while (i < nums.length) {
            if (nums[i] == target) c++;
        }
        return c;
    }

    int deep(int a) {
        if (a > 0) {
            for (int i = 0; i < a; i++) {
                while (a > i) {
                    if (i % 2 == 0) {
                        a--;
                    }
                }
            }
        }
        return a;
    }

    int shadow(int x) {
        int y = 0;
        for (int k = 0; k < 3; k++) {
            int x2 = k;
            y += x2;
        }
        return y + x;
    }
}
"#;

#[test]
fn java() {
    let r = report("java", JAVA);
    expect(&r, &[("loop-condition-unchanged", 5), ("nesting", 11)]);
    let deep = r.functions.iter().find(|f| f.name == "deep").map(|f| f.max_nesting);
    assert_eq!(deep, Some(4));
    expect_not(&r, "unused-variable");
}

const RUST: &str = r#"fn mean(v: &[f64]) -> f64 {
    let sum: f64 = v.iter().sum();
    sum / v.len() as f64
}

fn walk(n: u32) -> u32 {
    walk(n + 1)
}

fn shadowed(x: i32) -> i32 {
    let y = 1;
    {
        let y = 2;
        println!("{y}");
    }
    x + y
}

fn spin() {
    loop {
        println!("again");
    }
}

fn unused_local() {
    let z = 5;
}

fn patterns(r: Result<i32, ()>) -> i32 {
    let Ok(n) = r else { return 0 };
    n
}

fn total_mean(v: &[i32]) -> i32 {
    let mut s = 0;
    for x in v.iter() {
        s += x;
    }
    s / v.len() as i32
}
"#;

#[test]
fn rust() {
    let r = report("rust", RUST);
    expect(
        &r,
        &[
            ("empty-input", 3),
            ("recursion-without-base-case", 7),
            ("shadowing", 13),
            ("infinite-loop", 20),
            ("unused-variable", 26),
            // Walking `v` is no check for an empty `v`.
            ("empty-input", 39),
        ],
    );
    // Shadowing is idiomatic in Rust: a note, not a warning.
    assert!(r.findings.iter().filter(|f| f.rule == "shadowing").all(|f| f.severity == Severity::Info));
    // `Ok` in `let Ok(n) = r` is no variable.
    assert!(!r.findings.iter().any(|f| f.message.contains("`Ok`")), "{:#?}", r.findings);
    // `{y}` in a format string is a use.
    assert!(!r.findings.iter().any(|f| f.rule == "unused-variable" && f.line_start == 13), "{:#?}", r.findings);
}

const GO: &str = r#"package main

import "fmt"

func pairs(xs []int) int {
	n := 0
	for i := range xs {
		for j := range xs {
			if xs[i] == xs[j] {
				n++
			}
		}
	}
	return n
}

func stuck(i int) {
	for i < 10 {
		fmt.Println("x")
	}
}

func unused() {
	v := 3
}
"#;

#[test]
fn go() {
    let r = report("go", GO);
    expect(&r, &[("quadratic-loop", 8), ("loop-condition-unchanged", 18), ("unused-variable", 24)]);
    expect_not(&r, "infinite-loop");
}

#[test]
fn broken_code_still_gets_findings() {
    let code = "def f(a):\n    unused = 1\n    return a\n\ndef g(:\n    pass\n";
    let r = report("python", code);
    assert!(r.findings.iter().any(|f| f.rule == "syntax-error" && f.severity == Severity::Error), "{:#?}", r.findings);
    assert!(r.findings.iter().any(|f| f.message.starts_with("syntax error at line ")));
    expect(&r, &[("unused-variable", 2)]);
    for (lang, junk) in [
        ("rust", "fn (((((("),
        ("javascript", "}}}}{{{{"),
        ("c", "\u{0}\u{1}int"),
        ("go", ""),
        ("java", &"(".repeat(20_000)),
        ("cpp", &"{".repeat(50_000)),
    ] {
        let r = report(lang, junk);
        assert!(!r.summary.is_empty());
    }
}

#[test]
fn refuses_what_it_cannot_read() {
    assert!(analyze("cobol", "x").is_err());
    assert!(analyze("python", &"x = 1\n".repeat(200_000)).is_err());
}
