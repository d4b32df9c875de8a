//! Every kind of CRL certgate refuses, and the complete ones it keeps. Most are built by hand
//! (rcgen 0.13 writes neither delta CRLs, indirect ones, partitions by reason or unknown
//! extensions); [`parse_crl`] does not look at the signature, so a dummy one does here.

use super::*;

const NOW: i64 = 1_700_000_000;

fn tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = contents.len();
    if len < 0x80 {
        out.push(u8::try_from(len).unwrap());
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | u8::try_from(bytes.len()).unwrap());
        out.extend(bytes);
    }
    out.extend_from_slice(contents);
    out
}

fn seq(items: &[Vec<u8>]) -> Vec<u8> {
    tlv(0x30, &items.concat())
}

fn time(unix: i64) -> Vec<u8> {
    let t = ::time::OffsetDateTime::from_unix_timestamp(unix).unwrap();
    let (tag, year) = if (1950..2050).contains(&t.year()) {
        (0x17, format!("{:02}", t.year() % 100))
    } else {
        (0x18, format!("{:04}", t.year()))
    };
    let text = format!(
        "{year}{:02}{:02}{:02}{:02}{:02}Z",
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    tlv(tag, text.as_bytes())
}

/// An extension 2.5.29.`n`.
fn ce(n: u8, critical: bool, value: &[u8]) -> Vec<u8> {
    ext(&[0x55, 0x1d, n], critical, value)
}

fn ext(oid: &[u8], critical: bool, value: &[u8]) -> Vec<u8> {
    let mut parts = vec![tlv(0x06, oid)];
    if critical {
        parts.push(vec![0x01, 0x01, 0xff]);
    }
    parts.push(tlv(0x04, value));
    seq(&parts)
}

fn reason(code: u8) -> Vec<u8> {
    ce(21, false, &[0x0a, 0x01, code])
}

/// An issuing distribution point with a full-name URI and the given flag fields.
fn idp(fields: &[Vec<u8>]) -> Vec<u8> {
    let uri = tlv(0x86, b"http://ca.example/crl");
    let full_name = tlv(0xa0, &uri);
    let mut parts = vec![tlv(0xa0, &full_name)];
    parts.extend_from_slice(fields);
    ce(28, true, &seq(&parts))
}

struct Shape {
    this_update: i64,
    next_update: Option<i64>,
    entries: Vec<(Vec<u8>, Vec<Vec<u8>>)>,
    extensions: Vec<Vec<u8>>,
}

impl Shape {
    fn complete() -> Shape {
        Shape {
            this_update: NOW - 60,
            next_update: Some(NOW + 3600),
            entries: vec![
                (vec![0x05], vec![reason(1)]),
                (
                    vec![0x00, 0x80],
                    vec![reason(4), ce(24, false, &time(NOW - 100))],
                ),
                (vec![0x7f], vec![]),
            ],
            // cRLNumber, and an authority key identifier.
            extensions: vec![
                ce(20, false, &[0x02, 0x01, 0x07]),
                ce(35, false, &seq(&[tlv(0x80, &[1; 20])])),
            ],
        }
    }

    fn der(&self) -> Vec<u8> {
        let alg = seq(&[tlv(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02])]);
        let mut tbs = vec![
            vec![0x02, 0x01, 0x01],
            alg.clone(),
            seq(&[tlv(
                0x31,
                &seq(&[tlv(0x06, &[0x55, 0x04, 0x03]), tlv(0x0c, b"Test CA")]),
            )]),
            time(self.this_update),
        ];
        if let Some(next) = self.next_update {
            tbs.push(time(next));
        }
        if !self.entries.is_empty() {
            let entries: Vec<Vec<u8>> = self
                .entries
                .iter()
                .map(|(serial, exts)| {
                    let mut parts = vec![tlv(0x02, serial), time(self.this_update - 10)];
                    if !exts.is_empty() {
                        parts.push(seq(exts));
                    }
                    seq(&parts)
                })
                .collect();
            tbs.push(seq(&entries));
        }
        if !self.extensions.is_empty() {
            tbs.push(tlv(0xa0, &seq(&self.extensions)));
        }
        seq(&[seq(&tbs), alg, tlv(0x03, &[0, 0x30, 0x00])])
    }

    fn pem(&self) -> String {
        ::pem::encode(&::pem::Pem::new("X509 CRL", self.der()))
    }
}

fn refused(shape: &Shape) -> String {
    match parse_crl(&shape.pem(), NOW) {
        Err(DomainError::InvalidCrl(why)) => why,
        other => panic!("expected invalid_crl, got {other:?}"),
    }
}

