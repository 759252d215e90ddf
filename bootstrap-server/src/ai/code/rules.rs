//! The rules: per function (metrics, unused names, shadowing, recursion, empty input) and
//! over the whole tree (unreachable code, loops whose condition never changes, quadratic
//! loops).

use std::collections::{BTreeMap, BTreeSet};

use tree_sitter::Node;

use super::syntax::{self as sx, Lang};
use super::{lines, Finding, FunctionStats, Severity};

const COMPLEXITY_WARN: u32 = 10;
const NESTING_WARN: u32 = 3;

const PY_BUILTINS: &[&str] = &[
    "list", "dict", "set", "str", "int", "len", "max", "min", "sum", "sorted", "input", "id", "map", "filter", "type",
];

pub(super) fn run(lang: Lang, root: Node<'_>, src: &[u8], out: &mut Vec<Finding>) -> Vec<FunctionStats> {
    let all = sx::descendants(root, false);
    let mut stats = Vec::new();
    for f in all.iter().copied().filter(|n| sx::is_function(*n)) {
        stats.push(function(lang, f, src, out));
    }
    for n in &all {
        if sx::EXITS.contains(&n.kind()) {
            unreachable_after(*n, src, out);
        }
        if sx::is_loop(*n) {
            stuck_loop(*n, src, out);
            quadratic(*n, src, out);
        }
    }
    stats
}

fn push(out: &mut Vec<Finding>, rule: &str, severity: Severity, (a, b): (u32, u32), message: String) {
    out.push(Finding { rule: rule.into(), severity, line_start: a, line_end: b, message });
}

fn function(lang: Lang, f: Node<'_>, src: &[u8], out: &mut Vec<Finding>) -> FunctionStats {
    let name = sx::function_name(f, src);
    let own = sx::descendants(f, true);
    let complexity = 1 + own.iter().filter(|n| **n != f && sx::is_decision(**n)).count() as u32;
    let max_nesting = nesting(f);
    let (a, b) = lines(f);
    if complexity > COMPLEXITY_WARN {
        let msg = format!("`{name}` has cyclomatic complexity {complexity} (over {COMPLEXITY_WARN}): split it up");
        push(out, "complexity", Severity::Warning, (a, a), msg);
    }
    if max_nesting > NESTING_WARN {
        let msg = format!(
            "`{name}` nests control structures {max_nesting} deep (over {NESTING_WARN}): return early or extract"
        );
        push(out, "nesting", Severity::Warning, (a, a), msg);
    }
    unused_and_shadowed(lang, f, &own, src, out);
    recursion(f, &name, &own, src, out);
    empty_input(f, &own, src, out);
    FunctionStats { name, line_start: a, line_end: b, complexity, max_nesting }
}

/// The deepest nesting of control structures in `f`, nested functions left out.
fn nesting(f: Node<'_>) -> u32 {
    let mut max = 0;
    let mut stack = vec![(f, 0u32)];
    while let Some((n, d)) = stack.pop() {
        let d = if n != f && sx::nests(n) { d + 1 } else { d };
        max = max.max(d);
        if n != f && sx::is_function(n) {
            continue;
        }
        let mut c = n.walk();
        for k in n.named_children(&mut c) {
            stack.push((k, d));
        }
    }
    max
}

fn has_body(f: Node<'_>, src: &[u8]) -> bool {
    let Some(body) = f.child_by_field_name("body") else { return false };
    let t = sx::text(body, src).trim().trim_start_matches(['{', ':']).trim_end_matches('}').trim();
    !(t.is_empty() || t == "pass" || t == "..." || t.starts_with("raise NotImplementedError"))
}

/// Uses of each name anywhere in `f` (closures included), and names interpolated into Rust
/// format strings (`{name}`).
fn uses<'t>(f: Node<'t>, src: &'t [u8]) -> BTreeMap<&'t str, usize> {
    let mut m = BTreeMap::new();
    for n in sx::descendants(f, false) {
        if sx::is_ident(n) {
            *m.entry(sx::text(n, src)).or_insert(0) += 1;
        } else if matches!(n.kind(), "string_literal" | "raw_string_literal") {
            let t = sx::text(n, src);
            for piece in t.split('{').skip(1) {
                let name = piece.split(['}', ':']).next().unwrap_or_default();
                if !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_') {
                    *m.entry(name).or_insert(0) += 1;
                }
            }
        }
    }
    m
}

