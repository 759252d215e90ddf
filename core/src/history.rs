//! Diffs between versions and the minimal edit that turns one text into another.

/// One line of a line diff.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiffLine {
    /// In both.
    Same(String),
    /// Only in the old text.
    Removed(String),
    /// Only in the new text.
    Added(String),
}

/// Beyond this many differing lines the diff stops looking for a minimal script and reports
/// the rest as removed-then-added (bounded time and memory on any input).
const MAX_EDIT_DISTANCE: usize = 4096;

/// Myers' O((N+M)·D) diff over two sequences; returns (kind, index) pairs where kind is
/// 0 = same (index into a), 1 = removed (index into a), 2 = added (index into b).
fn myers<T: PartialEq>(a: &[T], b: &[T]) -> Vec<(u8, usize)> {
    let (n, m) = (a.len() as isize, b.len() as isize);
    let max = ((n + m) as usize).min(MAX_EDIT_DISTANCE) as isize;
    let off = max + 1;
    let mut v = vec![0isize; (2 * max + 3) as usize];
    let mut trace: Vec<Vec<isize>> = Vec::new();
    let mut found = None;
    'outer: for d in 0..=max {
        trace.push(v.clone());
        let mut k = -d;
        while k <= d {
            let i = (k + off) as usize;
            let mut x = if k == -d || (k != d && v[i - 1] < v[i + 1]) { v[i + 1] } else { v[i - 1] + 1 };
            let mut y = x - k;
            while x < n && y < m && a[x as usize] == b[y as usize] {
                x += 1;
                y += 1;
            }
            v[i] = x;
            if x >= n && y >= m {
                found = Some(d);
                break 'outer;
            }
            k += 2;
        }
    }
    let Some(dmax) = found else {
        // Too different: everything removed, then everything added.
        let mut out: Vec<(u8, usize)> = (0..a.len()).map(|i| (1, i)).collect();
        out.extend((0..b.len()).map(|j| (2, j)));
        return out;
    };
    let (mut x, mut y) = (n, m);
    let mut out = Vec::new();
    for d in (0..=dmax).rev() {
        let v = &trace[d as usize];
        let k = x - y;
        let prev_k =
            if k == -d || (k != d && v[(k - 1 + off) as usize] < v[(k + 1 + off) as usize]) { k + 1 } else { k - 1 };
        let prev_x = if d == 0 { 0 } else { v[(prev_k + off) as usize] };
        let prev_y = prev_x - prev_k;
        while x > prev_x.max(0) && y > prev_y.max(0) {
            x -= 1;
            y -= 1;
            out.push((0, x as usize));
        }
        if d > 0 {
            if x == prev_x {
                out.push((2, prev_y as usize));
            } else {
                out.push((1, prev_x as usize));
            }
        }
        x = prev_x;
        y = prev_y;
    }
    out.reverse();
    out
}

/// Line diff between two texts.
pub fn line_diff(old: &str, new: &str) -> Vec<DiffLine> {
    let a: Vec<&str> = old.split_inclusive('\n').collect();
    let b: Vec<&str> = new.split_inclusive('\n').collect();
    myers(&a, &b)
        .into_iter()
        .map(|(kind, i)| match kind {
            0 => DiffLine::Same(a[i].to_owned()),
            1 => DiffLine::Removed(a[i].to_owned()),
            _ => DiffLine::Added(b[i].to_owned()),
        })
        .collect()
}

/// The diff in unified style (`+`/`-`/` ` prefixes, no hunk headers).
pub fn render_diff(lines: &[DiffLine]) -> String {
    let mut s = String::new();
    for l in lines {
        let (p, t) = match l {
            DiffLine::Same(t) => (' ', t),
            DiffLine::Removed(t) => ('-', t),
            DiffLine::Added(t) => ('+', t),
        };
        s.push(p);
        s.push_str(t);
        if !t.ends_with('\n') {
            s.push('\n');
        }
    }
    s
}

