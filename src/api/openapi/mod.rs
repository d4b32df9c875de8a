//! `GET /openapi.json` (decisions.md D41): the OpenAPI 3.1 document of every path `serve` answers,
//! generated from the code.
//!
//! Paths come from the handlers' `#[utoipa::path]` attributes, collected while `api::routes`
//! registers them with `routes!`, so a route cannot be served without being described. The
//! wire DTOs (`api::dto`) and the request bodies (`api::requests`, the types the handlers
//! parse) describe themselves with `ToSchema`; this module holds what the handlers' query
//! extraction leaves undescribed (query parameters), the schemas where one Rust type answers
//! under several OpenAI names, the error responses, and the document's frame (info, security
//! scheme, tags).
//!
//! The shared paths must agree with OpenAI's reference, kept in the repository as
//! `tests/data/openai-admin-subset.json`; the test `tests/it/openapi/mod.rs` compares them
//! structurally.

use std::sync::OnceLock;

use axum::body::Bytes;
use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{OpenApi, ToResponse, ToSchema};

use crate::openai_error::Body as ErrorResponse;

mod params;
mod shapes;
pub use params::*;
pub use shapes::*;

/// The name of the bearer scheme every `/v1` operation requires, as OpenAI names it.
pub const ADMIN_KEY_AUTH: &str = "AdminApiKeyAuth";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "certgate Admin API",
        description = "OpenAI's Admin API \"Certificates\" endpoints (with the projects, admin API keys and audit logs they need), as certgate serves them, plus certgate's operational endpoints. Every `/v1` operation takes an admin key as a Bearer token.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    modifiers(&AdminKeyAuth),
    components(
        schemas(ErrorResponse),
        responses(BadRequest, Unauthorized, NotFound, Conflict, PayloadTooLarge, Unavailable)
    ),
    tags(
        (name = "Certificates", description = "CA certificates and where they are active."),
        (name = "Projects", description = "Enough of OpenAI's projects to scope certificates."),
        (name = "Admin API keys", description = "The organization's admin keys."),
        (name = "Audit logs", description = "Every change, written with it."),
        (name = "Revocation", description = "certgate's deny-list and CA revocation lists (decisions.md D22, D23)."),
        (name = "Operations", description = "certgate's own endpoints: health and this document."),
    )
)]
pub struct ApiDoc;

/// Adds the bearer scheme the operations name.
struct AdminKeyAuth;

impl utoipa::Modify for AdminKeyAuth {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        api.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                ADMIN_KEY_AUTH,
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some("An admin key, `sk-admin-...`."))
                        .build(),
                ),
            );
    }
}

/// Adds what `include[]=details` puts in `certificate_details` to the `CertificateDetails`
/// schema, as optional properties (they are absent without it). The fields and their
/// descriptions are those of [`Details`](super::dto::Details).
pub fn describe_details(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{RefOr, Schema};
    use utoipa::PartialSchema as _;
    let RefOr::T(Schema::Object(extension)) = super::dto::Details::schema() else {
        return;
    };
    let components = doc.components.get_or_insert_with(Default::default);
    // The schemas the extension refers to (`CertificateCrlSummary`).
    let mut referred = Vec::new();
    <super::dto::Details as ToSchema>::schemas(&mut referred);
    components.schemas.extend(referred);
    if let Some(RefOr::T(Schema::Object(details))) =
        components.schemas.get_mut("CertificateDetails")
    {
        details.properties.extend(extension.properties);
    }
}

