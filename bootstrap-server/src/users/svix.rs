//! Svix webhook signatures, as Svix specifies them (and Clerk sends them).
//!
//! - Headers: `svix-id`, `svix-timestamp`, `svix-signature`, or the unbranded
//!   `webhook-id`, `webhook-timestamp`, `webhook-signature` (Standard Webhooks).
//! - Secret: `whsec_` followed by the base64 of the key (the prefix is optional here, as in
//!   Svix's own libraries).
//! - Signature: HMAC-SHA256 with the key over `{id}.{timestamp}.{body}`, base64; the header
//!   holds space-separated `v1,{signature}` entries (other versions are ignored), and one
//!   entry matching one of the secrets (several during a rotation) is enough. Compared in
//!   constant time.
//! - Timestamp: seconds since the epoch, at most [`TOLERANCE_SECS`] from now either way
//!   (an old timestamp is a replay).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2_hkdf::Sha256;
use subtle::ConstantTimeEq;

/// How far a timestamp may be from now, either way, in seconds.
pub const TOLERANCE_SECS: i64 = 5 * 60;

/// Longest message id accepted (it becomes a key in the store).
const MAX_ID: usize = 256;

/// Why a webhook's signature was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SvixError {
    /// A header is missing (under both its `svix-` and its `webhook-` name).
    #[error("missing header {0} (or its webhook- name)")]
    MissingHeader(&'static str),
    /// The message id is empty, too long or not printable ASCII.
    #[error("bad message id: printable ASCII, 1 to 256 characters")]
    BadId,
    /// The timestamp is not an integer number of seconds.
    #[error("bad timestamp: not an integer number of seconds")]
    BadTimestamp,
    /// The timestamp is older than the tolerance: a replay, or a very late delivery.
    #[error("timestamp too old ({0} s ago; at most 300 s): a replay or a late delivery")]
    TooOld(i64),
    /// The timestamp is further in the future than the tolerance.
    #[error("timestamp too far in the future ({0} s ahead; at most 300 s)")]
    TooNew(i64),
    /// The signature header holds no `v1,` entry.
    #[error("no v1 signature in the signature header")]
    NoSignature,
    /// No entry matches any secret.
    #[error("no matching signature")]
    Mismatch,
}

/// A webhook signing secret (`whsec_...`); its `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl std::str::FromStr for Secret {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let b64 = s.strip_prefix("whsec_").unwrap_or(s);
        match STANDARD.decode(b64) {
            Ok(key) if !key.is_empty() => Ok(Secret(key)),
            _ => Err("a webhook secret is `whsec_` followed by base64 (Clerk's dashboard shows it)".into()),
        }
    }
}

impl Secret {
    /// A secret from raw key bytes.
    pub fn from_bytes(key: &[u8]) -> Self {
        Secret(key.to_vec())
    }

    /// The `whsec_` form.
    pub fn to_whsec(&self) -> String {
        format!("whsec_{}", STANDARD.encode(&self.0))
    }

    fn tag(&self, id: &str, timestamp: &str, body: &[u8]) -> Vec<u8> {
        // HMAC takes keys of any length: this cannot fail.
        let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0) else { return Vec::new() };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.finalize().into_bytes().to_vec()
    }
}

/// The three signature headers of a webhook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Headers<'a> {
    /// `svix-id`: the message id (the same on every redelivery).
    pub id: &'a str,
    /// `svix-timestamp`, as sent.
    pub timestamp: &'a str,
    /// `svix-signature`: space-separated `v1,...` entries.
    pub signature: &'a str,
}

impl<'a> Headers<'a> {
    /// Reads the headers through `get` (a header map's lookup by lower-case name), the
    /// `svix-` names first, then the `webhook-` ones.
    pub fn read(get: impl Fn(&str) -> Option<&'a str>) -> Result<Self, SvixError> {
        let one = |name: &'static str| {
            get(&format!("svix-{name}")).or_else(|| get(&format!("webhook-{name}"))).ok_or(SvixError::MissingHeader(
                match name {
                    "id" => "svix-id",
                    "timestamp" => "svix-timestamp",
                    _ => "svix-signature",
                },
            ))
        };
        Ok(Headers { id: one("id")?, timestamp: one("timestamp")?, signature: one("signature")? })
    }
}

/// The `v1,...` entry for a message: what a sender puts in `svix-signature`.
pub fn sign(secret: &Secret, id: &str, timestamp: i64, body: &[u8]) -> String {
    format!("v1,{}", STANDARD.encode(secret.tag(id, &timestamp.to_string(), body)))
}

