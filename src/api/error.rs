//! `ApiError`: every refusal the Admin API gives, mapped in one `match` to a status and
//! OpenAI's four-key error body `{"error":{"message","type","param","code"}}`.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::domain::DomainError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// Missing, malformed, unknown or revoked admin key.
    #[error("{0}")]
    Unauthorized(String),
    /// A malformed request: bad JSON, wrong types, unknown fields, bad query values.
    #[error("{message}")]
    BadRequest {
        message: String,
        param: Option<String>,
    },
    #[error("The request body is larger than 64 KiB.")]
    BodyTooLarge,
    #[error("Invalid URL ({method} {path})")]
    NoSuchRoute { method: String, path: String },
    #[error("Method {method} is not allowed on {path}.")]
    MethodNotAllowed { method: String, path: String },
    #[error("The database is unavailable right now; try again shortly.")]
    Unavailable,
    #[error("The server had an error while processing your request. Sorry about that!")]
    Internal,
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
        const INVALID: &str = "invalid_request_error";
        let cert = || Some("certificate".to_owned());
        match self {
            ApiError::Domain(d) => match d {
                D::CertificateLimitReached => (
                    StatusCode::BAD_REQUEST,
                    INVALID,
                    cert(),
                    Some("certificate_limit_reached"),
                ),
                D::CertificateAlreadyExists { .. } => (
                    StatusCode::CONFLICT,
                    INVALID,
                    cert(),
                    Some("certificate_already_exists"),
                ),
                D::PrivateKeyNotAllowed => (
                    StatusCode::BAD_REQUEST,
                    INVALID,
                    cert(),
                    Some("private_key_not_allowed"),
                ),
                D::CertificateTooLarge { .. } => (
                    StatusCode::BAD_REQUEST,
                    INVALID,
                    cert(),
                    Some("certificate_too_large"),
                ),
                D::InvalidCertificate(_) => (
                    StatusCode::BAD_REQUEST,
                    INVALID,
                    cert(),
                    Some("invalid_certificate"),
                ),
                D::InvalidToggleIds(_) => (
                    StatusCode::BAD_REQUEST,
                    INVALID,
                    Some("certificate_ids".into()),
                    None,
                ),
                D::UnknownToggleId(_) => (
                    StatusCode::NOT_FOUND,
                    INVALID,
                    Some("certificate_ids".into()),
                    None,
                ),
                D::CertificateInUse(_) => (
                    StatusCode::CONFLICT,
                    INVALID,
                    None,
                    Some("certificate_in_use"),
                ),
                D::ProjectArchived(_) => (
                    StatusCode::BAD_REQUEST,
                    INVALID,
                    None,
                    Some("project_archived"),
                ),
                D::NotFound { .. } => (StatusCode::NOT_FOUND, INVALID, None, None),
                D::InvalidParam { param, .. } => (
                    StatusCode::BAD_REQUEST,
                    INVALID,
                    Some((*param).to_owned()),
                    None,
                ),
            },
            ApiError::Unauthorized(_) => (
                StatusCode::UNAUTHORIZED,
                INVALID,
                None,
                Some("invalid_api_key"),
            ),
            ApiError::BadRequest { param, .. } => {
                (StatusCode::BAD_REQUEST, INVALID, param.clone(), None)
            }
            ApiError::BodyTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                INVALID,
                None,
                Some("request_too_large"),
            ),
            ApiError::NoSuchRoute { .. } => (StatusCode::NOT_FOUND, INVALID, None, None),
            ApiError::MethodNotAllowed { .. } => {
                (StatusCode::METHOD_NOT_ALLOWED, INVALID, None, None)
            }
            ApiError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                None,
                Some("database_unavailable"),
            ),
            ApiError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                None,
                None,
            ),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Rule(d) => ApiError::Domain(d),
            StoreError::Unavailable(why) | StoreError::Retryable(why) => {
                tracing::warn!(%why, "database unavailable");
                ApiError::Unavailable
            }
            StoreError::Internal(why) => {
                tracing::error!(%why, "internal store error");
                ApiError::Internal
            }
        }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: ErrorObject<'a>,
}

#[derive(Serialize)]
struct ErrorObject<'a> {
    message: String,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<String>,
    code: Option<&'a str>,
}

/// The four-key body for an arbitrary refusal (used by the gateway too).
pub fn error_response(
    status: StatusCode,
    kind: &str,
    message: String,
    param: Option<String>,
    code: Option<&str>,
) -> Response {
    let mut res = (
        status,
        axum::Json(Body {
            error: ErrorObject {
                message,
                kind,
                param,
                code,
            },
        }),
    )
        .into_response();
    if status.is_client_error() {
        // The SDKs retry 409 (and 408/429) unless told not to; certgate's 4xx are deterministic.
        res.headers_mut()
            .insert("x-should-retry", HeaderValue::from_static("false"));
    }
    res
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind, param, code) = self.parts();
        error_response(status, kind, self.to_string(), param, code)
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

    #[tokio::test]
    async fn every_variant_has_the_four_keys() {
        let cases = [
            (
                ApiError::Domain(DomainError::CertificateLimitReached),
                400,
                Some("certificate_limit_reached"),
            ),
            (
                ApiError::Domain(DomainError::CertificateAlreadyExists {
                    existing_id: "cert_x".into(),
                }),
                409,
                Some("certificate_already_exists"),
            ),
            (
                ApiError::Domain(DomainError::CertificateInUse("x".into())),
                409,
                Some("certificate_in_use"),
            ),
            (
                ApiError::Domain(DomainError::UnknownToggleId("cert_x".into())),
                404,
                None,
            ),
            (
                ApiError::Unauthorized("no".into()),
                401,
                Some("invalid_api_key"),
            ),
            (ApiError::BodyTooLarge, 413, Some("request_too_large")),
            (ApiError::Unavailable, 503, Some("database_unavailable")),
            (ApiError::Internal, 500, None),
        ];
        for (err, status, code) in cases {
            let (s, v, retry) = body(err).await;
            assert_eq!(s.as_u16(), status);
            let e = v["error"].as_object().unwrap();
            assert_eq!(e.len(), 4, "{v}");
            assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
            assert_eq!(e["code"].as_str(), code);
            assert_eq!(
                retry.is_some(),
                status < 500,
                "4xx carry x-should-retry: false"
            );
        }
    }
}
