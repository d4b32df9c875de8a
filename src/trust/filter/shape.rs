//! The abstract values of a client filter's cost estimate (see [`super::cost`]): what each
//! value may be, with upper bounds on its size, and what each operator and standard function
//! costs and gives.

use cel::common::ast::{operators, LiteralValue};

/// Entries of each SAN list a filter sees; a leaf with more is filtered out.
pub const MAX_LIST: u64 = 64;
/// Bytes of each string a filter sees; a leaf with a longer one is filtered out.
pub const MAX_STRING: u64 = 1024;
/// String work: one step per this many bytes (Kubernetes' 0.1 per byte).
pub(super) const BYTES_PER_STEP: u64 = 10;
/// Extra steps of parsing a timestamp, a duration or a time zone name.
const PARSING_STEPS: u64 = 16;
/// The `cert.*` variables and their shapes.
const CERT_FIELDS: [&str; 11] = [
    "subject",
    "subject_cn",
    "issuer",
    "serial",
    "sha256",
    "san_dns",
    "san_uri",
    "san_email",
    "san_ip",
    "not_before",
    "not_after",
];

fn cert_field(name: &str) -> Option<Shape> {
    match name {
        "subject" | "subject_cn" | "issuer" | "serial" | "sha256" => Some(Shape::Str(MAX_STRING)),
        "san_dns" | "san_uri" | "san_email" | "san_ip" => {
            Some(Shape::List(MAX_LIST, Box::new(Shape::Str(MAX_STRING))))
        }
        "not_before" | "not_after" => Some(Shape::Int),
        _ => None,
    }
}

/// What a value may be, with upper bounds on its size.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Shape {
    Bool,
    Int,
    Uint,
    Double,
    Null,
    Timestamp,
    Duration,
    Type,
    /// At most this many bytes.
    Str(u64),
    Bytes(u64),
    /// At most this many elements of this shape.
    List(u64, Box<Shape>),
    Map(u64, Box<Shape>, Box<Shape>),
    Optional(Box<Shape>),
    /// The `cert` variable.
    Cert,
    /// Of unknown type; costs at most this many steps to traverse.
    Dyn(u64),
    /// Only ever an error (or an element of an empty list).
    Never,
}

impl Shape {
    /// Steps to traverse the whole value once: copy, compare or hash it.
    pub(super) fn weight(&self) -> u64 {
        match self {
            Shape::Str(n) | Shape::Bytes(n) => 1 + n.div_ceil(BYTES_PER_STEP),
            Shape::List(n, e) => n.saturating_mul(e.weight()).saturating_add(1),
            Shape::Map(n, k, v) => n
                .saturating_mul(k.weight().saturating_add(v.weight()))
                .saturating_add(1),
            Shape::Optional(s) => s.weight().saturating_add(1),
            Shape::Cert => CERT_FIELDS
                .iter()
                .filter_map(|f| cert_field(f))
                .map(|s| s.weight().saturating_add(Shape::Str(16).weight()))
                .fold(1, u64::saturating_add),
            Shape::Dyn(w) => *w,
            Shape::Never => 0,
            _ => 1,
        }
    }

    /// Steps to scan it as a string (zero for what is no string).
    pub(super) fn scan(&self) -> u64 {
        match self {
            Shape::Str(n) | Shape::Bytes(n) => n.div_ceil(BYTES_PER_STEP),
            Shape::Dyn(w) => *w,
            _ => 0,
        }
    }

    /// At most how many bytes, as a string.
    pub(super) fn bytes(&self) -> u64 {
        match self {
            Shape::Str(n) | Shape::Bytes(n) => *n,
            Shape::Dyn(w) => w.saturating_mul(BYTES_PER_STEP),
            _ => 0,
        }
    }

    /// At most how many elements a comprehension over it visits, and the shape of each.
    pub(super) fn elements(&self) -> (u64, Shape) {
        match self {
            Shape::List(n, e) => (*n, (**e).clone()),
            Shape::Map(n, k, _) => (*n, (**k).clone()),
            Shape::Cert => (CERT_FIELDS.len() as u64, Shape::Str(16)),
            Shape::Dyn(w) => (*w, Shape::Dyn(*w)),
            _ => (0, Shape::Never),
        }
    }

    /// What a value of either shape may be.
    pub(super) fn join(self, other: Shape) -> Shape {
        match (self, other) {
            (Shape::Never, s) | (s, Shape::Never) => s,
            (Shape::Str(a), Shape::Str(b)) => Shape::Str(a.max(b)),
            (Shape::Bytes(a), Shape::Bytes(b)) => Shape::Bytes(a.max(b)),
            (Shape::List(a, e), Shape::List(b, f)) => Shape::List(a.max(b), Box::new(e.join(*f))),
            (Shape::Map(len, key, value), Shape::Map(len2, key2, value2)) => Shape::Map(
                len.max(len2),
                Box::new(key.join(*key2)),
                Box::new(value.join(*value2)),
            ),
            (Shape::Optional(a), Shape::Optional(b)) => Shape::Optional(Box::new(a.join(*b))),
            (a, b) if a == b => a,
            (a, b) => Shape::Dyn(a.weight().max(b.weight())),
        }
    }

