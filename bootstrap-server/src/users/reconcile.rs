//! `arena-bootstrap users reconcile --from FILE`: brings the directory in line with Clerk's
//! user list, because webhook delivery is not guaranteed.
//!
//! Accepted files (see `docs/users.md`):
//! - the CSV of Clerk's dashboard export: a header row naming the columns, among them `id`,
//!   `first_name`, `last_name`, `username`, `primary_email_address` (others are ignored;
//!   quoted fields with `""` escapes, CRLF or LF line ends);
//! - the JSON of Clerk's Backend API user list (`GET /v1/users`): an array of user objects
//!   (`id`, `first_name`, `last_name`, `username`, `image_url`, `email_addresses`,
//!   `primary_email_address_id`, `updated_at`), or `{"data": [...]}`.
//!
//! The CLI reads the file, then sends the users to the running node
//! (`POST /api/admin/users/reconcile`, operator token), which enqueues a job per change:
//! users in the file and not in the directory (or different there) are written, users in the
//! directory and not in the file are deleted (unless `--keep-missing`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::users::clerk::{self, Change, User};

/// What the CLI sends to the node.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Request {
    /// The users of the export.
    pub users: Vec<User>,
    /// Keep directory users that the export lacks.
    #[serde(default)]
    pub keep_missing: bool,
}

/// The changes that bring a directory in line with an export.
#[derive(Debug, Default)]
pub struct Plan {
    /// Upserts then deletions.
    pub changes: Vec<Change>,
    /// How many of each, and how many users were already in line.
    pub upserts: usize,
    /// Deletions.
    pub deletes: usize,
    /// Users already in line.
    pub unchanged: usize,
}

/// The changes from `current` (the directory) to `export`.
pub fn plan(current: &[User], export: &[User], keep_missing: bool) -> Plan {
    let now: std::collections::HashMap<&str, &User> = current.iter().map(|u| (u.id.as_str(), u)).collect();
    let mut p = Plan::default();
    let mut seen = std::collections::HashSet::new();
    for u in export {
        if !seen.insert(u.id.as_str()) {
            continue;
        }
        match now.get(u.id.as_str()) {
            Some(old) if same(old, u) => p.unchanged += 1,
            old => {
                let mut u = u.clone();
                // An export without `updated_at` (the CSV) still wins over the entry it fixes.
                u.updated_at = u.updated_at.max(old.map_or(0, |o| o.updated_at));
                p.changes.push(Change::Upsert(u));
                p.upserts += 1;
            }
        }
    }
    if !keep_missing {
        for u in current.iter().filter(|u| !seen.contains(u.id.as_str())) {
            p.changes.push(Change::Delete(u.id.clone()));
            p.deletes += 1;
        }
    }
    p
}

fn same(a: &User, b: &User) -> bool {
    a.display_name == b.display_name
        && a.primary_email == b.primary_email
        // The CSV has no avatar: a missing one does not erase the directory's.
        && (b.avatar_url.is_none() || a.avatar_url == b.avatar_url)
}

/// Reads an export (CSV or JSON, told apart by the first character that is not white space).
pub fn parse_export(text: &str) -> Result<Vec<User>, String> {
    let t = text.trim_start_matches('\u{feff}').trim_start();
    if t.starts_with('[') || t.starts_with('{') {
        parse_json(t)
    } else {
        parse_csv(t)
    }
}

fn parse_json(text: &str) -> Result<Vec<User>, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let list = match &v {
        Value::Array(a) => a,
        Value::Object(o) => o.get("data").and_then(Value::as_array).ok_or("a JSON object without a `data` array")?,
        _ => return Err("neither a JSON array of users nor {\"data\": [...]}".into()),
    };
    list.iter().enumerate().map(|(i, u)| clerk::user_of(u).map_err(|e| format!("user {}: {e}", i + 1))).collect()
}

