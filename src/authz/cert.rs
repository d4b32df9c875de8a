//! The client certificate as a proxy passes it (spec §13.2): URL-encoded PEM (nginx's
//! `$ssl_client_escaped_cert`, Envoy's XFCC `Chain=` and `attributes.source.certificate`; one
//! or more certificates, leaf first), PEM whose line breaks were replaced by spaces or tabs,
//! or comma-separated base64 DER (Traefik's `X-Forwarded-Tls-Client-Cert`, URL-encoded or
//! not). Pure and total: any input gives a chain, "none", or a reason, never a panic.

use std::borrow::Cow;

use base64::Engine;
use rustls_pki_types::CertificateDer;

use crate::trust::MAX_INTERMEDIATES;

/// Longest certificate text accepted (a chain of the longest allowed length, PEM and
/// URL-encoded, is far less); longer is unparseable, so its work is bounded before decoding.
pub const MAX_CERT_TEXT: usize = 256 * 1024;

/// Certificates kept: one more than a chain may hold, so a chain that is too long is still
/// refused as such ("chain too long") by the decision, without decoding the rest.
const MAX_CERTS: usize = 2 + MAX_INTERMEDIATES;

/// Why a certificate text could not be read (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertTextError {
    #[error("The client certificate is longer than {MAX_CERT_TEXT} bytes.")]
    TooLong,
    #[error(
        "The client certificate is not valid URL encoding (a '%' not followed by two hex digits)."
    )]
    BadPercent,
    #[error("The client certificate holds a PEM block that is not a CERTIFICATE, or one without its END line.")]
    BadPem,
    #[error("The client certificate is not valid base64.")]
    BadBase64,
    #[error("The x-forwarded-client-cert header holds more than one element; the proxy must replace what a client sent (Envoy: forward_client_cert_details: SANITIZE_SET) and must not add URI or DNS names a client chooses.")]
    XfccElements,
    #[error("The x-forwarded-client-cert chain does not begin with the certificate the proxy's TLS handshake saw (attributes.source.certificate).")]
    NotThePeer,
}

/// The DER certificates in `text`, leaf first; empty when `text` holds none (only
/// whitespace).
pub fn parse_chain(text: &str) -> Result<Vec<CertificateDer<'static>>, CertTextError> {
    if text.len() > MAX_CERT_TEXT {
        return Err(CertTextError::TooLong);
    }
    let decoded;
    let text = if text.contains('%') {
        decoded = percent_decode(text)?;
        decoded.as_str()
    } else {
        text
    };
    let text = text.trim();
    if text.is_empty() {
        return Ok(Vec::new());
    }
    if text.contains("-----BEGIN") {
        pem_blocks(text)
    } else {
        text.split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .take(MAX_CERTS)
            .map(|part| base64_der(part).map(CertificateDer::from))
            .collect()
    }
}

/// PEM certificate blocks, whatever whitespace (newlines, spaces, tabs) separates the lines.
fn pem_blocks(text: &str) -> Result<Vec<CertificateDer<'static>>, CertTextError> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN") {
        if !rest[start..].starts_with(BEGIN) {
            return Err(CertTextError::BadPem);
        }
        let body_start = start + BEGIN.len();
        let Some(len) = rest[body_start..].find(END) else {
            return Err(CertTextError::BadPem);
        };
        if out.len() < MAX_CERTS {
            out.push(CertificateDer::from(base64_der(
                &rest[body_start..body_start + len],
            )?));
        }
        rest = &rest[body_start + len + END.len()..];
    }
    Ok(out)
}

/// Standard base64 (padding optional), ignoring ASCII whitespace.
fn base64_der(text: &str) -> Result<Vec<u8>, CertTextError> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    match engine.decode(compact.as_bytes()) {
        Ok(der) if !der.is_empty() => Ok(der),
        _ => Err(CertTextError::BadBase64),
    }
}

