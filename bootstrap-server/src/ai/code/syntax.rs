//! What the rules need to know about each grammar: the languages, and the node kinds and
//! fields that mean "function", "loop", "declaration" and so on in each.

use tree_sitter::{Language, Node};

/// A language the offline analyzer parses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Lang {
    /// Python 3.
    Python,
    /// JavaScript.
    JavaScript,
    /// TypeScript.
    TypeScript,
    /// C.
    C,
    /// C++.
    Cpp,
    /// Java.
    Java,
    /// Rust.
    Rust,
    /// Go.
    Go,
}

impl Lang {
    /// From a name or file extension, case-insensitive (`py`, `python3`, `js`, `ts`, `c++`, `golang`…).
    pub fn from_name(name: &str) -> Option<Lang> {
        Some(match name.trim().to_ascii_lowercase().as_str() {
            "python" | "python3" | "py" => Lang::Python,
            "javascript" | "js" | "node" | "nodejs" | "mjs" | "jsx" => Lang::JavaScript,
            "typescript" | "ts" | "tsx" => Lang::TypeScript,
            "c" | "h" => Lang::C,
            "cpp" | "c++" | "cc" | "cxx" | "hpp" => Lang::Cpp,
            "java" => Lang::Java,
            "rust" | "rs" => Lang::Rust,
            "go" | "golang" => Lang::Go,
            _ => return None,
        })
    }

    /// The canonical name.
    pub fn name(self) -> &'static str {
        match self {
            Lang::Python => "python",
            Lang::JavaScript => "javascript",
            Lang::TypeScript => "typescript",
            Lang::C => "c",
            Lang::Cpp => "cpp",
            Lang::Java => "java",
            Lang::Rust => "rust",
            Lang::Go => "go",
        }
    }

    pub(crate) fn display(self) -> &'static str {
        match self {
            Lang::Python => "Python",
            Lang::JavaScript => "JavaScript",
            Lang::TypeScript => "TypeScript",
            Lang::C => "C",
            Lang::Cpp => "C++",
            Lang::Java => "Java",
            Lang::Rust => "Rust",
            Lang::Go => "Go",
        }
    }

    pub(crate) fn grammar(self) -> Language {
        match self {
            Lang::Python => tree_sitter_python::LANGUAGE.into(),
            Lang::JavaScript => tree_sitter_javascript::LANGUAGE.into(),
            Lang::TypeScript => tree_sitter_typescript::LANGUAGE_TYPESCRIPT.into(),
            Lang::C => tree_sitter_c::LANGUAGE.into(),
            Lang::Cpp => tree_sitter_cpp::LANGUAGE.into(),
            Lang::Java => tree_sitter_java::LANGUAGE.into(),
            Lang::Rust => tree_sitter_rust::LANGUAGE.into(),
            Lang::Go => tree_sitter_go::LANGUAGE.into(),
        }
    }
}

pub(crate) const FUNCTIONS: &[&str] = &[
    "function_definition",
    "function_declaration",
    "generator_function_declaration",
    "function_expression",
    "generator_function",
    "arrow_function",
    "method_definition",
    "method_declaration",
    "constructor_declaration",
    "function_item",
    "closure_expression",
    "func_literal",
    "lambda",
    "lambda_expression",
];

pub(crate) const LOOPS: &[&str] = &[
    "for_statement",
    "for_in_statement",
    "for_range_loop",
    "enhanced_for_statement",
    "for_expression",
    "while_statement",
    "while_expression",
    "do_statement",
    "loop_expression",
];

const IFS: &[&str] = &["if_statement", "if_expression"];

/// Decision points for cyclomatic complexity, besides loops, ifs and `&&`/`||`.
const BRANCHES: &[&str] = &[
    "elif_clause",
    "conditional_expression",
    "ternary_expression",
    "case_clause",
    "switch_case",
    "case_statement",
    "switch_label",
    "match_arm",
    "expression_case",
    "type_case",
    "communication_case",
    "catch_clause",
    "except_clause",
    "if_clause",
    "for_in_clause",
    "boolean_operator",
];

/// Structures that nest (besides loops and ifs).
const NESTING: &[&str] = &[
    "try_statement",
    "with_statement",
    "switch_statement",
    "match_statement",
    "match_expression",
    "expression_switch_statement",
    "type_switch_statement",
    "select_statement",
    "switch_expression",
];