fn parse_csv(text: &str) -> Result<Vec<User>, String> {
    let rows = csv_rows(text)?;
    let Some((header, body)) = rows.split_first() else { return Err("an empty file".into()) };
    let col = |name: &str| header.iter().position(|h| h.trim() == name);
    let id = col("id").ok_or("the CSV has no `id` column (Clerk's export names it `id`)")?;
    let (first, last, username, email, image) =
        (col("first_name"), col("last_name"), col("username"), col("primary_email_address"), col("image_url"));
    let mut out = Vec::new();
    for (n, row) in body.iter().enumerate() {
        if row.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        let cell = |c: Option<usize>| c.and_then(|i| row.get(i)).map(|s| s.trim()).filter(|s| !s.is_empty());
        let uid = cell(Some(id)).unwrap_or_default();
        if !clerk::valid_id(uid) {
            return Err(format!("row {}: `id` {uid:?} is not a user id", n + 2));
        }
        out.push(clerk::make_user(
            uid.to_owned(),
            cell(first).unwrap_or_default(),
            cell(last).unwrap_or_default(),
            cell(username),
            cell(image),
            cell(email),
            0,
        ));
    }
    Ok(out)
}

/// RFC 4180 rows: fields separated by commas, optionally in double quotes (`""` is a quote,
/// and a quoted field may hold commas and line breaks).
fn csv_rows(text: &str) -> Result<Vec<Vec<String>>, String> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while let Some(c) = chars.next() {
        match c {
            '"' if field.is_empty() => loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(ch) => {
                        line += usize::from(ch == '\n');
                        field.push(ch);
                    }
                    None => return Err(format!("line {line}: a quoted field is not closed")),
                }
            },
            ',' => row.push(std::mem::take(&mut field)),
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                line += 1;
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            ch => field.push(ch),
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    Ok(rows)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn clerk_dashboard_csv() {
        let csv =
            "id,first_name,last_name,username,primary_email_address,primary_phone_number,verified_email_addresses\r\n\
user_1,Ada,Lovelace,,ada@example.org,,\"ada@example.org,a2@example.org\"\r\n\
user_2,,,grace,\"g\"\"h@example.org\",,\r\n\r\n";
        let users = parse_export(csv).unwrap();
        assert_eq!(users.len(), 2);
        assert_eq!((users[0].id.as_str(), users[0].display_name.as_str()), ("user_1", "Ada Lovelace"));
        assert_eq!(users[0].primary_email.as_deref(), Some("ada@example.org"));
        assert_eq!(
            (users[1].display_name.as_str(), users[1].primary_email.as_deref()),
            ("grace", Some("g\"h@example.org"))
        );
    }

    #[test]
    fn backend_api_json() {
        let json = r#"[{"id":"user_1","first_name":"Ada","last_name":null,"image_url":"https://img/1",
            "email_addresses":[{"id":"e1","email_address":"ada@example.org"}],"primary_email_address_id":"e1","updated_at":5}]"#;
        let users = parse_export(json).unwrap();
        assert_eq!(users[0].primary_email.as_deref(), Some("ada@example.org"));
        assert_eq!(users[0].updated_at, 5);
        assert_eq!(parse_export(&format!("{{\"data\":{json}}}")).unwrap(), users);
    }

    #[test]
    fn bad_exports_say_why() {
        for (bad, why) in [
            ("", "empty"),
            ("first_name\nAda\n", "no `id` column"),
            ("id\n\"user_1\n", "not closed"),
            ("id\nuser/1\n", "row 2"),
            ("[{\"first_name\":\"x\"}]", "user 1"),
            ("{\"users\":[]}", "data"),
            ("[1,", "not JSON"),
        ] {
            let e = parse_export(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn plan_writes_what_differs_and_deletes_what_is_gone() {
        let u = |id: &str, name: &str| clerk::make_user(id.into(), name, "", None, None, None, 0);
        let current = vec![u("a", "A"), u("b", "B"), u("c", "C")];
        let export = vec![u("a", "A"), u("b", "B2"), u("d", "D"), u("d", "D")];
        let p = plan(&current, &export, false);
        assert_eq!((p.upserts, p.deletes, p.unchanged), (2, 1, 1));
        assert!(p.changes.contains(&Change::Delete("c".into())));
        let p = plan(&current, &export, true);
        assert_eq!((p.upserts, p.deletes), (2, 0));
    }
}
