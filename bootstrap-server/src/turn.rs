//! TURN credentials the node mints per room, the TURN REST API convention (coturn's
//! `use-auth-secret`): the username is `expiry:label` (expiry in Unix seconds), the password
//! is base64(HMAC-SHA1(shared secret, username)). The TURN server checks both without asking
//! the node; a leaked credential dies at its expiry. See docs/call.md for coturn's side.

use base64::Engine as _;
use hmac::{Hmac, Mac};

/// The operator's TURN settings (`--turn-url`, `--turn-secret`, `--turn-ttl-s`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TurnConfig {
    /// TURN server URLs handed (with per-room credentials) to room members, e.g.
    /// `turn:turn.example.org:3478?transport=udp` (repeatable, or comma-separated in the env
    /// var). Needs `--turn-secret`.
    #[arg(long = "turn-url", env = "ARENA_TURN_URLS", value_delimiter = ',', requires = "turn_secret")]
    pub turn_urls: Vec<String>,

    /// The secret shared with the TURN server (coturn's `static-auth-secret`).
    #[arg(long, env = "ARENA_TURN_SECRET", hide_env_values = true)]
    pub turn_secret: Option<TurnSecret>,

    /// How long a minted TURN credential is valid, in seconds.
    #[arg(long, env = "ARENA_TURN_TTL_S", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(60..=86_400 * 7))]
    pub turn_ttl_s: u64,
}

/// The TURN shared secret; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct TurnSecret(String);

impl std::fmt::Debug for TurnSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TurnSecret(<redacted>)")
    }
}

impl std::str::FromStr for TurnSecret {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.trim().len() < 16 {
            return Err("the TURN secret must be at least 16 characters (e.g. `openssl rand -hex 24`)".into());
        }
        Ok(TurnSecret(s.trim().to_owned()))
    }
}

/// One TURN credential: the `RTCIceServer` fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TurnCredential {
    pub(crate) username: String,
    pub(crate) credential: String,
}

impl TurnConfig {
    /// Whether TURN is configured.
    pub(crate) fn enabled(&self) -> bool {
        !self.turn_urls.is_empty() && self.turn_secret.is_some()
    }

    /// A credential for `label` (the room, and who in it) valid until `now_s + ttl`.
    pub(crate) fn mint(&self, label: &str, now_s: u64) -> Option<TurnCredential> {
        let secret = self.turn_secret.as_ref()?;
        Some(credential(&secret.0, label, now_s.saturating_add(self.turn_ttl_s)))
    }
}

/// The TURN REST API credential for `label` expiring at `expiry_s`.
fn credential(secret: &str, label: &str, expiry_s: u64) -> TurnCredential {
    // A colon would end the expiry early in the TURN server's parse.
    let label: String = label.chars().filter(|c| *c != ':').take(64).collect();
    let username = format!("{expiry_s}:{label}");
    #[allow(clippy::expect_used)] // HMAC takes keys of any length: new_from_slice cannot fail.
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key length");
    mac.update(username.as_bytes());
    let credential = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    TurnCredential { username, credential }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// RFC 2202's HMAC-SHA1 test case 2 (key "Jefe"), through the credential's encoding:
    /// the username is the message, so build one that equals the RFC's data.
    #[test]
    fn hmac_sha1_matches_rfc_2202() {
        // Test case 2: key = "Jefe", data = "what do ya want for nothing?",
        // digest = effcdf6ae5eb2fa2d27416d5f184df9c259a7c79.
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
    }

    /// A vector computed independently with coturn's documented recipe:
    /// `echo -n "1700003600:room" | openssl dgst -binary -sha1 -hmac "0123456789abcdef" | base64`.
    #[test]
    fn credential_follows_the_turn_rest_convention() {
        let c = credential("0123456789abcdef", "ro:om", 1_700_003_600);
        assert_eq!(c.username, "1700003600:room");
        assert_eq!(c.credential, "K/AJHUkdidGZdiLxshK0QwVmPng=");
        let cfg = TurnConfig {
            turn_urls: vec!["turn:127.0.0.1:3478".into()],
            turn_secret: Some("0123456789abcdef".parse().unwrap()),
            turn_ttl_s: 3600,
        };
        assert!(cfg.enabled());
        assert_eq!(cfg.mint("room", 1_700_000_000), Some(c));
        assert!("short".parse::<TurnSecret>().is_err());
        assert_eq!(format!("{:?}", cfg.turn_secret), "Some(TurnSecret(<redacted>))");
    }
}