fn unused_and_shadowed(lang: Lang, f: Node<'_>, own: &[Node<'_>], src: &[u8], out: &mut Vec<Finding>) {
    let uses = uses(f, src);
    let params = sx::parameter_names(f, src);
    let mut decls: Vec<(Node<'_>, bool)> = Vec::new(); // (name node, is a loop binding)
    for n in own {
        decls.extend(sx::declared_names(*n, lang).into_iter().map(|d| (d, false)));
        decls.extend(sx::loop_bindings(*n).into_iter().map(|d| (d, true)));
    }
    let mut sites: BTreeMap<&str, usize> = BTreeMap::new();
    for (d, _) in &decls {
        *sites.entry(sx::text(*d, src)).or_insert(0) += 1;
    }
    for p in &params {
        *sites.entry(sx::text(*p, src)).or_insert(0) += 1;
    }
    let skip = |name: &str| name.is_empty() || name.starts_with('_');
    let mut reported = BTreeSet::new();
    for (d, is_loop) in &decls {
        let name = sx::text(*d, src);
        if skip(name) || !reported.insert(name) {
            continue;
        }
        if uses.get(name).copied().unwrap_or(0) <= sites.get(name).copied().unwrap_or(0) {
            let (sev, what) =
                if *is_loop { (Severity::Info, "loop variable") } else { (Severity::Warning, "variable") };
            push(out, "unused-variable", sev, lines(*d), format!("{what} `{name}` is assigned but never used"));
        }
    }
    if has_body(f, src) {
        for p in &params {
            let name = sx::text(*p, src);
            if !skip(name) && uses.get(name).copied().unwrap_or(0) <= sites.get(name).copied().unwrap_or(0) {
                push(out, "unused-parameter", Severity::Info, lines(*p), format!("parameter `{name}` is never used"));
            }
        }
    }
    // Shadowing: a parameter or an outer block's name declared again in an inner block.
    let sev = if lang == Lang::Rust { Severity::Info } else { Severity::Warning };
    let param_names: BTreeSet<&str> = params.iter().map(|p| sx::text(*p, src)).collect();
    for p in params.iter().filter(|p| lang == Lang::Python && PY_BUILTINS.contains(&sx::text(**p, src))) {
        let msg = format!("`{}` shadows the Python builtin of that name", sx::text(*p, src));
        push(out, "shadowing", Severity::Info, lines(*p), msg);
    }
    for (i, (d, is_loop)) in decls.iter().enumerate() {
        let name = sx::text(*d, src);
        if skip(name) || (lang == Lang::Python && !is_loop) {
            if lang == Lang::Python && PY_BUILTINS.contains(&name) {
                let msg = format!("`{name}` shadows the Python builtin of that name");
                push(out, "shadowing", Severity::Info, lines(*d), msg);
            }
            continue;
        }
        if lang == Lang::Python && PY_BUILTINS.contains(&name) {
            push(
                out,
                "shadowing",
                Severity::Info,
                lines(*d),
                format!("`{name}` shadows the Python builtin of that name"),
            );
        }
        if param_names.contains(name) {
            push(out, "shadowing", sev, lines(*d), format!("`{name}` shadows the parameter of the same name"));
            continue;
        }
        let inner = sx::scope_of(*d);
        let outer = decls[..i].iter().find(|(e, _)| {
            sx::text(*e, src) == name && sx::scope_of(*e).is_some_and(|s| inner.is_some_and(|i| strictly_inside(i, s)))
        });
        if let Some((e, _)) = outer {
            let line = lines(*e).0;
            push(out, "shadowing", sev, lines(*d), format!("`{name}` shadows the `{name}` declared on line {line}"));
        }
    }
}

fn strictly_inside(inner: Node<'_>, outer: Node<'_>) -> bool {
    inner != outer && inner.start_byte() >= outer.start_byte() && inner.end_byte() <= outer.end_byte()
}

/// The name a call calls, when it calls a plain function or a method on self/this.
fn callee<'a>(call: Node<'_>, src: &'a [u8], receivers: &[&str]) -> Option<&'a str> {
    let fun = match call.kind() {
        "call" | "call_expression" => call.child_by_field_name("function")?,
        "method_invocation" => {
            let obj = call.child_by_field_name("object").map(|o| sx::text(o, src));
            if obj.is_some_and(|o| o != "this") {
                return None;
            }
            return call.child_by_field_name("name").map(|n| sx::text(n, src));
        }
        _ => return None,
    };
    let t = sx::text(fun, src);
    let (prefix, last) = match t.rfind(['.', ':', '>']) {
        Some(i) => (t[..i].trim_end_matches([':', '-', '.']), &t[i + 1..]),
        None => ("", t),
    };
    (prefix.is_empty() || ["self", "this", "Self", "cls"].contains(&prefix) || receivers.contains(&prefix))
        .then_some(last)
}

fn recursion(f: Node<'_>, name: &str, own: &[Node<'_>], src: &[u8], out: &mut Vec<Finding>) {
    if name == "<anonymous>" {
        return;
    }
    let receivers: Vec<&str> = f
        .child_by_field_name("receiver")
        .map(|r| sx::bound_names(r).into_iter().map(|n| sx::text(n, src)).collect())
        .unwrap_or_default();
    let Some(call) = own.iter().find(|n| callee(**n, src, &receivers) == Some(name)) else { return };
    let branches = own.iter().any(|n| *n != f && (sx::is_decision(*n) || n.kind() == "try_statement"));
    if !branches {
        let msg = format!("`{name}` calls itself on every path: no base case stops the recursion");
        push(out, "recursion-without-base-case", Severity::Error, lines(*call), msg);
    }
}

