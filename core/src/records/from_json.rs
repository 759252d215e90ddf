//! Reading the records from JSON by hand (see [`crate::json`]), as their derived serde
//! `Deserialize` reads them.

use std::collections::BTreeMap;

use super::{AnalysisRecord, Meta, Participant, RunRecord, RunStatus, VersionCause, VersionMeta, VoteRecord};
use crate::grant::Role;
use crate::json::Json;

/// A record read from its JSON: what serde's derived `Deserialize` accepts (not the array
/// form serde also takes for a struct), without a serde_json reader per record type in the
/// WASM module.
pub(crate) trait FromJson: Sized {
    fn from_json(v: &Json) -> Option<Self>;
}

/// A required field.
fn req<T>(v: &Json, key: &str, read: impl FnOnce(&Json) -> Option<T>) -> Option<T> {
    read(v.get(key)?)
}

/// A field that may be missing (`Option` fields, records with defaults); when present it must
/// read.
fn or_default<T: Default>(v: &Json, key: &str, read: impl FnOnce(&Json) -> Option<T>) -> Option<T> {
    v.get(key).map_or(Some(T::default()), read)
}

fn string(v: &Json) -> Option<String> {
    v.as_str().map(str::to_owned)
}

fn u64(v: &Json) -> Option<u64> {
    v.as_u64()
}

fn strings(v: &Json) -> Option<Vec<String>> {
    v.as_array()?.iter().map(string).collect()
}

impl FromJson for Role {
    fn from_json(v: &Json) -> Option<Self> {
        Some(match v.as_str()? {
            "host" => Role::Host,
            "candidate" => Role::Candidate,
            "observer" => Role::Observer,
            _ => return None,
        })
    }
}

