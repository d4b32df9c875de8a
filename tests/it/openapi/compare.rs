//! The structural comparison of two OpenAPI documents: schemas reduced to [`Shape`]s and
//! compared in the direction a client feels (see the module above).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

// --------------------------------------------------------------------------- shapes

/// A schema reduced to what is compared, `$ref`s resolved and `allOf` merged.
#[derive(Debug, Clone, Default)]
struct Shape {
    /// Types other than `null`; empty means any.
    types: BTreeSet<String>,
    nullable: bool,
    /// Allowed values (as JSON text), when restricted.
    values: Option<BTreeSet<String>>,
    properties: BTreeMap<String, Shape>,
    required: BTreeSet<String>,
    items: Option<Box<Shape>>,
}

/// The value at a local `$ref` (`#/components/...`).
fn resolve<'a>(doc: &'a Value, reference: &str) -> &'a Value {
    let pointer = reference
        .strip_prefix('#')
        .unwrap_or_else(|| panic!("only local references: {reference}"));
    doc.pointer(pointer)
        .unwrap_or_else(|| panic!("dangling reference {reference}"))
}

fn shape(doc: &Value, schema: &Value, depth: usize) -> Shape {
    assert!(depth < 40, "schema nested too deep (a cycle?)");
    let mut s = Shape::default();
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        s = shape(doc, resolve(doc, r), depth + 1);
    }
    for part in schema
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        merge(&mut s, shape(doc, part, depth + 1));
    }
    for key in ["anyOf", "oneOf"] {
        let Some(branches) = schema.get(key).and_then(Value::as_array) else {
            continue;
        };
        let mut union: Option<Shape> = None;
        for branch in branches {
            let b = shape(doc, branch, depth + 1);
            if b.types.is_empty() && b.nullable && b.properties.is_empty() && b.values.is_none() {
                s.nullable = true;
                continue;
            }
            union = Some(match union {
                None => b,
                Some(mut u) => {
                    u.types.extend(b.types);
                    u.nullable |= b.nullable;
                    u.values = match (u.values, b.values) {
                        (Some(mut a), Some(b)) => {
                            a.extend(b);
                            Some(a)
                        }
                        _ => None,
                    };
                    u.required = u.required.intersection(&b.required).cloned().collect();
                    u.properties.extend(b.properties);
                    u
                }
            });
        }
        if let Some(u) = union {
            let nullable = s.nullable || u.nullable;
            merge(&mut s, u);
            s.nullable = nullable;
        }
    }
    match schema.get("type") {
        Some(Value::String(t)) if t == "null" => s.nullable = true,
        Some(Value::String(t)) => {
            s.types.insert(t.clone());
        }
        Some(Value::Array(ts)) => {
            for t in ts.iter().filter_map(Value::as_str) {
                if t == "null" {
                    s.nullable = true;
                } else {
                    s.types.insert(t.to_owned());
                }
            }
        }
        _ => {}
    }
    if schema.get("nullable").and_then(Value::as_bool) == Some(true) {
        s.nullable = true;
    }
    let values: Option<Vec<&Value>> = match (schema.get("enum"), schema.get("const")) {
        (Some(Value::Array(vs)), _) => Some(vs.iter().collect()),
        (_, Some(v)) => Some(vec![v]),
        _ => None,
    };
    if let Some(values) = values {
        let mut set = BTreeSet::new();
        for v in values {
            if v.is_null() {
                s.nullable = true;
            } else {
                set.insert(v.to_string());
            }
        }
        s.values = Some(set);
    }
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (name, p) in props {
            s.properties.insert(name.clone(), shape(doc, p, depth + 1));
        }
    }
    for r in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        s.required.insert(r.to_owned());
    }
    if let Some(items) = schema.get("items") {
        s.items = Some(Box::new(shape(doc, items, depth + 1)));
    }
    if s.types.is_empty() && !s.properties.is_empty() {
        s.types.insert("object".into());
    }
    s
}

fn merge(into: &mut Shape, other: Shape) {
    into.types.extend(other.types);
    into.nullable |= other.nullable;
    if other.values.is_some() {
        into.values = other.values;
    }
    into.properties.extend(other.properties);
    into.required.extend(other.required);
    if other.items.is_some() {
        into.items = other.items;
    }
}

