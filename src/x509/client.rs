//! The client certificate chain a person submits to the check endpoint (decisions.md D20): PEM text
//! in, the DER certificates in the order a TLS client would send them (leaf first, then its
//! intermediates) out, or a precise refusal. What the chain is worth is the trust decision's
//! business, not this module's: like the gateway, it only refuses what no TLS handshake could
//! carry.

use x509_parser::prelude::*;

use super::{holds_bare_private_key, outside_certificate_blocks};
use crate::domain::DomainError;

fn invalid(msg: impl Into<String>) -> DomainError {
    DomainError::InvalidCertificate(msg.into())
}

/// The DER certificates of `text`, leaf first. Refuses private keys (any PEM block of one, or
/// bare base64 key material outside the certificate blocks), PEM blocks of another type, text
/// without a certificate, and a leaf that is not an X.509 certificate (a TLS handshake would
/// fail on it before any request). Intermediates are passed on as they are, as the gateway
/// receives them.
pub fn parse_client_chain(text: &str) -> Result<Vec<Vec<u8>>, DomainError> {
    if text.contains("PRIVATE KEY-----")
        || holds_bare_private_key(&outside_certificate_blocks(text))
    {
        return Err(DomainError::PrivateKeyNotAllowed);
    }
    let blocks = ::pem::parse_many(text.as_bytes()).map_err(|e| {
        invalid(format!("the PEM text could not be decoded ({e}). Send the client certificate as a '-----BEGIN CERTIFICATE-----' block, followed by its intermediates."))
    })?;
    if let Some(other) = blocks.iter().find(|b| b.tag() != "CERTIFICATE") {
        return Err(invalid(format!(
            "found a PEM block of type '{}'; expected 'CERTIFICATE' blocks (the client certificate first, then its intermediates).",
            other.tag().chars().take(40).collect::<String>()
        )));
    }
    let Some(leaf) = blocks.first() else {
        return Err(invalid(
            "not PEM: no '-----BEGIN CERTIFICATE-----' block was found.",
        ));
    };
    match parse_x509_certificate(leaf.contents()) {
        Ok(([], _)) => {}
        Ok(_) => {
            return Err(invalid(
                "the first PEM block has data after the X.509 certificate.",
            ))
        }
        Err(e) => {
            return Err(invalid(format!(
                "the first PEM block is not a valid X.509 certificate ({e})."
            )))
        }
    }
    Ok(blocks.into_iter().map(::pem::Pem::into_contents).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals() {
        assert_eq!(
            parse_client_chain("-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----"),
            Err(DomainError::PrivateKeyNotAllowed)
        );
        assert!(matches!(
            parse_client_chain("no pem here"),
            Err(DomainError::InvalidCertificate(_))
        ));
        assert!(matches!(
            parse_client_chain("-----BEGIN PUBLIC KEY-----\nAA==\n-----END PUBLIC KEY-----"),
            Err(DomainError::InvalidCertificate(m)) if m.contains("PUBLIC KEY")
        ));
        assert!(matches!(
            parse_client_chain("-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----"),
            Err(DomainError::InvalidCertificate(m)) if m.contains("not a valid X.509")
        ));
    }
}
