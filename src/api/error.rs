//! `ApiError`: every refusal the Admin API gives, mapped in one `match` to a status and
//! OpenAI's four-key error body (built by [`crate::openai_error`]).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::domain::DomainError;
use crate::openai_error::{OpenAiError, INVALID_REQUEST, PERMISSION, SERVER};
use crate::store::{BoxError, StoreError};
use crate::telemetry::ErrorChain;
use crate::trust::{Rejection, RejectionKind};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// The check endpoint's request cannot be decided, with the gateway's own code and
    /// message (e.g. `unknown_project`, decisions.md D31); refusals of the certificate itself are
    /// answered 200 with `admitted: false`, never through here.
    #[error("{0}")]
    Refused(Rejection),
    /// Missing, malformed, unknown or revoked admin key.
    #[error("{0}")]
    Unauthorized(String),
    /// A malformed request: bad JSON, wrong types, unknown fields, bad query values.
    #[error("{message}")]
    BadRequest {
        message: String,
        param: Option<String>,
    },
    #[error("The request body is larger than {limit_kib} KiB.")]
    BodyTooLarge { limit_kib: usize },
    #[error("Invalid URL ({method} {path})")]
    NoSuchRoute { method: String, path: String },
    #[error("Method {method} is not allowed on {path}.")]
    MethodNotAllowed { method: String, path: String },
    /// The database is down or too slow; the source says why (logged, never sent).
    #[error("The database is unavailable right now; try again shortly.")]
    Unavailable(#[source] BoxError),
    /// A bug or an unexpected database answer; the source says what (logged, never sent).
    #[error("The server had an error while processing your request. Sorry about that!")]
    Internal(#[source] BoxError),
}

impl ApiError {
    pub fn bad_request(param: Option<&str>, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            message: message.into(),
            param: param.map(str::to_owned),
        }
    }

    /// (status, `type`, `param`, `code`)
    fn parts(
        &self,
    ) -> (
        StatusCode,
        &'static str,
        Option<String>,
        Option<&'static str>,
    ) {
        use DomainError as D;
        let cert = || Some("certificate".to_owned());
        let bad = StatusCode::BAD_REQUEST;
        match self {
            ApiError::Domain(d) => {
                let (status, param) = match d {
                    D::CertificateLimitReached
                    | D::PrivateKeyNotAllowed
                    | D::CertificateTooLarge { .. }
                    | D::InvalidCertificate(_) => (bad, cert()),
                    D::CertificateAlreadyExists { .. } => (StatusCode::CONFLICT, cert()),
                    D::InvalidToggleIds(_) => (bad, Some("certificate_ids".into())),
                    D::UnknownToggleId(_) => {
                        (StatusCode::NOT_FOUND, Some("certificate_ids".into()))
                    }
                    D::CertificateInUse(_)
                    | D::LastAdminKey(_)
                    | D::CertificateAlreadyRevoked { .. } => (StatusCode::CONFLICT, None),
                    D::ProjectArchived(_)
                    | D::DefaultProjectUpdate
                    | D::DefaultProjectArchive
                    | D::RevocationLimitReached => (bad, None),
                    D::InvalidFingerprint(_) => (bad, Some("sha256_fingerprint".into())),
                    D::InvalidCrl(_) | D::CrlOutdated { .. } | D::CrlStorageLimitReached { .. } => {
                        (bad, Some("crl".into()))
                    }
                    D::InvalidClientFilter(_) => (bad, Some("client_filter".into())),
                    D::NotFound { .. } => (StatusCode::NOT_FOUND, None),
                    D::UnknownCertificate { param, .. } => {
                        (StatusCode::NOT_FOUND, Some((*param).to_owned()))
                    }
                    D::CertificateNotActive(_) => (bad, Some("from".into())),
                    D::InvalidRotationTarget(_) | D::CertificateNotYetValid(_) => {
                        (bad, Some("to".into()))
                    }
                    D::InvalidParam { param, .. } => (bad, Some((*param).to_owned())),
                };
                (status, INVALID_REQUEST, param, d.code())
            }
            ApiError::Refused(r) => {
                let (status, kind) = match r.kind() {
                    RejectionKind::BadRequest => (bad, INVALID_REQUEST),
                    RejectionKind::Forbidden => (StatusCode::FORBIDDEN, PERMISSION),
                    RejectionKind::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, SERVER),
                };
                let param = (*r == Rejection::UnknownProject).then(|| "project_id".to_owned());
                (status, kind, param, Some(r.code()))
            }
            ApiError::Unauthorized(_) => (
                StatusCode::UNAUTHORIZED,
                INVALID_REQUEST,
                None,
                Some("invalid_api_key"),
            ),
            ApiError::BadRequest { param, .. } => (bad, INVALID_REQUEST, param.clone(), None),
            ApiError::BodyTooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                INVALID_REQUEST,
                None,
                Some("request_too_large"),
            ),
            ApiError::NoSuchRoute { .. } => (StatusCode::NOT_FOUND, INVALID_REQUEST, None, None),
            ApiError::MethodNotAllowed { .. } => {
                (StatusCode::METHOD_NOT_ALLOWED, INVALID_REQUEST, None, None)
            }
            ApiError::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                SERVER,
                None,
                Some("database_unavailable"),
            ),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, SERVER, None, None),
        }
    }
}