pub(crate) const EXITS: &[&str] = &[
    "return_statement",
    "return_expression",
    "break_statement",
    "break_expression",
    "continue_statement",
    "continue_expression",
    "raise_statement",
    "throw_statement",
    "throw_expression",
];

pub(crate) fn is_function(n: Node<'_>) -> bool {
    FUNCTIONS.contains(&n.kind())
}

pub(crate) fn is_loop(n: Node<'_>) -> bool {
    LOOPS.contains(&n.kind())
}

pub(crate) fn is_if(n: Node<'_>) -> bool {
    IFS.contains(&n.kind())
}

/// `&&`, `||` or `??` between two operands.
fn is_logical(n: Node<'_>) -> bool {
    n.kind() == "binary_expression"
        && n.child_by_field_name("operator").is_some_and(|o| matches!(o.kind(), "&&" | "||" | "??"))
}

pub(crate) fn is_decision(n: Node<'_>) -> bool {
    is_loop(n) || is_if(n) || BRANCHES.contains(&n.kind()) || is_logical(n)
}

/// Whether `n` adds a level of nesting (an `else if` does not: it continues its `if`).
pub(crate) fn nests(n: Node<'_>) -> bool {
    if is_if(n) {
        return !n.parent().is_some_and(|p| {
            p.kind() == "else_clause" || (is_if(p) && p.child_by_field_name("alternative") == Some(n))
        });
    }
    is_loop(n) || NESTING.contains(&n.kind())
}

pub(crate) fn text<'a>(n: Node<'_>, src: &'a [u8]) -> &'a str {
    n.utf8_text(src).unwrap_or_default()
}

pub(crate) fn is_ident(n: Node<'_>) -> bool {
    matches!(n.kind(), "identifier" | "shorthand_property_identifier" | "shorthand_property_identifier_pattern")
}