// ----------------------------------------------------------------------- comparison

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// certgate answers it: certgate's values must be valid for the reference.
    Response,
    /// certgate reads it: the reference's values must be accepted by certgate.
    Request,
}

pub(super) struct Compare<'a> {
    reference: &'a Value,
    served: &'a Value,
    findings: Vec<String>,
}

impl Compare<'_> {
    fn schemas(&mut self, at: &str, r: &Value, s: &Value, dir: Direction, null_matters: bool) {
        let r = shape(self.reference, r, 0);
        let s = shape(self.served, s, 0);
        self.shapes(at, &r, &s, dir, null_matters);
    }

    fn shapes(&mut self, at: &str, r: &Shape, s: &Shape, dir: Direction, null_matters: bool) {
        let mut say = |what: String| self.findings.push(format!("{at}: {what}"));
        if !r.types.is_empty() && !s.types.is_empty() && r.types != s.types {
            say(format!(
                "type {:?} in the reference, {:?} in certgate",
                r.types, s.types
            ));
        }
        if null_matters {
            match dir {
                Direction::Response if s.nullable && !r.nullable => {
                    say("null in certgate, never null in the reference".into());
                }
                Direction::Request if r.nullable && !s.nullable => {
                    say("null accepted by the reference, refused by certgate".into());
                }
                _ => {}
            }
        }
        match (dir, &r.values, &s.values) {
            (Direction::Response, Some(rv), Some(sv)) => {
                for v in sv.difference(rv) {
                    say(format!("value {v} not in the reference"));
                }
            }
            (Direction::Response, Some(rv), None) => {
                say(format!(
                    "certgate does not restrict it to the reference's {rv:?}"
                ));
            }
            (Direction::Request, Some(rv), Some(sv)) => {
                for v in rv.difference(sv) {
                    say(format!("value {v} of the reference refused by certgate"));
                }
            }
            (Direction::Request, None, Some(sv)) => {
                say(format!(
                    "certgate accepts only {sv:?}, the reference any value"
                ));
            }
            _ => {}
        }
        for (name, rp) in &r.properties {
            let child = format!("{at}.{name}");
            match s.properties.get(name) {
                Some(sp) => {
                    match dir {
                        Direction::Response
                            if r.required.contains(name) && !s.required.contains(name) =>
                        {
                            self.findings.push(format!(
                                "{child}: required by the reference, optional in certgate"
                            ));
                        }
                        Direction::Request
                            if s.required.contains(name) && !r.required.contains(name) =>
                        {
                            self.findings.push(format!(
                                "{child}: required by certgate, optional in the reference"
                            ));
                        }
                        _ => {}
                    }
                    self.shapes(&child, rp, sp, dir, true);
                }
                None if dir == Direction::Request => self
                    .findings
                    .push(format!("{child}: in the reference, refused by certgate")),
                None if r.required.contains(name) => self.findings.push(format!(
                    "{child}: required by the reference, absent in certgate"
                )),
                None => {} // never sent by certgate: fine for a client
            }
        }
        if !r.properties.is_empty() {
            for name in s.properties.keys() {
                if !r.properties.contains_key(name) && s.required.contains(name) {
                    self.findings.push(format!(
                        "{at}.{name}: an extension certgate requires (extensions must be optional)"
                    ));
                }
            }
        }
        if let (Some(ri), Some(si)) = (&r.items, &s.items) {
            self.shapes(&format!("{at}[]"), ri, si, dir, true);
        }
    }

    /// A response object, its `$ref` to `components/responses` resolved.
    pub(super) fn response<'v>(doc: &'v Value, response: &'v Value) -> &'v Value {
        match response.get("$ref").and_then(Value::as_str) {
            Some(r) => resolve(doc, r),
            None => response,
        }
    }

    fn json_schema(response_or_body: &Value) -> Option<&Value> {
        response_or_body.pointer("/content/application~1json/schema")
    }

    fn operation(&mut self, label: &str, r: &Value, s: &Value) {
        // Parameters: the reference's must be accepted, none required that it leaves optional.
        let params = |op: &Value| -> Vec<Value> {
            op.get("parameters")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        let (r_params, s_params) = (params(r), params(s));
        let key = |p: &Value| {
            (
                p["name"].as_str().unwrap_or("").to_owned(),
                p["in"].as_str().unwrap_or("").to_owned(),
            )
        };
        for rp in &r_params {
            let (name, place) = key(rp);
            let at = format!("{label} {place} parameter {name}");
            let Some(sp) = s_params
                .iter()
                .find(|sp| key(sp) == (name.clone(), place.clone()))
            else {
                self.findings
                    .push(format!("{at}: in the reference, not accepted by certgate"));
                continue;
            };
            let required = |p: &Value| p["required"].as_bool().unwrap_or(false);
            if required(sp) && !required(rp) {
                self.findings.push(format!(
                    "{at}: required by certgate, optional in the reference"
                ));
            }
            // A query string or path has no null: nullability is not compared there.
            self.schemas(&at, &rp["schema"], &sp["schema"], Direction::Request, false);
        }
        for sp in &s_params {
            let (name, place) = key(sp);
            if !r_params
                .iter()
                .any(|rp| key(rp) == (name.clone(), place.clone()))
                && sp["required"].as_bool() == Some(true)
            {
                self.findings.push(format!(
                    "{label} {place} parameter {name}: an extension certgate requires"
                ));
            }
        }
        // Request body.
        match (r.get("requestBody"), s.get("requestBody")) {
            (Some(rb), Some(sb)) => {
                let rb = Self::response(self.reference, rb);
                let sb = Self::response(self.served, sb);
                match (Self::json_schema(rb), Self::json_schema(sb)) {
                    (Some(rs), Some(ss)) => {
                        let (rs, ss) = (rs.clone(), ss.clone());
                        self.schemas(
                            &format!("{label} request body"),
                            &rs,
                            &ss,
                            Direction::Request,
                            true,
                        );
                    }
                    _ => self
                        .findings
                        .push(format!("{label} request body: not JSON on one side")),
                }
            }
            (Some(_), None) => self.findings.push(format!(
                "{label} request body: in the reference, not described by certgate"
            )),
            (None, Some(sb)) if sb["required"].as_bool() == Some(true) => self.findings.push(
                format!("{label} request body: required by certgate, absent in the reference"),
            ),
            _ => {}
        }
        // Responses: every success the reference lists; errors where certgate lists them too
        // (certgate never answers 429, for one).
        let empty = serde_json::Map::new();
        let r_responses = r["responses"].as_object().unwrap_or(&empty);
        let s_responses = s["responses"].as_object().unwrap_or(&empty);
        for (status, rr) in r_responses {
            let at = format!("{label} response {status}");
            let Some(sr) = s_responses.get(status) else {
                if status.starts_with('2') {
                    self.findings
                        .push(format!("{at}: in the reference, not described by certgate"));
                }
                continue;
            };
            let rr = Self::response(self.reference, rr);
            let sr = Self::response(self.served, sr);
            if let (Some(rs), Some(ss)) = (Self::json_schema(rr), Self::json_schema(sr)) {
                let (rs, ss) = (rs.clone(), ss.clone());
                self.schemas(&at, &rs, &ss, Direction::Response, true);
            }
        }
    }
}

/// Every difference between the reference and what certgate serves, on the paths they share.
pub(super) fn differences(reference: &Value, served: &Value) -> Vec<String> {
    let mut c = Compare {
        reference,
        served,
        findings: Vec::new(),
    };
    let paths = reference["paths"].as_object().expect("reference paths");
    for (path, item) in paths {
        for (method, r_op) in item.as_object().expect("path item") {
            if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            let label = format!("{} {path}", method.to_uppercase());
            // The reference's server is `…/v1`; certgate's paths are absolute.
            let Some(s_op) = served["paths"]
                .get(format!("/v1{path}"))
                .and_then(|i| i.get(method))
            else {
                c.findings
                    .push(format!("{label}: in the reference, not served by certgate"));
                continue;
            };
            c.operation(&label, r_op, s_op);
        }
    }
    c.findings
}
