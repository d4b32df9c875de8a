//! Revocation a CA publishes itself (spec §13.4, decisions.md D58): the URL of its CRL, which
//! certgate keeps fetched, and whether and how the gateway asks the client's OCSP responder.

use super::DomainError;

/// Longest accepted `crl_url`, in bytes.
pub const MAX_CRL_URL_BYTES: usize = 2048;

/// How the gateway (and authz, and the check endpoint) use OCSP for a CA's clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OcspMode {
    /// Not asked (the default; responses then carry no `ocsp`).
    #[default]
    Off,
    /// Asked; no valid answer admits (logged and counted).
    SoftFail,
    /// Asked; no valid answer refuses (`client_certificate_revocation_unknown`).
    HardFail,
}

impl OcspMode {
    pub const VALUES: [&'static str; 3] = ["off", "soft_fail", "hard_fail"];

    pub fn as_str(self) -> &'static str {
        match self {
            OcspMode::Off => "off",
            OcspMode::SoftFail => "soft_fail",
            OcspMode::HardFail => "hard_fail",
        }
    }

    /// The mode as stored and written on the wire; `None` for anything else.
    pub fn parse(raw: &str) -> Option<OcspMode> {
        match raw {
            "off" => Some(OcspMode::Off),
            "soft_fail" => Some(OcspMode::SoftFail),
            "hard_fail" => Some(OcspMode::HardFail),
            _ => None,
        }
    }

    /// What a certificate row stores: `None` for off, so a CA that never set a mode and one
    /// set back to off look alike (and answer OpenAI's shape).
    pub fn stored(self) -> Option<&'static str> {
        (self != OcspMode::Off).then(|| self.as_str())
    }
}

/// A certificate's revocation sources as uploaded (or after a modify).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RevocationSources {
    pub crl_url: Option<String>,
    pub ocsp: OcspMode,
}

/// What a modify call sets of the sources: `None` leaves a field as it is; `crl_url:
/// Some(None)` clears the URL.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SourcesChange {
    pub crl_url: Option<Option<String>>,
    pub ocsp: Option<OcspMode>,
}

/// A CRL URL as written: an absolute `http` or `https` URL with a host, without user or
/// password (they would end up in logs and events) or fragment, at most
/// [`MAX_CRL_URL_BYTES`]. Stored as the URL parser writes it back.
///
/// Whether its host may be reached (private addresses) is decided when it is fetched, against
/// the addresses it resolves to then, not here.
pub fn parse_crl_url(raw: &str) -> Result<String, DomainError> {
    // The URL is not echoed: it may carry a password.
    let bad = |why: &str| DomainError::invalid("crl_url", format!("Invalid 'crl_url': {why}"));
    if raw.len() > MAX_CRL_URL_BYTES {
        return Err(DomainError::invalid(
            "crl_url",
            format!(
                "Invalid 'crl_url': it is {} bytes; the limit is {MAX_CRL_URL_BYTES} bytes.",
                raw.len()
            ),
        ));
    }
    let url = url::Url::parse(raw.trim()).map_err(|e| {
        bad(&format!(
            "not an absolute URL ({e}); give an http:// or https:// URL."
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("only http:// and https:// URLs can be fetched."));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("the URL has no host."));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "the URL carries a user name or password; CRLs are public, give the URL without them.",
        ));
    }
    if url.fragment().is_some() {
        return Err(bad("the URL has a fragment ('#…'); remove it."));
    }
    Ok(url.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crl_urls_are_http_or_https_with_a_host_and_no_credentials() {
        assert_eq!(
            parse_crl_url("http://ca.example.com/root.crl").unwrap(),
            "http://ca.example.com/root.crl"
        );
        assert_eq!(
            parse_crl_url(" https://127.0.0.1:8443/x.crl ").unwrap(),
            "https://127.0.0.1:8443/x.crl"
        );
        for bad in [
            "ftp://ca.example.com/root.crl",
            "file:///etc/passwd",
            "ldap://ca.example.com/cn=root",
            "http://user:pw@ca.example.com/x.crl",
            "http://ca.example.com/x.crl#frag",
            "not a url",
            "/relative.crl",
            "",
        ] {
            let err = parse_crl_url(bad).unwrap_err();
            assert!(
                matches!(
                    err,
                    DomainError::InvalidParam {
                        param: "crl_url",
                        ..
                    }
                ),
                "{bad}: {err}"
            );
        }
        let long = format!("http://ca.example.com/{}", "a".repeat(MAX_CRL_URL_BYTES));
        assert!(parse_crl_url(&long).is_err());
    }

    #[test]
    fn off_is_never_stored() {
        assert_eq!(OcspMode::Off.stored(), None);
        assert_eq!(OcspMode::HardFail.stored(), Some("hard_fail"));
        for v in OcspMode::VALUES {
            assert_eq!(OcspMode::parse(v).unwrap().as_str(), v);
        }
        assert_eq!(OcspMode::parse("HARD_FAIL"), None);
    }
}
