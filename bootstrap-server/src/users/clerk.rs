//! Clerk's user objects and webhook events, read into what the node keeps: a [`User`]
//! (id, display name, avatar URL, primary email) or a deletion.
//!
//! An event is `{"object": "event", "type": "user.created", "data": {...}, ...}`; the data of
//! `user.created`/`user.updated` is a Clerk user (the same object the Backend API lists),
//! that of `user.deleted` is `{"id": ..., "deleted": true, "object": "user"}`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Longest user id accepted (Clerk's are `user_` and 27 characters).
const MAX_ID: usize = 128;
/// Longest display name kept, in characters.
const MAX_NAME: usize = 200;
/// Longest avatar URL or email kept, in bytes (longer ones are dropped).
const MAX_URL: usize = 2048;
const MAX_EMAIL: usize = 320;

/// A directory entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// Clerk's user id.
    pub id: String,
    /// First and last name, else the username, else the primary email's local part, else the id.
    pub display_name: String,
    /// `image_url` (http or https only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar_url: Option<String>,
    /// The primary email address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_email: Option<String>,
    /// Clerk's `updated_at` (ms): an older version never overwrites a newer one.
    #[serde(default)]
    pub updated_at: u64,
}

/// What a Clerk event asks of the node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// `user.created` or `user.updated`.
    Upsert(User),
    /// `user.deleted`.
    Delete(String),
}

/// A Clerk webhook event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A user event: its type (`user.created`, ...) and what it changes.
    User(String, Change),
    /// Any other type: acknowledged and ignored.
    Other(String),
}

/// Whether `id` is a user id the node stores: printable ASCII without `/`, 1 to 128 bytes.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID && id.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
}

/// Reads a webhook body; the error says why it is not a Clerk event.
pub fn parse_event(body: &[u8]) -> Result<Event, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    if v.get("object").and_then(Value::as_str) != Some("event") {
        return Err("not a Clerk event: `object` is not \"event\"".into());
    }
    let Some(kind) = v.get("type").and_then(Value::as_str) else {
        return Err("not a Clerk event: no `type`".into());
    };
    let Some(data) = v.get("data").filter(|d| d.is_object()) else {
        return Err("not a Clerk event: no `data` object".into());
    };
    if kind.len() > 100 {
        return Err("not a Clerk event: `type` too long".into());
    }
    let change = match kind {
        "user.created" | "user.updated" => Change::Upsert(user_of(data)?),
        "user.deleted" => Change::Delete(id_of(data)?),
        other => return Ok(Event::Other(other.to_owned())),
    };
    Ok(Event::User(kind.to_owned(), change))
}

fn id_of(data: &Value) -> Result<String, String> {
    match data.get("id").and_then(Value::as_str) {
        Some(id) if valid_id(id) => Ok(id.to_owned()),
        Some(_) => Err("the user's `id` is not 1 to 128 printable ASCII characters (no `/`)".into()),
        None => Err("the event's data has no user `id`".into()),
    }
}

fn text<'a>(data: &'a Value, key: &str) -> Option<&'a str> {
    data.get(key).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty())
}

/// A Clerk user object (a webhook's data, an entry of the Backend API's user list) as a
/// directory entry.
pub fn user_of(data: &Value) -> Result<User, String> {
    let id = id_of(data)?;
    let primary = text(data, "primary_email_address_id");
    let emails = data.get("email_addresses").and_then(Value::as_array);
    let email = emails
        .and_then(|list| list.iter().find(|e| primary.is_some() && e.get("id").and_then(Value::as_str) == primary))
        .and_then(|e| text(e, "email_address"))
        // The CSV export's column; an export without ids names the address directly.
        .or_else(|| text(data, "primary_email_address"));
    let first = text(data, "first_name").unwrap_or_default();
    let last = text(data, "last_name").unwrap_or_default();
    let avatar = text(data, "image_url").or_else(|| text(data, "profile_image_url"));
    let updated_at = data.get("updated_at").and_then(Value::as_u64).unwrap_or(0);
    Ok(make_user(id, first, last, text(data, "username"), avatar, email, updated_at))
}

