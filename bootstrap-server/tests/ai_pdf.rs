//! PDF text: PDFs written by hand in the test (a catalog, one page, a Helvetica font and a
//! content stream, with a correct cross-reference table), and the bad ones.

#![allow(clippy::panic, reason = "tests fail loudly")]

use std::time::Duration;

use arena_bootstrap::ai::pdf::{extract_text, PdfError, PdfLimits};

/// A one-page PDF whose content stream is `content`; `trailer_extra` goes into the trailer.
pub fn pdf(content: &str, trailer_extra: &str) -> Vec<u8> {
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 5 0 R /Resources << /Font << /F1 4 0 R >> >> >>"
            .to_owned(),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".to_owned(),
        format!("<< /Length {} >>\nstream\n{content}\nendstream", content.len() + 1),
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
        format!("trailer\n<< /Size {} /Root 1 0 R {trailer_extra}>>\nstartxref\n{xref}\n%%EOF\n", objects.len() + 1)
            .as_bytes(),
    );
    out
}

/// A PDF with these lines of text.
pub fn text_pdf(lines: &[&str]) -> Vec<u8> {
    let mut c = String::from("BT /F1 11 Tf 72 720 Td 14 TL\n");
    for l in lines {
        let esc = l.replace('\\', "\\\\").replace('(', "\\(").replace(')', "\\)");
        c.push_str(&format!("({esc}) Tj T*\n"));
    }
    c.push_str("ET");
    pdf(&c, "")
}

fn limits() -> PdfLimits {
    PdfLimits { max_bytes: 1 << 20, timeout: Duration::from_secs(20), max_pages: 30 }
}

#[test]
fn text_comes_out() {
    let bytes =
        text_pdf(&["Dana Reyes", "Led the migration of 40 services to k8s (Kubernetes).", "Skills: Rust, Postgres"]);
    assert!(bytes.len() < 1200, "{}", bytes.len());
    let t = extract_text(&bytes, limits()).unwrap_or_else(|e| panic!("{e}"));
    assert!(t.contains("Dana Reyes"), "{t:?}");
    assert!(t.contains("migration of 40 services to k8s (Kubernetes)"), "{t:?}");
    assert!(t.contains("Postgres"), "{t:?}");
}

#[test]
fn bad_pdfs_get_clear_errors() {
    // A page with a filled rectangle and no text: a scan, as far as text goes.
    let image_only = pdf("0 0 1 rg 72 72 200 200 re f", "");
    assert_eq!(extract_text(&image_only, limits()), Err(PdfError::NoText));
    assert!(PdfError::NoText.to_string().contains("no text found"));
    let empty_page = pdf("", "");
    assert_eq!(extract_text(&empty_page, limits()), Err(PdfError::NoText));
    assert_eq!(extract_text(b"", limits()), Err(PdfError::NotPdf));
    assert_eq!(extract_text(b"hello, I am a text file", limits()), Err(PdfError::NotPdf));
    let big = text_pdf(&["x"; 10]);
    let small = PdfLimits { max_bytes: 100, ..limits() };
    assert_eq!(extract_text(&big, small), Err(PdfError::TooLarge(big.len(), 100)));
    // Encrypted: a trailer that names an encryption dictionary it does not have, and one
    // with a standard-security dictionary whose password is not empty.
    let enc = pdf("BT /F1 11 Tf 72 720 Td (secret) Tj ET", "/Encrypt 9 0 R ");
    let got = extract_text(&enc, limits());
    assert!(matches!(got, Err(PdfError::Encrypted)), "{got:?}");
    let enc2 = pdf(
        "BT /F1 11 Tf 72 720 Td (secret) Tj ET",
        "/Encrypt << /Filter /Standard /V 1 /R 2 /O <00> /U <00> /P -4 >> /ID [<01> <01>] ",
    );
    let got = extract_text(&enc2, limits());
    assert!(matches!(got, Err(PdfError::Encrypted)), "{got:?}");
    // Corrupt: a header and garbage, a truncated file, random bytes after a header.
    for bad in [
        b"%PDF-1.7\n this is not a pdf body at all".to_vec(),
        text_pdf(&["Truncated resume text"])[..200].to_vec(),
        [b"%PDF-1.4\n".as_slice(), &(0..5000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect::<Vec<_>>()]
            .concat(),
    ] {
        let got = extract_text(&bad, limits());
        assert!(matches!(got, Err(PdfError::Corrupt(_) | PdfError::NoText)), "{got:?}");
    }
}