/// `%XX` decoded (a `+` stays a `+`: base64 uses it, and nginx and Envoy encode spaces as
/// `%20`). Anything that does not decode to UTF-8 cannot be PEM or base64 either.
fn percent_decode(text: &str) -> Result<String, CertTextError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(CertTextError::BadPercent)?;
            // Two hex digits, checked first: `from_str_radix` alone also takes a sign
            // (`%+1` would read as byte 1).
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return Err(CertTextError::BadPercent);
            }
            let hex = std::str::from_utf8(hex).map_err(|_| CertTextError::BadPercent)?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| CertTextError::BadPercent)?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| CertTextError::BadPercent)
}

/// `text` as nginx's `$ssl_client_escaped_cert` and Envoy's XFCC pass it: every byte but the
/// unreserved ones (RFC 3986) as `%XX`. What [`parse_chain`] reads back; certgate itself never
/// encodes, so this is for tests and tools that stand in for a proxy.
pub fn escape(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The `Chain` field of an `x-forwarded-client-cert` header, unquoted; `None` when it has
/// none. The header must hold exactly one element with at most one `Chain`: the proxy sets it
/// afresh (`SANITIZE_SET`), and Envoy writes `URI=` and `DNS=` values unquoted after `Chain=`,
/// so a client whose certificate names `urn:x,Chain=<someone else's leaf>` would otherwise add
/// an element, and a chain, of its own choosing.
///
/// One pass, asked for every request Envoy checks: elements are separated by `,` and fields by
/// `;` outside double quotes, where a backslash escapes the next character. The scan jumps
/// between the few bytes that matter (`memchr`), so a URL-encoded chain, which holds none of
/// them, costs a vector compare per 16 or 32 bytes (decisions.md D86). Every byte it acts on is
/// ASCII: no byte of a multi-byte character can be mistaken for one, and fields are cut at
/// character boundaries.
pub fn xfcc_chain<'a>(header: &'a str) -> Result<Option<Cow<'a, str>>, CertTextError> {
    let bytes = header.as_bytes();
    let mut chain = None;
    let mut field = |text: &'a str| -> Result<(), CertTextError> {
        let Some((key, value)) = text.split_once('=') else {
            return Ok(());
        };
        if !key.trim().eq_ignore_ascii_case("chain") {
            return Ok(());
        }
        if chain.is_some() {
            return Err(CertTextError::XfccElements);
        }
        chain = Some(unquote(value.trim()));
        Ok(())
    };
    let (mut at, mut field_start, mut quoted) = (0, 0, false);
    while at < bytes.len() {
        let rest = &bytes[at..];
        if quoted {
            // Inside quotes only the closing quote and an escape matter.
            let Some(i) = memchr::memchr2(b'"', b'\\', rest) else {
                break;
            };
            if rest[i] == b'"' {
                quoted = false;
                at += i + 1;
            } else {
                at += i + 2;
            }
        } else {
            let Some(i) = memchr::memchr3(b'"', b',', b';', rest) else {
                break;
            };
            match rest[i] {
                b'"' => quoted = true,
                // A second element, even an empty one.
                b',' => return Err(CertTextError::XfccElements),
                _ => {
                    field(&header[field_start..at + i])?;
                    field_start = at + i + 1;
                }
            }
            at += i + 1;
        }
    }
    field(&header[field_start..])?;
    Ok(chain)
}

/// The chain in `text`, refused unless it begins with the leaf in `peer` (the certificate the
/// proxy's own TLS handshake saw, when the chain came from a forwarded header).
pub fn parse_bound_chain(
    text: &str,
    peer: Option<&str>,
) -> Result<Vec<CertificateDer<'static>>, CertTextError> {
    let chain = parse_chain(text)?;
    if let Some(peer) = peer {
        if parse_chain(peer)?.first() != chain.first() {
            return Err(CertTextError::NotThePeer);
        }
    }
    Ok(chain)
}

