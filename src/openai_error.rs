//! OpenAI's error body, `{"error":{"message","type","param","code"}}`: the one place it is
//! built, for the Admin API's refusals and the gateway's alike.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The `type` of client errors.
pub const INVALID_REQUEST: &str = "invalid_request_error";
/// The `type` of the gateway's trust refusals (403).
pub const PERMISSION: &str = "permission_error";
/// The `type` of errors on certgate's side (5xx).
pub const SERVER: &str = "server_error";

/// One refusal, ready to send.
#[derive(Debug, Clone)]
pub struct OpenAiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

/// OpenAI's error body: every refusal, from every endpoint.
// Also its schema in `/openapi.json` (`ErrorResponse`): the body described is the body sent.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ErrorResponse)]
pub struct Body<'a> {
    error: Fields<'a>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
struct Fields<'a> {
    message: &'a str,
    /// `invalid_request_error`, `permission_error` or `server_error`.
    #[serde(rename = "type")]
    kind: &'a str,
    /// The request field or parameter at fault, if one is.
    #[schema(required = true)]
    param: Option<&'a str>,
    /// A machine-readable reason, e.g. `invalid_api_key`, `certificate_in_use`.
    #[schema(required = true)]
    code: Option<&'a str>,
}

impl OpenAiError {
    /// The body alone, as JSON text (for answers sent through another protocol, such as
    /// `certgate authz`'s gRPC denials).
    pub fn body_json(&self) -> String {
        let body = Body {
            error: Fields {
                message: &self.message,
                kind: self.kind,
                param: self.param.as_deref(),
                code: self.code,
            },
        };
        serde_json::to_string(&body).unwrap_or_default()
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: Fields {
                message: &self.message,
                kind: self.kind,
                param: self.param.as_deref(),
                code: self.code,
            },
        };
        let mut res = (self.status, axum::Json(body)).into_response();
        if self.status.is_client_error() {
            // The SDKs retry 409 (and 408/429) unless told not to; certgate's 4xx are
            // deterministic, so retrying would only repeat the refusal.
            res.headers_mut()
                .insert("x-should-retry", HeaderValue::from_static("false"));
        }
        res
    }
}
