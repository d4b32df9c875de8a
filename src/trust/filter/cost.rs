//! What a client filter is checked for before it is ever run (spec §12.6, §13.5): the names it
//! uses, how deeply it nests, and a static estimate of the most work it can cause.
//!
//! The estimate works as Kubernetes' does for its CEL rules. Every value has an abstract
//! [`Shape`]: its type where it is known, and an upper bound on its size: each SAN list of
//! `cert` holds [`MAX_LIST`] entries, each string [`MAX_STRING`] bytes, a list literal its own
//! elements. Every node evaluated costs a step; work proportional to a value's size (copying,
//! comparing, scanning a string) costs a step per [`super::shape::BYTES_PER_STEP`] bytes or per
//! element; a
//! comprehension (`all`, `exists`, `exists_one`, `map`, `filter`) costs its body once per
//! element of its list, so nested ones multiply. At run time a leaf larger than these bounds
//! counts as filtered out, which makes the estimate a bound on the real work.
//!
//! The analysis recurses once per level of the expression and stops at [`MAX_DEPTH`]: the cel
//! crate's evaluator also recurses per level, and a 4 KiB expression can nest 2,000 levels deep,
//! enough to overflow a thread's stack and abort the process.

use std::collections::HashMap;

use cel::common::ast::{operators, CallExpr, ComprehensionExpr, EntryExpr, Expr, IdedExpr};
use cel::common::ast::{ListExpr, LiteralValue, MapExpr, SelectExpr};

use super::shape::{
    field_of, function, literal, operator, unwrap_optional, Shape, MAX_LIST, MAX_STRING,
};

/// Most steps a filter's estimate may reach (spec §13.5).
pub const MAX_COST: u64 = 100_000;
/// Deepest nesting of a filter's expression.
pub const MAX_DEPTH: usize = 32;
/// Largest compiled regular expression `matches` may use (the regex crate's `size_limit`).
pub(super) const MAX_REGEX_BYTES: usize = 64 << 10;
/// Fixed steps of compiling a regular expression, which the cel crate does on every call.
const REGEX_COMPILE_STEPS: u64 = 2_500;

/// What the analysis found.
#[derive(Debug)]
pub(super) struct Analysis {
    pub(super) cost: u64,
    pub(super) result: Shape,
}

/// Checks `expr` and estimates its cost; the error says what is wrong, for a person.
pub(super) fn analyse(expr: &IdedExpr) -> Result<Analysis, String> {
    let mut walker = Walker::default();
    let (cost, result) = walker.expr(expr, 0)?;
    let cost = cost.saturating_add(result.weight());
    if cost > MAX_COST {
        return Err(over_budget(cost));
    }
    Ok(Analysis { cost, result })
}

pub(super) fn over_budget(cost: u64) -> String {
    format!(
        "its estimated cost is {} steps, over the limit of {} (each SAN list is counted at {MAX_LIST} entries and each string at {} KiB; nested comprehensions multiply)",
        thousands(cost),
        thousands(MAX_COST),
        MAX_STRING / 1024
    )
}

/// `262144` as `262,144`.
pub(super) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[derive(Default)]
struct Walker {
    /// Variables in scope, innermost last, and how many comprehension scopes enclose each.
    vars: Vec<(String, Shape)>,
    /// Comprehensions enclosing the node being looked at (each is a scope the evaluator walks
    /// through to find a name).
    scopes: u64,
    /// Compiled size class of each `matches` pattern seen, and the steps they have cost.
    regexes: HashMap<String, u64>,
    regex_steps: u64,
}

type Costed = Result<(u64, Shape), String>;

impl Walker {
    fn expr(&mut self, e: &IdedExpr, depth: usize) -> Costed {
        if depth >= MAX_DEPTH {
            return Err(format!(
                "it nests more than {MAX_DEPTH} levels deep (simplify it, e.g. `x in [..]` instead of a chain of `||`)"
            ));
        }
        let d = depth + 1;
        match &e.expr {
            Expr::Literal(l) => Ok((1, literal(l))),
            Expr::Ident(name) => self.ident(name),
            Expr::Select(s) => self.select(e, s, d),
            Expr::Call(c) => self.call(c, d),
            Expr::List(l) => self.list(l, d),
            Expr::Map(m) => self.map(m, d),
            Expr::Comprehension(c) => self.comprehension(c, d),
            Expr::Struct(s) => Err(format!(
                "it builds a message of type '{}', and client filters know none",
                s.type_name
            )),
            Expr::Unspecified => Err("its cost cannot be estimated".to_owned()),
        }
    }

