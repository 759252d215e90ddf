//! Text out of a PDF (a resume): lopdf, pure Rust, on a thread of its own under
//! `catch_unwind` and a time limit; `pdftotext` (poppler-utils) when lopdf fails or finds
//! nothing and poppler is installed. Scanned (image-only), empty, encrypted, corrupt and
//! over-size PDFs get errors that say so.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// Why no text came out.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PdfError {
    /// Bigger than the configured limit.
    #[error("the PDF is {0} bytes; at most {1} are accepted")]
    TooLarge(usize, usize),
    /// No `%PDF-` header.
    #[error("not a PDF (no %PDF- header)")]
    NotPdf,
    /// Password-protected.
    #[error("the PDF is encrypted; upload an unprotected copy or paste the text")]
    Encrypted,
    /// The file does not parse.
    #[error("the PDF is corrupt or unsupported ({0}); paste the text instead")]
    Corrupt(String),
    /// It parsed, but holds no text (a scan, or empty pages).
    #[error("no text found in the PDF (a scanned image?); paste the text instead")]
    NoText,
    /// Extraction took longer than allowed.
    #[error("reading the PDF took too long; paste the text instead")]
    TimedOut,
    /// Too many extractions still running (stuck ones included).
    #[error("the PDF reader is busy; try again shortly")]
    Busy,
}

/// Limits for one extraction.
#[derive(Clone, Copy, Debug)]
pub struct PdfLimits {
    /// Largest file accepted.
    pub max_bytes: usize,
    /// Time for each extractor.
    pub timeout: Duration,
    /// Pages read at most.
    pub max_pages: u32,
}

impl Default for PdfLimits {
    fn default() -> Self {
        PdfLimits { max_bytes: 5 << 20, timeout: Duration::from_secs(5), max_pages: 30 }
    }
}

/// lopdf threads still running: a PDF that hangs the parser keeps its thread (a thread
/// cannot be killed), so at most this many may be stuck before new PDFs are refused.
static RUNNING: AtomicUsize = AtomicUsize::new(0);
const MAX_RUNNING: usize = 4;

/// Whether `bytes` look like a PDF (`%PDF-` in the first KiB, as readers accept).
pub fn is_pdf(bytes: &[u8]) -> bool {
    bytes[..bytes.len().min(1024)].windows(5).any(|w| w == b"%PDF-")
}

/// The text of `bytes`, a PDF. Blocking: call it from `spawn_blocking`.
pub fn extract_text(bytes: &[u8], limits: PdfLimits) -> Result<String, PdfError> {
    if bytes.len() > limits.max_bytes {
        return Err(PdfError::TooLarge(bytes.len(), limits.max_bytes));
    }
    if !is_pdf(bytes) {
        return Err(PdfError::NotPdf);
    }
    let first = with_lopdf(bytes, limits);
    match first {
        Ok(t) => Ok(t),
        Err(PdfError::Encrypted | PdfError::Busy) => first,
        Err(e) => match with_pdftotext(bytes, limits) {
            Some(Ok(t)) => Ok(t),
            Some(Err(PdfError::Encrypted)) => Err(PdfError::Encrypted),
            _ => Err(e),
        },
    }
}

fn has_text(t: &str) -> bool {
    t.chars().filter(|c| c.is_alphanumeric()).count() >= 3
}

fn with_lopdf(bytes: &[u8], limits: PdfLimits) -> Result<String, PdfError> {
    if RUNNING.fetch_add(1, Ordering::SeqCst) >= MAX_RUNNING {
        RUNNING.fetch_sub(1, Ordering::SeqCst);
        return Err(PdfError::Busy);
    }
    let (tx, rx) = mpsc::sync_channel(1);
    let owned: Arc<[u8]> = bytes.into();
    let spawned = std::thread::Builder::new().name("pdf-text".into()).spawn(move || {
        let out = catch_unwind(AssertUnwindSafe(|| lopdf_text(&owned, limits.max_pages)))
            .unwrap_or_else(|_| Err(PdfError::Corrupt("the PDF parser failed".into())));
        RUNNING.fetch_sub(1, Ordering::SeqCst);
        let _ = tx.send(out);
    });
    if spawned.is_err() {
        RUNNING.fetch_sub(1, Ordering::SeqCst);
        return Err(PdfError::Busy);
    }
    match rx.recv_timeout(limits.timeout) {
        Ok(r) => r,
        Err(_) => Err(PdfError::TimedOut),
    }
}

fn lopdf_text(bytes: &[u8], max_pages: u32) -> Result<String, PdfError> {
    // An encrypted PDF that lopdf cannot open with the empty password fails somewhere; say
    // why it failed, not where.
    let declares_encryption = bytes.windows(8).any(|w| w == b"/Encrypt");
    lopdf_text_inner(bytes, max_pages).map_err(|e| if declares_encryption { PdfError::Encrypted } else { e })
}

fn lopdf_text_inner(bytes: &[u8], max_pages: u32) -> Result<String, PdfError> {
    let doc = lopdf::Document::load_mem(bytes).map_err(|e| PdfError::Corrupt(e.to_string()))?;
    if doc.is_encrypted() {
        return Err(PdfError::Encrypted);
    }
    let pages: Vec<u32> = doc.get_pages().keys().copied().take(max_pages as usize).collect();
    if pages.is_empty() {
        return Err(PdfError::NoText);
    }
    let mut text = String::new();
    // A page that does not decode loses its text, not the others'.
    for t in doc.extract_text_chunks(&pages).into_iter().flatten() {
        text.push_str(&t);
        text.push('\n');
    }
    let text = tidy(&text);
    if has_text(&text) {
        Ok(text)
    } else {
        Err(PdfError::NoText)
    }
}

