//! JSON request bodies, parsed once into the request's own type: the type the OpenAPI
//! document shows (`ToSchema`) is the type the handler reads (`Deserialize`), so the two
//! cannot drift.
//!
//! A request type derives `Deserialize` with `#[serde(deny_unknown_fields)]` and reads each
//! field through one of the [`field`] functions, which refuse wrong types and NUL characters
//! in certgate's words. [`JsonBody`] reads the bytes (at most `LIMIT`), parses the JSON object
//! and deserializes the type through `serde_path_to_error`, whose path names the field for the
//! error's `param`.
//!
//! Which fault is answered when a body has several: the fields in the order the type declares
//! them (a required field that is missing counts at its place), then an unknown field (the
//! first in sorted order). Rules on the values (lengths, formats, filters) are the handlers',
//! after the body parsed.

use axum::extract::{FromRequest, Request};
use serde::de::{self, DeserializeOwned, Deserializer};
use serde_json::{Map, Value};

use super::MAX_BODY_BYTES;
use crate::api::error::ApiError;

/// A JSON object body parsed into `T`, read with a limit of `LIMIT` bytes (64 KiB unless a
/// route says otherwise). An empty (or all-whitespace) body reads as `{}`.
pub struct JsonBody<T, const LIMIT: usize = MAX_BODY_BYTES>(pub T);

/// The body of `PUT /organization/certificates/{id}/crl`: CRLs may be large (decisions.md D23).
pub type LargeJsonBody<T> = JsonBody<T, { 8 * 1024 * 1024 }>;

/// The body of a call that takes no fields (e.g. archive): `{}` or nothing.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoFields {}

impl<S: Send + Sync, T: DeserializeOwned, const LIMIT: usize> FromRequest<S>
    for JsonBody<T, LIMIT>
{
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        let bytes = axum::body::to_bytes(req.into_body(), LIMIT)
            .await
            .map_err(|e| {
                let too_large = std::error::Error::source(&e)
                    .is_some_and(<dyn std::error::Error>::is::<http_body_util::LengthLimitError>);
                if too_large {
                    ApiError::BodyTooLarge {
                        limit_kib: LIMIT / 1024,
                    }
                } else {
                    ApiError::bad_request(None, "The request body could not be read.")
                }
            })?;
        parse(&bytes).map(JsonBody)
    }
}

/// Parses a whole body into `T`, refusing it as [`JsonBody`] does.
pub(super) fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    from_fields(&object(bytes)?)
}

/// The body's JSON object (an empty body is `{}`). A key given twice counts once, the last.
fn object(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| ApiError::bad_request(None, "The request body is not valid UTF-8 text."))?;
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(fields)) => Ok(fields),
        Ok(_) => Err(ApiError::bad_request(None, "The request body must be a JSON object.")),
        Err(e) => Err(ApiError::bad_request(
            None,
            format!("We could not parse the JSON body of your request ({e}). Send a JSON object with Content-Type: application/json."),
        )),
    }
}

fn from_fields<T: DeserializeOwned>(fields: &Map<String, Value>) -> Result<T, ApiError> {
    let names = field_names::<T>();
    // Unknown fields are answered after every known one was read, as the first in sorted order.
    let unknown = fields
        .keys()
        .find(|k| !names.contains(&k.as_str()))
        .cloned();
    // The known fields in declaration order, borrowed: a refusal may read them twice.
    let known: Vec<(&str, &Value)> = names
        .iter()
        .filter_map(|name| fields.get(*name).map(|value| (*name, value)))
        .collect();
    let parsed = deserialize::<T>(&known).map_err(|e| refusal::<T>(e, names, &known))?;
    match unknown {
        None => Ok(parsed),
        Some(field) => {
            let shown: String = field.chars().take(64).collect();
            Err(ApiError::bad_request(
                Some(&shown),
                format!("Unrecognized request argument supplied: {shown}"),
            ))
        }
    }
}

type PathError = serde_path_to_error::Error<serde_json::Error>;

/// Deserializes `T` from the entries, in their order.
fn deserialize<T: DeserializeOwned>(entries: &[(&str, &Value)]) -> Result<T, PathError> {
    let map = de::value::MapDeserializer::<_, serde_json::Error>::new(entries.iter().copied());
    serde_path_to_error::deserialize(map)
}

/// The error for a body that did not deserialize: a missing required field declared before
/// the field at fault comes first, as it did when fields were read one by one.
fn refusal<T: DeserializeOwned>(
    e: PathError,
    names: &[&str],
    known: &[(&str, &Value)],
) -> ApiError {
    let fault = Fault::of(e);
    if let Fault::Field { param, .. } = &fault {
        let at = known.iter().position(|(k, _)| k == param).unwrap_or(0);
        // The fields before it parsed, so only a missing one can fail; serde names the first
        // missing field in declaration order.
        if let Err(e) = deserialize::<T>(&known[..at]) {
            if let Fault::Missing(missing) = Fault::of(e) {
                let rank = |f: &str| names.iter().position(|n| *n == f);
                if rank(&missing) < rank(param) {
                    return Fault::Missing(missing).into();
                }
            }
        }
    }
    fault.into()
}