/// `xs[0]`, `max(xs)` or `/ len(xs)` on a parameter that nothing checks for emptiness.
fn empty_input(f: Node<'_>, own: &[Node<'_>], src: &[u8], out: &mut Vec<Finding>) {
    for p in sx::parameter_names(f, src) {
        let name = sx::text(p, src);
        let risky = own.iter().find(|n| risky_use(**n, name, src));
        let Some(risky) = risky else { continue };
        // Names computed from the parameter (`n = len(xs)`) count as checking it.
        let mut watched = vec![name.to_owned()];
        for n in own {
            if let Some(v) = n.child_by_field_name("value").or(n.child_by_field_name("right")) {
                let vt = sx::text(v, src);
                let lengths = [
                    format!("len({name})"),
                    format!("{name}.length"),
                    format!("{name}.size()"),
                    format!("{name}.len()"),
                ];
                if lengths.iter().any(|l| vt.contains(l.as_str())) {
                    for d in sx::declared_names(*n, Lang::Python).into_iter().chain(sx::declared_names(*n, Lang::Go)) {
                        watched.push(sx::text(d, src).to_owned());
                    }
                }
            }
        }
        let guarded = own.iter().any(|n| {
            let cond = match n.kind() {
                "assert_statement" | "boolean_operator" | "match_expression" | "switch_statement" => Some(*n),
                _ if sx::is_if(*n)
                    || sx::is_loop(*n)
                    || matches!(n.kind(), "conditional_expression" | "ternary_expression") =>
                {
                    // A condition, not what a `for` walks: walking it is no check.
                    n.child_by_field_name("condition")
                }
                _ => None,
            };
            cond.is_some_and(|c| idents(c, src).iter().any(|i| watched.iter().any(|w| w == i)))
                || sx::text(*n, src).contains(&format!("{name}.is_empty()"))
                || sx::text(*n, src).contains(&format!("{name}.isEmpty()"))
        });
        if !guarded {
            let what = sx::text(*risky, src);
            let what = if what.chars().count() > 40 {
                format!("{}…", what.chars().take(40).collect::<String>())
            } else {
                what.to_owned()
            };
            let msg = format!("`{what}` fails when `{name}` is empty, and nothing checks for empty input");
            push(out, "empty-input", Severity::Warning, lines(*risky), msg);
        }
    }
}