impl From<crate::insight::CheckError> for ApiError {
    fn from(e: crate::insight::CheckError) -> Self {
        use crate::insight::CheckError;
        match e {
            CheckError::Store(e) => e.into(),
            CheckError::Refused(r) => ApiError::Refused(r),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Rule(d) => ApiError::Domain(d),
            StoreError::Unavailable(why) | StoreError::Retryable(why) => ApiError::Unavailable(why),
            StoreError::Internal(why) => ApiError::Internal(why),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // The causes of 5xx answers are logged here, once, with their whole chain; the client
        // gets only the generic message.
        match &self {
            ApiError::Unavailable(_) => {
                tracing::warn!(error = %ErrorChain(&self), "database unavailable");
            }
            ApiError::Internal(_) => tracing::error!(error = %ErrorChain(&self), "internal error"),
            _ => {}
        }
        let (status, kind, param, code) = self.parts();
        OpenAiError {
            status,
            kind,
            message: self.to_string(),
            param,
            code,
        }
        .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(e: ApiError) -> (StatusCode, serde_json::Value, Option<String>) {
        let res = e.into_response();
        let status = res.status();
        let retry = res
            .headers()
            .get("x-should-retry")
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap(), retry)
    }

    /// Every variant (and every `DomainError` variant): status, the four keys, `code`,
    /// `param`, and `x-should-retry: false` on every 4xx.
    #[tokio::test]
    async fn every_variant_maps_to_its_status_code_and_param() {
        let d = |e: DomainError| ApiError::Domain(e);
        let cases: Vec<(ApiError, u16, Option<&str>, Option<&str>)> = vec![
            (
                d(DomainError::CertificateLimitReached),
                400,
                Some("certificate_limit_reached"),
                Some("certificate"),
            ),
            (
                d(DomainError::CertificateAlreadyExists {
                    existing_id: "cert_x".into(),
                }),
                409,
                Some("certificate_already_exists"),
                Some("certificate"),
            ),
            (
                d(DomainError::PrivateKeyNotAllowed),
                400,
                Some("private_key_not_allowed"),
                Some("certificate"),
            ),
            (
                d(DomainError::CertificateTooLarge { len: 20_000 }),
                400,
                Some("certificate_too_large"),
                Some("certificate"),
            ),
            (
                d(DomainError::InvalidCertificate("x".into())),
                400,
                Some("invalid_certificate"),
                Some("certificate"),
            ),
            (
                d(DomainError::InvalidToggleIds("x".into())),
                400,
                None,
                Some("certificate_ids"),
            ),
            (
                d(DomainError::UnknownToggleId("cert_x".into())),
                404,
                None,
                Some("certificate_ids"),
            ),
            (
                d(DomainError::CertificateInUse("x".into())),
                409,
                Some("certificate_in_use"),
                None,
            ),
            (
                d(DomainError::ProjectArchived("proj_x".into())),
                400,
                Some("project_archived"),
                None,
            ),
            (
                d(DomainError::LastAdminKey("key_x".into())),
                409,
                Some("last_admin_key"),
                None,
            ),
            (
                d(DomainError::DefaultProjectUpdate),
                400,
                Some("default_project_update"),
                None,
            ),
            (
                d(DomainError::DefaultProjectArchive),
                400,
                Some("default_project_archive"),
                None,
            ),
            (
                d(DomainError::InvalidFingerprint("x".into())),
                400,
                Some("invalid_fingerprint"),
                Some("sha256_fingerprint"),
            ),
            (
                d(DomainError::CertificateAlreadyRevoked {
                    existing_id: "revcert_x".into(),
                }),
                409,
                Some("certificate_already_revoked"),
                None,
            ),
            (
                d(DomainError::RevocationLimitReached),
                400,
                Some("revocation_limit_reached"),
                None,
            ),
            (
                d(DomainError::InvalidCrl("x".into())),
                400,
                Some("invalid_crl"),
                Some("crl"),
            ),
            (
                d(DomainError::CrlOutdated {
                    stored: 2,
                    given: 1,
                }),
                400,
                Some("crl_outdated"),
                Some("crl"),
            ),
            (
                d(DomainError::CrlStorageLimitReached { given: 2, total: 3 }),
                400,
                Some("crl_storage_limit_reached"),
                Some("crl"),
            ),
            (
                d(DomainError::NotFound {
                    kind: "project",
                    id: "proj_x".into(),
                }),
                404,
                None,
                None,
            ),
            (
                d(DomainError::UnknownCertificate {
                    param: "to",
                    id: "cert_x".into(),
                }),
                404,
                None,
                Some("to"),
            ),
            (
                d(DomainError::CertificateNotActive("x".into())),
                400,
                Some("certificate_not_active"),
                Some("from"),
            ),
            (
                d(DomainError::InvalidRotationTarget("x".into())),
                400,
                Some("invalid_certificate"),
                Some("to"),
            ),
            (
                d(DomainError::CertificateNotYetValid("x".into())),
                400,
                Some("certificate_not_yet_valid"),
                Some("to"),
            ),
            (
                ApiError::Refused(Rejection::UnknownProject),
                400,
                Some("unknown_project"),
                Some("project_id"),
            ),
            (
                ApiError::Refused(Rejection::Expired),
                403,
                Some("client_certificate_expired"),
                None,
            ),
            (
                ApiError::Refused(Rejection::TrustStateUnavailable),
                503,
                Some("trust_state_unavailable"),
                None,
            ),
            (
                d(DomainError::invalid("limit", "bad")),
                400,
                None,
                Some("limit"),
            ),
            (
                ApiError::Unauthorized("no".into()),
                401,
                Some("invalid_api_key"),
                None,
            ),
            (
                ApiError::bad_request(Some("name"), "bad"),
                400,
                None,
                Some("name"),
            ),
            (
                ApiError::BodyTooLarge { limit_kib: 64 },
                413,
                Some("request_too_large"),
                None,
            ),
            (
                ApiError::NoSuchRoute {
                    method: "GET".into(),
                    path: "/x".into(),
                },
                404,
                None,
                None,
            ),
            (
                ApiError::MethodNotAllowed {
                    method: "PUT".into(),
                    path: "/x".into(),
                },
                405,
                None,
                None,
            ),
            (
                ApiError::Unavailable("down".into()),
                503,
                Some("database_unavailable"),
                None,
            ),
            (ApiError::Internal("bug".into()), 500, None, None),
        ];
        for (err, status, code, param) in cases {
            every_variant_is_listed(&err);
            let shown = format!("{err:?}");
            let (s, v, retry) = body(err).await;
            assert_eq!(s.as_u16(), status, "{shown}");
            let e = v["error"].as_object().unwrap();
            assert_eq!(e.len(), 4, "{v}");
            assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
            assert_eq!(e["code"].as_str(), code, "{shown}");
            assert_eq!(e["param"].as_str(), param, "{shown}");
            let kind = match status {
                403 => PERMISSION,
                s if s < 500 => INVALID_REQUEST,
                _ => SERVER,
            };
            assert_eq!(e["type"], kind, "{shown}");
            assert_eq!(
                retry.as_deref(),
                (status < 500).then_some("false"),
                "{shown}"
            );
        }
    }

    /// Adding a variant without a case above fails to compile here, not silently.
    fn every_variant_is_listed(e: &ApiError) {
        match e {
            ApiError::Domain(
                DomainError::CertificateLimitReached
                | DomainError::CertificateAlreadyExists { .. }
                | DomainError::PrivateKeyNotAllowed
                | DomainError::CertificateTooLarge { .. }
                | DomainError::InvalidCertificate(_)
                | DomainError::InvalidToggleIds(_)
                | DomainError::UnknownToggleId(_)
                | DomainError::CertificateInUse(_)
                | DomainError::ProjectArchived(_)
                | DomainError::LastAdminKey(_)
                | DomainError::DefaultProjectUpdate
                | DomainError::DefaultProjectArchive
                | DomainError::InvalidFingerprint(_)
                | DomainError::CertificateAlreadyRevoked { .. }
                | DomainError::RevocationLimitReached
                | DomainError::InvalidCrl(_)
                | DomainError::CrlOutdated { .. }
                | DomainError::CrlStorageLimitReached { .. }
                | DomainError::InvalidClientFilter(_)
                | DomainError::NotFound { .. }
                | DomainError::UnknownCertificate { .. }
                | DomainError::CertificateNotActive(_)
                | DomainError::InvalidRotationTarget(_)
                | DomainError::CertificateNotYetValid(_)
                | DomainError::InvalidParam { .. },
            )
            | ApiError::Refused(_)
            | ApiError::Unauthorized(_)
            | ApiError::BadRequest { .. }
            | ApiError::BodyTooLarge { .. }
            | ApiError::NoSuchRoute { .. }
            | ApiError::MethodNotAllowed { .. }
            | ApiError::Unavailable(_)
            | ApiError::Internal(_) => {}
        }
    }

    #[tokio::test]
    async fn server_errors_never_show_their_cause() {
        let (_, v, _) = body(ApiError::Internal("secret detail".into())).await;
        assert!(!v.to_string().contains("secret detail"));
    }
}
