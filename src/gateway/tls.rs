//! The listener's rustls configuration and its client certificate verifier.
//!
//! [`AskForClientCert`] asks every client for a certificate without requiring one and without
//! naming any CA (naming them would list every tenant's CAs to anyone who connects). During
//! the handshake it checks only that the client holds the certificate's private key (the
//! handshake signature); any chain is accepted there, because the trust decision depends on
//! the request's organization and project, which only the HTTP request carries. That decision
//! is [`crate::trust::decide()`], made per request. `WebPkiClientVerifier` is not used: it aborts
//! the handshake on an unknown chain (so no 403 body can be sent) and advertises CA names.
//!
//! Session resumption is on (stateful, in memory; no stateless tickets, no 0-RTT): a resumed
//! connection carries the chain of the full handshake it resumes, and its requests are
//! decided like any others, so resumption shortens handshakes and never decisions.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};

use crate::trust;

/// The crypto provider used for the listener, the upstream client and chain checks: rustls'
/// *ring* provider, verifying signatures with [`trust::SIGNATURE_ALGORITHMS`] (its own list,
/// which a test below holds equal), so the handshake, the chain checks and CRL verification
/// accept exactly the same signatures.
pub fn provider() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.signature_verification_algorithms.all = trust::SIGNATURE_ALGORITHMS;
    Arc::new(provider)
}

/// Requests a client certificate, requires none, names no CA, checks possession of the key.
#[derive(Debug)]
pub struct AskForClientCert {
    algs: WebPkiSupportedAlgorithms,
}

impl AskForClientCert {
    pub fn new(provider: &CryptoProvider) -> Self {
        AskForClientCert {
            algs: provider.signature_verification_algorithms,
        }
    }
}

impl ClientCertVerifier for AskForClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Deliberately accepts any chain: trust is decided per request, see the module doc.
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// The listener's configuration: our verifier, the server's own chain and key, ALPN `h2` and
/// `http/1.1`.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> anyhow::Result<ServerConfig> {
    let mut provider = (*provider()).clone();
    // AES-128-GCM first, chosen over the client's order: the suite TLS 1.3 requires of every
    // implementation, as strong as any here for a session's lifetime, and its SHA-256 key
    // schedule costs a handshake less than SHA-384's (this server does full handshakes at
    // scale: a client's first connection, and every one after its session left the cache).
    provider
        .cipher_suites
        .sort_by_key(|suite| suite.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    let provider = Arc::new(provider);
    let verifier = Arc::new(AskForClientCert::new(&provider));
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .context("the TLS certificate and key do not form a usable pair")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.ignore_client_order = true;
    resumption(&mut config);
    Ok(config)
}

/// Sessions kept for resumption, in this process's memory (rustls's own default, named here).
/// Each holds the client's chain (at most 5 certificates, §12.9), so a few MiB at most.
const RESUMABLE_SESSIONS: usize = 256;

/// Session resumption stays on, and is only ever a shorter handshake, never a decision: the
/// session brings back the chain the client sent (and proved the key of) in its full
/// handshake, and every request on the resumed connection is judged afresh against the live
/// trust state like any other (a deactivated CA, a deny-listed leaf or an expired certificate
/// is refused there as on a new session). What it saves is the handshake's signatures for a
/// client that reconnects. Sessions are stateful (kept here, each TLS 1.3 ticket good for one
/// resumption); stateless tickets stay off (no ticket key to rotate or share between replicas)
/// and 0-RTT data is refused (it could be replayed).
fn resumption(config: &mut ServerConfig) {
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(RESUMABLE_SESSIONS);
    config.send_tls13_tickets = 2;
    config.max_early_data_size = 0;
    // `ticketer` keeps rustls's default, which never produces a ticket (tested below).
}

/// Reads the server's certificate chain (PEM, leaf first) and private key (PEM), and checks
/// that the key is the leaf's. Each error names the file, what was expected and what was
/// found there (never any key material).
pub fn load_identity(
    cert_path: &Path,
    key_path: &Path,
) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let chain = read_certificates(cert_path, "TLS certificate")?;
    let key = read_private_key(key_path)?;
    warn_if_readable_by_others(key_path);
    check_pair(&chain, &key, cert_path, key_path)?;
    Ok((chain, key))
}

/// Reads PEM certificates to trust for an https upstream with a private CA.
pub fn load_certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    read_certificates(path, "upstream CA file")
}

