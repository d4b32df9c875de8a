//! Uploads the gateway could never use, key material in disguise, and ids that try to make the
//! server echo a lot (decisions.md D8, D37).

use base64::Engine as _;

use crate::helpers::{backend_tests, TestApp};
use crate::pki;

backend_tests!(
    keys_the_gateway_cannot_use_are_refused,
    a_corrupted_self_signature_is_refused,
    bare_base64_private_keys_are_refused,
    long_ids_are_cut_in_messages,
);

async fn keys_the_gateway_cannot_use_are_refused(app: TestApp) {
    let issuer = pki::ca("Issuer");
    // Control: a 2048-bit modulus with the usual exponent is accepted (a signed-by-issuer CA,
    // so no self-signature to check).
    let modulus_2048 = [vec![0xc5], vec![0x5a; 255]].concat();
    let ok = pki::ca_with_key(
        &issuer,
        "RSA 2048",
        &pki::RsaPublicKey::new(&modulus_2048, &[1, 0, 1]),
    );
    app.api.upload(&ok, None).await.ok();
    let cases = [
        (
            "RSA 16384",
            pki::RsaPublicKey::new(&[vec![0xc5], vec![0x5a; 2047]].concat(), &[1, 0, 1]),
            "16384 bits",
        ),
        (
            "huge exponent",
            pki::RsaPublicKey::new(&modulus_2048, &[1, 0, 0, 0, 0, 1]),
            "exponent",
        ),
        (
            "exponent 1",
            pki::RsaPublicKey::new(&modulus_2048, &[1]),
            "exponent",
        ),
    ];
    for (name, key, says) in cases {
        let pem = pki::ca_with_key(&issuer, name, &key);
        let message = app
            .api
            .upload(&pem, Some(name))
            .await
            .err(400, Some("invalid_certificate"), Some("certificate"))
            .to_owned();
        assert!(message.contains(says), "{name}: {message}");
    }
    assert_eq!(
        app.api.all_ids().await.len(),
        1,
        "nothing refused was stored"
    );
}

async fn a_corrupted_self_signature_is_refused(app: TestApp) {
    let ca = pki::ca("Self-signed CA");
    let mut der = ca.cert.der().to_vec();
    // The signature is the last bytes of the DER: flip one.
    let last = der.len() - 5;
    der[last] ^= 0x5a;
    let pem = ::pem::encode(&::pem::Pem::new("CERTIFICATE", der));
    let message = app
        .api
        .upload(&pem, None)
        .await
        .err(400, Some("invalid_certificate"), Some("certificate"))
        .to_owned();
    assert!(message.contains("signature"), "{message}");
    // Control: the uncorrupted one is fine.
    app.api.upload(&ca.pem(), None).await.ok();
}

async fn bare_base64_private_keys_are_refused(app: TestApp) {
    let ca = pki::ca("Leaky CA");
    let b64 = base64::engine::general_purpose::STANDARD.encode(ca.key.serialize_der());
    let wrapped = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    for text in [
        format!("{}\n{b64}\n", ca.pem()),
        format!("my key:\n{wrapped}\n{}", ca.pem()),
        format!("{}\n{wrapped}", ca.pem()),
    ] {
        app.api.upload(&text, None).await.err(
            400,
            Some("private_key_not_allowed"),
            Some("certificate"),
        );
    }
    assert!(app.api.all_ids().await.is_empty(), "nothing stored");
    // Base64 that is not a key (a second copy of the certificate's body, say) is not a key.
    let body: String = ca
        .pem()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    app.api
        .upload(&format!("{}\nnote: {body}\n", ca.pem()), None)
        .await
        .ok();
}

async fn long_ids_are_cut_in_messages(app: TestApp) {
    let huge = format!("cert_{}", "x".repeat(60_000));
    for path in [
        format!("/organization/certificates/{huge}"),
        format!("/organization/projects/proj_{}", "y".repeat(60_000)),
    ] {
        let r = app.api.get(&path).await;
        let message = r.err(404, None, None);
        assert!(message.len() < 200, "{} bytes echoed", message.len());
    }
    let r = app
        .api
        .post(
            "/organization/certificates/activate",
            serde_json::json!({"certificate_ids": [huge]}),
        )
        .await;
    let message = r.err(404, None, Some("certificate_ids"));
    assert!(message.len() < 200, "{} bytes echoed", message.len());
    let r = app
        .api
        .get(&format!("/organization/certificates?after={huge}"))
        .await;
    let message = r.err(400, None, Some("after"));
    assert!(message.len() < 200, "{} bytes echoed", message.len());
}
