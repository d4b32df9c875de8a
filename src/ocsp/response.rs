//! An OCSP response, parsed and verified (RFC 6960 §3.2, §4.2.2.2). Pure: the caller gives the
//! time. A response counts only when it is a successful basic response signed by the leaf's
//! issuer, or by a delegated responder (a certificate in the response issued by that issuer,
//! with the id-kp-OCSPSigning extended key usage, valid now), that speaks about the leaf and
//! is current (`thisUpdate` not in the future beyond a small skew, `nextUpdate` not past).

use der::{Decode, Encode};
use x509_ocsp::OcspResponseStatus;
use x509_ocsp::{BasicOcspResponse, CertStatus, OcspGeneralizedTime, OcspResponse};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::request::{same_certificate, OcspTarget};
use super::OcspError;

/// id-pkix-ocsp-basic: the only response type certgate reads.
const ID_PKIX_OCSP_BASIC: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.1");
/// How far a responder's clock may run ahead of certgate's.
pub const CLOCK_SKEW_SECS: i64 = 300;
/// Most certificates of a response looked at as a delegated responder.
const MAX_RESPONDER_CERTS: usize = 4;

/// What a responder said about a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertState {
    Good,
    Revoked,
    /// The responder does not know the certificate: no valid answer (spec §13.4).
    Unknown,
}

impl CertState {
    pub fn as_str(self) -> &'static str {
        match self {
            CertState::Good => "good",
            CertState::Revoked => "revoked",
            CertState::Unknown => "unknown",
        }
    }
}

/// A verified answer about one certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OcspAnswer {
    pub state: CertState,
    /// Unix seconds.
    pub this_update: i64,
    pub next_update: Option<i64>,
    /// Signed by a delegated responder (not by the issuer itself).
    pub delegated: bool,
}

/// Parses and verifies `body`, the answer to `target`'s request, at `now` (Unix seconds).
pub fn verify(body: &[u8], target: &OcspTarget, now: i64) -> Result<OcspAnswer, OcspError> {
    let response = OcspResponse::from_der(body).map_err(|_| OcspError::Malformed)?;
    if response.response_status != OcspResponseStatus::Successful {
        return Err(OcspError::NotSuccessful(response.response_status as u8));
    }
    let bytes = response.response_bytes.ok_or(OcspError::Malformed)?;
    if bytes.response_type != ID_PKIX_OCSP_BASIC {
        return Err(OcspError::Malformed);
    }
    let basic_der = bytes.response.as_bytes();
    let basic = BasicOcspResponse::from_der(basic_der).map_err(|_| OcspError::Malformed)?;
    let (_, issuer) =
        X509Certificate::from_der(&target.issuer_der).map_err(|_| OcspError::BadCertificate)?;
    let delegated = signer(basic_der, &basic, &issuer, now)?;
    let single = basic
        .tbs_response_data
        .responses
        .iter()
        .find(|r| same_certificate(&target.cert_id, &r.cert_id))
        .ok_or(OcspError::NotForThisCertificate)?;
    let this_update = unix(&single.this_update);
    let next_update = single.next_update.as_ref().map(unix);
    if this_update > now.saturating_add(CLOCK_SKEW_SECS) {
        return Err(OcspError::NotYetValid);
    }
    if next_update.is_some_and(|n| n < now) {
        return Err(OcspError::Stale);
    }
    let state = match single.cert_status {
        CertStatus::Good(_) => CertState::Good,
        CertStatus::Revoked(_) => CertState::Revoked,
        CertStatus::Unknown(_) => CertState::Unknown,
    };
    Ok(OcspAnswer {
        state,
        this_update,
        next_update,
        delegated,
    })
}

/// Who signed the response: `Ok(false)` the issuer itself, `Ok(true)` a delegated responder.
fn signer(
    basic_der: &[u8],
    basic: &BasicOcspResponse,
    issuer: &X509Certificate<'_>,
    now: i64,
) -> Result<bool, OcspError> {
    let issuer_key = issuer.public_key().raw;
    if crate::x509::verify_signed(basic_der, issuer_key).is_ok() {
        return Ok(false);
    }
    let certs = basic.certs.as_deref().unwrap_or_default();
    for cert in certs.iter().take(MAX_RESPONDER_CERTS) {
        let Ok(der) = cert.to_der() else { continue };
        let Ok((_, responder)) = X509Certificate::from_der(&der) else {
            continue;
        };
        if is_delegated_responder(&der, &responder, issuer, now)
            && crate::x509::verify_signed(basic_der, responder.public_key().raw).is_ok()
        {
            return Ok(true);
        }
    }
    Err(OcspError::WrongSigner)
}

/// RFC 6960 §4.2.2.2: issued (and signed) by the issuer, for OCSP signing, valid now.
fn is_delegated_responder(
    der: &[u8],
    responder: &X509Certificate<'_>,
    issuer: &X509Certificate<'_>,
    now: i64,
) -> bool {
    let for_ocsp =
        matches!(responder.extended_key_usage(), Ok(Some(eku)) if eku.value.ocsp_signing);
    let validity = responder.validity();
    for_ocsp
        && responder.issuer().as_raw() == issuer.subject().as_raw()
        && validity.not_before.timestamp() <= now
        && now <= validity.not_after.timestamp()
        && crate::x509::verify_signed(der, issuer.public_key().raw).is_ok()
}

fn unix(t: &OcspGeneralizedTime) -> i64 {
    i64::try_from(t.0.to_unix_duration().as_secs()).unwrap_or(i64::MAX)
}
