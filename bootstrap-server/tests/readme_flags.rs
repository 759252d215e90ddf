//! The README's table of flags says what `arena-bootstrap --help` says: every flag, its
//! environment variable and its default, no flag that does not exist.

use std::collections::BTreeMap;

use arena_bootstrap::Config;
use clap::CommandFactory;

/// flag -> (variable, default) from the README's table (rows that start with "| `--").
#[allow(clippy::expect_used, reason = "tests fail loudly")]
fn readme_rows() -> BTreeMap<String, (String, String)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).expect("README.md");
    let mut rows = BTreeMap::new();
    for line in readme.lines().filter(|l| l.starts_with("| `--")) {
        let cells: Vec<&str> = line.split(" | ").collect();
        let strip = |s: &str| s.trim_matches(|c| c == '|' || c == '`' || c == ' ').to_owned();
        let default = strip(cells[2]);
        rows.insert(strip(cells[0]), (strip(cells[1]), if default == "—" { String::new() } else { default }));
    }
    rows
}

#[test]
fn the_readme_lists_every_flag_as_help_does() {
    let cmd = Config::command();
    let mut help = BTreeMap::new();
    for arg in cmd.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if matches!(long, "help" | "version") {
            continue;
        }
        let env = arg.get_env().map(|e| e.to_string_lossy().into_owned()).unwrap_or_default();
        let default: Vec<String> = arg.get_default_values().iter().map(|v| v.to_string_lossy().into_owned()).collect();
        help.insert(format!("--{long}"), (env, default.join(",")));
    }
    let readme = readme_rows();
    assert!(help.len() > 10, "{} flags in --help", help.len());
    let missing: Vec<_> = help.keys().filter(|k| !readme.contains_key(*k)).collect();
    let extra: Vec<_> = readme.keys().filter(|k| !help.contains_key(*k)).collect();
    assert!(missing.is_empty() && extra.is_empty(), "README lacks {missing:?}, lists unknown {extra:?}");
    for (flag, want) in &help {
        assert_eq!(&readme[flag], want, "{flag}: README (variable, default) differs from --help");
    }
}
