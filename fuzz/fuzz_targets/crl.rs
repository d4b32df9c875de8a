//! CRL parsing and verification (`crl::parse_crl`, `crl::check_issued_by`,
//! `crl::revoked_serials`) over any DER. Input: the CRL's DER; the target sends it both as a
//! PEM `X509 CRL` block and as bare base64 (the two forms an upload takes), and also the raw
//! bytes as text.
//!
//! Properties beside no panic: the PEM and the base64 form parse to the same CRL (printed in
//! one form, parsed, the same as in the other), whose DER is the input; a CRL the upload
//! accepts is one a gateway can load (`revoked_serials` succeeds), and its set holds every
//! serial x509-parser reads in it; verification against the fixture root is deterministic.
#![no_main]

use base64::Engine as _;
use certgate::crl::{check_issued_by, parse_crl, revoked_serials};
use certgate_fuzz::{CA_OTHER, CA_ROOT, NOW};
use libfuzzer_sys::fuzz_target;
use x509_parser::prelude::{CertificateRevocationList, FromDer};

fuzz_target!(|data: &[u8]| {
    let _ = parse_crl(&String::from_utf8_lossy(data), NOW);
    let _ = revoked_serials(data);

    let pem_text = pem::encode(&pem::Pem::new("X509 CRL", data.to_vec()));
    let b64 = base64::engine::general_purpose::STANDARD.encode(data);
    let from_pem = parse_crl(&pem_text, NOW);
    let from_b64 = parse_crl(&b64, NOW);
    match (&from_pem, &from_b64) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(_), Err(_)) => {}
        _ => panic!("PEM and base64 disagree: {from_pem:?} / {from_b64:?}"),
    }
    let Ok(crl) = from_pem else {
        return;
    };
    assert_eq!(crl.der, data);
    assert!(crl.revoked_count >= 0);

    let serials = revoked_serials(&crl.der).expect("an accepted CRL loads on a gateway");
    assert!(serials.len() as i64 <= crl.revoked_count);
    if let Ok((_, parsed)) = CertificateRevocationList::from_der(data) {
        for revoked in parsed.iter_revoked_certificates() {
            assert!(
                serials.contains(revoked.raw_serial()),
                "serial {} missing",
                hex::encode(revoked.raw_serial())
            );
        }
    }

    for ca in [CA_ROOT, CA_OTHER] {
        let first = check_issued_by(&crl, ca);
        assert_eq!(first, check_issued_by(&crl, ca));
    }
});