    pub(super) fn is_number(&self) -> bool {
        matches!(self, Shape::Int | Shape::Uint | Shape::Double)
    }

    /// The name of the type, for a message; `None` where it may be a boolean.
    pub(super) fn non_boolean(&self) -> Option<&'static str> {
        Some(match self {
            Shape::Bool | Shape::Dyn(_) | Shape::Never => return None,
            Shape::Int => "int",
            Shape::Uint => "uint",
            Shape::Double => "double",
            Shape::Null => "null",
            Shape::Timestamp => "timestamp",
            Shape::Duration => "duration",
            Shape::Type => "type",
            Shape::Str(_) => "string",
            Shape::Bytes(_) => "bytes",
            Shape::List(..) => "list",
            Shape::Map(..) | Shape::Cert => "map",
            Shape::Optional(_) => "optional",
        })
    }
}

pub(super) fn literal(l: &LiteralValue) -> Shape {
    match l {
        LiteralValue::Boolean(_) => Shape::Bool,
        LiteralValue::Bytes(b) => Shape::Bytes(b.inner().len() as u64),
        LiteralValue::Double(_) => Shape::Double,
        LiteralValue::Int(_) => Shape::Int,
        LiteralValue::Null => Shape::Null,
        LiteralValue::String(s) => Shape::Str(s.inner().len() as u64),
        LiteralValue::UInt(_) => Shape::Uint,
    }
}

pub(super) fn unwrap_optional(s: Shape) -> Shape {
    match s {
        Shape::Optional(inner) => *inner,
        other => other,
    }
}

/// `operand.field`.
pub(super) fn field_of(operand: &Shape, field: &str) -> Result<Shape, String> {
    Ok(match operand {
        Shape::Cert => cert_field(field).ok_or_else(|| {
            format!(
                "it uses cert.{field}, which does not exist (a filter sees cert.{})",
                CERT_FIELDS.join(", cert.")
            )
        })?,
        Shape::Map(_, _, v) => (**v).clone(),
        Shape::Optional(inner) => Shape::Optional(Box::new(field_of(inner, field)?)),
        Shape::Dyn(w) => Shape::Dyn(*w),
        _ => Shape::Never,
    })
}

/// `container[key]`.
pub(super) fn element_of(container: &Shape, key: Option<&str>) -> Result<Shape, String> {
    Ok(match container {
        Shape::List(_, e) => (**e).clone(),
        Shape::Map(_, _, v) => (**v).clone(),
        Shape::Cert => match key {
            Some(field) => field_of(container, field)?,
            None => Shape::Dyn(Shape::List(MAX_LIST, Box::new(Shape::Str(MAX_STRING))).weight()),
        },
        Shape::Optional(inner) => Shape::Optional(Box::new(element_of(inner, key)?)),
        Shape::Dyn(w) => Shape::Dyn(*w),
        _ => Shape::Never,
    })
}

/// The extra cost and the result of an operator, `None` if `name` is no operator.
pub(super) fn operator(
    name: &str,
    s: &[Shape],
    key: Option<&str>,
) -> Option<Result<(u64, Shape), String>> {
    let two = |f: &dyn Fn(&Shape, &Shape) -> (u64, Shape)| match s {
        [a, b] => Ok(f(a, b)),
        _ => Ok((0, Shape::Never)),
    };
    let compare = |a: &Shape, b: &Shape| (a.weight().min(b.weight()), Shape::Bool);
    Some(match name {
        operators::LOGICAL_AND
        | operators::LOGICAL_OR
        | operators::LOGICAL_NOT
        | operators::NOT_STRICTLY_FALSE => Ok((0, Shape::Bool)),
        operators::EQUALS
        | operators::NOT_EQUALS
        | operators::LESS
        | operators::LESS_EQUALS
        | operators::GREATER
        | operators::GREATER_EQUALS => two(&compare),
        operators::ADD => two(&add),
        operators::SUBSTRACT | operators::MULTIPLY | operators::DIVIDE | operators::MODULO => {
            two(&|a, b| (0, arithmetic(a, b)))
        }
        operators::NEGATE => Ok((
            0,
            match s.first() {
                Some(a) if a.is_number() || *a == Shape::Duration => a.clone(),
                _ => Shape::Dyn(1),
            },
        )),
        operators::IN => two(&|item, container| {
            let work = match container {
                Shape::List(n, e) => n.saturating_mul(item.weight().min(e.weight())),
                Shape::Map(..) | Shape::Cert => item.weight(),
                Shape::Dyn(w) => w.saturating_mul(2),
                _ => 0,
            };
            (work, Shape::Bool)
        }),
        operators::INDEX | operators::OPT_INDEX => match s {
            [container, key_shape] => {
                let element = element_of(container, key);
                let hashing = match container {
                    Shape::List(..) => 0,
                    _ => key_shape.weight(),
                };
                element.map(|e| {
                    let e = if name == operators::OPT_INDEX {
                        Shape::Optional(Box::new(e))
                    } else {
                        e
                    };
                    (hashing, e)
                })
            }
            _ => Ok((0, Shape::Never)),
        },
        operators::OPT_SELECT => match s {
            [operand, _] => element_of(operand, key).map(|e| (1, Shape::Optional(Box::new(e)))),
            _ => Ok((0, Shape::Never)),
        },
        _ => return None,
    })
}

