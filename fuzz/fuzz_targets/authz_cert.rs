//! The certificate header `certgate authz` reads (`authz::cert::parse_chain`, and
//! `authz::cert::xfcc_chain` for Envoy's `x-forwarded-client-cert`): the text a proxy passes,
//! which a client may shape (a proxy's own encoding of the client's certificate, or a header the
//! proxy failed to strip). Input: any bytes, read two ways: as the header text itself, and as
//! the DER of one or more certificates (`[u16 length][DER]…`, at most 12) that the target
//! encodes as each proxy would.
//!
//! Properties beside no panic:
//! - a header that is too long is refused as such; a `%` not followed by two hex digits (an
//!   oracle written apart from the decoder) is refused as bad URL encoding, never read;
//! - a chain is never longer than one past the longest a chain may be (so "chain too long" is
//!   still refused without decoding the rest), and decoding is deterministic;
//! - what is read, printed again in every encoding certgate accepts (PEM with newlines, PEM
//!   URL-encoded as nginx and Envoy send it, PEM with spaces or tabs for line breaks,
//!   comma-separated base64 DER as Traefik sends it, URL-encoded or not, and inside an XFCC
//!   `Chain="…"`), is read as the same DER certificates;
//! - DER certificates, so encoded, are read back as the same DER, leaf first.
#![no_main]

use base64::Engine as _;
use certgate::authz::cert::{escape, parse_chain, xfcc_chain, CertTextError, MAX_CERT_TEXT};
use certgate::trust::MAX_INTERMEDIATES;
use certgate_fuzz::frames;
use libfuzzer_sys::fuzz_target;
use rustls_pki_types::CertificateDer;

/// The most certificates a decoded chain may hold: one past the longest allowed chain.
const MAX_CERTS: usize = 2 + MAX_INTERMEDIATES;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        as_header(text);
    }
    let ders: Vec<Vec<u8>> = frames(data, 12)
        .into_iter()
        .filter(|d| !d.is_empty())
        .collect();
    if !ders.is_empty() {
        let expected: Vec<Vec<u8>> = ders.iter().take(MAX_CERTS).cloned().collect();
        round_trips(&ders, &expected);
    }
});

/// `text` as the header a proxy passed.
fn as_header(text: &str) {
    let _ = xfcc_chain(text);
    let read = parse_chain(text);
    assert_eq!(read, parse_chain(text), "deterministic");
    if text.len() > MAX_CERT_TEXT {
        assert_eq!(read, Err(CertTextError::TooLong));
        return;
    }
    if text.contains('%') && !percent_encoding_ok(text) {
        assert_eq!(read, Err(CertTextError::BadPercent), "{text:?}");
        return;
    }
    let Ok(chain) = read else { return };
    assert!(chain.len() <= MAX_CERTS, "{} certificates kept", chain.len());
    let ders = der_list(&chain);
    if !ders.is_empty() {
        round_trips(&ders, &ders);
    }
}

/// Every `%` followed by two ASCII hex digits: the only URL encoding nginx and Envoy write.
fn percent_encoding_ok(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.iter().enumerate().all(|(i, &b)| {
        b != b'%'
            || matches!(bytes.get(i + 1..i + 3), Some([a, b]) if a.is_ascii_hexdigit() && b.is_ascii_hexdigit())
    })
}

/// `ders` in each encoding certgate accepts reads back as `expected`.
fn round_trips(ders: &[Vec<u8>], expected: &[Vec<u8>]) {
    let pem = pem::encode_many(
        &ders
            .iter()
            .map(|d| pem::Pem::new("CERTIFICATE", d.clone()))
            .collect::<Vec<_>>(),
    );
    let b64 = |d: &Vec<u8>| base64::engine::general_purpose::STANDARD.encode(d);
    let commas = ders.iter().map(b64).collect::<Vec<_>>().join(",");
    let escaped_pem = escape(&pem);
    let xfcc = format!("By=spiffe://proxy;Hash=00;Chain=\"{escaped_pem}\";Subject=\"CN=a,O=b\"");
    let from_xfcc = xfcc_chain(&xfcc)
        .expect("one XFCC element with one Chain field")
        .expect("a Chain field");
    assert_eq!(from_xfcc, escaped_pem, "XFCC Chain field");
    for (name, text) in [
        ("PEM", pem.clone()),
        ("URL-encoded PEM", escaped_pem),
        ("PEM, spaces", pem.replace("\r\n", " ").replace('\n', " ")),
        ("PEM, tabs", pem.replace("\r\n", "\t").replace('\n', "\t")),
        ("base64 DER, commas", commas.clone()),
        ("URL-encoded base64 DER", escape(&commas)),
        ("XFCC Chain", from_xfcc.into_owned()),
    ] {
        let read = parse_chain(&text);
        if text.len() > MAX_CERT_TEXT {
            assert_eq!(read, Err(CertTextError::TooLong), "{name}");
            continue;
        }
        match read {
            Ok(chain) => assert_eq!(der_list(&chain), expected, "{name}"),
            Err(e) => panic!("{name} of {} certificates refused: {e}", ders.len()),
        }
    }
}

fn der_list(chain: &[CertificateDer<'static>]) -> Vec<Vec<u8>> {
    chain.iter().map(|c| c.as_ref().to_vec()).collect()
}