    /// A name: a comprehension variable, `cert`, or a type such as `string`.
    fn ident(&self, name: &str) -> Costed {
        let lookup = 1 + self.scopes;
        if let Some((_, shape)) = self.vars.iter().rev().find(|(n, _)| n == name) {
            return Ok((lookup, shape.clone()));
        }
        if name == "cert" {
            return Ok((lookup, Shape::Cert));
        }
        if super::env().types().find_type(name).is_some() {
            return Ok((lookup, Shape::Type));
        }
        Err(format!(
            "it uses an unknown variable '{name}' (a filter sees only `cert`, and the variables of its comprehensions)"
        ))
    }

    fn bound(&self, name: &str) -> bool {
        name == "cert" || self.vars.iter().any(|(n, _)| n == name)
    }

    fn select(&mut self, whole: &IdedExpr, s: &SelectExpr, d: usize) -> Costed {
        // A qualified name whose root is no variable can only be a type (`google.protobuf.X`).
        if let Some(segments) = qualified_name(whole) {
            if !s.test && !self.bound(segments[0]) {
                let name = segments.join(".");
                if super::env().types().find_type(&name).is_some() {
                    return Ok((1 + self.scopes, Shape::Type));
                }
                return Err(format!(
                    "it uses an unknown variable '{}' (a filter sees only `cert`, and the variables of its comprehensions)",
                    segments[0]
                ));
            }
        }
        let (cost, operand) = self.expr(&s.operand, d)?;
        let field = field_of(&operand, &s.field)?;
        let cost = cost
            .saturating_add(1 + self.scopes)
            .saturating_add(Shape::Str(s.field.len() as u64).scan());
        Ok((cost, if s.test { Shape::Bool } else { field }))
    }

    fn list(&mut self, l: &ListExpr, d: usize) -> Costed {
        let mut cost = 1u64;
        let mut elem = Shape::Never;
        for (i, e) in l.elements.iter().enumerate() {
            let (c, mut s) = self.expr(e, d)?;
            if l.optional_indices.contains(&i) {
                s = unwrap_optional(s);
            }
            cost = cost.saturating_add(c).saturating_add(s.weight());
            elem = elem.join(s);
        }
        Ok((cost, Shape::List(l.elements.len() as u64, Box::new(elem))))
    }

    fn map(&mut self, map: &MapExpr, depth: usize) -> Costed {
        let (mut cost, mut keys, mut values) = (1u64, Shape::Never, Shape::Never);
        for entry in &map.entries {
            let EntryExpr::MapEntry(entry) = &entry.expr else {
                return Err("its cost cannot be estimated".to_owned());
            };
            let (key_cost, key) = self.expr(&entry.key, depth)?;
            let (value_cost, mut value) = self.expr(&entry.value, depth)?;
            if entry.optional {
                value = unwrap_optional(value);
            }
            cost = [key_cost, value_cost, key.weight(), value.weight()]
                .into_iter()
                .fold(cost, u64::saturating_add);
            keys = keys.join(key);
            values = values.join(value);
        }
        Ok((
            cost,
            Shape::Map(map.entries.len() as u64, Box::new(keys), Box::new(values)),
        ))
    }

    fn comprehension(&mut self, c: &ComprehensionExpr, d: usize) -> Costed {
        let (range_cost, range) = self.expr(&c.iter_range, d)?;
        let (init_cost, init) = self.expr(&c.accu_init, d)?;
        let (n, elem) = range.elements();
        let (first, second) = match (&c.iter_var2, &range) {
            (None, _) => (elem.clone(), None),
            (Some(_), Shape::List(_, e)) => (Shape::Int, Some((**e).clone())),
            (Some(_), Shape::Map(_, _, v)) => (elem.clone(), Some((**v).clone())),
            (Some(_), _) => (elem.clone(), Some(Shape::Dyn(range.weight()))),
        };
        let outer = self.vars.len();
        self.scopes += 1;
        self.vars.push((c.iter_var.clone(), first));
        if let (Some(name), Some(shape)) = (&c.iter_var2, second) {
            self.vars.push((name.clone(), shape));
        }
        let step = self.loop_body(c, d, n, init);
        self.vars.truncate(outer);
        self.scopes -= 1;
        let (per_element, result_cost, result) = step?;
        // Each element is copied into the comprehension's scope before the body runs.
        let per_element = per_element.saturating_add(elem.weight()).saturating_add(2);
        let cost = [
            range_cost,
            init_cost,
            n.saturating_mul(per_element),
            result_cost,
        ]
        .into_iter()
        .fold(1, u64::saturating_add);
        Ok((cost, result))
    }