// What the `field` functions say is wrong, read back by `Fault::of` (serde errors carry text).
const MISSING: &str = "missing";
const NUL: &str = "must not contain NUL characters";
const EXPECTED: &str = "expected ";

/// What is wrong with a body, in terms of its fields.
enum Fault {
    /// A required field is absent or null.
    Missing(String),
    /// A field holds a value of the wrong type (`expected` says which), or NUL characters.
    Field { param: String, why: String },
    /// Anything else serde refuses (not reachable with the `field` functions).
    Other(String),
}

impl Fault {
    fn of(e: PathError) -> Fault {
        let param = e.path().iter().find_map(|segment| match segment {
            serde_path_to_error::Segment::Map { key } => Some(key.clone()),
            serde_path_to_error::Segment::Enum { variant } => Some(variant.clone()),
            _ => None,
        });
        let why = e.into_inner().to_string();
        if let Some(field) = why
            .strip_prefix("missing field `")
            .and_then(|rest| rest.strip_suffix('`'))
        {
            return Fault::Missing(field.to_owned());
        }
        match param {
            Some(param) if why == MISSING => Fault::Missing(param),
            Some(param) => Fault::Field { param, why },
            None => Fault::Other(why),
        }
    }
}

impl From<Fault> for ApiError {
    fn from(fault: Fault) -> ApiError {
        match fault {
            Fault::Missing(field) => ApiError::bad_request(
                Some(&field),
                format!("Missing required parameter: '{field}'."),
            ),
            Fault::Field { param, why } if why == NUL => ApiError::bad_request(
                Some(&param),
                format!("'{param}' must not contain NUL characters."),
            ),
            Fault::Field { param, why } => match why.strip_prefix(EXPECTED) {
                Some(expected) => ApiError::bad_request(
                    Some(&param),
                    format!("Invalid type for '{param}': expected {expected}."),
                ),
                None => ApiError::bad_request(Some(&param), format!("Invalid '{param}': {why}.")),
            },
            Fault::Other(why) => {
                ApiError::bad_request(None, format!("The request body is not valid: {why}."))
            }
        }
    }
}

/// The wire names of `T`'s fields, in declaration order, as its derived `Deserialize` gives
/// them to the deserializer.
fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut names: &'static [&'static str] = &[];
    let _ = T::deserialize(Probe(&mut names));
    names
}

/// A deserializer that only records the field names a struct asks for.
struct Probe<'a>(&'a mut &'static [&'static str]);

impl<'de> Deserializer<'de> for Probe<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: de::Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: de::Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(de::Error::custom("probed"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// How a request type reads each field (`#[serde(deserialize_with = "…")]`): the JSON types
/// certgate accepts, and its refusals. `null` counts as absent except in
/// [`field::nullable_string`]; an optional field also needs `#[serde(default)]`.
pub mod field {
    use serde::de::{Deserialize, Deserializer, Error};
    use serde_json::Value;

    use super::{EXPECTED, MISSING, NUL};

    fn wrong_type<E: Error>(expected: &str) -> E {
        E::custom(format!("{EXPECTED}{expected}"))
    }

    /// NUL characters are never meaningful here, and PostgreSQL cannot store them in text.
    fn no_nul<E: Error>(s: String) -> Result<String, E> {
        if s.contains('\0') {
            return Err(E::custom(NUL));
        }
        Ok(s)
    }

    /// A string that must be there (`null` counts as missing).
    pub fn required_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        optional_string(d)?.ok_or_else(|| D::Error::custom(MISSING))
    }

    /// A string that may be absent or `null`.
    pub fn optional_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Ok(nullable_string(d)?.flatten())
    }

    /// A string where `null` (`Some(None)`) differs from absent (`None`, with
    /// `#[serde(default)]`).
    pub fn nullable_string<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<String>>, D::Error> {
        match Value::deserialize(d)? {
            Value::Null => Ok(Some(None)),
            Value::String(s) => Ok(Some(Some(no_nul(s)?))),
            _ => Err(wrong_type("a string")),
        }
    }

    /// An integer that may be absent or `null`. Floats, strings and numbers outside `i64`
    /// are refused.
    pub fn optional_integer<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        match Value::deserialize(d)? {
            Value::Null => Ok(None),
            Value::Number(n) => n.as_i64().map(Some).ok_or_else(|| wrong_type("an integer")),
            _ => Err(wrong_type("an integer")),
        }
    }

    /// A boolean that may be absent or `null`.
    pub fn optional_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        match Value::deserialize(d)? {
            Value::Null => Ok(None),
            Value::Bool(b) => Ok(Some(b)),
            _ => Err(wrong_type("a boolean")),
        }
    }

    /// An array of strings that may be absent or `null`.
    pub fn optional_string_array<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Vec<String>>, D::Error> {
        match Value::deserialize(d)? {
            Value::Null => Ok(None),
            Value::Array(items) => items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => no_nul(s),
                    _ => Err(wrong_type("an array of strings")),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            _ => Err(wrong_type("an array of strings")),
        }
    }
}
