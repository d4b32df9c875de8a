//! Start-up and the gateway's TLS files: each mistake named.

use std::path::Path;

use super::{gateway, utf8, TlsFiles};
use crate::pki;

/// Each mistake with the gateway's TLS files is named: which file, what was expected, what
/// was found. The database is missing on purpose: good files get past TLS to that refusal.
#[test]
fn tls_file_mistakes_are_named() {
    let tls = TlsFiles::new();
    let db = format!("sqlite://{}", tls.dir.path().join("absent.db").display());
    let other_key = pki::server_leaf(&pki::ca("Other CA")).key.serialize_pem();
    let other_key = tls.file("other.key", &other_key);
    let garbage = tls.file("garbage.pem", "this is not PEM\n");
    let encrypted = tls.file(
        "encrypted.key",
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIBvTBXBgkqhkiG9w0BBQ0wSjApBgkqhkiG9w0BBQwwHAQI\n-----END ENCRYPTED PRIVATE KEY-----\n",
    );
    let missing = tls.dir.path().join("missing.key");
    let (cert, key) = (tls.cert.display(), tls.key.display());
    let (good_cert, good_key) = (&tls.cert, &tls.key);
    let check = |case: &str, cert: &Path, key: &Path, extra: &[&str], parts: &[&str]| {
        let r = gateway(&db, cert, key, extra);
        assert!(!r.success, "{case}: started");
        for part in parts {
            assert!(
                r.stderr.contains(part),
                "{case}: stderr lacks {part:?}:\n{}",
                r.stderr
            );
        }
    };

    check(
        "key file missing",
        good_cert,
        &missing,
        &[],
        &[&format!(
            "cannot read TLS private key {}: No such file or directory",
            missing.display()
        )],
    );
    check(
        "certificate given as the key",
        good_cert,
        good_cert,
        &[],
        &[
            &format!("no private key found in {cert}; expected PKCS#8, PKCS#1 or SEC1 PEM"),
            "found CERTIFICATE",
        ],
    );
    check(
        "encrypted key",
        good_cert,
        &encrypted,
        &[],
        &[
            &format!("no private key found in {}", encrypted.display()),
            "found ENCRYPTED PRIVATE KEY",
            "encrypted keys are not supported",
        ],
    );
    check(
        "another certificate's key",
        good_cert,
        &other_key,
        &[],
        &[&format!(
            "key in {} does not match the certificate in {cert}",
            other_key.display()
        )],
    );
    check(
        "key given as the certificate",
        good_key,
        good_key,
        &[],
        &[
            &format!("no certificate found in {key}; expected PEM CERTIFICATE blocks"),
            "found PRIVATE KEY",
        ],
    );
    check(
        "garbage certificate",
        &garbage,
        good_key,
        &[],
        &[&format!(
            "no certificate found in {}; expected PEM CERTIFICATE blocks, found no PEM block",
            garbage.display()
        )],
    );
    check(
        "certificate path is a directory",
        tls.dir.path(),
        good_key,
        &[],
        &[&format!(
            "cannot read TLS certificate {}: Is a directory",
            tls.dir.path().display()
        )],
    );
    check(
        "garbage upstream CA",
        good_cert,
        good_key,
        &["--upstream-ca", utf8(&garbage)],
        &[&format!(
            "no certificate found in {}; expected PEM CERTIFICATE blocks",
            garbage.display()
        )],
    );
    // Control: the right pair gets past TLS and stops at the (missing) database.
    check(
        "good files",
        good_cert,
        good_key,
        &[],
        &["no SQLite database at"],
    );
}
