//! The frame of a CRL's DER (RFC 5280 §5.1), walked in place: the header fields are read, the
//! revoked entries and extensions are left as slices to iterate. Nothing is collected, so
//! walking a CRL of a million entries allocates nothing per entry.
//!
//! ```text
//! CertificateList ::= SEQUENCE { tbsCertList, signatureAlgorithm, signatureValue BIT STRING }
//! TBSCertList ::= SEQUENCE {
//!     version INTEGER OPTIONAL, signature AlgorithmIdentifier, issuer Name,
//!     thisUpdate Time, nextUpdate Time OPTIONAL,
//!     revokedCertificates SEQUENCE OF SEQUENCE {
//!         userCertificate INTEGER, revocationDate Time, crlEntryExtensions Extensions OPTIONAL
//!     } OPTIONAL,
//!     crlExtensions [0] EXPLICIT Extensions OPTIONAL }
//! Extension ::= SEQUENCE { extnID OID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }
//! ```

use x509_parser::prelude::{ASN1Time, FromDer};

const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OCTET_STRING: u8 = 0x04;
const OID: u8 = 0x06;
const BOOLEAN: u8 = 0x01;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const SEQUENCE: u8 = 0x30;
const EXPLICIT_0: u8 = 0xa0;

/// One DER element of `input`: its tag, its contents, the whole element, and what follows.
struct Element<'a> {
    tag: u8,
    contents: &'a [u8],
    whole: &'a [u8],
    rest: &'a [u8],
}

/// Reads one definite-length DER element (single-byte tag, minimal length of at most 4 bytes).
fn element(input: &[u8]) -> Option<Element<'_>> {
    let (&tag, after_tag) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, after_first) = after_tag.split_first()?;
    let (len, after_len) = if first < 0x80 {
        (usize::from(first), after_first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || after_first.len() < n {
            return None;
        }
        let (bytes, after) = after_first.split_at(n);
        if bytes[0] == 0 {
            return None;
        }
        let len = bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        if len < 0x80 {
            return None;
        }
        (len, after)
    };
    if after_len.len() < len {
        return None;
    }
    let (contents, rest) = after_len.split_at(len);
    let whole = &input[..input.len() - rest.len()];
    Some(Element {
        tag,
        contents,
        whole,
        rest,
    })
}

/// Reads one element that must have `tag`.
fn expect<'a>(input: &'a [u8], tag: u8, what: &str) -> Result<Element<'a>, String> {
    match element(input) {
        Some(e) if e.tag == tag => Ok(e),
        _ => Err(format!("malformed {what}")),
    }
}

fn time<'a>(input: &'a [u8], what: &str) -> Result<(i64, &'a [u8]), String> {
    let e = element(input).ok_or_else(|| format!("malformed {what}"))?;
    if e.tag != UTC_TIME && e.tag != GENERALIZED_TIME {
        return Err(format!("malformed {what}"));
    }
    let (_, t) = ASN1Time::from_der(e.whole).map_err(|_| format!("malformed {what}"))?;
    Ok((t.timestamp(), e.rest))
}

fn is_time(input: &[u8]) -> bool {
    matches!(input.first(), Some(&UTC_TIME | &GENERALIZED_TIME))
}

/// A CRL's header and the slices its entries and extensions are read from.
#[derive(Debug)]
pub(super) struct Frame<'a> {
    /// The issuer Name, the whole DER element.
    pub(super) issuer: &'a [u8],
    pub(super) this_update: i64,
    pub(super) next_update: Option<i64>,
    /// The contents of revokedCertificates (empty when absent).
    entries: &'a [u8],
    /// The contents of the crlExtensions SEQUENCE (empty when absent).
    extensions: &'a [u8],
}

