//! Body parsing: each refusal with its exact `param` and message, as a client reads them.

use axum::extract::{FromRequest, Request};
use serde::Deserialize;

use super::body::{field, parse, JsonBody};
use crate::api::error::ApiError;

/// A request type written the way the handlers' are.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Sample {
    #[serde(deserialize_with = "field::required_string")]
    name: String,
    #[serde(default, deserialize_with = "field::nullable_string")]
    #[expect(
        clippy::option_option,
        reason = "null (clear) and absent (keep) differ, as in the request types"
    )]
    note: Option<Option<String>>,
    #[serde(default, deserialize_with = "field::optional_integer")]
    count: Option<i64>,
    #[serde(default, deserialize_with = "field::optional_bool")]
    flag: Option<bool>,
    #[serde(default, deserialize_with = "field::optional_string_array")]
    ids: Option<Vec<String>>,
}

/// `(param, message)` of a refused body.
fn refused(body: &[u8]) -> (Option<String>, String) {
    match parse::<Sample>(body) {
        Ok(parsed) => panic!("accepted: {parsed:?}"),
        Err(ApiError::BadRequest { param, message }) => (param, message),
        Err(other) => panic!("not a 400: {other:?}"),
    }
}

fn param_and(param: &str, message: &str) -> (Option<String>, String) {
    (Some(param.to_owned()), message.to_owned())
}

#[test]
fn a_complete_body_parses_into_its_type() {
    let parsed: Sample =
        parse(br#"{"name":"a","note":"n","count":3,"flag":true,"ids":["x","y"]}"#).unwrap();
    assert_eq!(
        parsed,
        Sample {
            name: "a".into(),
            note: Some(Some("n".into())),
            count: Some(3),
            flag: Some(true),
            ids: Some(vec!["x".into(), "y".into()]),
        }
    );
}

#[test]
fn null_and_absent_differ_only_where_the_type_says() {
    let absent: Sample = parse(br#"{"name":"a"}"#).unwrap();
    assert_eq!(absent.note, None);
    let null: Sample =
        parse(br#"{"name":"a","note":null,"count":null,"flag":null,"ids":null}"#).unwrap();
    assert_eq!(null.note, Some(None), "null clears");
    assert_eq!((null.count, null.flag, null.ids), (None, None, None));
    // A key given twice counts once, the last.
    let twice: Sample = parse(br#"{"name":"a","name":"b"}"#).unwrap();
    assert_eq!(twice.name, "b");
}

#[test]
fn an_unknown_field_is_named() {
    assert_eq!(
        refused(br#"{"name":"a","zeta":1,"extra":true}"#),
        param_and("extra", "Unrecognized request argument supplied: extra")
    );
    // Named by its first 64 characters.
    let long = "x".repeat(100);
    let (param, message) = refused(format!(r#"{{"name":"a","{long}":1}}"#).as_bytes());
    assert_eq!(param.as_deref(), Some(&long[..64]));
    assert_eq!(
        message,
        format!("Unrecognized request argument supplied: {}", &long[..64])
    );
}

#[test]
fn a_wrong_type_names_the_field_and_the_type_expected() {
    let cases: [(&[u8], &str, &str); 6] = [
        (br#"{"name":5}"#, "name", "a string"),
        (br#"{"name":"a","note":[]}"#, "note", "a string"),
        (br#"{"name":"a","count":1.5}"#, "count", "an integer"),
        (br#"{"name":"a","count":"3"}"#, "count", "an integer"),
        (
            br#"{"name":"a","count":9223372036854775808}"#,
            "count",
            "an integer",
        ),
        (br#"{"name":"a","flag":"true"}"#, "flag", "a boolean"),
    ];
    for (body, param, expected) in cases {
        assert_eq!(
            refused(body),
            param_and(
                param,
                &format!("Invalid type for '{param}': expected {expected}.")
            ),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn a_wrong_type_inside_a_field_names_the_field() {
    for body in [
        &br#"{"name":"a","ids":["x",5]}"#[..],
        br#"{"name":"a","ids":"x"}"#,
    ] {
        assert_eq!(
            refused(body),
            param_and(
                "ids",
                "Invalid type for 'ids': expected an array of strings."
            )
        );
    }
    assert_eq!(
        refused(b"{\"name\":\"a\",\"ids\":[\"x\",\"a\\u0000\"]}"),
        param_and("ids", "'ids' must not contain NUL characters.")
    );
}

#[test]
fn nul_characters_are_refused() {
    assert_eq!(
        refused(b"{\"name\":\"a\\u0000b\"}"),
        param_and("name", "'name' must not contain NUL characters.")
    );
}

#[test]
fn a_missing_or_null_required_field_is_named() {
    for body in [
        &b"{}"[..],
        b"",
        b"  \n",
        br#"{"name":null}"#,
        br#"{"flag":true}"#,
    ] {
        assert_eq!(
            refused(body),
            param_and("name", "Missing required parameter: 'name'."),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn faults_are_answered_in_declaration_order_then_unknown_fields() {
    // `name` is declared before `count`: its absence comes first.
    assert_eq!(
        refused(br#"{"count":"x"}"#),
        param_and("name", "Missing required parameter: 'name'.")
    );
    // `count` before `flag`, whatever the order in the body.
    assert_eq!(
        refused(br#"{"flag":1,"name":"a","count":"x"}"#)
            .0
            .as_deref(),
        Some("count")
    );
    // A known field's fault before an unknown field.
    assert_eq!(
        refused(br#"{"aaa":1,"name":"a","flag":1}"#).0.as_deref(),
        Some("flag")
    );
}

#[test]
fn malformed_json_and_non_objects_have_no_param() {
    let (param, message) = refused(br#"{"name": "a""#);
    assert_eq!(param, None);
    assert_eq!(
        message,
        "We could not parse the JSON body of your request (EOF while parsing an object at line 1 column 12). Send a JSON object with Content-Type: application/json."
    );
    for body in [&b"[]"[..], b"\"name\"", b"null", b"3"] {
        assert_eq!(
            refused(body),
            (None, "The request body must be a JSON object.".to_owned())
        );
    }
}

#[test]
fn a_body_that_is_not_utf8_is_refused() {
    assert_eq!(
        refused(b"{\"name\":\"\xff\"}"),
        (None, "The request body is not valid UTF-8 text.".to_owned())
    );
}

async fn extract<const LIMIT: usize>(body: Vec<u8>) -> Result<Sample, ApiError> {
    let req = Request::new(axum::body::Body::from(body));
    JsonBody::<Sample, LIMIT>::from_request(req, &())
        .await
        .map(|JsonBody(parsed)| parsed)
}

/// The limit, from both sides: a body of exactly `LIMIT` bytes is read, one byte more is 413.
#[tokio::test]
async fn the_size_limit_holds_to_the_byte() {
    const LIMIT: usize = 1024;
    let at = |len: usize| {
        let mut body = br#"{"name":""#.to_vec();
        body.resize(len - 2, b'a');
        body.extend_from_slice(br#""}"#);
        body
    };
    assert_eq!(at(LIMIT).len(), LIMIT);
    let parsed = extract::<LIMIT>(at(LIMIT)).await.unwrap();
    assert_eq!(parsed.name.len(), LIMIT - 11);
    match extract::<LIMIT>(at(LIMIT + 1)).await {
        Err(ApiError::BodyTooLarge { limit_kib: 1 }) => {}
        other => panic!("not 413: {other:?}"),
    }
}