/// A directory entry from its parts, bounded and cleaned.
pub fn make_user(
    id: String,
    first: &str,
    last: &str,
    username: Option<&str>,
    avatar: Option<&str>,
    email: Option<&str>,
    updated_at: u64,
) -> User {
    let email = email.filter(|e| e.len() <= MAX_EMAIL && e.contains('@')).map(str::to_owned);
    let full = format!("{first} {last}");
    let name = [
        full.trim(),
        username.unwrap_or_default(),
        email.as_deref().and_then(|e| e.split('@').next()).unwrap_or_default(),
    ]
    .into_iter()
    .find(|s| !s.is_empty())
    .unwrap_or(&id);
    // No control characters (a name is shown in the room).
    let display_name: String = name.chars().filter(|c| !c.is_control()).take(MAX_NAME).collect();
    let avatar_url = avatar
        .filter(|u| u.len() <= MAX_URL && (u.starts_with("https://") || u.starts_with("http://")))
        .map(str::to_owned);
    User { id, display_name, avatar_url, primary_email: email, updated_at }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn clerk_user_events() {
        let created = br#"{"object":"event","type":"user.created","timestamp":1654012591835,
            "data":{"id":"user_29w83sxmDNGwOuEthce5gg56FcC","object":"user","first_name":"Ada","last_name":"Lovelace",
            "username":null,"image_url":"https://img.clerk.com/abc","primary_email_address_id":"idn_2",
            "email_addresses":[{"id":"idn_1","email_address":"old@example.org"},{"id":"idn_2","email_address":"ada@example.org"}],
            "updated_at":1654012591514}}"#;
        let Event::User(kind, Change::Upsert(u)) = parse_event(created).unwrap() else { panic!("not an upsert") };
        assert_eq!(kind, "user.created");
        assert_eq!(u.id, "user_29w83sxmDNGwOuEthce5gg56FcC");
        assert_eq!(u.display_name, "Ada Lovelace");
        assert_eq!(u.avatar_url.as_deref(), Some("https://img.clerk.com/abc"));
        assert_eq!(u.primary_email.as_deref(), Some("ada@example.org"));
        assert_eq!(u.updated_at, 1654012591514);
        let deleted =
            br#"{"object":"event","type":"user.deleted","data":{"deleted":true,"id":"user_1","object":"user"}}"#;
        assert_eq!(parse_event(deleted).unwrap(), Event::User("user.deleted".into(), Change::Delete("user_1".into())));
        let other = br#"{"object":"event","type":"session.created","data":{"id":"sess_1"}}"#;
        assert_eq!(parse_event(other).unwrap(), Event::Other("session.created".into()));
    }

    #[test]
    fn names_fall_back_and_bad_fields_are_dropped() {
        let u = user_of(&serde_json::json!({"id":"u1","username":"ada","image_url":"javascript:alert(1)"})).unwrap();
        assert_eq!((u.display_name.as_str(), u.avatar_url), ("ada", None));
        let u = user_of(&serde_json::json!({"id":"u1","primary_email_address":"grace@example.org"})).unwrap();
        assert_eq!(u.display_name, "grace");
        let u = user_of(&serde_json::json!({"id":"u1","first_name":"A\u{7}\nB"})).unwrap();
        assert_eq!(u.display_name, "AB");
        assert_eq!(user_of(&serde_json::json!({"id":"u1"})).unwrap().display_name, "u1");
    }

    #[test]
    fn not_clerk_events() {
        for body in [
            &b"not json"[..],
            br#"{"email":"test@example.com","username":"test_user"}"#,
            br#"{"object":"event","data":{}}"#,
            br#"{"object":"event","type":"user.created"}"#,
            br#"{"object":"event","type":"user.created","data":{"first_name":"x"}}"#,
            br#"{"object":"event","type":"user.deleted","data":{"id":""}}"#,
            br#"{"object":"event","type":"user.deleted","data":{"id":"a/../b"}}"#,
            br#"{"object":"event","type":"user.deleted","data":{"id":7}}"#,
            br#"[1,2]"#,
        ] {
            assert!(parse_event(body).is_err(), "{}", String::from_utf8_lossy(body));
        }
    }
}
