//! Reasons for errors that carry a serde_json error, written without serde_json's `Display`
//! in the WASM module. That `Display` brings serde_json's messages and, for its I/O variant,
//! std's texts for every `io::ErrorKind` (~2.5 KiB of the gzipped module), for errors the
//! module meets only on malformed input. There a JSON error says what kind of error it is and
//! where (line and column); native builds keep serde_json's own message.
//! See `docs/decisions/wasm-json-error-messages.md`.

use serde_json::error::Category;
use yrs::encoding::read::{Error as ReadError, MalformedKind};

/// `e` as serde_json words it, or in short in the WASM module.
pub(crate) fn json(e: &serde_json::Error) -> String {
    if cfg!(target_arch = "wasm32") {
        json_short(e)
    } else {
        e.to_string()
    }
}

/// A yrs decoding error as yrs words it, the JSON one in short in the WASM module.
pub(crate) fn yrs_read(e: &ReadError) -> String {
    if cfg!(target_arch = "wasm32") {
        yrs_read_short(e)
    } else {
        e.to_string()
    }
}

fn json_short(e: &serde_json::Error) -> String {
    let kind = match e.classify() {
        Category::Io => "I/O error",
        Category::Syntax => "syntax error",
        Category::Data => "data error",
        Category::Eof => "unexpected end of input",
    };
    format!("{kind} at line {} column {}", e.line(), e.column())
}

/// yrs's messages for its decoding errors (yrs 0.28 `encoding::read::Error`), spelled out:
/// calling its `Display` would bring serde_json's along.
fn yrs_read_short(e: &ReadError) -> String {
    match e {
        ReadError::InvalidVarInt => "failed to decode variable length integer".into(),
        ReadError::EndOfBuffer(n) => {
            format!("while trying to read more data (expected: {n} bytes), an unexpected end of buffer was reached")
        }
        ReadError::UnexpectedValue => "while reading, an unexpected value was found".into(),
        ReadError::NotEnoughMemory(e) => format!("failed to allocate memory: {e}"),
        ReadError::InvalidJSON(e) => format!("JSON parsing error: {}", json_short(e)),
        ReadError::TypeMismatch(t) => format!("couldn't deserialize to target type of {t}"),
        ReadError::Malformed(MalformedKind::Utf8) => "malformed update: invalid UTF-8 sequence".into(),
        ReadError::Malformed(MalformedKind::EmptyBlock) => "malformed update: block cannot have 0 length".into(),
        ReadError::Custom(s) => s.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yrs_messages_spelled_out_as_yrs_words_them() {
        let bad_json = serde_json::from_str::<serde::de::IgnoredAny>("{\"a\":\n [1,").unwrap_err();
        let short = json_short(&bad_json);
        assert_eq!(short, "unexpected end of input at line 2 column 4");
        let others = [
            ReadError::InvalidVarInt,
            ReadError::EndOfBuffer(7),
            ReadError::UnexpectedValue,
            ReadError::NotEnoughMemory(Vec::<u8>::new().try_reserve(usize::MAX).unwrap_err()),
            ReadError::TypeMismatch("u8"),
            ReadError::Malformed(MalformedKind::Utf8),
            ReadError::Malformed(MalformedKind::EmptyBlock),
            ReadError::Custom("x".into()),
        ];
        for e in others {
            assert_eq!(yrs_read_short(&e), e.to_string());
        }
        let theirs = format!("JSON parsing error: {bad_json}");
        let e = ReadError::InvalidJSON(bad_json);
        assert_eq!(yrs_read_short(&e), format!("JSON parsing error: {short}"));
        assert_eq!(yrs_read(&e), theirs, "native builds: serde_json's words");
    }
}
