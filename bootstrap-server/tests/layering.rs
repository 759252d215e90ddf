//! arena-bootstrap's modules import each other only downwards: no cycle among them.
//!
//! Reads `src/**/*.rs`, collects every `crate::…` and `super::…` path in each module's code
//! (comments left out; `use` trees with braces expanded), resolves each to the module it
//! names (an item re-exported at the crate root, like `crate::Config`, to the module it
//! comes from), and looks for a cycle twice: among the top-level modules (`room::actor`
//! counts as `room`), and among all modules (where a module's references to its own
//! submodules, its `mod` lines and re-exports, are structure, not imports). A cycle fails
//! the test, named: `registry -> room -> registry`. See `docs/decisions/001-bootstrap-layers.md`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module path (`room::actor`; the crate root is "") → source.
type Sources = BTreeMap<String, String>;
/// Module → the modules it references.
type Graph = BTreeMap<String, BTreeSet<String>>;

fn read_sources(dir: &Path, prefix: &str, out: &mut Sources) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else { continue };
        if path.is_dir() {
            read_sources(&path, &join(prefix, &name), out)?;
        } else if let Some(stem) = name.strip_suffix(".rs") {
            // The binary speaks to the library by its crate name, not `crate::`.
            if prefix.is_empty() && stem == "main" {
                continue;
            }
            let module = if prefix.is_empty() && stem == "lib" { String::new() } else { join(prefix, stem) };
            out.insert(module, std::fs::read_to_string(&path)?);
        }
    }
    Ok(())
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}::{name}")
    }
}

/// The code without its comments (line comments, doc comments included; block comments)
/// and without string literals' contents.
fn code_of(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let b = src.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            i += 2;
            while i < b.len() && !b[i..].starts_with(b"*/") {
                i += 1;
            }
            i += 2;
        } else if b[i] == b'"' {
            out.push('"');
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            out.push('"');
            i += 1;
        } else if b[i] == b'\'' && i + 2 < b.len() && (b[i + 2] == b'\'' || b[i + 1] == b'\\') {
            // A char literal ('{', '\''), not a lifetime.
            i += 1;
            while i < b.len() && b[i] != b'\'' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
        } else {
            out.push(char::from(b[i]));
            i += 1;
        }
    }
    out
}

/// Every path that starts with `root::` (`crate` or `super`) in `code`, braces expanded:
/// `crate::{a, b::{c, d}}` gives `a`, `b::c`, `b::d` (without the root).
fn paths_after(code: &str, root: &str) -> Vec<String> {
    let needle = format!("{root}::");
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = code[from..].find(&needle) {
        let start = from + at;
        from = start + needle.len();
        // Not the end of another identifier (`my_crate::`) or path (`super::super::`).
        let before = code[..start].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        expand(&code[from..], "", &mut out);
    }
    out
}

/// Expands the path or use tree at the start of `rest`, prefixed with `prefix`.
fn expand(rest: &str, prefix: &str, out: &mut Vec<String>) {
    let ident: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect();
    let path = format!("{prefix}{ident}");
    let after = &rest[ident.len()..];
    if (ident.is_empty() || ident.ends_with("::")) && after.starts_with('{') {
        // A group: split at top-level commas up to its closing brace.
        let mut depth = 0;
        let mut item_start = 1;
        for (i, c) in after.char_indices() {
            match c {
                '{' => depth += 1,
                '}' | ',' if depth == 1 => {
                    let item = after[item_start..i].trim();
                    if !item.is_empty() && item != "self" {
                        expand(item, &path, out);
                    } else if item == "self" {
                        out.push(path.trim_end_matches("::").to_owned());
                    }
                    item_start = i + 1;
                    if c == '}' {
                        break;
                    }
                }
                '}' => depth -= 1,
                _ => {}
            }
        }
    } else {
        out.push(path.trim_end_matches("::").to_owned());
    }
}

/// The module a path names: the longest prefix of it that is a module; an item at the root
/// re-exported from a module (`pub use registry::Registry;` in lib.rs) resolves to that module.
fn resolve(path: &str, modules: &BTreeSet<String>, reexports: &BTreeMap<String, String>) -> String {
    let segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    for n in (1..=segs.len()).rev() {
        let candidate = segs[..n].join("::");
        if modules.contains(&candidate) {
            return candidate;
        }
    }
    segs.first().and_then(|s| reexports.get(*s)).cloned().unwrap_or_default()
}

/// `pub use module::{A, B};` lines of the crate root: item → module.
fn root_reexports(lib: &str, modules: &BTreeSet<String>) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for line in code_of(lib).lines() {
        let Some(rest) = line.trim().strip_prefix("pub use ") else { continue };
        let mut paths = Vec::new();
        expand(rest.trim_end_matches(';'), "", &mut paths);
        for p in paths {
            let module = resolve(&p, modules, &BTreeMap::new());
            if let Some(item) = p.rsplit("::").next() {
                if !module.is_empty() {
                    map.insert(item.to_owned(), module);
                }
            }
        }
    }
    map
}