fn idents<'a>(n: Node<'_>, src: &'a [u8]) -> Vec<&'a str> {
    sx::descendants(n, true).into_iter().filter(|x| sx::is_ident(*x)).map(|x| sx::text(x, src)).collect()
}

fn risky_use(n: Node<'_>, name: &str, src: &[u8]) -> bool {
    let t = sx::text(n, src);
    match n.kind() {
        "subscript" | "subscript_expression" | "index_expression" | "array_access" => {
            let compact: String = t.chars().filter(|c| !c.is_whitespace()).collect();
            compact == format!("{name}[0]") || compact == format!("{name}[-1]")
        }
        "call" => {
            let compact: String = t.chars().filter(|c| !c.is_whitespace()).collect();
            compact == format!("max({name})") || compact == format!("min({name})")
        }
        "binary_operator" | "binary_expression" => {
            let is_div = n.child_by_field_name("operator").is_some_and(|o| o.kind() == "/");
            let right = n.child_by_field_name("right").map(|r| sx::text(r, src)).unwrap_or_default();
            is_div
                && [format!("len({name})"), format!("{name}.length"), format!("{name}.size()"), format!("{name}.len()")]
                    .iter()
                    .any(|p| right.contains(p.as_str()))
        }
        _ => false,
    }
}

fn unreachable_after(exit: Node<'_>, src: &[u8], out: &mut Vec<Finding>) {
    let stmt = match exit.parent() {
        Some(p) if p.kind() == "expression_statement" => p,
        _ => exit,
    };
    let Some(block) = stmt.parent() else { return };
    if !matches!(
        block.kind(),
        "block"
            | "statement_block"
            | "compound_statement"
            | "statement_list"
            | "switch_block_statement_group"
            | "case_statement"
            | "switch_case"
    ) {
        return;
    }
    let mut next = stmt.next_named_sibling();
    let mut dead = Vec::new();
    while let Some(s) = next {
        let k = s.kind();
        let skip = k.contains("comment")
            || k.starts_with("preproc")
            || matches!(
                k,
                "function_declaration"
                    | "class_declaration"
                    | "labeled_statement"
                    | "empty_statement"
                    | "case_statement"
                    | "switch_case"
                    | "switch_default"
                    | "switch_label"
            );
        if matches!(k, "case_statement" | "switch_case" | "switch_default" | "switch_label") {
            break;
        }
        if !skip {
            dead.push(s);
        }
        next = s.next_named_sibling();
    }
    if let (Some(first), Some(last)) = (dead.first(), dead.last()) {
        let word = sx::text(exit, src).split(|c: char| !c.is_alphanumeric()).next().unwrap_or("return").to_owned();
        let (a, _) = lines(*first);
        let (_, b) = lines(*last);
        push(out, "unreachable-code", Severity::Warning, (a, b), format!("code after `{word}` never runs"));
    }
}

const ASSIGNS: &[&str] = &[
    "assignment",
    "augmented_assignment",
    "assignment_expression",
    "augmented_assignment_expression",
    "compound_assignment_expr",
    "assignment_statement",
    "update_expression",
    "inc_statement",
    "dec_statement",
    "named_expression",
    "short_var_declaration",
    "let_declaration",
];

const PRINTS: &[&str] = &[
    "print",
    "printf",
    "puts",
    "println",
    "eprintln",
    "print!",
    "dbg",
    "console.log",
    "console.error",
    "fmt.Println",
    "fmt.Printf",
    "fmt.Print",
    "log.Println",
    "log.Printf",
];

