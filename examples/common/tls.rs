//! The benchmarks' TLS client: what every bench that talks to the gateway sets up the same
//! way. Included with `#[path = "common/tls.rs"] mod tls;` (an example is its own crate).

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::{CertificateDer, PrivateKeyDer};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A client configuration trusting `DIR/server-ca.pem`, presenting `chain_pem` (the client's
/// certificate, then its intermediates) with `key_pem`, speaking HTTP/1.1, without session
/// resumption unless `resume` (each connection pays a full handshake). PEM is read with the
/// crate's one PEM parser (`pem`).
pub(crate) fn client_config(
    dir: &Path,
    chain_pem: &str,
    key_pem: &str,
    resume: bool,
) -> Result<Arc<rustls::ClientConfig>, BoxError> {
    let mut roots = rustls::RootCertStore::empty();
    for block in pem::parse_many(std::fs::read(dir.join("server-ca.pem"))?)? {
        roots.add(CertificateDer::from(block.into_contents()))?;
    }
    let chain: Vec<CertificateDer<'static>> = pem::parse_many(chain_pem)?
        .into_iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(|b| CertificateDer::from(b.into_contents()))
        .collect();
    let key = pem::parse_many(key_pem)?
        .into_iter()
        .find(|b| b.tag() == "PRIVATE KEY")
        .ok_or("no PKCS#8 PRIVATE KEY block")?;
    let key = PrivateKeyDer::Pkcs8(key.into_contents().into());
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)?;
    if !resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// [`client_config`] for the client whose certificate and key are `DIR/WHO.pem` and
/// `DIR/WHO.key`.
pub(crate) fn client_files(
    dir: &Path,
    who: &str,
    resume: bool,
) -> Result<Arc<rustls::ClientConfig>, BoxError> {
    let chain = std::fs::read_to_string(dir.join(format!("{who}.pem")))?;
    let key = std::fs::read_to_string(dir.join(format!("{who}.key")))?;
    client_config(dir, &chain, &key, resume)
}