    /// The cost of one element's turn of `c` (its iteration variables bound), and the cost and
    /// shape of its result.
    fn loop_body(
        &mut self,
        c: &ComprehensionExpr,
        d: usize,
        turns: u64,
        init: Shape,
    ) -> Result<(u64, u64, Shape), String> {
        if let Some((guard, items)) = append_step(c) {
            // `map` and `filter`: the evaluator appends to one list in place.
            self.vars.push((c.accu_var.clone(), Shape::Never));
            let guard = match guard {
                Some(guard) => self.expr(guard, d).map(|(cost, _)| cost),
                None => Ok(0),
            };
            let items = self.expr(items, d);
            self.vars.pop();
            let (items_cost, items) = items?;
            let (added, element) = items.elements();
            let accumulated = Shape::List(turns.saturating_mul(added), Box::new(element));
            let turn = [1, guard?, items_cost, items.weight()]
                .into_iter()
                .fold(0, u64::saturating_add);
            return Ok((turn, 1 + self.scopes, accumulated));
        }
        if matches!(
            init,
            Shape::List(..) | Shape::Str(_) | Shape::Bytes(_) | Shape::Map(..)
        ) {
            // Only an accumulator that cannot grow is estimated this way; the standard macros
            // make no other kind.
            return Err("its cost cannot be estimated".to_owned());
        }
        self.vars.push((c.accu_var.clone(), init));
        let cond = self.expr(&c.loop_cond, d);
        let step = self.expr(&c.loop_step, d);
        let result = self.expr(&c.result, d);
        self.vars.pop();
        let ((cond, _), (step, _), (result_cost, result)) = (cond?, step?, result?);
        Ok((cond.saturating_add(step), result_cost, result))
    }

    fn call(&mut self, c: &CallExpr, d: usize) -> Costed {
        // `optional.of(x)`: a function in a namespace, not a method of a variable.
        if let Some(target) = &c.target {
            if let Some(segments) = qualified_name(target) {
                if !self.bound(segments[0]) {
                    let name = format!("{}.{}", segments.join("."), c.func_name);
                    return self.function(&name, &c.args, d);
                }
            }
        }
        let mut args: Vec<&IdedExpr> = Vec::with_capacity(c.args.len() + 1);
        args.extend(c.target.as_deref());
        args.extend(&c.args);
        self.operator_or_function(&c.func_name, &args, d)
    }

    fn function(&mut self, name: &str, args: &[IdedExpr], d: usize) -> Costed {
        let args: Vec<&IdedExpr> = args.iter().collect();
        self.operator_or_function(name, &args, d)
    }

    fn operator_or_function(&mut self, name: &str, args: &[&IdedExpr], d: usize) -> Costed {
        if name == operators::CONDITIONAL && args.len() == 3 {
            let (c0, _) = self.expr(args[0], d)?;
            let (c1, s1) = self.expr(args[1], d)?;
            let (c2, s2) = self.expr(args[2], d)?;
            return Ok((1 + c0.saturating_add(c1.max(c2)), s1.join(s2)));
        }
        let mut cost = 1u64;
        let mut shapes = Vec::with_capacity(args.len());
        for a in args {
            let (c, s) = self.expr(a, d)?;
            cost = cost.saturating_add(c);
            shapes.push(s);
        }
        // `cert["san_dns"]`, `cert.?san_dns`: a literal key names a field.
        let key = args.get(1).and_then(|k| match &k.expr {
            Expr::Literal(LiteralValue::String(s)) => Some(s.inner()),
            _ => None,
        });
        let (extra, result) = if let Some(found) = operator(name, &shapes, key) {
            found?
        } else if name == "matches" {
            self.matches(args, &shapes)?
        } else {
            function(name, &shapes)?
        };
        Ok((cost.saturating_add(extra), result))
    }