/// A replacement in UTF-16 units: delete `delete` at `pos`, insert `insert`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Splice {
    /// Position in UTF-16 units.
    pub pos: u32,
    /// UTF-16 units to delete.
    pub delete: u32,
    /// Text to insert.
    pub insert: String,
}

fn utf16_len(s: &str) -> u32 {
    s.encode_utf16().count() as u32
}

/// The edits that turn `from` into `to`, to apply in the given order (descending
/// positions, so earlier splices do not shift later ones). Lines that did not change are not
/// touched, and inside a changed run only the differing middle is replaced, so concurrent
/// cursors and edits elsewhere survive a restore.
pub fn minimal_edits(from: &str, to: &str) -> Vec<Splice> {
    let a: Vec<&str> = from.split_inclusive('\n').collect();
    let b: Vec<&str> = to.split_inclusive('\n').collect();
    let ops = myers(&a, &b);
    let mut splices = Vec::new();
    let mut pos16 = 0u32;
    let mut i = 0;
    while i < ops.len() {
        if ops[i].0 == 0 {
            pos16 += utf16_len(a[ops[i].1]);
            i += 1;
            continue;
        }
        let (mut old, mut new) = (String::new(), String::new());
        while i < ops.len() && ops[i].0 != 0 {
            match ops[i].0 {
                1 => old.push_str(a[ops[i].1]),
                _ => new.push_str(b[ops[i].1]),
            }
            i += 1;
        }
        let prefix: usize = old.chars().zip(new.chars()).take_while(|(x, y)| x == y).map(|(c, _)| c.len_utf8()).sum();
        let (o, n) = (&old[prefix..], &new[prefix..]);
        let suffix: usize =
            o.chars().rev().zip(n.chars().rev()).take_while(|(x, y)| x == y).map(|(c, _)| c.len_utf8()).sum();
        let (o, n) = (&o[..o.len() - suffix], &n[..n.len() - suffix]);
        splices.push(Splice { pos: pos16 + utf16_len(&old[..prefix]), delete: utf16_len(o), insert: n.to_owned() });
        pos16 += utf16_len(&old);
    }
    splices.reverse();
    splices
}

/// Applies splices (as [`minimal_edits`] orders them) to a string; for tests and previews.
pub fn apply_splices(text: &str, splices: &[Splice]) -> String {
    let mut units: Vec<u16> = text.encode_utf16().collect();
    for s in splices {
        let pos = (s.pos as usize).min(units.len());
        let end = (pos + s.delete as usize).min(units.len());
        units.splice(pos..end, s.insert.encode_utf16());
    }
    String::from_utf16_lossy(&units)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_round_trip() {
        let cases = [
            ("", ""),
            ("", "abc\n"),
            ("abc\n", ""),
            ("a\nb\nc\n", "a\nB\nc\n"),
            ("fn main() {\n    println!(\"hi\");\n}\n", "fn main() {\n    let x = 1;\n    println!(\"hi {x}\");\n}\n"),
            ("héllo 👋\nwörld\n", "héllo 👋🏽\nworld\n"),
            ("x", "y"),
        ];
        for (a, b) in cases {
            let e = minimal_edits(a, b);
            assert_eq!(apply_splices(a, &e), b, "{a:?} -> {b:?} via {e:?}");
        }
    }

    #[test]
    fn unchanged_lines_are_untouched() {
        let a = "one\ntwo\nthree\nfour\n";
        let b = "one\ntwo!\nthree\nfour\n";
        let e = minimal_edits(a, b);
        assert_eq!(e, vec![Splice { pos: 7, delete: 0, insert: "!".into() }]);
        let d = line_diff(a, b);
        assert_eq!(d.iter().filter(|l| matches!(l, DiffLine::Same(_))).count(), 3);
        assert!(render_diff(&d).contains("-two\n+two!\n"));
    }
}
