//! What a client filter (decisions.md D26) can ask of a client's leaf certificate: the `cert.*`
//! variables, in the formats of decisions.md D3 (RFC 4514 names, lowercase hex serial and SHA-256,
//! Unix seconds).

use sha2::Digest;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::*;

use super::rfc4514::rfc4514_string;

/// The `cert` variable of a client filter.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeafFacts {
    pub subject: String,
    /// The subject's (last) common name; empty when there is none.
    pub subject_cn: String,
    pub issuer: String,
    pub serial: String,
    pub sha256: String,
    pub san_dns: Vec<String>,
    pub san_uri: Vec<String>,
    pub san_email: Vec<String>,
    pub san_ip: Vec<String>,
    pub not_before: i64,
    pub not_after: i64,
}

impl LeafFacts {
    /// The facts of a DER certificate; `None` if it does not parse.
    pub fn of(der: &[u8]) -> Option<LeafFacts> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let mut facts = LeafFacts {
            subject: rfc4514_string(cert.subject()),
            subject_cn: cert
                .subject()
                .iter_common_name()
                .last()
                .and_then(|cn| cn.as_str().ok())
                .unwrap_or_default()
                .to_owned(),
            issuer: rfc4514_string(cert.issuer()),
            serial: format!("{:x}", cert.tbs_certificate.serial),
            sha256: hex::encode(sha2::Sha256::digest(der)),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            ..LeafFacts::default()
        };
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(d) => facts.san_dns.push((*d).to_owned()),
                    GeneralName::URI(u) => facts.san_uri.push((*u).to_owned()),
                    GeneralName::RFC822Name(e) => facts.san_email.push((*e).to_owned()),
                    GeneralName::IPAddress(ip) => {
                        if let Some(text) = ip_text(ip) {
                            facts.san_ip.push(text);
                        }
                    }
                    _ => {}
                }
            }
        }
        Some(facts)
    }

    /// A certificate with every variable set, to try a filter on when it is written.
    pub fn sample() -> LeafFacts {
        LeafFacts {
            subject: "CN=client,O=Example".into(),
            subject_cn: "client".into(),
            issuer: "CN=Example CA,O=Example".into(),
            serial: "1a2b3c".into(),
            sha256: "ab".repeat(32),
            san_dns: vec!["client.example.com".into()],
            san_uri: vec!["spiffe://example.com/ns/default/sa/client".into()],
            san_email: vec!["client@example.com".into()],
            san_ip: vec!["192.0.2.1".into()],
            not_before: 1_700_000_000,
            not_after: 1_800_000_000,
        }
    }
}

fn ip_text(raw: &[u8]) -> Option<String> {
    match raw.len() {
        4 => Some(std::net::Ipv4Addr::from(<[u8; 4]>::try_from(raw).ok()?).to_string()),
        16 => Some(std::net::Ipv6Addr::from(<[u8; 16]>::try_from(raw).ok()?).to_string()),
        _ => None,
    }
}
