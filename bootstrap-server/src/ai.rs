//! AI analyzers: an offline code analyzer (tree-sitter), an offline resume analyzer (a
//! skills taxonomy and BM25), PDF text extraction, and an OpenAI-compatible chat-completions
//! client that answers instead of the offline analyzers when a model is configured, with the
//! offline analyzers as its fallback.

pub mod code;
pub mod pdf;
pub mod resume;