/// Walks `der` as a CRL. The error says what is wrong, in a few words.
pub(super) fn read(der: &[u8]) -> Result<Frame<'_>, String> {
    let outer = expect(der, SEQUENCE, "CertificateList")?;
    if !outer.rest.is_empty() {
        return Err("there is data after the CRL".into());
    }
    let tbs = expect(outer.contents, SEQUENCE, "tbsCertList")?;
    let alg = expect(tbs.rest, SEQUENCE, "signatureAlgorithm")?;
    let sig = expect(alg.rest, BIT_STRING, "signatureValue")?;
    if !sig.rest.is_empty() {
        return Err("unexpected data after the signature".into());
    }
    let mut at = tbs.contents;
    if at.first() == Some(&INTEGER) {
        at = expect(at, INTEGER, "version")?.rest;
    }
    at = expect(at, SEQUENCE, "signature algorithm")?.rest;
    let issuer = expect(at, SEQUENCE, "issuer")?;
    let (this_update, mut at) = time(issuer.rest, "thisUpdate")?;
    let mut next_update = None;
    if is_time(at) {
        let (t, rest) = time(at, "nextUpdate")?;
        next_update = Some(t);
        at = rest;
    }
    let mut entries: &[u8] = &[];
    if at.first() == Some(&SEQUENCE) {
        let e = expect(at, SEQUENCE, "revokedCertificates")?;
        entries = e.contents;
        at = e.rest;
    }
    let mut extensions: &[u8] = &[];
    if at.first() == Some(&EXPLICIT_0) {
        let tagged = expect(at, EXPLICIT_0, "crlExtensions")?;
        let list = expect(tagged.contents, SEQUENCE, "crlExtensions")?;
        if !list.rest.is_empty() {
            return Err("malformed crlExtensions".into());
        }
        extensions = list.contents;
        at = tagged.rest;
    }
    if !at.is_empty() {
        return Err("unexpected data in tbsCertList".into());
    }
    Ok(Frame {
        issuer: issuer.whole,
        this_update,
        next_update,
        entries,
        extensions,
    })
}

/// One extension, as read.
#[derive(Debug, Clone, Copy)]
pub(super) struct Extension<'a> {
    /// The OID's encoded contents (no tag or length).
    pub(super) oid: &'a [u8],
    pub(super) critical: bool,
    /// The contents of extnValue.
    pub(super) value: &'a [u8],
    /// The whole Extension element.
    pub(super) whole: &'a [u8],
}

/// Reads one item off the front of a list: the item and the rest.
type Next<'a, T> = fn(&'a [u8]) -> Result<(T, &'a [u8]), String>;

/// Reads the items of a SEQUENCE OF's contents with `next`; an error ends the iteration.
fn items<'a, T>(
    mut list: &'a [u8],
    next: Next<'a, T>,
) -> impl Iterator<Item = Result<T, String>> + 'a
where
    T: 'a,
{
    std::iter::from_fn(move || {
        if list.is_empty() {
            return None;
        }
        Some(match next(list) {
            Ok((item, rest)) => {
                list = rest;
                Ok(item)
            }
            Err(e) => {
                list = &[];
                Err(e)
            }
        })
    })
}

fn next_extension(list: &[u8]) -> Result<(Extension<'_>, &[u8]), String> {
    let ext = expect(list, SEQUENCE, "extension")?;
    let oid = expect(ext.contents, OID, "extension")?;
    let mut at = oid.rest;
    let mut critical = false;
    if at.first() == Some(&BOOLEAN) {
        let flag = expect(at, BOOLEAN, "extension")?;
        critical = match flag.contents {
            [0xff] => true,
            [0x00] => false,
            _ => return Err("malformed extension".into()),
        };
        at = flag.rest;
    }
    let value = expect(at, OCTET_STRING, "extension")?;
    if !value.rest.is_empty() || oid.contents.is_empty() {
        return Err("malformed extension".into());
    }
    Ok((
        Extension {
            oid: oid.contents,
            critical,
            value: value.contents,
            whole: ext.whole,
        },
        ext.rest,
    ))
}