/// The module graph of `sources`: each module's references to other modules.
fn graph(sources: &Sources) -> Graph {
    let modules: BTreeSet<String> = sources.keys().cloned().collect();
    let reexports = sources.get("").map(|lib| root_reexports(lib, &modules)).unwrap_or_default();
    let mut g = Graph::new();
    for (module, src) in sources {
        let code = code_of(src);
        let parent = module.rsplit_once("::").map_or("", |(p, _)| p);
        let mut refs = BTreeSet::new();
        for p in paths_after(&code, "crate") {
            refs.insert(resolve(&p, &modules, &reexports));
        }
        for p in paths_after(&code, "super") {
            // `super::super::x`: one level up per `super`.
            let (mut base, mut rest) = (parent, p.as_str());
            while let Some(r) = rest.strip_prefix("super::").or((rest == "super").then_some("")) {
                base = base.rsplit_once("::").map_or("", |(p, _)| p);
                rest = r;
            }
            refs.insert(resolve(&join(base, rest), &modules, &reexports));
        }
        // Itself, and what resolves to no module (an item of the crate root).
        refs.retain(|r| r != module && !r.is_empty());
        g.insert(module.clone(), refs);
    }
    g
}

/// The first cycle found, as `a -> b -> a`.
fn find_cycle(g: &Graph) -> Option<String> {
    fn visit(n: &str, g: &Graph, path: &mut Vec<String>, done: &mut BTreeSet<String>) -> Option<String> {
        if let Some(at) = path.iter().position(|p| p == n) {
            let mut cycle = path[at..].to_vec();
            cycle.push(n.to_owned());
            return Some(cycle.join(" -> "));
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_owned());
        for next in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(next, g, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    g.keys().find_map(|n| visit(n, g, &mut Vec::new(), &mut done))
}

fn is_within(module: &str, ancestor: &str) -> bool {
    ancestor.is_empty() || module == ancestor || module.starts_with(&format!("{ancestor}::"))
}

/// The graph among top-level modules (the crate root, which declares and re-exports them
/// all, left out).
fn top_level(g: &Graph) -> Graph {
    let top = |m: &str| m.split("::").next().unwrap_or_default().to_owned();
    let mut out = Graph::new();
    for (m, refs) in g.iter().filter(|(m, _)| !m.is_empty()) {
        let from = top(m);
        let entry = out.entry(from.clone()).or_default();
        entry.extend(refs.iter().map(|r| top(r)).filter(|r| *r != from && !r.is_empty()));
    }
    out
}

/// The graph among all modules, without a module's references to its own submodules.
fn all_modules(g: &Graph) -> Graph {
    g.iter()
        .filter(|(m, _)| !m.is_empty())
        .map(|(m, refs)| (m.clone(), refs.iter().filter(|r| !is_within(r, m)).cloned().collect()))
        .collect()
}

fn the_crate() -> std::io::Result<Graph> {
    let mut sources = Sources::new();
    read_sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), "", &mut sources)?;
    assert!(sources.len() > 10, "found only {:?}", sources.keys());
    Ok(graph(&sources))
}

#[test]
fn no_cycle_among_the_top_level_modules() -> std::io::Result<()> {
    let g = top_level(&the_crate()?);
    let cycle = find_cycle(&g);
    assert!(cycle.is_none(), "cyclic imports among arena-bootstrap's modules: {cycle:?}\n(the graph: {g:#?})");
    Ok(())
}

#[test]
fn no_cycle_among_all_modules() -> std::io::Result<()> {
    let g = all_modules(&the_crate()?);
    let cycle = find_cycle(&g);
    assert!(cycle.is_none(), "cyclic imports among arena-bootstrap's modules: {cycle:?}\n(the graph: {g:#?})");
    Ok(())
}

/// The room actor runs without the registry, the libp2p side or the HTTP layer above it.
#[test]
fn the_room_actor_imports_nothing_above_it() -> std::io::Result<()> {
    let g = the_crate()?;
    let above = ["registry", "p2p", "http", "yws", "signal", "server"];
    for (m, refs) in g.iter().filter(|(m, _)| is_within(m, "room")) {
        for r in refs {
            assert!(!above.iter().any(|a| is_within(r, a)), "{m} imports {r}, a layer above the room actor");
        }
    }
    Ok(())
}

/// The check itself: it finds a cycle through a brace group, a `super::` path and a
/// re-export at the root, and ignores comments and strings.
#[test]
fn the_check_finds_a_cycle_and_names_it() {
    let src = |s: &str| s.to_owned();
    let mut sources = Sources::new();
    sources.insert(String::new(), src("mod a;\nmod b;\nmod c;\npub use c::Thing;\n"));
    sources.insert(src("a"), src("use crate::{b::{self, X}, other};\n// crate::c in a comment\n"));
    sources.insert(src("b"), src("mod inner;\nfn f() { let _ = \"crate::a\"; }\n"));
    sources.insert(src("b::inner"), src("use super::super::c;\n"));
    sources.insert(src("c"), src("fn g() -> crate::Thing { todo!() }\nfn h() { crate::a::f() }\n"));
    let g = graph(&sources);
    assert_eq!(g["a"], BTreeSet::from([src("b")]));
    assert_eq!(g["b"], BTreeSet::new(), "a string is not an import");
    assert_eq!(g["b::inner"], BTreeSet::from([src("c")]));
    assert_eq!(find_cycle(&top_level(&g)).as_deref(), Some("a -> b -> c -> a"));
    assert_eq!(find_cycle(&all_modules(&g)).as_deref(), None, "b does not import b::inner's imports");
    sources.insert(src("c"), src("fn g() {}\n"));
    assert_eq!(find_cycle(&top_level(&graph(&sources))), None);
}