/// Every node under `n`, `n` included, in source order; with `skip_fns`, not the insides
/// of functions nested in `n`. Iterative: deeply nested input does not exhaust the stack.
pub(crate) fn descendants(n: Node<'_>, skip_fns: bool) -> Vec<Node<'_>> {
    let mut out = Vec::new();
    let mut stack = vec![n];
    while let Some(x) = stack.pop() {
        out.push(x);
        if skip_fns && x != n && is_function(x) {
            continue;
        }
        let mut c = x.walk();
        let kids: Vec<_> = x.named_children(&mut c).collect();
        stack.extend(kids.into_iter().rev());
    }
    out
}

/// The identifiers a declarator or pattern binds (`x`, `(a, b)`, `*p`, `{x, y}`, `mut n`).
pub(crate) fn bound_names(n: Node<'_>) -> Vec<Node<'_>> {
    if is_ident(n) {
        return vec![n];
    }
    match n.kind() {
        // Not bindings: types, values, function calls inside patterns.
        "type_annotation"
        | "type_identifier"
        | "primitive_type"
        | "field_expression"
        | "member_expression"
        | "attribute"
        | "subscript"
        | "subscript_expression"
        | "index_expression"
        | "function_declarator"
        | "scoped_identifier"
        | "call_expression" => return Vec::new(),
        _ => {}
    }
    for field in ["name", "pattern", "declarator", "left"] {
        let named: Vec<_> = {
            let mut c = n.walk();
            n.children_by_field_name(field, &mut c).collect()
        };
        if !named.is_empty() {
            return named.into_iter().flat_map(bound_names).collect();
        }
    }
    // `Ok(x)`, `Some(x)`, `Point { x, y }`: the type is no binding.
    let ty = n.child_by_field_name("type");
    let mut c = n.walk();
    let kids: Vec<_> = n.named_children(&mut c).collect();
    kids.into_iter()
        .filter(|k| Some(*k) != ty && !matches!(k.kind(), "type_annotation" | "type" | "value" | "default_value"))
        .flat_map(bound_names)
        .collect()
}

/// A function's name: its own `name`, the C declarator's, or the variable it is assigned to.
pub(crate) fn function_name(f: Node<'_>, src: &[u8]) -> String {
    if let Some(n) = f.child_by_field_name("name") {
        return text(n, src).to_owned();
    }
    let mut d = f.child_by_field_name("declarator");
    while let Some(x) = d {
        match x.kind() {
            "identifier" | "field_identifier" | "qualified_identifier" | "destructor_name" | "operator_name" => {
                let t = text(x, src);
                return t.rsplit("::").next().unwrap_or(t).to_owned();
            }
            _ => d = x.child_by_field_name("declarator"),
        }
    }
    if let Some(p) = f.parent() {
        if matches!(p.kind(), "variable_declarator" | "assignment" | "assignment_expression" | "let_declaration") {
            if let Some(n) =
                p.child_by_field_name("name").or(p.child_by_field_name("left")).or(p.child_by_field_name("pattern"))
            {
                return text(n, src).to_owned();
            }
        }
    }
    "<anonymous>".to_owned()
}

/// A function's parameter list node.
pub(crate) fn parameters(f: Node<'_>) -> Option<Node<'_>> {
    if let Some(p) = f.child_by_field_name("parameters").or(f.child_by_field_name("parameter")) {
        return Some(p);
    }
    let mut d = f.child_by_field_name("declarator");
    while let Some(x) = d {
        if x.kind() == "function_declarator" || x.kind() == "abstract_function_declarator" {
            return x.child_by_field_name("parameters");
        }
        d = x.child_by_field_name("declarator");
    }
    None
}

/// The names a function's parameters bind, `self`/`this` left out.
pub(crate) fn parameter_names<'t>(f: Node<'t>, src: &[u8]) -> Vec<Node<'t>> {
    let Some(ps) = parameters(f) else { return Vec::new() };
    if is_ident(ps) {
        return vec![ps];
    }
    let mut c = ps.walk();
    let list: Vec<_> = ps.named_children(&mut c).collect();
    list.into_iter()
        .filter(|p| !matches!(p.kind(), "self_parameter" | "comment" | "variadic_parameter"))
        .flat_map(bound_names)
        .filter(|n| !matches!(text(*n, src), "self" | "cls" | "this"))
        .collect()
}

/// The names a local declaration binds, for the kinds of declaration each grammar has.
pub(crate) fn declared_names(n: Node<'_>, lang: super::Lang) -> Vec<Node<'_>> {
    let field = |f: &str| n.child_by_field_name(f).map(bound_names).unwrap_or_default();
    match n.kind() {
        "assignment" if lang == super::Lang::Python => field("left"),
        "variable_declarator" => field("name"),
        "init_declarator" => field("declarator"),
        "declaration" => {
            // `int x;`: a bare identifier declarator (init_declarators are seen on their own).
            let mut c = n.walk();
            let ds: Vec<_> = n.children_by_field_name("declarator", &mut c).collect();
            ds.into_iter().filter(|d| d.kind() != "init_declarator").flat_map(bound_names).collect()
        }
        "let_declaration" => field("pattern"),
        "short_var_declaration" => field("left"),
        "var_spec" => {
            let mut c = n.walk();
            let ds: Vec<_> = n.children_by_field_name("name", &mut c).collect();
            ds
        }
        _ => Vec::new(),
    }
}

/// The names a loop header binds (`for x in`, `for (const x of`, `for i, v := range`).
pub(crate) fn loop_bindings(n: Node<'_>) -> Vec<Node<'_>> {
    match n.kind() {
        "for_statement" => match n.child_by_field_name("left") {
            Some(l) => bound_names(l),
            None => {
                // Go: for i, v := range xs
                let mut c = n.walk();
                let rc: Vec<_> = n.named_children(&mut c).filter(|k| k.kind() == "range_clause").collect();
                rc.into_iter().filter_map(|r| r.child_by_field_name("left")).flat_map(bound_names).collect()
            }
        },
        "for_in_statement" => n.child_by_field_name("left").map(bound_names).unwrap_or_default(),
        "enhanced_for_statement" => n.child_by_field_name("name").map(bound_names).unwrap_or_default(),
        "for_expression" => n.child_by_field_name("pattern").map(bound_names).unwrap_or_default(),
        "for_range_loop" => n.child_by_field_name("declarator").map(bound_names).unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// The block a declaration belongs to (its scope, for shadowing).
pub(crate) fn scope_of(n: Node<'_>) -> Option<Node<'_>> {
    let mut p = n.parent();
    while let Some(x) = p {
        if is_function(x)
            || is_loop(x)
            || matches!(x.kind(), "block" | "statement_block" | "compound_statement" | "if_statement")
        {
            return Some(x);
        }
        p = x.parent();
    }
    None
}