fn read_certificates(path: &Path, what: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read {what} {}", path.display()))?;
    // The one PEM parser of the crate (`pem`), as uploads use: blocks of other types are
    // passed over.
    let certs: Vec<CertificateDer<'static>> = pem::parse_many(&bytes)
        .with_context(|| format!("invalid PEM in {what} {}", path.display()))?
        .into_iter()
        .filter(|block| block.tag() == "CERTIFICATE")
        .map(|block| CertificateDer::from(block.into_contents()))
        .collect();
    if certs.is_empty() {
        anyhow::bail!(
            "no certificate found in {}; expected PEM CERTIFICATE blocks, {}",
            path.display(),
            found(&bytes)
        );
    }
    Ok(certs)
}

fn read_private_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read TLS private key {}", path.display()))?;
    // The PEM errors name markers and positions, never the key's content.
    let blocks = pem::parse_many(&bytes)
        .with_context(|| format!("invalid PEM in TLS private key {}", path.display()))?;
    // The first key block, by its label: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
    let key = blocks.into_iter().find_map(|block| match block.tag() {
        "PRIVATE KEY" => Some(PrivateKeyDer::Pkcs8(block.into_contents().into())),
        "RSA PRIVATE KEY" => Some(PrivateKeyDer::Pkcs1(block.into_contents().into())),
        "EC PRIVATE KEY" => Some(PrivateKeyDer::Sec1(block.into_contents().into())),
        _ => None,
    });
    if let Some(key) = key {
        return Ok(key);
    }
    let found = found(&bytes);
    let hint = if found.contains("ENCRYPTED PRIVATE KEY") {
        "; encrypted keys are not supported: decrypt it with `openssl pkey`"
    } else {
        ""
    };
    anyhow::bail!(
        "no private key found in {}; expected PKCS#8, PKCS#1 or SEC1 PEM (a PRIVATE KEY, \
         RSA PRIVATE KEY or EC PRIVATE KEY block), {found}{hint}",
        path.display()
    )
}

/// Fails unless `key` is the private key of the chain's first certificate (the leaf).
fn check_pair(
    chain: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
    cert_path: &Path,
    key_path: &Path,
) -> anyhow::Result<()> {
    let signing_key = provider()
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| {
            anyhow::anyhow!(
                "the private key in {} is not usable for TLS: {e}",
                key_path.display()
            )
        })?;
    match rustls::sign::CertifiedKey::new(chain.to_vec(), signing_key).keys_match() {
        // `Unknown`: the key cannot tell its public half, so there is nothing to compare.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(()),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            anyhow::bail!(
                "key in {} does not match the certificate in {} (its first CERTIFICATE \
                 block, which must be the server's own certificate)",
                key_path.display(),
                cert_path.display()
            )
        }
        Err(e) => anyhow::bail!(
            "the first certificate in {} is not usable for TLS: {e}",
            cert_path.display()
        ),
    }
}

/// What a PEM file holds, for messages: "found CERTIFICATE, PRIVATE KEY", or what it is
/// instead.
fn found(bytes: &[u8]) -> String {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return "found an empty file".to_owned();
    }
    match pem::parse_many(bytes) {
        Ok(blocks) if !blocks.is_empty() => {
            let mut tags: Vec<&str> = blocks.iter().map(pem::Pem::tag).collect();
            tags.dedup();
            format!("found {}", tags.join(", "))
        }
        Ok(_) => "found no PEM block (binary DER, or not a certificate or key file)".to_owned(),
        Err(e) => format!("found a malformed PEM block ({e})"),
    }
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "the TLS private key is readable by group or others; expected mode 0600");
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;

    /// `trust`'s list is rustls' own: a rustls upgrade that changes its list fails here.
    #[test]
    fn trust_verifies_the_signatures_rustls_does() {
        let ids = |algs: &[&dyn rustls_pki_types::SignatureVerificationAlgorithm]| {
            algs.iter()
                .map(|a| (a.public_key_alg_id(), a.signature_alg_id(), a.fips()))
                .map(|(k, s, f)| (k.as_ref().to_vec(), s.as_ref().to_vec(), f))
                .collect::<Vec<_>>()
        };
        let rustls_own = rustls::crypto::ring::default_provider();
        assert_eq!(
            ids(trust::SIGNATURE_ALGORITHMS),
            ids(rustls_own.signature_verification_algorithms.all)
        );
        assert_eq!(
            ids(provider().signature_verification_algorithms.all),
            ids(trust::SIGNATURE_ALGORITHMS)
        );
    }

    #[test]
    fn sessions_resume_from_memory_without_tickets_or_early_data() {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let config = server_config(
            vec![made.cert.der().clone()],
            PrivateKeyDer::Pkcs8(made.key_pair.serialize_der().into()),
        )
        .unwrap();
        assert!(config.session_storage.can_cache(), "resumption is on");
        assert!(config.send_tls13_tickets > 0, "TLS 1.3 clients can resume");
        assert!(!config.ticketer.enabled(), "no stateless tickets");
        assert_eq!(config.max_early_data_size, 0, "no 0-RTT");
    }
}