/// Adds the error responses every admin operation shares, so handlers list only their own
/// (404, 409): every operation that takes the admin key can answer 400 (a bad parameter or
/// body), 401 (the key) and 503 (the database), and every one that reads a body (`POST`,
/// `PUT`, `PATCH`) 413.
pub fn shared_responses(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{Ref, RefOr};
    fn shared<R: for<'a> ToResponse<'a>>(
        status: &str,
    ) -> (String, RefOr<utoipa::openapi::Response>) {
        let (name, _) = R::response();
        (status.to_owned(), RefOr::Ref(Ref::from_response_name(name)))
    }
    let always = [
        shared::<BadRequest>("400"),
        shared::<Unauthorized>("401"),
        shared::<Unavailable>("503"),
    ];
    let with_body = shared::<PayloadTooLarge>("413");
    for item in doc.paths.paths.values_mut() {
        let operations = [
            (&mut item.get, false),
            (&mut item.delete, false),
            (&mut item.head, false),
            (&mut item.options, false),
            (&mut item.trace, false),
            (&mut item.post, true),
            (&mut item.put, true),
            (&mut item.patch, true),
        ];
        for (operation, reads_body) in operations {
            let Some(operation) = operation.as_mut() else {
                continue;
            };
            let keyed = operation
                .security
                .as_ref()
                .is_some_and(|requirements| !requirements.is_empty());
            if !keyed {
                continue;
            }
            let responses = &mut operation.responses.responses;
            responses.extend(always.iter().cloned());
            if reads_body {
                responses.extend([with_body.clone()]);
            }
        }
    }
}

/// The document as JSON, built once per process from the routes.
pub fn json() -> Bytes {
    static JSON: OnceLock<Bytes> = OnceLock::new();
    JSON.get_or_init(|| {
        // Serializing a document made of strings, maps and numbers cannot fail.
        Bytes::from(serde_json::to_vec(&super::openapi()).unwrap_or_default())
    })
    .clone()
}

/// The OpenAPI document of this API. No key needed.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "Operations",
    operation_id = "getOpenApiDocument",
    responses((status = 200, description = "The OpenAPI 3.1 document of every path certgate serves.", content_type = "application/json", body = Object))
)]
pub async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], json())
}

// -------------------------------------------------------------------------- errors

/// The shared error responses: each is OpenAI's error body ([`ErrorResponse`], the type
/// `openai_error` sends) under its own description.
macro_rules! error_responses {
    ($($(#[doc = $doc:literal])+ $name:ident;)+) => {$(
        $(#[doc = $doc])+
        pub struct $name;

        impl<'s> ToResponse<'s> for $name {
            fn response() -> (&'s str, utoipa::openapi::RefOr<utoipa::openapi::Response>) {
                use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
                let description = [$($doc),+].map(str::trim).join("\n");
                let body = ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name(ErrorResponse::name())))
                    .build();
                let response = ResponseBuilder::new()
                    .description(description)
                    .content("application/json", body)
                    .build();
                (stringify!($name), response.into())
            }
        }
    )+};
}

error_responses! {
    /// The request is malformed or breaks a rule (the message and `param` say which).
    BadRequest;
    /// No admin key, or not a valid one (`invalid_api_key`).
    Unauthorized;
    /// No such object in this organization (a malformed id too).
    NotFound;
    /// The change conflicts with the current state (the `code` says how); not retried.
    Conflict;
    /// The request body is larger than 64 KiB (`request_too_large`).
    PayloadTooLarge;
    /// The database did not answer in time (`database_unavailable`); retry later.
    Unavailable;
}

// ---------------------------------------------------------------- constant strings

/// Schemas of string fields with one fixed value (OpenAI writes them as a one-value enum),
/// and of the few small closed sets the DTOs carry as strings.
pub mod constant {
    use utoipa::openapi::schema::{Object, ObjectBuilder, Type};

