//! The forward-auth endpoint (nginx `auth_request`, Traefik `ForwardAuth`, `HAProxy`): any method
//! and path. The certificate is in the header `--cert-header` names; the scope in the
//! request's `OpenAI-Organization` / `OpenAI-Project`. Admitted: 200, empty body, the identity
//! headers (nginx takes them with `auth_request_set`). Refused: 401 when no certificate was
//! passed, else 403 (nginx's `auth_request` understands only 2xx, 401 and 403: any other
//! status becomes a 500 for the client), also for a certificate text that cannot be read; the
//! code in `X-Certgate-Refusal`, OpenAI's error body (its `type` still says
//! `invalid_request_error` for an unreadable text, as gRPC's 400 does).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::judge::{Answer, Question, Refused};
use super::metrics::Transport;
use super::AuthzState;
use crate::gateway::handler::ScopeDefaults;
use crate::openai_error::OpenAiError;

/// The header naming why a request was refused: a refusal code, or the error type of a
/// malformed request.
pub const REFUSAL_HEADER: &str = "x-certgate-refusal";

pub async fn handle(State(shared): State<Arc<AuthzState>>, req: Request) -> Response {
    let headers = req.headers();
    let mut values = headers.get_all(&shared.cert_header).iter();
    let first = values.next();
    let certificate = match (first, values.next()) {
        (Some(_), Some(_)) => {
            return refused(&Refused::Refusal(
                crate::gateway::handler::Refusal::BadRequest(format!(
                    "The {} header was given more than once; the proxy must set it once.",
                    shared.cert_header
                )),
            ));
        }
        (Some(v), None) => match v.to_str() {
            Ok(text) => Some(text),
            Err(_) => return refused(&Refused::Unparseable(super::cert::CertTextError::BadBase64)),
        },
        (None, _) => None,
    };
    let question = Question {
        transport: Transport::Http,
        certificate: Ok(certificate),
        peer_leaf: None,
        headers,
        defaults: ScopeDefaults::default(),
    };
    match shared.judge(question).await {
        Answer::Admitted { set, .. } => {
            let mut res = StatusCode::OK.into_response();
            for (name, value) in set {
                if let Ok(v) = HeaderValue::from_str(&value) {
                    res.headers_mut().insert(name, v);
                }
            }
            res
        }
        Answer::Refused(why) => refused(&why),
    }
}

fn refused(why: &Refused) -> Response {
    let error = why.error();
    let status = if why.no_certificate() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::FORBIDDEN
    };
    let mut res = OpenAiError { status, ..error }.into_response();
    res.headers_mut()
        .insert(REFUSAL_HEADER, HeaderValue::from_static(why.label()));
    res
}
