//! Distinguished names as RFC 4514 strings, byte for byte as Python cryptography's
//! `Name.rfc4514_string()` writes them (decisions.md D3; the rules below were checked against
//! cryptography 48):
//!
//! - the RDN sequence reversed (last RDN first), RDNs joined with `,`, the attributes of a
//!   multi-valued RDN joined with `+` in DER order;
//! - short names for CN, L, ST, O, OU, C, STREET, DC and UID only, dotted OIDs otherwise (so
//!   emailAddress is `1.2.840.113549.1.9.1`);
//! - values escaped as cryptography does: `\ " + , ; < >` with a backslash, NUL as `\00`, a
//!   leading `#` or (for values longer than one character) a leading space, and a trailing space;
//!   `=`, a `#` elsewhere, non-ASCII and other control characters are left as they are;
//! - BIT STRING values as `#` and the hex of their content octets.
//!
//! Python refuses names it cannot decode (invalid UTF-8, a `BMPString` of odd length, a value
//! of a non-string type); this function is total and writes such a value as `#` and the hex of
//! its content octets instead.

use x509_parser::der_parser::asn1_rs::{Any, Class};
use x509_parser::x509::X509Name;

/// The RFC 4514 string of `name`.
pub fn rfc4514_string(name: &X509Name<'_>) -> String {
    let mut rdns: Vec<String> = name
        .iter()
        .map(|rdn| {
            rdn.iter()
                .map(|atv| {
                    let oid = atv.attr_type().to_id_string();
                    let key = short_name(&oid).map_or(oid.clone(), str::to_owned);
                    format!("{key}={}", escape(&value(atv.attr_value())))
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.reverse();
    rdns.join(",")
}

fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.6" => "C",
        "2.5.4.9" => "STREET",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

/// An attribute value as cryptography reads it: text, or bytes (written in hex).
enum Value {
    Text(String),
    Bytes(Vec<u8>),
}

fn value(any: &Any<'_>) -> Value {
    let data = any.data;
    let text = if any.class() == Class::Universal {
        match any.tag().0 {
            // BIT STRING: the content octets, the unused-bits octet included.
            3 => return Value::Bytes(data.to_vec()),
            // BMPString: UTF-16BE.
            30 => utf16be(data),
            // UniversalString: UTF-32BE.
            28 => utf32be(data),
            // OCTET STRING, UTF8String, NumericString, PrintableString, T61String, IA5String,
            // UTCTime, GeneralizedTime, VisibleString: the octets as UTF-8.
            4 | 12 | 18 | 19 | 20 | 22 | 23 | 24 | 26 => {
                std::str::from_utf8(data).ok().map(str::to_owned)
            }
            _ => None,
        }
    } else {
        None
    };
    text.map_or_else(|| Value::Bytes(data.to_vec()), Value::Text)
}

fn utf16be(data: &[u8]) -> Option<String> {
    if !data.len().is_multiple_of(2) {
        return None;
    }
    let units: Vec<u16> = data
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16(&units).ok()
}

fn utf32be(data: &[u8]) -> Option<String> {
    if !data.len().is_multiple_of(4) {
        return None;
    }
    data.chunks_exact(4)
        .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
        .collect()
}

/// cryptography's `_escape_dn_value`.
fn escape(v: &Value) -> String {
    let s = match v {
        Value::Bytes(b) if b.is_empty() => return String::new(),
        Value::Bytes(b) => return format!("#{}", hex::encode(b)),
        Value::Text(s) => s,
    };
    if s.is_empty() {
        return String::new();
    }
    let mut out = String::with_capacity(s.len() + 4);
    for ch in s.chars() {
        match ch {
            '\\' | '"' | '+' | ',' | ';' | '<' | '>' => {
                out.push('\\');
                out.push(ch);
            }
            '\0' => out.push_str("\\00"),
            c => out.push(c),
        }
    }
    if s.starts_with('#') || (s.starts_with(' ') && s.chars().count() > 1) {
        out.insert(0, '\\');
    }
    if out.ends_with(' ') {
        out.pop();
        out.push_str("\\ ");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> String {
        escape(&Value::Text(s.to_owned()))
    }

    /// Expected strings are what cryptography 48 writes for the same values.
    #[test]
    fn escaping_matches_cryptography() {
        assert_eq!(text(""), "");
        assert_eq!(text("plain"), "plain");
        assert_eq!(text("Acme, Inc."), "Acme\\, Inc.");
        assert_eq!(text(r#"a\b"c+d;e<f>g"#), r#"a\\b\"c\+d\;e\<f\>g"#);
        assert_eq!(text("a=b"), "a=b");
        assert_eq!(text("#x"), "\\#x");
        assert_eq!(text("#"), "\\#");
        assert_eq!(text("x#"), "x#");
        assert_eq!(text(" "), "\\ ");
        assert_eq!(text("  "), "\\ \\ ");
        assert_eq!(text(" x"), "\\ x");
        assert_eq!(text("x "), "x\\ ");
        assert_eq!(text("x# "), "x#\\ ");
        assert_eq!(text("nul\0"), "nul\\00");
        assert_eq!(text("Zürich\t"), "Zürich\t");
        assert_eq!(escape(&Value::Bytes(vec![0, 0xab, 0xcd])), "#00abcd");
        assert_eq!(escape(&Value::Bytes(vec![])), "");
    }

    #[test]
    fn wide_strings() {
        assert_eq!(utf16be(&[0, b'h', 0xd8, 0x3d, 0xde, 0x00]).unwrap(), "h😀");
        assert!(utf16be(&[0]).is_none());
        assert_eq!(utf32be(&[0, 0, 0, b'a', 0, 1, 0xf6, 0x00]).unwrap(), "a😀");
        assert!(utf32be(&[0, 0x11, 0, 0]).is_none());
    }
}
