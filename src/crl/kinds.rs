//! Which CRLs certgate stores (spec §13.5): only complete, direct CRLs, dated by a clock that
//! agrees with certgate's. A CRL of another kind would be read as the CA's whole list and
//! either re-admit what the full CRL revoked (a delta, a partition by reason or by certificate
//! kind, `removeFromCRL`) or speak for another issuer (an indirect CRL); one dated in the
//! future would make every real CRL look outdated.

use x509_parser::der_parser::oid::Oid;
use x509_parser::prelude::{FromDer, ParsedExtension, X509Extension};

use super::frame::{extensions, Extension, Frame};

/// How far ahead of certgate's clock a CRL's thisUpdate may be (clock skew), in seconds.
pub const MAX_THIS_UPDATE_AHEAD: i64 = 300;

/// 2.5.29.n, encoded.
const fn ce(n: u8) -> [u8; 3] {
    [0x55, 0x1d, n]
}
const ISSUER_ALT_NAME: [u8; 3] = ce(18);
const CRL_NUMBER: [u8; 3] = ce(20);
const REASON_CODE: [u8; 3] = ce(21);
const HOLD_INSTRUCTION: [u8; 3] = ce(23);
const INVALIDITY_DATE: [u8; 3] = ce(24);
const DELTA_CRL_INDICATOR: [u8; 3] = ce(27);
const ISSUING_DISTRIBUTION_POINT: [u8; 3] = ce(28);
const CERTIFICATE_ISSUER: [u8; 3] = ce(29);
const AUTHORITY_KEY_IDENTIFIER: [u8; 3] = ce(35);
const FRESHEST_CRL: [u8; 3] = ce(46);
/// 1.3.6.1.5.5.7.1.1, authorityInfoAccess.
const AUTHORITY_INFO_ACCESS: [u8; 8] = [0x2b, 6, 1, 5, 5, 7, 1, 1];
/// removeFromCRL (RFC 5280 §5.3.1): only meaningful in a delta CRL.
const REMOVE_FROM_CRL: u8 = 8;

fn dotted(oid: &[u8]) -> String {
    Oid::new(std::borrow::Cow::Borrowed(oid)).to_id_string()
}

/// Checks the CRL's own extensions and its thisUpdate against `now`; the error says why the
/// CRL is not stored.
pub(super) fn check_crl(frame: &Frame<'_>, now: i64) -> Result<(), String> {
    if frame.this_update > now + MAX_THIS_UPDATE_AHEAD {
        return Err(format!(
            "its thisUpdate ({}) is more than {} minutes ahead of certgate's clock ({now}); \
             check the CA's clock, then upload the CRL again.",
            frame.this_update,
            MAX_THIS_UPDATE_AHEAD / 60
        ));
    }
    for ext in frame.extensions() {
        check_crl_extension(&ext?)?;
    }
    Ok(())
}

fn check_crl_extension(ext: &Extension<'_>) -> Result<(), String> {
    match ext.oid {
        o if o == DELTA_CRL_INDICATOR => Err(
            "it is a delta CRL (deltaCRLIndicator): only complete CRLs are stored; upload the \
             CA's full CRL."
                .into(),
        ),
        o if o == ISSUING_DISTRIBUTION_POINT => check_distribution_point(ext),
        o if o == CRL_NUMBER
            || o == AUTHORITY_KEY_IDENTIFIER
            || o == ISSUER_ALT_NAME
            || o == FRESHEST_CRL
            || o == AUTHORITY_INFO_ACCESS =>
        {
            Ok(())
        }
        o if ext.critical => Err(format!(
            "it has a critical extension certgate does not understand ({}).",
            dotted(o)
        )),
        _ => Ok(()),
    }
}

/// An issuing distribution point may name where the CRL is published, and may say it covers
/// only end-entity certificates; anything narrower, or an indirect CRL, is refused.
fn check_distribution_point(ext: &Extension<'_>) -> Result<(), String> {
    let malformed = || "its issuingDistributionPoint extension is malformed.".to_owned();
    let (_, parsed) = X509Extension::from_der(ext.whole).map_err(|_| malformed())?;
    let ParsedExtension::IssuingDistributionPoint(idp) = parsed.parsed_extension() else {
        return Err(malformed());
    };
    if idp.indirect_crl {
        return Err(
            "it is an indirect CRL (issuingDistributionPoint with indirectCRL): only CRLs of \
             the CA's own certificates are stored."
                .into(),
        );
    }
    let partial = if idp.only_some_reasons.is_some() {
        Some("only some revocation reasons (onlySomeReasons)")
    } else if idp.only_contains_ca_certs {
        Some("only CA certificates (onlyContainsCACerts)")
    } else if idp.only_contains_attribute_certs {
        Some("only attribute certificates (onlyContainsAttributeCerts)")
    } else {
        None
    };
    match partial {
        Some(what) => Err(format!(
            "its issuingDistributionPoint limits it to {what}: only complete CRLs are stored; \
             upload the CA's full CRL."
        )),
        None => Ok(()),
    }
}

/// A serial for a message: hex, cut after 20 bytes (the most RFC 5280 allows).
fn shown(serial: &[u8]) -> String {
    if serial.len() > 20 {
        format!("{}…", hex::encode(&serial[..20]))
    } else {
        hex::encode(serial)
    }
}

/// Checks one revoked entry's extensions.
pub(super) fn check_entry(list: &[u8], serial: &[u8]) -> Result<(), String> {
    for ext in extensions(list) {
        let ext = ext.map_err(|e| format!("the entry for serial {}: {e}.", shown(serial)))?;
        match ext.oid {
            o if o == CERTIFICATE_ISSUER => {
                return Err(format!(
                    "the entry for serial {} names another issuer (certificateIssuer): it is an \
                     indirect CRL, and only CRLs of the CA's own certificates are stored.",
                    shown(serial)
                ))
            }
            o if o == REASON_CODE => {
                // extnValue: ENUMERATED, one byte.
                match ext.value {
                    [0x0a, 0x01, REMOVE_FROM_CRL] => {
                        return Err(format!(
                            "the entry for serial {} has the reason removeFromCRL, which only a \
                             delta CRL uses: only complete CRLs are stored.",
                            shown(serial)
                        ))
                    }
                    [0x0a, 0x01, _] => {}
                    _ => {
                        return Err(format!(
                            "the entry for serial {} has a malformed reasonCode.",
                            shown(serial)
                        ))
                    }
                }
            }
            o if o == INVALIDITY_DATE || o == HOLD_INSTRUCTION => {}
            o if ext.critical => {
                return Err(format!(
                    "the entry for serial {} has a critical extension certgate does not \
                     understand ({}).",
                    shown(serial),
                    dotted(o)
                ))
            }
            _ => {}
        }
    }
    Ok(())
}
