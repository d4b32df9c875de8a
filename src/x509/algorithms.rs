//! The signature algorithms certgate verifies with: one list, used by the gateway's handshake
//! (proof of the client's key), by every chain check (the gateway's and the check endpoint's,
//! through `trust`, which re-exports it), by CRL verification and by the self-signature check
//! of an upload, so no path accepts a signature another refuses. It is rustls' *ring*
//! provider's list (a test in `gateway::tls` holds the two equal), spelled out here, in the
//! lowest module that verifies signatures, so that no pure module needs a TLS stack.

use rustls_pki_types::SignatureVerificationAlgorithm;
use webpki::ring as algs;

/// Every signature algorithm accepted, in rustls' order.
pub static SIGNATURE_ALGORITHMS: &[&dyn SignatureVerificationAlgorithm] = &[
    algs::ECDSA_P256_SHA256,
    algs::ECDSA_P256_SHA384,
    algs::ECDSA_P384_SHA256,
    algs::ECDSA_P384_SHA384,
    algs::ED25519,
    algs::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
    algs::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
    algs::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
    algs::RSA_PKCS1_2048_8192_SHA256,
    algs::RSA_PKCS1_2048_8192_SHA384,
    algs::RSA_PKCS1_2048_8192_SHA512,
    algs::RSA_PKCS1_2048_8192_SHA256_ABSENT_PARAMS,
    algs::RSA_PKCS1_2048_8192_SHA384_ABSENT_PARAMS,
    algs::RSA_PKCS1_2048_8192_SHA512_ABSENT_PARAMS,
];