/// Checks a webhook: the id's shape, the timestamp within [`TOLERANCE_SECS`] of `now_secs`,
/// then one `v1` entry matching one of `secrets`. Returns the timestamp.
pub fn verify(secrets: &[Secret], h: &Headers<'_>, body: &[u8], now_secs: i64) -> Result<i64, SvixError> {
    if h.id.is_empty() || h.id.len() > MAX_ID || !h.id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(SvixError::BadId);
    }
    let ts: i64 = h.timestamp.trim().parse().map_err(|_| SvixError::BadTimestamp)?;
    let age = now_secs.saturating_sub(ts);
    if age > TOLERANCE_SECS {
        return Err(SvixError::TooOld(age));
    }
    if age < -TOLERANCE_SECS {
        return Err(SvixError::TooNew(age.saturating_neg()));
    }
    let sent: Vec<Vec<u8>> = h
        .signature
        .split(' ')
        .filter_map(|e| e.strip_prefix("v1,"))
        .filter_map(|b64| STANDARD.decode(b64).ok())
        .collect();
    if sent.is_empty() {
        return Err(SvixError::NoSignature);
    }
    let mut ok = subtle::Choice::from(0);
    for secret in secrets {
        let want = secret.tag(h.id, h.timestamp, body);
        for got in &sent {
            // `ct_eq` on slices of different lengths is false (in constant time too).
            ok |= want.ct_eq(got);
        }
    }
    if bool::from(ok) {
        Ok(ts)
    } else {
        Err(SvixError::Mismatch)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const TS: i64 = 1649367553;
    const BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const SIG: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    fn headers<'a>(ts: &'a str, sig: &'a str) -> Headers<'a> {
        Headers { id: ID, timestamp: ts, signature: sig }
    }

    /// Svix's published test vector.
    #[test]
    fn svix_test_vector() {
        let secret: Secret = SECRET.parse().unwrap();
        assert_eq!(sign(&secret, ID, TS, BODY), SIG);
        let ts = TS.to_string();
        assert_eq!(verify(std::slice::from_ref(&secret), &headers(&ts, SIG), BODY, TS), Ok(TS));
        // The secret without its prefix is the same secret; its whsec_ form round-trips.
        assert_eq!(SECRET.trim_start_matches("whsec_").parse::<Secret>().unwrap(), secret);
        assert_eq!(secret.to_whsec(), SECRET);
        // One byte of the body, the id or the timestamp changed: refused.
        assert_eq!(verify(std::slice::from_ref(&secret), &headers(&ts, SIG), b"{}", TS), Err(SvixError::Mismatch));
        let other = Headers { id: "msg_other", timestamp: &ts, signature: SIG };
        assert_eq!(verify(std::slice::from_ref(&secret), &other, BODY, TS), Err(SvixError::Mismatch));
        let later = (TS + 1).to_string();
        assert_eq!(verify(&[secret], &headers(&later, SIG), BODY, TS), Err(SvixError::Mismatch));
    }

    /// During a rotation the header carries an entry per secret, and the node may hold
    /// either secret or both: any one match is enough, in any position.
    #[test]
    fn rotation_two_entries_two_secrets() {
        let old: Secret = SECRET.parse().unwrap();
        let new = Secret::from_bytes(b"another key of the same endpoint");
        let both = format!("{} {}", sign(&new, ID, TS, BODY), sign(&old, ID, TS, BODY));
        let ts = TS.to_string();
        for secrets in [vec![old.clone()], vec![new.clone()], vec![new.clone(), old.clone()]] {
            assert_eq!(verify(&secrets, &headers(&ts, &both), BODY, TS), Ok(TS));
        }
        // The node has moved to the new secret only; a sender still on the old one fails.
        assert_eq!(verify(&[new], &headers(&ts, SIG), BODY, TS), Err(SvixError::Mismatch));
        // Unknown versions and garbage entries are skipped, not errors.
        let mixed = format!("v2,abc v1,!!! {SIG}");
        assert_eq!(verify(std::slice::from_ref(&old), &headers(&ts, &mixed), BODY, TS), Ok(TS));
        assert_eq!(verify(std::slice::from_ref(&old), &headers(&ts, "v2,abc"), BODY, TS), Err(SvixError::NoSignature));
        assert_eq!(verify(&[], &headers(&ts, SIG), BODY, TS), Err(SvixError::Mismatch));
    }

    /// Exactly 300 s either way is accepted; 301 is refused.
    #[test]
    fn tolerance_edges() {
        let secret: Secret = SECRET.parse().unwrap();
        let ts = TS.to_string();
        let check = |now| verify(std::slice::from_ref(&secret), &headers(&ts, SIG), BODY, now);
        assert_eq!(check(TS + 300), Ok(TS));
        assert_eq!(check(TS - 300), Ok(TS));
        assert_eq!(check(TS + 301), Err(SvixError::TooOld(301)));
        assert_eq!(check(TS - 301), Err(SvixError::TooNew(301)));
        assert_eq!(check(i64::MAX), Err(SvixError::TooOld(i64::MAX - TS)));
        assert_eq!(check(i64::MIN), Err(SvixError::TooNew(i64::MAX)));
        for bad in ["", "1649367553.0", "abc", "99999999999999999999999"] {
            assert_eq!(
                verify(std::slice::from_ref(&secret), &headers(bad, SIG), BODY, TS),
                Err(SvixError::BadTimestamp)
            );
        }
    }

    #[test]
    fn headers_by_either_name_and_bad_ids() {
        let svix = [("svix-id", "a"), ("svix-timestamp", "1"), ("svix-signature", "v1,x")];
        let get = |name: &str| svix.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
        assert_eq!(Headers::read(get).unwrap(), Headers { id: "a", timestamp: "1", signature: "v1,x" });
        let std = [("webhook-id", "b"), ("webhook-timestamp", "2"), ("webhook-signature", "v1,y")];
        let get = |name: &str| std.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
        assert_eq!(Headers::read(get).unwrap(), Headers { id: "b", timestamp: "2", signature: "v1,y" });
        let partial = [("svix-id", "a"), ("webhook-timestamp", "2")];
        let get = |name: &str| partial.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
        assert_eq!(Headers::read(get), Err(SvixError::MissingHeader("svix-signature")));
        let secret: Secret = SECRET.parse().unwrap();
        let ts = TS.to_string();
        let long = "m".repeat(257);
        for id in ["", "msg with space", long.as_str(), "msg_é"] {
            let h = Headers { id, timestamp: &ts, signature: SIG };
            assert_eq!(verify(std::slice::from_ref(&secret), &h, BODY, TS), Err(SvixError::BadId), "{id:?}");
        }
        for bad in ["", "whsec_", "whsec_not base64!", "   "] {
            assert!(bad.parse::<Secret>().is_err(), "{bad:?}");
        }
    }
}
