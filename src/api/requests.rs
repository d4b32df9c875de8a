//! Request bodies: each is the type its handler parses (`extract::JsonBody`) and the schema
//! `/openapi.json` shows (`ToSchema`), so the documented and the accepted shape are one.
//!
//! Every type refuses fields it does not declare (`deny_unknown_fields`, shown as
//! `additionalProperties: false`) and reads each field through an `extract::field` function.
//! `null` counts as absent, except where a field is `Option<Option<_>>`: there `null` clears
//! and absence keeps (shown as the single `Option`). Aliases certgate accepts from older
//! clients (docs/api-notes.md) are parsed but left out of the document (`schema(ignore)`).

use serde::Deserialize;
use utoipa::ToSchema;

use super::extract::field;
use super::openapi::constant;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadCertificateRequest {
    /// The CA certificate, one PEM `CERTIFICATE` block (CA:TRUE, keyCertSign, a Subject Key
    /// Identifier; at most 16 KiB).
    // Required, but `content` may stand in for it: the handler says when both are missing.
    #[serde(default, deserialize_with = "field::optional_string")]
    #[schema(required = true, nullable = false)]
    pub certificate: Option<String>,
    /// The 2025 name of `certificate`; give one of the two.
    #[serde(default, deserialize_with = "field::optional_string")]
    #[schema(deprecated, nullable = false)]
    pub content: Option<String>,
    /// At most 256 characters.
    #[serde(default, deserialize_with = "field::optional_string")]
    #[schema(max_length = 256)]
    pub name: Option<String>,
    /// certgate's extension (decisions.md D26): a CEL expression over the client certificate that
    /// must hold for this CA to admit it (at most 4 KiB).
    #[serde(default, deserialize_with = "field::optional_string")]
    #[schema(max_length = 4096)]
    pub client_filter: Option<String>,
    /// certgate's extension (decisions.md D58): an http(s) URL of this CA's CRL, which certgate
    /// then keeps fetched and enforces as if it were PUT (at most 2,048 bytes).
    #[serde(default, deserialize_with = "field::optional_string")]
    #[schema(max_length = 2048)]
    pub crl_url: Option<String>,
    /// certgate's extension (decisions.md D58): whether the gateway asks the client's OCSP
    /// responder, and what no valid answer means. Default `off`.
    #[serde(default, deserialize_with = "ocsp_setting")]
    #[schema(nullable = false)]
    pub ocsp: Option<OcspSetting>,
}

/// A CA's OCSP mode (decisions.md D58).
#[derive(ToSchema, Clone, Copy)]
#[schema(rename_all = "snake_case")]
pub enum OcspSetting {
    /// Not asked.
    Off,
    /// Asked; no valid answer admits the client (logged and counted).
    SoftFail,
    /// Asked; no valid answer refuses it (`client_certificate_revocation_unknown`).
    HardFail,
}

/// An OCSP mode that may be absent or `null` (both keep the mode); anything but the three names
/// is refused, saying them.
fn ocsp_setting<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<OcspSetting>, D::Error> {
    use serde::de::Error;
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(s) => match crate::domain::OcspMode::parse(&s) {
            Some(crate::domain::OcspMode::Off) => Ok(Some(OcspSetting::Off)),
            Some(crate::domain::OcspMode::SoftFail) => Ok(Some(OcspSetting::SoftFail)),
            Some(crate::domain::OcspMode::HardFail) => Ok(Some(OcspSetting::HardFail)),
            None => Err(D::Error::custom(format!(
                "'{}' is not an OCSP mode; use 'off', 'soft_fail' or 'hard_fail'",
                crate::domain::echo(&s)
            ))),
        },
        _ => Err(D::Error::custom(
            "expected one of 'off', 'soft_fail' or 'hard_fail'",
        )),
    }
}