/// A field value without its surrounding quotes and escaping backslashes; borrowed unless it
/// had a backslash (a URL-encoded chain never has).
fn unquote(value: &str) -> Cow<'_, str> {
    let inner = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    if !inner.contains('\\') {
        return Cow::Borrowed(inner);
    }
    let mut out = String::with_capacity(inner.len());
    let mut escaped = false;
    for c in inner.chars() {
        if c == '\\' && !escaped {
            escaped = true;
            continue;
        }
        escaped = false;
        out.push(c);
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn der(n: u8) -> Vec<u8> {
        vec![0x30, 0x03, 0x02, 0x01, n]
    }

    fn pem(ders: &[Vec<u8>]) -> String {
        let blocks: Vec<pem::Pem> = ders
            .iter()
            .map(|d| pem::Pem::new("CERTIFICATE", d.clone()))
            .collect();
        pem::encode_many(&blocks)
    }

    #[test]
    fn xfcc_holds_one_element_with_one_chain() {
        assert_eq!(
            xfcc_chain("Hash=00;Chain=\"abc\";Subject=\"CN=a,O=b\"")
                .unwrap()
                .as_deref(),
            Some("abc"),
            "a comma inside quotes is no element boundary"
        );
        // Escapes inside quotes are undone; a multi-byte character is passed over whole.
        assert_eq!(
            xfcc_chain(r#"Subject="CN=é\",x;y";Chain="a\"b\\c""#)
                .unwrap()
                .as_deref(),
            Some(r#"a"b\c"#)
        );
        assert_eq!(xfcc_chain("Hash=00;Subject=\"CN=a\"").unwrap(), None);
        assert_eq!(
            xfcc_chain("Hash=00;Chain=\"abc\";URI=urn:x,Chain=def"),
            Err(CertTextError::XfccElements)
        );
        assert_eq!(
            xfcc_chain("Chain=abc;URI=urn:x;Chain=def"),
            Err(CertTextError::XfccElements)
        );
    }

    #[test]
    fn a_bound_chain_begins_with_the_peer() {
        let chain = pem(&[der(1), der(2)]);
        let own = pem(&[der(1)]);
        let other = pem(&[der(3)]);
        assert_eq!(parse_bound_chain(&chain, Some(&own)).unwrap().len(), 2);
        assert_eq!(parse_bound_chain(&chain, None).unwrap().len(), 2);
        assert_eq!(
            parse_bound_chain(&chain, Some(&other)),
            Err(CertTextError::NotThePeer)
        );
        assert_eq!(
            parse_bound_chain("", Some(&own)),
            Err(CertTextError::NotThePeer)
        );
    }

    fn ders(chain: &[CertificateDer<'static>]) -> Vec<Vec<u8>> {
        chain.iter().map(|c| c.as_ref().to_vec()).collect()
    }

    #[test]
    fn every_encoding_gives_the_same_chain() {
        let chain = vec![der(1), der(2)];
        let pem = pem(&chain);
        let b64 = |d: &Vec<u8>| base64::engine::general_purpose::STANDARD.encode(d);
        let spaced = pem.replace("\r\n", " ").replace('\n', " ");
        let tabbed = pem.replace("\r\n", "\t").replace('\n', "\t");
        let commas = format!("{},{}", b64(&chain[0]), b64(&chain[1]));
        for text in [
            pem.clone(),
            escape(&pem),
            spaced,
            tabbed,
            commas.clone(),
            escape(&commas),
        ] {
            assert_eq!(ders(&parse_chain(&text).unwrap()), chain, "{text}");
        }
    }

    #[test]
    fn nothing_and_garbage() {
        assert!(parse_chain("").unwrap().is_empty());
        assert!(parse_chain("  ").unwrap().is_empty());
        assert_eq!(parse_chain("%zz"), Err(CertTextError::BadPercent));
        assert_eq!(parse_chain("%4"), Err(CertTextError::BadPercent));
        // A sign is not a hex digit (from_str_radix would take `+1`); found writing the
        // authz_cert fuzz target's oracle.
        assert_eq!(parse_chain("%+1"), Err(CertTextError::BadPercent));
        assert_eq!(parse_chain("MIIB%+AAA"), Err(CertTextError::BadPercent));
        assert_eq!(
            parse_chain("%51%51").map(|c| ders(&c)),
            Ok(vec![vec![0x41]]),
            "valid escapes are read"
        );
        assert_eq!(parse_chain("not base64!"), Err(CertTextError::BadBase64));
        assert_eq!(
            parse_chain("-----BEGIN CERTIFICATE----- AAAA"),
            Err(CertTextError::BadPem)
        );
        assert_eq!(
            parse_chain("-----BEGIN PRIVATE KEY----- AAAA -----END PRIVATE KEY-----"),
            Err(CertTextError::BadPem)
        );
        assert_eq!(
            parse_chain(&"A".repeat(MAX_CERT_TEXT + 1)),
            Err(CertTextError::TooLong)
        );
    }

    #[test]
    fn long_chains_are_cut_but_still_too_long() {
        let chain: Vec<Vec<u8>> = (0..20).map(der).collect();
        let kept = parse_chain(&pem(&chain)).unwrap().len();
        assert_eq!(kept, MAX_CERTS);
        assert!(kept > 1 + MAX_INTERMEDIATES, "still too long");
    }

    #[test]
    fn xfcc_chain_field() {
        let header = r#"By=spiffe://a;Hash=ab;Cert="x%2Cy";Chain="-----BEGIN%20CERT";Subject="CN=a,O=\"b;c\"";DNS=x"#;
        assert_eq!(
            xfcc_chain(header).unwrap().as_deref(),
            Some("-----BEGIN%20CERT")
        );
        // A second element (another proxy's, or one a client smuggled in): refused.
        let two = format!("Hash=1;Chain=first,{header}");
        assert_eq!(xfcc_chain(&two), Err(CertTextError::XfccElements));
        assert_eq!(xfcc_chain("Hash=1;Cert=abc"), Ok(None));
        assert_eq!(xfcc_chain(""), Ok(None));
    }

    /// The header read the plain way: split into elements at unquoted commas, the one element
    /// into fields at unquoted semicolons (each split a whole scan, as before decisions.md D86).
    fn xfcc_chain_by_splitting(header: &str) -> Result<Option<String>, CertTextError> {
        fn split(text: &str, sep: char) -> Vec<String> {
            let mut parts = vec![String::new()];
            let (mut quoted, mut escaped) = (false, false);
            for c in text.chars() {
                if escaped {
                    escaped = false;
                } else if c == '\\' && quoted {
                    escaped = true;
                } else if c == '"' {
                    quoted = !quoted;
                } else if c == sep && !quoted {
                    parts.push(String::new());
                    continue;
                }
                parts.last_mut().unwrap().push(c);
            }
            parts
        }
        let elements = split(header, ',');
        if elements.len() > 1 {
            return Err(CertTextError::XfccElements);
        }
        let chains: Vec<String> = split(&elements[0], ';')
            .iter()
            .filter_map(|pair| {
                let (key, value) = pair.split_once('=')?;
                key.trim()
                    .eq_ignore_ascii_case("chain")
                    .then(|| unquote(value.trim()).into_owned())
            })
            .collect();
        match chains.len() {
            0 => Ok(None),
            1 => Ok(chains.into_iter().next()),
            _ => Err(CertTextError::XfccElements),
        }
    }

    #[test]
    fn the_one_pass_scan_reads_xfcc_as_splitting_does() {
        // Headers drawn from the bytes the scan acts on and a few it must pass over
        // (a multi-byte character among them), by a fixed generator: repeatable.
        let alphabet: Vec<char> = "Chain=;,\"\\ abé%".chars().collect();
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |bound: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            usize::try_from(state % bound as u64).unwrap()
        };
        let mut found = 0;
        for _ in 0..50_000 {
            let len = next(24);
            let mut header: String = (0..len).map(|_| alphabet[next(alphabet.len())]).collect();
            if next(2) == 0 {
                let at: Vec<usize> = header.char_indices().map(|(i, _)| i).collect();
                header.insert_str(
                    at.get(next(at.len() + 1)).copied().unwrap_or(header.len()),
                    "Chain=",
                );
            }
            let one_pass = xfcc_chain(&header).map(|c| c.map(Cow::into_owned));
            assert_eq!(one_pass, xfcc_chain_by_splitting(&header), "{header:?}");
            found += usize::from(matches!(one_pass, Ok(Some(_))));
        }
        // The draw reaches every answer: a chain found often, refusals and "none" too.
        assert!(found > 2_000, "{found}");
    }
}