/// A `while` (or a `for` with a condition and no update) whose condition's variables never
/// change in its body; or a loop with no condition that nothing leaves.
fn stuck_loop(l: Node<'_>, src: &[u8], out: &mut Vec<Finding>) {
    let cond = match l.kind() {
        "while_statement" | "while_expression" | "do_statement" => l.child_by_field_name("condition"),
        "loop_expression" => None,
        "for_statement"
            if l.child_by_field_name("update").is_none() && l.child_by_field_name("increment").is_none() =>
        {
            if l.child_by_field_name("left").is_some() {
                return; // Python's for-in
            }
            match l.child_by_field_name("condition") {
                Some(c) => Some(c),
                None => {
                    // Go: `for cond {`, `for {`, or a clause.
                    let mut c = l.walk();
                    let kids: Vec<_> =
                        l.named_children(&mut c).filter(|k| Some(*k) != l.child_by_field_name("body")).collect();
                    if kids.iter().any(|k| matches!(k.kind(), "for_clause" | "range_clause")) {
                        return;
                    }
                    if l.child_by_field_name("initializer").is_some() || kids.iter().any(|k| k.kind() == "comment") {
                        return;
                    }
                    kids.into_iter().next()
                }
            }
        }
        _ => return,
    };
    let Some(body) = l.child_by_field_name("body") else { return };
    let inside = sx::descendants(body, true);
    let exits = inside.iter().any(|n| {
        matches!(
            n.kind(),
            "break_statement"
                | "break_expression"
                | "return_statement"
                | "return_expression"
                | "raise_statement"
                | "throw_statement"
                | "goto_statement"
        ) || (matches!(n.kind(), "call" | "call_expression" | "macro_invocation")
            && n.child_by_field_name("function").or(n.child_by_field_name("macro")).is_some_and(|c| {
                matches!(
                    sx::text(c, src),
                    "exit" | "sys.exit" | "os.Exit" | "process.exit" | "panic" | "abort" | "std::process::exit"
                )
            }))
    });
    let cond_text = cond.map(|c| sx::text(c, src).trim_matches(|c: char| c == '(' || c == ')' || c.is_whitespace()));
    let forever = matches!(cond_text, None | Some("True" | "true" | "1"));
    if forever {
        if !exits {
            push(
                out,
                "infinite-loop",
                Severity::Error,
                lines(l),
                "this loop has no condition and nothing in it leaves it".into(),
            );
        }
        return;
    }
    let Some(cond) = cond else { return };
    let cond_nodes = sx::descendants(cond, true);
    if cond_nodes
        .iter()
        .any(|n| matches!(n.kind(), "call" | "call_expression" | "method_invocation" | "await_expression" | "await"))
    {
        return; // a call may change what the condition reads
    }
    let vars: BTreeSet<&str> =
        cond_nodes.iter().filter(|n| n.kind() == "identifier").map(|n| sx::text(*n, src)).collect();
    if vars.is_empty() {
        return;
    }
    let changed = inside.iter().any(|n| {
        let target = if ASSIGNS.contains(&n.kind()) {
            n.child_by_field_name("left")
                .or(n.child_by_field_name("argument"))
                .or(n.child_by_field_name("pattern"))
                .or(n.named_child(0))
        } else if matches!(n.kind(), "call" | "call_expression" | "method_invocation" | "macro_invocation") {
            // A method on it, or it passed along: it may change. Printing it does not.
            let f = n.child_by_field_name("function").or(n.child_by_field_name("macro")).map(|f| sx::text(f, src));
            let printing = f.is_some_and(|f| PRINTS.contains(&f))
                || (n.kind() == "method_invocation" && sx::text(*n, src).starts_with("System.out.print"));
            (!printing).then_some(*n)
        } else if matches!(n.kind(), "reference_expression" | "pointer_expression") {
            Some(*n)
        } else {
            None
        };
        target.is_some_and(|t| idents(t, src).iter().any(|i| vars.contains(i)))
    });
    if !changed {
        let names: Vec<String> = vars.iter().map(|v| format!("`{v}`")).collect();
        let sev = if exits { Severity::Warning } else { Severity::Error };
        let msg = format!("the loop condition reads {} but nothing in the loop changes it", names.join(", "));
        push(out, "loop-condition-unchanged", sev, lines(l), msg);
    }
}