/// Lines trimmed, runs of blank lines squeezed.
fn tidy(t: &str) -> String {
    let mut out = String::with_capacity(t.len());
    let mut blank = 0;
    for line in t.lines().map(str::trim_end) {
        if line.trim().is_empty() {
            blank += 1;
            if blank > 1 {
                continue;
            }
        } else {
            blank = 0;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.trim().to_owned()
}

/// `pdftotext` from poppler-utils, if installed: `None` when it is not.
fn with_pdftotext(bytes: &[u8], limits: PdfLimits) -> Option<Result<String, PdfError>> {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "arena-pdf-{}-{}.pdf",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, bytes).ok()?;
    let child = Command::new("pdftotext")
        .args(["-q", "-enc", "UTF-8", "-l", &limits.max_pages.to_string()])
        .arg(&path)
        .arg("-")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let out = match child {
        Ok(mut c) => {
            let start = Instant::now();
            // Read stdout on a thread so a full pipe cannot stall the child.
            let stdout = c.stdout.take();
            let reader = std::thread::spawn(move || {
                let mut buf = Vec::new();
                if let Some(mut s) = stdout {
                    use std::io::Read;
                    let _ = s.by_ref().take(16 << 20).read_to_end(&mut buf);
                }
                buf
            });
            let status = loop {
                match c.try_wait() {
                    Ok(Some(s)) => break Some(s),
                    Ok(None) if start.elapsed() < limits.timeout => std::thread::sleep(Duration::from_millis(10)),
                    _ => {
                        let _ = c.kill();
                        let _ = c.wait();
                        break None;
                    }
                }
            };
            let text = reader.join().unwrap_or_default();
            match status {
                None => Some(Err(PdfError::TimedOut)),
                // poppler's exit code 3: permission (encrypted); 1: could not open.
                Some(s) if s.code() == Some(3) => Some(Err(PdfError::Encrypted)),
                Some(s) if !s.success() => Some(Err(PdfError::Corrupt(format!("pdftotext exited with {s}")))),
                Some(_) => {
                    let t = tidy(&String::from_utf8_lossy(&text));
                    Some(if has_text(&t) { Ok(t) } else { Err(PdfError::NoText) })
                }
            }
        }
        Err(_) => None, // not installed
    };
    let _ = std::fs::remove_file(&path);
    out
}

#[cfg(test)]
mod fallback_tests {
    use super::*;

    /// A one-page PDF whose page draws a form XObject (`/X1 Do`) that holds the text, as
    /// some resume builders write them: poppler follows the XObject, lopdf's page text
    /// extraction reads only the page's own content stream.
    fn pdf_with_form_xobject(text: &str) -> Vec<u8> {
        let inner = format!("BT /F1 12 Tf 72 720 Td ({text}) Tj ET");
        let page = "q /X1 Do Q";
        let objects = [
            "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
            "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 5 0 R /Resources << /XObject << /X1 6 0 R >> >> >>"
                .to_owned(),
            "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".to_owned(),
            format!("<< /Length {} >>\nstream\n{page}\nendstream", page.len()),
            format!(
                "<< /Type /XObject /Subtype /Form /BBox [0 0 612 792] /Resources << /Font << /F1 4 0 R >> >> /Length {} >>\nstream\n{inner}\nendstream",
                inner.len()
            ),
        ];
        let mut out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
        let mut offsets = Vec::new();
        for (i, o) in objects.iter().enumerate() {
            offsets.push(out.len());
            out.extend_from_slice(format!("{} 0 obj\n{o}\nendobj\n", i + 1).as_bytes());
        }
        let xref = out.len();
        out.extend_from_slice(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes());
        for off in offsets {
            out.extend_from_slice(format!("{off:010} 00000 n \n").as_bytes());
        }
        out.extend_from_slice(
            format!("trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n", objects.len() + 1).as_bytes(),
        );
        out
    }

    #[test]
    fn pdftotext_reads_what_lopdf_cannot() {
        if Command::new("pdftotext").arg("-v").output().is_err() {
            assert!(
                std::env::var_os("ARENA_REQUIRE_TOOLCHAINS").is_none(),
                "pdftotext (poppler-utils) is missing and ARENA_REQUIRE_TOOLCHAINS is set"
            );
            eprintln!("SKIPPED: pdftotext (poppler-utils) is not installed");
            return;
        }
        let bytes = pdf_with_form_xobject("Fallback Reader Works");
        let limits = PdfLimits { max_bytes: 1 << 20, timeout: Duration::from_secs(20), max_pages: 30 };
        let lopdf = with_lopdf(&bytes, limits);
        let poppler = with_pdftotext(&bytes, limits);
        assert!(
            matches!(&poppler, Some(Ok(t)) if t.contains("Fallback Reader Works")),
            "pdftotext did not read the fixture: {poppler:?}"
        );
        assert!(
            !matches!(&lopdf, Ok(t) if t.contains("Fallback Reader Works")),
            "lopdf reads this fixture, so it no longer reaches the fallback: pick one it cannot read"
        );
        let t = extract_text(&bytes, limits);
        assert!(matches!(&t, Ok(t) if t.contains("Fallback Reader Works")), "{t:?} (lopdf said {lopdf:?})");
    }
}
