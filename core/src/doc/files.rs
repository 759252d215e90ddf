//! Extra files of a room beside `code`: one text root per file, `files/<name>`, listed in the
//! `files` map (name → entry). See `docs/decisions/002-multi-file-rooms.md`.
//!
//! Names are plain file names: what a sandbox can write into its working directory as is
//! and what a stock Yjs client can bind with `ydoc.getText('files/' + name)`.

use crate::error::{CoreError, Result};

/// Most files a room lists (and most `files/*` roots a replica accepts), beside `code`.
pub const MAX_FILES: usize = 32;
/// Longest file name, in bytes.
pub const MAX_FILE_NAME: usize = 64;
/// The prefix of a file's text root.
pub(crate) const PREFIX: &str = "files/";

/// Checks a file name: 1 to [`MAX_FILE_NAME`] bytes of ASCII letters, digits and `_-.+`,
/// not starting with a dot (so never `.` or `..`), never `a.out` (a compiled run's binary).
/// No slash, no control character, nothing a shell or a path treats specially.
pub fn check_file_name(name: &str) -> Result<()> {
    check_name_bytes(name.as_bytes()).map_err(|reason| CoreError::FileName { name: shown(name), reason })
}

/// [`check_file_name`] on raw bytes (a root name or map key straight off the wire).
pub(crate) fn check_name_bytes(name: &[u8]) -> std::result::Result<(), &'static str> {
    if name.is_empty() {
        return Err("a file name is needed");
    }
    if name.len() > MAX_FILE_NAME {
        return Err("longer than 64 bytes");
    }
    if name[0] == b'.' {
        return Err("starts with a dot");
    }
    if name == b"a.out" {
        return Err("a.out is a compiled program's name");
    }
    if !name.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'+')) {
        return Err("only letters, digits and _-.+ may be used");
    }
    Ok(())
}

/// The file name a root name holds (`files/<name>` with a valid name), if any.
pub(crate) fn file_of_root(root: &[u8]) -> Option<&[u8]> {
    let name = root.strip_prefix(PREFIX.as_bytes())?;
    check_name_bytes(name).is_ok().then_some(name)
}

/// The root name of file `name`.
pub(crate) fn root_of(name: &str) -> String {
    format!("{PREFIX}{name}")
}

/// A name as an error message shows it: quoted, at most 64 characters, anything but printable
/// ASCII as `?`, `"` and `\` escaped: what `{:?}` of the printable form gave, without `str`'s
/// `Debug` (and core's Unicode tables behind it) in the WASM module.
pub(crate) fn shown(name: &str) -> String {
    let mut s = String::from('"');
    for c in name.chars().take(MAX_FILE_NAME) {
        match c {
            '"' | '\\' => s.extend(['\\', c]),
            c if c.is_ascii_graphic() || c == ' ' => s.push(c),
            _ => s.push('?'),
        }
    }
    if name.chars().nth(MAX_FILE_NAME).is_some() {
        s.push('…');
    }
    s.push('"');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["main.py", "helper.py", "Main.java", "util.h", "a", "x+y-z_1.cpp", &"n".repeat(64)] {
            check_file_name(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        let long = "n".repeat(65);
        let huge = "x".repeat(1 << 20);
        for bad in [
            "",
            ".",
            "..",
            "../../etc/x",
            "a/b",
            "/etc/passwd",
            ".hidden",
            "a\0b",
            "a\nb",
            "tab\t",
            "é.py",
            "a b",
            "a\\b",
        ]
        .iter()
        .chain([&long.as_str(), &huge.as_str(), &"a.out"])
        {
            let e = check_file_name(bad).expect_err(bad);
            assert!(e.to_string().len() < 200, "a short message for a {} byte name", bad.len());
            // As `{:?}` of the printable form showed it.
            let mut printable: String =
                bad.chars().take(64).map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }).collect();
            if bad.chars().nth(64).is_some() {
                printable.push('…');
            }
            assert_eq!(shown(bad), format!("{printable:?}"));
        }
        assert_eq!(shown(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(file_of_root(b"files/main.py"), Some(&b"main.py"[..]));
        assert_eq!(file_of_root(b"files/../x"), None);
        assert_eq!(file_of_root(b"files/"), None);
        assert_eq!(file_of_root(b"code"), None);
    }
}