/// What a loop walks over, when it is recognisably a collection or a bound: `xs` in
/// `for x in xs`, `range(len(xs))`, `i < xs.length`, `0..xs.len()`, `i < n`.
fn collection(l: Node<'_>, src: &[u8]) -> Option<String> {
    let header = match l.kind() {
        "for_statement" => match l.child_by_field_name("right") {
            Some(r) => sx::text(r, src).to_owned(),
            None => {
                let mut c = l.walk();
                let rc = l.named_children(&mut c).find(|k| k.kind() == "range_clause");
                match rc.and_then(|r| r.child_by_field_name("right")) {
                    Some(r) => sx::text(r, src).to_owned(),
                    None => {
                        let cond = l.child_by_field_name("condition").or_else(|| {
                            let mut c = l.walk();
                            let fc = l.named_children(&mut c).find(|k| k.kind() == "for_clause");
                            fc.and_then(|f| f.child_by_field_name("condition"))
                        })?;
                        let t = sx::text(cond, src);
                        let i = t.find(['<', '!'])?;
                        t[i..].trim_start_matches(['<', '!', '=']).to_owned()
                    }
                }
            }
        },
        "for_in_statement" | "for_range_loop" => sx::text(l.child_by_field_name("right")?, src).to_owned(),
        "enhanced_for_statement" | "for_expression" => sx::text(l.child_by_field_name("value")?, src).to_owned(),
        _ => return None,
    };
    collection_key(&header)
}

pub(super) fn collection_key(header: &str) -> Option<String> {
    let mut t = header.trim().trim_end_matches(';').trim().to_owned();
    if let Some(inner) = t.strip_prefix("range(").and_then(|r| r.strip_suffix(')')) {
        let args: Vec<&str> = inner.split(',').collect();
        t = args.get(1).or(args.first()).copied().unwrap_or_default().trim().to_owned();
    }
    loop {
        let before = t.clone();
        for p in ["&mut ", "&", "0..=", "0..", "enumerate(", "len(", "sorted(", "reversed(", "(", "*"] {
            if let Some(r) = t.strip_prefix(p) {
                t = r.trim().to_owned();
            }
        }
        for s in [
            ")",
            ".iter()",
            ".iter_mut()",
            ".into_iter()",
            ".enumerate()",
            ".len()",
            ".length",
            ".size()",
            ".keys()",
            ".values()",
            ".items()",
            ".chars()",
            ".bytes()",
        ] {
            if let Some(r) = t.strip_suffix(s) {
                t = r.trim().to_owned();
            }
        }
        if t == before {
            break;
        }
    }
    let ok = !t.is_empty()
        && !t.starts_with(|c: char| c.is_ascii_digit())
        && t.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '.');
    ok.then_some(t)
}

fn quadratic(l: Node<'_>, src: &[u8], out: &mut Vec<Finding>) {
    let Some(key) = collection(l, src) else { return };
    let Some(body) = l.child_by_field_name("body") else { return };
    let (a, _) = lines(l);
    for n in sx::descendants(body, true) {
        let scan = if sx::is_loop(n) {
            (collection(n, src).as_deref() == Some(key.as_str())).then(|| "a nested loop".to_owned())
        } else if n.kind() == "comparison_operator" {
            let mut c = n.walk();
            let is_in = n.children(&mut c).any(|k| matches!(k.kind(), "in" | "not in"));
            let right = n.named_child(n.named_child_count().saturating_sub(1)).map(|r| sx::text(r, src));
            (is_in && right == Some(key.as_str())).then(|| format!("`in {key}`"))
        } else if matches!(n.kind(), "call" | "call_expression" | "method_invocation") {
            let t = sx::text(n, src);
            [".includes(", ".indexOf(", ".contains(", ".index(", ".count("]
                .iter()
                .find(|m| t.starts_with(&format!("{key}{m}")))
                .map(|m| format!("`{key}{})`", m.trim_end_matches('(')))
        } else {
            None
        };
        if let Some(what) = scan {
            let (c, d) = lines(n);
            let msg = format!("{what} walks `{key}` again inside the loop over it (line {a}): O(n²); a set, a map or sorting first is O(n log n) or better");
            push(out, "quadratic-loop", Severity::Warning, (c, d), msg);
        }
    }
}