#[test]
fn a_complete_direct_crl_is_kept() {
    let mut shape = Shape::complete();
    // Known and unknown non-critical extensions, and a distribution point that names where
    // the CRL is published and says it covers only end-entity certificates: still complete.
    shape.extensions.push(idp(&[vec![0x81, 0x01, 0xff]]));
    shape
        .extensions
        .push(ext(&[0x2a, 0x03, 0x04], false, &[0x05, 0x00]));
    shape.entries[2]
        .1
        .push(ext(&[0x2a, 0x03, 0x05], false, &[0x05, 0x00]));
    let der = shape.der();
    let parsed = parse_crl(&shape.pem(), NOW).unwrap();
    assert_eq!(parsed.der, der);
    assert_eq!(parsed.sha256, hex::encode(Sha256::digest(&der)));
    assert_eq!(
        (parsed.this_update, parsed.next_update, parsed.revoked_count),
        (NOW - 60, Some(NOW + 3600), 3)
    );
    // Base64 DER works as well, with line breaks.
    let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
    let wrapped = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(parse_crl(&wrapped, NOW).unwrap(), parsed);
    let serials = revoked_serials(&der).unwrap();
    assert_eq!(serials.len(), 3);
    for s in [&[0x05][..], &[0x00, 0x80], &[0x7f]] {
        assert!(serials.contains(s));
    }
    assert!(!serials.contains(&[0x80]));
    // No nextUpdate, no entries, no extensions (a v1 CRL): kept, never stale.
    let bare = Shape {
        this_update: NOW,
        next_update: None,
        entries: vec![],
        extensions: vec![],
    };
    let parsed = parse_crl(&bare.pem(), NOW).unwrap();
    assert_eq!((parsed.next_update, parsed.revoked_count), (None, 0));
}

#[test]
fn a_delta_crl_is_refused() {
    let mut shape = Shape::complete();
    shape.extensions.push(ce(27, true, &[0x02, 0x01, 0x06]));
    let why = refused(&shape);
    assert!(why.contains("delta CRL (deltaCRLIndicator)"), "{why}");
}

#[test]
fn indirect_crls_are_refused() {
    let mut shape = Shape::complete();
    shape.extensions.push(idp(&[vec![0x84, 0x01, 0xff]]));
    let why = refused(&shape);
    assert!(
        why.contains("indirect CRL (issuingDistributionPoint with indirectCRL)"),
        "{why}"
    );
    // An entry naming another issuer: an indirect CRL without saying so in its header.
    let mut shape = Shape::complete();
    let other = seq(&[tlv(0xa4, &seq(&[]))]);
    shape.entries[1].1.push(ce(29, true, &other));
    let why = refused(&shape);
    assert!(
        why.contains("serial 0080 names another issuer (certificateIssuer)"),
        "{why}"
    );
}

#[test]
fn partitioned_crls_are_refused() {
    for (field, says) in [
        // onlySomeReasons: keyCompromise only.
        (
            vec![0x83, 0x02, 0x06, 0x40],
            "only some revocation reasons (onlySomeReasons)",
        ),
        (
            vec![0x82, 0x01, 0xff],
            "only CA certificates (onlyContainsCACerts)",
        ),
        (
            vec![0x85, 0x01, 0xff],
            "only attribute certificates (onlyContainsAttributeCerts)",
        ),
    ] {
        let mut shape = Shape::complete();
        shape.extensions.push(idp(&[field]));
        let why = refused(&shape);
        assert!(why.contains(says), "{why}");
    }
    let mut shape = Shape::complete();
    shape.extensions.push(ce(28, true, &[0x05, 0x00]));
    assert!(refused(&shape).contains("issuingDistributionPoint extension is malformed"));
}

#[test]
fn unknown_critical_extensions_are_refused() {
    let mut shape = Shape::complete();
    shape
        .extensions
        .push(ext(&[0x2a, 0x03, 0x04], true, &[0x05, 0x00]));
    let why = refused(&shape);
    assert!(
        why.contains("critical extension certgate does not understand (1.2.3.4)"),
        "{why}"
    );
    let mut shape = Shape::complete();
    shape.entries[0]
        .1
        .push(ext(&[0x2a, 0x03, 0x05], true, &[0x05, 0x00]));
    let why = refused(&shape);
    assert!(
        why.contains(
            "entry for serial 05 has a critical extension certgate does not understand (1.2.3.5)"
        ),
        "{why}"
    );
}