fn add(a: &Shape, b: &Shape) -> (u64, Shape) {
    let result = match (a, b) {
        (Shape::Str(x), Shape::Str(y)) => Shape::Str(x.saturating_add(*y)),
        (Shape::Bytes(x), Shape::Bytes(y)) => Shape::Bytes(x.saturating_add(*y)),
        (Shape::List(len, element), Shape::List(len2, element2)) => Shape::List(
            len.saturating_add(*len2),
            Box::new(element.clone().join((**element2).clone())),
        ),
        (Shape::Int, Shape::Int) => Shape::Int,
        (Shape::Uint, Shape::Uint) => Shape::Uint,
        (Shape::Double, Shape::Double) => Shape::Double,
        (Shape::Duration, Shape::Duration) => Shape::Duration,
        (Shape::Timestamp, Shape::Duration) | (Shape::Duration, Shape::Timestamp) => {
            Shape::Timestamp
        }
        (Shape::Never, _) | (_, Shape::Never) => Shape::Never,
        _ => Shape::Dyn(a.weight().saturating_add(b.weight())),
    };
    // The result is a new value: building it copies both operands.
    (result.weight(), result)
}

fn arithmetic(a: &Shape, b: &Shape) -> Shape {
    match (a, b) {
        (Shape::Timestamp, Shape::Timestamp) | (Shape::Duration, Shape::Duration) => {
            Shape::Duration
        }
        (Shape::Timestamp, Shape::Duration) => Shape::Timestamp,
        (x, y) if x.is_number() && x == y => x.clone(),
        _ => Shape::Dyn(1),
    }
}

/// The extra cost and result of a standard function; an unknown one is refused (as CEL's
/// checker does: an undeclared reference).
pub(super) fn function(name: &str, s: &[Shape]) -> Result<(u64, Shape), String> {
    let first = s.first().cloned().unwrap_or(Shape::Never);
    let scan_all: u64 = s.iter().map(Shape::scan).fold(0, u64::saturating_add);
    Ok(match name {
        "size" | "int" => (first.scan(), Shape::Int),
        "contains" | "startsWith" | "endsWith" => (scan_all, Shape::Bool),
        "string" => {
            let result = match &first {
                Shape::Str(n) | Shape::Bytes(n) => Shape::Str(*n),
                Shape::Int | Shape::Uint | Shape::Bool => Shape::Str(20),
                Shape::Double | Shape::Duration | Shape::Timestamp => Shape::Str(40),
                Shape::Dyn(w) => Shape::Str(w.saturating_mul(BYTES_PER_STEP).max(40)),
                _ => Shape::Never,
            };
            (first.scan(), result)
        }
        "bytes" => (first.scan(), Shape::Bytes(first.bytes())),
        "uint" => (first.scan(), Shape::Uint),
        "double" => (first.scan(), Shape::Double),
        "bool" => (first.scan(), Shape::Bool),
        // Parsing a date, a duration or a time zone costs more than its length suggests
        // (measured by `filter_bench calibrate`).
        "timestamp" => (first.scan() + PARSING_STEPS, Shape::Timestamp),
        "duration" => (first.scan() + PARSING_STEPS, Shape::Duration),
        "getFullYear" | "getMonth" | "getDayOfYear" | "getDayOfMonth" | "getDate"
        | "getDayOfWeek" | "getHours" | "getMinutes" | "getSeconds" | "getMilliseconds" => {
            (scan_all + PARSING_STEPS, Shape::Int)
        }
        "type" => (0, Shape::Type),
        "dyn" => (0, first),
        "optional.of" | "optional.ofNonZeroValue" => (0, Shape::Optional(Box::new(first))),
        "optional.none" => (0, Shape::Optional(Box::new(Shape::Never))),
        "value" => (0, unwrap_optional(first)),
        "hasValue" => (0, Shape::Bool),
        "or" => (0, s.iter().cloned().fold(Shape::Never, Shape::join)),
        "orValue" => {
            let other = s.get(1).cloned().unwrap_or(Shape::Never);
            (0, unwrap_optional(first).join(other))
        }
        _ => {
            return Err(format!(
                "it calls an unknown function '{name}' (see the CEL standard library)"
            ))
        }
    })
}