impl From<OcspSetting> for crate::domain::OcspMode {
    fn from(s: OcspSetting) -> Self {
        match s {
            OcspSetting::Off => crate::domain::OcspMode::Off,
            OcspSetting::SoftFail => crate::domain::OcspMode::SoftFail,
            OcspSetting::HardFail => crate::domain::OcspMode::HardFail,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModifyCertificateRequest {
    /// The new name (null clears it); at most 256 characters.
    #[serde(default, deserialize_with = "field::nullable_string")]
    #[schema(value_type = Option<String>, max_length = 256)]
    pub name: Option<Option<String>>,
    /// certgate's extension (decisions.md D26): a CEL expression over the client certificate that
    /// must hold for this CA to admit it (at most 4 KiB); null clears it, absence keeps it.
    #[serde(default, deserialize_with = "field::nullable_string")]
    #[schema(value_type = Option<String>, max_length = 4096)]
    pub client_filter: Option<Option<String>>,
    /// certgate's extension (decisions.md D58): an http(s) URL of this CA's CRL; null stops the
    /// fetching (the CRL last stored stays), absence keeps it.
    #[serde(default, deserialize_with = "field::nullable_string")]
    #[schema(value_type = Option<String>, max_length = 2048)]
    pub crl_url: Option<Option<String>>,
    /// certgate's extension (decisions.md D58): the OCSP mode; absence keeps it.
    #[serde(default, deserialize_with = "ocsp_setting")]
    #[schema(nullable = false)]
    pub ocsp: Option<OcspSetting>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckCertificateRequest {
    /// The client's certificate chain, PEM: its leaf first, then any intermediates.
    #[serde(deserialize_with = "field::required_string")]
    pub certificate: String,
    /// Decide as for a request carrying this `OpenAI-Project`; absent: organization-wide.
    #[serde(default, deserialize_with = "field::optional_string")]
    #[schema(nullable = false)]
    pub project_id: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateCertificateRequest {
    /// The certificate being replaced, `cert_…`.
    #[serde(deserialize_with = "field::required_string")]
    pub from: String,
    /// Its replacement, `cert_…`: activated wherever `from` is active, in one transaction.
    #[serde(deserialize_with = "field::required_string")]
    pub to: String,
    /// Also deactivate `from` everywhere.
    #[serde(default, deserialize_with = "field::optional_bool")]
    #[schema(default = false, nullable = false)]
    pub retire_from: Option<bool>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeCertificateRequest {
    /// The client certificate to refuse, PEM; give this or `sha256_fingerprint`.
    #[serde(default, deserialize_with = "field::optional_string")]
    #[schema(nullable = false)]
    pub certificate: Option<String>,
    /// SHA-256 of the certificate's DER, 64 hex digits (colons allowed).
    #[serde(default, deserialize_with = "field::optional_string")]
    #[schema(nullable = false)]
    pub sha256_fingerprint: Option<String>,
    /// Why, for people; at most 256 characters.
    #[serde(default, deserialize_with = "field::optional_string")]
    #[schema(max_length = 256, nullable = false)]
    pub reason: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutCrlRequest {
    /// The CA's CRL, PEM (`X509 CRL`) or base64 DER, signed by the CA; at most 8 MiB.
    #[serde(deserialize_with = "field::required_string")]
    pub crl: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ToggleCertificatesRequest {
    /// 1 to 10 distinct certificate ids; all change or none does.
    // Required, but `data` may stand in for it: the handler says when both are missing.
    #[serde(default, deserialize_with = "field::optional_string_array")]
    #[schema(schema_with = toggle_ids, required = true)]
    pub certificate_ids: Option<Vec<String>>,
    /// What the 2025 spec's curl examples send instead of `certificate_ids`.
    #[serde(default, deserialize_with = "field::optional_string_array")]
    #[schema(ignore)]
    pub data: Option<Vec<String>>,
}

fn toggle_ids() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, Object, Type};
    ArrayBuilder::new()
        .items(Object::with_type(Type::String))
        .min_items(Some(1))
        .max_items(Some(crate::domain::MAX_TOGGLE_IDS))
        .unique_items(true)
        .description(Some(
            "1 to 10 distinct certificate ids; all change or none does.",
        ))
        .build()
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectCreateRequest {
    /// 1 to 256 characters, not only whitespace.
    #[serde(deserialize_with = "field::required_string")]
    #[schema(min_length = 1, max_length = 256)]
    pub name: String,
    #[serde(default, deserialize_with = "field::optional_string")]
    pub external_key_id: Option<String>,
    #[serde(default, deserialize_with = "field::optional_string")]
    #[schema(schema_with = nullable_residency)]
    pub residency: Option<String>,
    /// The older name of `residency` (not both).
    #[serde(default, deserialize_with = "field::optional_string")]
    #[schema(ignore)]
    pub geography: Option<String>,
}

fn nullable_residency() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{Object, OneOfBuilder, Schema, Type};
    Schema::OneOf(
        OneOfBuilder::new()
            .item(constant::residency())
            .item(Object::with_type(Type::Null))
            .build(),
    )
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectUpdateRequest {
    /// 1 to 256 characters, not only whitespace; null or absent keeps the name.
    #[serde(default, deserialize_with = "field::optional_string")]
    #[schema(min_length = 1, max_length = 256)]
    pub name: Option<String>,
    /// Null clears it.
    #[serde(default, deserialize_with = "field::nullable_string")]
    #[schema(value_type = Option<String>)]
    pub external_key_id: Option<Option<String>>,
    /// Read only to refuse it: a residency is fixed at creation.
    #[serde(default, deserialize_with = "field::optional_string")]
    #[schema(ignore)]
    pub geography: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminApiKeyCreateRequest {
    /// 1 to 256 characters, not only whitespace.
    #[serde(deserialize_with = "field::required_string")]
    #[schema(min_length = 1, max_length = 256)]
    pub name: String,
    /// Seconds until the key expires (at most a year); absent: it never does.
    #[serde(default, deserialize_with = "field::optional_integer")]
    #[schema(minimum = 1, maximum = 31_536_000)]
    pub expires_in_seconds: Option<i64>,
}