#[test]
fn remove_from_crl_entries_are_refused() {
    let mut shape = Shape::complete();
    shape.entries[2].1.push(reason(8));
    let why = refused(&shape);
    assert!(
        why.contains("serial 7f has the reason removeFromCRL"),
        "{why}"
    );
    let mut shape = Shape::complete();
    shape.entries[2]
        .1
        .push(ce(21, false, &[0x0a, 0x02, 0x00, 0x08]));
    assert!(refused(&shape).contains("malformed reasonCode"));
}

#[test]
fn this_update_at_most_five_minutes_ahead() {
    let mut shape = Shape::complete();
    shape.next_update = None;
    shape.this_update = NOW + MAX_THIS_UPDATE_AHEAD;
    assert_eq!(parse_crl(&shape.pem(), NOW).unwrap().this_update, NOW + 300);
    shape.this_update = NOW + MAX_THIS_UPDATE_AHEAD + 1;
    let why = refused(&shape);
    assert!(
        why.contains("more than 5 minutes ahead of certgate's clock"),
        "{why}"
    );
    // The CRL of issue 30, dated 2096.
    shape.this_update = 3_976_300_800;
    assert!(refused(&shape).contains("thisUpdate (3976300800)"));
}

#[test]
fn rcgen_crls() {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&key).unwrap();
    let at = |unix| ::time::OffsetDateTime::from_unix_timestamp(unix).unwrap();
    let make = |reason, scope: Option<rcgen::CrlScope>| {
        rcgen::CertificateRevocationListParams {
            this_update: at(NOW - 60),
            next_update: at(NOW + 60),
            crl_number: rcgen::SerialNumber::from_slice(&[1]),
            issuing_distribution_point: scope.map(|scope| rcgen::CrlIssuingDistributionPoint {
                distribution_point: rcgen::CrlDistributionPoint {
                    uris: vec!["http://ca.example/crl".into()],
                },
                scope: Some(scope),
            }),
            revoked_certs: vec![rcgen::RevokedCertParams {
                serial_number: rcgen::SerialNumber::from_slice(&[9, 9]),
                revocation_time: at(NOW - 60),
                reason_code: Some(reason),
                invalidity_date: Some(at(NOW - 120)),
            }],
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        }
        .signed_by(&ca, &key)
        .unwrap()
        .pem()
        .unwrap()
    };
    let kept = make(rcgen::RevocationReason::KeyCompromise, None);
    assert_eq!(parse_crl(&kept, NOW).unwrap().revoked_count, 1);
    let users = make(
        rcgen::RevocationReason::Superseded,
        Some(rcgen::CrlScope::UserCertsOnly),
    );
    assert!(parse_crl(&users, NOW).is_ok());
    let cas = make(
        rcgen::RevocationReason::KeyCompromise,
        Some(rcgen::CrlScope::CaCertsOnly),
    );
    assert!(
        matches!(parse_crl(&cas, NOW), Err(DomainError::InvalidCrl(w)) if w.contains("onlyContainsCACerts"))
    );
    let removal = make(rcgen::RevocationReason::RemoveFromCrl, None);
    assert!(
        matches!(parse_crl(&removal, NOW), Err(DomainError::InvalidCrl(w)) if w.contains("removeFromCRL"))
    );
}

#[test]
fn every_truncation_is_refused_without_panic() {
    let der = Shape::complete().der();
    for len in 0..der.len() {
        let text = base64::engine::general_purpose::STANDARD.encode(&der[..len]);
        assert!(parse_crl(&text, NOW).is_err(), "{len}");
        assert!(revoked_serials(&der[..len]).is_err(), "{len}");
    }
    let mut trailing = der.clone();
    trailing.push(0);
    let text = base64::engine::general_purpose::STANDARD.encode(&trailing);
    assert!(
        matches!(parse_crl(&text, NOW), Err(DomainError::InvalidCrl(w)) if w.contains("data after the CRL"))
    );
}

#[test]
fn the_gateway_walk_checks_the_structure_too() {
    let mut shape = Shape::complete();
    shape.entries.truncate(1);
    let good = shape.der();
    // The entry's revocationDate (its first UTCTime) replaced by a NULL of the same length.
    let date = time(shape.this_update - 10);
    let at = good
        .windows(date.len())
        .position(|w| w == date.as_slice())
        .unwrap();
    let mut bad = good.clone();
    bad[at] = 0x05;
    assert!(revoked_serials(&good).is_ok());
    assert!(revoked_serials(&bad).is_err());
    let text = base64::engine::general_purpose::STANDARD.encode(&bad);
    assert!(parse_crl(&text, NOW).is_err());
}