impl Meta {
    /// The `meta` keys [`Meta`] reads: the only ones `RoomDoc::meta` converts.
    pub(crate) const KEYS: [&'static str; 6] =
        ["language", "title", "question", "analyzerThreshold", "analyzerRound", "createdAt"];
}

impl FromJson for Meta {
    fn from_json(v: &Json) -> Option<Self> {
        v.as_object()?;
        Some(Meta {
            language: or_default(v, "language", string)?,
            title: or_default(v, "title", string)?,
            question: or_default(v, "question", string)?,
            analyzer_threshold: or_default(v, "analyzerThreshold", |t| {
                t.as_array()?.iter().map(Role::from_json).collect()
            })?,
            analyzer_round: or_default(v, "analyzerRound", u64)?,
            created_at: or_default(v, "createdAt", u64)?,
        })
    }
}

impl FromJson for Participant {
    fn from_json(v: &Json) -> Option<Self> {
        Some(Participant {
            name: req(v, "name", string)?,
            role: req(v, "role", Role::from_json)?,
            public_key: req(v, "publicKey", string)?,
            joined_at: req(v, "joinedAt", u64)?,
        })
    }
}

impl FromJson for VoteRecord {
    fn from_json(v: &Json) -> Option<Self> {
        Some(VoteRecord {
            round: req(v, "round", u64)?,
            enabled: req(v, "enabled", Json::as_bool)?,
            signature: req(v, "signature", string)?,
        })
    }
}

impl FromJson for AnalysisRecord {
    fn from_json(v: &Json) -> Option<Self> {
        Some(AnalysisRecord {
            round: req(v, "round", u64)?,
            backend: req(v, "backend", string)?,
            findings: req(v, "findings", strings)?,
            created_at: req(v, "createdAt", u64)?,
        })
    }
}

impl FromJson for RunStatus {
    fn from_json(v: &Json) -> Option<Self> {
        Some(match v.as_str()? {
            "running" => RunStatus::Running,
            "finished" => RunStatus::Finished,
            "timed_out" => RunStatus::TimedOut,
            "failed" => RunStatus::Failed,
            _ => return None,
        })
    }
}

impl FromJson for RunRecord {
    fn from_json(v: &Json) -> Option<Self> {
        Some(RunRecord {
            id: req(v, "id", string)?,
            by: req(v, "by", string)?,
            language: req(v, "language", string)?,
            status: req(v, "status", RunStatus::from_json)?,
            stdout: req(v, "stdout", string)?,
            stderr: req(v, "stderr", string)?,
            exit_code: or_default(v, "exitCode", |c| match c {
                Json::Null => Some(None),
                c => c.as_i32().map(Some),
            })?,
            cpu_ms: req(v, "cpuMs", u64)?,
            wall_ms: req(v, "wallMs", u64)?,
            at: req(v, "at", u64)?,
        })
    }
}

impl FromJson for VersionCause {
    fn from_json(v: &Json) -> Option<Self> {
        Some(match v.as_str()? {
            "run" => VersionCause::Run,
            "restore" => VersionCause::Restore,
            "manual" => VersionCause::Manual,
            _ => return None,
        })
    }
}

impl FromJson for VersionMeta {
    fn from_json(v: &Json) -> Option<Self> {
        Some(VersionMeta {
            id: req(v, "id", string)?,
            label: req(v, "label", string)?,
            cause: req(v, "cause", VersionCause::from_json)?,
            at: req(v, "at", u64)?,
            by: req(v, "by", string)?,
            state_vector: req(v, "stateVector", string)?,
            heads: req(v, "heads", |h| {
                // Inserted one by one, not collected: `collect` into a `BTreeMap` brings a
                // sort and a bulk build per map type into the WASM module.
                let mut heads = BTreeMap::new();
                for (k, n) in h.as_object()? {
                    heads.insert(k.clone(), n.as_u64()?);
                }
                Some(heads)
            })?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Debug;

    use serde::de::DeserializeOwned;
    use serde::Serialize;
    use yrs::Any;

    use super::*;

    /// Our reader and serde's derived one agree on `text`: both fail, or both read the same.
    fn agree<T: FromJson + DeserializeOwned + PartialEq + Debug>(texts: &[&str]) {
        for text in texts {
            let ours = Json::parse(text).and_then(|v| T::from_json(&v));
            let theirs = serde_json::from_str::<T>(text).ok();
            assert_eq!(ours, theirs, "{} from {text}", std::any::type_name::<T>());
        }
    }

    fn written<T: Serialize>(v: &T) -> String {
        serde_json::to_string(v).unwrap()
    }

    #[test]
    fn readers_agree_with_serde() {
        let meta = Meta {
            language: "python".into(),
            title: "t \"q\" é\n".into(),
            question: String::new(),
            analyzer_threshold: vec![Role::Host, Role::Observer],
            analyzer_round: 3,
            created_at: 1_700_000_000_000,
        };
        agree::<Meta>(&[
            &written(&meta),
            r#"{}"#,
            r#"{"language":"go","extra":[1,{"a":null}]}"#,
            r#"{"analyzerRound":-1}"#,
            r#"{"analyzerRound":1.5}"#,
            r#"{"analyzerRound":2.0}"#,
            r#"{"analyzerRound":-0}"#,
            r#"{"createdAt":18446744073709551615}"#,
            r#"{"createdAt":18446744073709551616}"#,
            r#"{"title":null}"#,
            r#"{"title":5}"#,
            r#"{"analyzerThreshold":["host","nobody"]}"#,
            r#"{"analyzerThreshold":"host"}"#,
            r#"5"#,
            r#""x""#,
            r#"null"#,
        ]);
        let p = Participant { name: "Ada".into(), role: Role::Candidate, public_key: "ab".repeat(32), joined_at: 7 };
        agree::<Participant>(&[
            &written(&p),
            r#"{"name":"A","role":"host","publicKey":"k","joinedAt":1,"colour":"red"}"#,
            r#"{"name":"A","role":"host","publicKey":"k"}"#,
            r#"{"name":"A","role":"Host","publicKey":"k","joinedAt":1}"#,
            r#"{"name":"A","role":"host","publicKey":"k","joinedAt":"1"}"#,
            r#"{"name":"A","role":null,"publicKey":"k","joinedAt":1}"#,
            r#"[]"#,
        ]);
        let v = VoteRecord { round: 2, enabled: true, signature: "00".repeat(64) };
        agree::<VoteRecord>(&[
            &written(&v),
            r#"{"round":1,"enabled":1,"signature":"s"}"#,
            r#"{"round":1,"enabled":false,"signature":"s"}"#,
            r#"{"round":1,"signature":"s"}"#,
        ]);
        let a = AnalysisRecord {
            round: 1,
            backend: "offline".into(),
            findings: vec!["x".into(), "y".into()],
            created_at: 9,
        };
        agree::<AnalysisRecord>(&[
            &written(&a),
            r#"{"round":1,"backend":"b","findings":[],"createdAt":1}"#,
            r#"{"round":1,"backend":"b","findings":["a",2],"createdAt":1}"#,
            r#"{"round":1,"backend":"b","findings":null,"createdAt":1}"#,
        ]);
        let mut r = RunRecord {
            id: "r1".into(),
            by: "ab".into(),
            language: "python".into(),
            status: RunStatus::TimedOut,
            stdout: "out\u{0}\u{1f}\u{7f}".into(),
            stderr: "\\".into(),
            exit_code: Some(-3),
            cpu_ms: 1,
            wall_ms: 2,
            at: 3,
        };
        let with_code = written(&r);
        r.exit_code = None;
        let run = |status: &str, code: &str| {
            format!(
                r#"{{"id":"i","by":"b","language":"l","status":{status},"stdout":"","stderr":""{code},"cpuMs":1,"wallMs":2,"at":3}}"#
            )
        };
        agree::<RunRecord>(&[
            &with_code,
            &written(&r),
            &run(r#""finished""#, ""),
            &run(r#""failed""#, r#","exitCode":null"#),
            &run(r#""timed_out""#, r#","exitCode":2147483647"#),
            &run(r#""finished""#, r#","exitCode":2147483648"#),
            &run(r#""finished""#, r#","exitCode":-2147483648"#),
            &run(r#""finished""#, r#","exitCode":-2147483649"#),
            &run(r#""finished""#, r#","exitCode":1.0"#),
            &run(r#""timedOut""#, ""),
            &run("0", ""),
        ]);
        let vm = VersionMeta {
            id: "v1-abcd".into(),
            label: "run 1".into(),
            cause: VersionCause::Restore,
            at: 5,
            by: "ab".into(),
            state_vector: "0100".into(),
            heads: BTreeMap::from([("aa".into(), 3), ("bb".into(), 0)]),
        };
        let version = |cause: &str, heads: &str| {
            format!(r#"{{"id":"v","label":"l","cause":{cause},"at":1,"by":"b","stateVector":"","heads":{heads}}}"#)
        };
        agree::<VersionMeta>(&[
            &written(&vm),
            &version(r#""run""#, "{}"),
            &version(r#""manual""#, r#"{"a":1,"a":2}"#),
            &version(r#""manual""#, r#"{"a":-1}"#),
            &version(r#""manual""#, r#"[]"#),
            &version(r#""auto""#, "{}"),
        ]);
    }

    /// A record a stock Yjs client wrote as a plain object reads as its JSON would.
    #[test]
    fn reads_plain_objects() {
        let any = Any::from(std::collections::HashMap::from([
            ("name".to_owned(), Any::from("Ada")),
            ("role".to_owned(), Any::from("host")),
            ("publicKey".to_owned(), Any::from("k")),
            ("joinedAt".to_owned(), Any::from(12.0)),
        ]));
        let p = Participant::from_json(&Json::from_any(&any).unwrap()).unwrap();
        assert_eq!(p.joined_at, 12);
        let mut text = String::new();
        any.to_json(&mut text);
        assert_eq!(serde_json::from_str::<Participant>(&text).ok(), Some(p));
    }
}