    /// `text.matches(pattern)` / `matches(text, pattern)`: the pattern must be a literal, so its
    /// compiled size is known; the cel crate compiles it again on every call.
    fn matches(&mut self, args: &[&IdedExpr], shapes: &[Shape]) -> Result<(u64, Shape), String> {
        let (Some(text), Some(pattern)) = (shapes.first(), args.get(1)) else {
            return Ok((0, Shape::Never));
        };
        let Expr::Literal(LiteralValue::String(pattern)) = &pattern.expr else {
            return Err(
                "matches() is given a pattern computed at run time; write the pattern as a string literal, so that its cost can be estimated"
                    .to_owned(),
            );
        };
        let size = if let Some(&size) = self.regexes.get(pattern.inner()) {
            size
        } else {
            if self.regex_steps > MAX_COST {
                return Err(over_budget(self.regex_steps));
            }
            let size = regex_size(pattern.inner())?;
            self.regex_steps = self.regex_steps.saturating_add(compiling(size));
            self.regexes.insert(pattern.inner().to_owned(), size);
            size
        };
        // Matching costs, per byte of text, a step per 4 KiB of program.
        let matching = text.bytes().saturating_mul(size) / 4096;
        Ok((compiling(size).saturating_add(matching), Shape::Bool))
    }
}

/// Steps to compile a regular expression of `size` bytes of program: the regex crate builds
/// several engines whatever the size (about 80 µs for a small pattern, measured by
/// `filter_bench calibrate`), then about a step per 4 bytes.
fn compiling(size: u64) -> u64 {
    REGEX_COMPILE_STEPS.saturating_add(size / 4)
}

/// The smallest power of two from 1 KiB up to [`MAX_REGEX_BYTES`] the pattern compiles within.
fn regex_size(pattern: &str) -> Result<u64, String> {
    let mut limit = 1usize << 10;
    loop {
        match regex::RegexBuilder::new(pattern).size_limit(limit).build() {
            Ok(_) => return Ok(limit as u64),
            Err(regex::Error::CompiledTooBig(_)) if limit < MAX_REGEX_BYTES => limit *= 2,
            Err(regex::Error::CompiledTooBig(_)) => {
                return Err(format!(
                    "the pattern {pattern:?} of matches() compiles to more than {} KiB",
                    MAX_REGEX_BYTES >> 10
                ))
            }
            Err(e) => {
                return Err(format!(
                    "the pattern {pattern:?} of matches() is not a valid regular expression: {e}"
                ))
            }
        }
    }
}

/// The segments of the qualified name `e` spells (`a.b.c`), root first; `None` if it is not
/// an identifier or field selections on one.
fn qualified_name(e: &IdedExpr) -> Option<Vec<&str>> {
    let mut segments = Vec::new();
    let mut e = e;
    loop {
        match &e.expr {
            Expr::Ident(name) => {
                segments.push(name.as_str());
                segments.reverse();
                return Some(segments);
            }
            Expr::Select(s) if !s.test => {
                segments.push(s.field.as_str());
                e = &s.operand;
            }
            _ => return None,
        }
    }
}

/// A `map` or `filter` loop step: `accu + [item]`, or `guard ? accu + [item] : accu`, over an
/// empty list: the guard, if any, and the appended list.
fn append_step(c: &ComprehensionExpr) -> Option<(Option<&IdedExpr>, &IdedExpr)> {
    let is_accu = |e: &IdedExpr| matches!(&e.expr, Expr::Ident(n) if *n == c.accu_var);
    let empty_init = matches!(&c.accu_init.expr, Expr::List(l) if l.elements.is_empty());
    if !empty_init || !is_accu(&c.result) || !matches!(c.loop_cond.expr, Expr::Literal(_)) {
        return None;
    }
    match &c.loop_step.expr {
        Expr::Call(call) if call.func_name == operators::CONDITIONAL && call.target.is_none() => {
            match call.args.as_slice() {
                [guard, step, otherwise] if is_accu(otherwise) => {
                    Some((Some(guard), appended(step, &c.accu_var)?))
                }
                _ => None,
            }
        }
        _ => Some((None, appended(&c.loop_step, &c.accu_var)?)),
    }
}

/// The list `e` appends to the accumulator `accu`, if it is `accu + [..]`.
fn appended<'e>(e: &'e IdedExpr, accu: &str) -> Option<&'e IdedExpr> {
    match &e.expr {
        Expr::Call(call) if call.func_name == operators::ADD && call.target.is_none() => {
            match call.args.as_slice() {
                [first, items]
                    if matches!(&first.expr, Expr::Ident(n) if n == accu)
                        && matches!(items.expr, Expr::List(_)) =>
                {
                    Some(items)
                }
                _ => None,
            }
        }
        _ => None,
    }
}
