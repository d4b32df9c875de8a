//! What is asked of a responder for one leaf: its URL (the leaf's Authority Information Access),
//! the `CertID` (RFC 6960 §4.1.1: SHA-1 of the issuer's name and key, and the leaf's serial)
//! and the DER `OCSPRequest`. Pure.

use der::asn1::{IntRef, Null, ObjectIdentifier, OctetString};
use der::{Any, Decode, Encode};
use sha1::{Digest, Sha1};
use spki::AlgorithmIdentifierOwned;
use x509_cert::serial_number::SerialNumber;
use x509_ocsp::{CertId, OcspRequest, Request, TbsRequest, Version};
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509Certificate};

use super::OcspError;

/// id-sha1: what `CertIDs` are hashed with (every responder understands it; RFC 6960 §4.3).
pub const ID_SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
/// id-ad-ocsp, the access method of an OCSP responder in Authority Information Access.
const ID_AD_OCSP: &str = "1.3.6.1.5.5.7.48.1";
/// Most bytes of a responder URL taken from a certificate.
const MAX_URL_LEN: usize = 2048;

/// One leaf's OCSP question, built once per (leaf, issuer).
#[derive(Debug, Clone)]
pub struct OcspTarget {
    /// The responder, from the leaf's Authority Information Access (the first http(s) one).
    pub url: url::Url,
    pub cert_id: CertId,
    /// The DER `OCSPRequest` (one request, no nonce: answers are cached, spec §13.4).
    pub request_der: Vec<u8>,
    /// The issuer's DER: the key a direct answer is signed with, and the CA a delegated
    /// responder must be certified by.
    pub issuer_der: Vec<u8>,
}

impl OcspTarget {
    /// The question for `leaf_der`, issued by `issuer_der` (both DER certificates).
    pub fn new(leaf_der: &[u8], issuer_der: &[u8]) -> Result<OcspTarget, OcspError> {
        let (_, leaf) =
            X509Certificate::from_der(leaf_der).map_err(|_| OcspError::BadCertificate)?;
        let (_, issuer) =
            X509Certificate::from_der(issuer_der).map_err(|_| OcspError::BadCertificate)?;
        let url = responder_url(&leaf).ok_or(OcspError::NoResponder)?;
        let cert_id = cert_id(&leaf, &issuer)?;
        let request = OcspRequest {
            tbs_request: TbsRequest {
                version: Version::V1,
                requestor_name: None,
                request_list: vec![Request {
                    req_cert: cert_id.clone(),
                    single_request_extensions: None,
                }],
                request_extensions: None,
            },
            optional_signature: None,
        };
        let request_der = request.to_der().map_err(|_| OcspError::BadCertificate)?;
        Ok(OcspTarget {
            url,
            cert_id,
            request_der,
            issuer_der: issuer_der.to_vec(),
        })
    }
}

/// The first http or https OCSP responder the leaf's Authority Information Access names.
fn responder_url(leaf: &X509Certificate<'_>) -> Option<url::Url> {
    leaf.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityInfoAccess(aia) => aia
                .accessdescs
                .iter()
                .filter(|d| d.access_method.to_id_string() == ID_AD_OCSP)
                .find_map(|d| match &d.access_location {
                    GeneralName::URI(uri) if uri.len() <= MAX_URL_LEN => url::Url::parse(uri)
                        .ok()
                        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some()),
                    _ => None,
                }),
            _ => None,
        })
}

/// The `CertID` of `leaf` as issued by `issuer` (SHA-1, NULL parameters, as OpenSSL sends it).
fn cert_id(leaf: &X509Certificate<'_>, issuer: &X509Certificate<'_>) -> Result<CertId, OcspError> {
    let name_hash = Sha1::digest(issuer.subject().as_raw());
    let key_hash = Sha1::digest(issuer.public_key().subject_public_key.data.as_ref());
    let serial_tlv = IntRef::new(leaf.raw_serial())
        .and_then(|i| i.to_der())
        .map_err(|_| OcspError::BadCertificate)?;
    let serial_number =
        SerialNumber::from_der(&serial_tlv).map_err(|_| OcspError::BadCertificate)?;
    let octets = |b: &[u8]| OctetString::new(b).map_err(|_| OcspError::BadCertificate);
    Ok(CertId {
        hash_algorithm: AlgorithmIdentifierOwned {
            oid: ID_SHA1,
            parameters: Some(Any::from(Null)),
        },
        issuer_name_hash: octets(&name_hash)?,
        issuer_key_hash: octets(&key_hash)?,
        serial_number,
    })
}

/// Whether a response's `CertID` names the same certificate as the one asked about: same hash
/// algorithm (parameters absent or NULL alike), issuer hashes and serial.
pub fn same_certificate(asked: &CertId, answered: &CertId) -> bool {
    asked.hash_algorithm.oid == answered.hash_algorithm.oid
        && asked.issuer_name_hash == answered.issuer_name_hash
        && asked.issuer_key_hash == answered.issuer_key_hash
        && asked.serial_number == answered.serial_number
}