/// The extensions in the contents of an Extensions SEQUENCE.
pub(super) fn extensions(list: &[u8]) -> impl Iterator<Item = Result<Extension<'_>, String>> + '_ {
    items(list, next_extension)
}

/// One revoked certificate entry.
#[derive(Debug, Clone, Copy)]
pub(super) struct Entry<'a> {
    /// The serial's INTEGER contents (the form webpki's `Cert::serial` gives).
    pub(super) serial: &'a [u8],
    /// The contents of crlEntryExtensions (empty when absent).
    pub(super) extensions: &'a [u8],
}

/// Reads one entry; with `CHECK_TIME` its revocationDate is parsed as a time, else only its tag
/// is checked (a stored CRL was fully checked at upload, and the date decides nothing).
fn next_entry<const CHECK_TIME: bool>(list: &[u8]) -> Result<(Entry<'_>, &[u8]), String> {
    let entry = expect(list, SEQUENCE, "revoked certificate entry")?;
    let serial = expect(entry.contents, INTEGER, "revoked certificate serial")?;
    if serial.contents.is_empty() {
        return Err("malformed revoked certificate serial".into());
    }
    let mut at = if CHECK_TIME {
        time(serial.rest, "revocationDate")?.1
    } else {
        match element(serial.rest) {
            Some(e) if e.tag == UTC_TIME || e.tag == GENERALIZED_TIME => e.rest,
            _ => return Err("malformed revocationDate".into()),
        }
    };
    let mut extensions: &[u8] = &[];
    if !at.is_empty() {
        let list = expect(at, SEQUENCE, "crlEntryExtensions")?;
        extensions = list.contents;
        at = list.rest;
    }
    if !at.is_empty() {
        return Err("malformed revoked certificate entry".into());
    }
    Ok((
        Entry {
            serial: serial.contents,
            extensions,
        },
        entry.rest,
    ))
}

impl<'a> Frame<'a> {
    /// The CRL's own extensions.
    pub(super) fn extensions(&self) -> impl Iterator<Item = Result<Extension<'a>, String>> + 'a {
        extensions(self.extensions)
    }

    /// The revoked entries, in order, every field checked.
    pub(super) fn entries(&self) -> impl Iterator<Item = Result<Entry<'a>, String>> + 'a {
        items(self.entries, next_entry::<true>)
    }

    /// The revoked entries, their structure checked but their dates read only by tag: about
    /// twice as fast, for CRLs [`Frame::entries`] checked when they were stored.
    pub(super) fn stored_entries(&self) -> impl Iterator<Item = Result<Entry<'a>, String>> + 'a {
        items(self.entries, next_entry::<false>)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_are_read_strictly() {
        assert!(element(&[]).is_none());
        assert!(element(&[0x30]).is_none());
        // Length longer than the input.
        assert!(element(&[0x04, 0x03, 1, 2]).is_none());
        // Non-minimal long form.
        assert!(element(&[0x04, 0x81, 0x01, 0]).is_none());
        assert!(element(&[0x04, 0x82, 0x00, 0x80]).is_none());
        // Indefinite length, multi-byte tag.
        assert!(element(&[0x30, 0x80, 0, 0]).is_none());
        assert!(element(&[0x1f, 0x01, 0x00]).is_none());
        let e = element(&[0x04, 0x02, 7, 8, 9]).unwrap();
        assert_eq!(
            (e.tag, e.contents, e.whole, e.rest),
            (4, &[7, 8][..], &[4, 2, 7, 8][..], &[9][..])
        );
        let mut long = vec![0x04, 0x81, 0x80];
        long.extend([0u8; 0x80]);
        assert_eq!(element(&long).unwrap().contents.len(), 0x80);
    }

    #[test]
    fn garbage_is_refused_without_panic() {
        for input in [
            &b""[..],
            b"\x30",
            b"\x30\x00",
            b"\x30\x03\x30\x01\x00",
            &[0xff; 64],
        ] {
            assert!(read(input).is_err());
        }
    }
}