    fn one_of(values: &[&'static str]) -> Object {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(values.iter().copied()))
            .build()
    }

    pub fn list() -> Object {
        one_of(&["list"])
    }
    pub fn certificate() -> Object {
        one_of(&["certificate"])
    }
    pub fn organization_certificate() -> Object {
        one_of(&["organization.certificate"])
    }
    pub fn organization_project_certificate() -> Object {
        one_of(&["organization.project.certificate"])
    }
    pub fn certificate_deleted() -> Object {
        one_of(&["certificate.deleted"])
    }
    pub fn organization_activation() -> Object {
        one_of(&["organization.certificate.activation"])
    }
    pub fn organization_deactivation() -> Object {
        one_of(&["organization.certificate.deactivation"])
    }
    pub fn project_activation() -> Object {
        one_of(&["organization.project.certificate.activation"])
    }
    pub fn project_deactivation() -> Object {
        one_of(&["organization.project.certificate.deactivation"])
    }
    pub fn project() -> Object {
        one_of(&["organization.project"])
    }
    pub fn project_status() -> Object {
        one_of(&["active", "archived"])
    }
    /// Every residency certgate accepts (`domain::RESIDENCIES`).
    pub fn residency() -> Object {
        one_of(crate::domain::RESIDENCIES)
    }
    pub fn admin_api_key() -> Object {
        one_of(&["organization.admin_api_key"])
    }
    pub fn admin_api_key_deleted() -> Object {
        one_of(&["organization.admin_api_key.deleted"])
    }
    pub fn user() -> Object {
        one_of(&["user"])
    }
    pub fn organization_user() -> Object {
        one_of(&["organization.user"])
    }
    pub fn owner() -> Object {
        one_of(&["owner"])
    }
    pub fn api_key() -> Object {
        one_of(&["api_key"])
    }
    pub fn certificate_status() -> Object {
        one_of(&["not_yet_valid", "valid", "expiring_soon", "expired"])
    }
    pub fn certificate_check() -> Object {
        one_of(&["organization.certificate_check"])
    }
    pub fn certificate_rotation() -> Object {
        one_of(&["organization.certificate_rotation"])
    }
    pub fn revoked_certificate() -> Object {
        one_of(&["organization.revoked_certificate"])
    }
    pub fn revoked_certificate_deleted() -> Object {
        one_of(&["organization.revoked_certificate.deleted"])
    }
    pub fn certificate_crl() -> Object {
        one_of(&["organization.certificate.crl"])
    }
    pub fn certificate_crl_deleted() -> Object {
        one_of(&["organization.certificate.crl.deleted"])
    }
    /// The event types certgate writes (decisions.md D16).
    pub fn audit_event_types() -> Object {
        one_of(crate::domain::AUDIT_EVENT_TYPES)
    }
}

#[cfg(test)]
mod tests {
    use utoipa::openapi::RefOr;

    /// The shared error responses reach every admin operation (handlers no longer list them),
    /// and no operation without a key.
    #[test]
    fn every_admin_operation_has_the_shared_error_responses() {
        let doc = crate::api::openapi();
        let mut keyed = 0;
        for (path, item) in &doc.paths.paths {
            let operations = [
                ("GET", &item.get),
                ("DELETE", &item.delete),
                ("POST", &item.post),
                ("PUT", &item.put),
            ];
            for (method, operation) in operations {
                let Some(operation) = operation else { continue };
                let refers = |status: &str, name: &str| {
                    matches!(
                        operation.responses.responses.get(status),
                        Some(RefOr::Ref(r)) if r.ref_location == format!("#/components/responses/{name}")
                    )
                };
                if !path.starts_with("/v1/") {
                    assert!(operation.security.is_none(), "{method} {path}");
                    assert!(!refers("401", "Unauthorized"), "{method} {path}");
                    continue;
                }
                keyed += 1;
                for (status, name) in [
                    ("400", "BadRequest"),
                    ("401", "Unauthorized"),
                    ("503", "Unavailable"),
                ] {
                    assert!(refers(status, name), "{method} {path}: no {status}");
                }
                let reads_body = matches!(method, "POST" | "PUT");
                assert_eq!(
                    refers("413", "PayloadTooLarge"),
                    reads_body,
                    "{method} {path}: 413"
                );
            }
        }
        assert!(keyed >= 29, "{keyed} admin operations");
    }
}
