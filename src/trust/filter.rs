//! Per-CA client filters (spec §12.6, §13.5): a CEL expression over the client's leaf
//! (`cert.*`, see [`crate::x509::LeafFacts`]) that must be true for that CA to admit it.
//!
//! A filter is bounded work everywhere. [`ClientFilter::compile`] parses it and checks it
//! without running it: the names it uses, its nesting, and a static estimate of its cost (see
//! `cost`), which must stay within [`MAX_COST`] steps. A written filter is also tried once on
//! a sample certificate ([`ClientFilter::check_written`]), only to refuse a non-boolean result:
//! an evaluation error there is no reason to refuse (`cert.san_dns[5] == "x"` is valid for a
//! client with six DNS names). At run time a filter sees a leaf only if it is within the bounds
//! the estimate assumed ([`FilterInput`]); an evaluation error, a non-boolean result or a leaf
//! over the bounds counts as false: a filter never fails open.
//!
//! Evaluating or compiling a filter is CPU work: callers run it off the async workers (the
//! gateway's chain pool, the API's bounded pool). Tenant text is logged escaped (`?`), never
//! raw, so a filter cannot forge a log line or send an escape sequence to a terminal.

mod cost;
mod shape;
#[cfg(test)]
mod tests;

use std::sync::{Arc, OnceLock};

use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use cel::{Context, Env, Program, Value};
use sha2::Digest;

use crate::x509::LeafFacts;

pub use cost::{MAX_COST, MAX_DEPTH};
pub use shape::{MAX_LIST, MAX_STRING};

/// A filter's identity: the SHA-256 of its source. Verdicts are kept by it (and the leaf's).
pub type FilterDigest = [u8; 32];

/// A compiled client filter that passed the static checks.
pub struct ClientFilter {
    source: String,
    program: Program,
    cost: u64,
}

impl std::fmt::Debug for ClientFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientFilter")
            .field("source", &self.source)
            .field("cost", &self.cost)
            .finish_non_exhaustive()
    }
}

/// The standard library, built once (building it costs tens of microseconds).
fn env() -> &'static Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| Arc::new(Env::stdlib()))
}

/// How one evaluation ended.
enum Outcome {
    Verdict(bool),
    NotBoolean(String),
    Failed(String),
}

impl ClientFilter {
    /// Parses `source` and checks it without evaluating it: a syntax error, an unknown variable,
    /// field or function, nesting deeper than [`MAX_DEPTH`], a result that cannot be a boolean,
    /// or an estimated cost over [`MAX_COST`] steps is refused; the error says why, for a person.
    pub fn compile(source: &str) -> Result<ClientFilter, String> {
        let program = env()
            .compile(source)
            .map_err(|e| format!("it does not parse: {e}"))?;
        let analysis = cost::analyse(program.expression())?;
        if let Some(kind) = analysis.result.non_boolean() {
            return Err(format!("it evaluates to a {kind}, not a boolean"));
        }
        Ok(ClientFilter {
            source: source.to_owned(),
            program,
            cost: analysis.cost,
        })
    }

    /// What a write accepts: [`ClientFilter::compile`], then one evaluation on
    /// [`LeafFacts::sample`], which refuses a non-boolean result the static checks could not
    /// see. An evaluation error on the sample is accepted: it may well evaluate on a real leaf.
    pub fn check_written(source: &str) -> Result<ClientFilter, String> {
        let filter = ClientFilter::compile(source)?;
        let sample = FilterInput::of(&LeafFacts::sample());
        match sample.cert.as_deref().map(|cert| filter.evaluate(cert)) {
            Some(Outcome::NotBoolean(kind)) => {
                Err(format!("it evaluates to a {kind}, not a boolean"))
            }
            _ => Ok(filter),
        }
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The static estimate of its cost, in steps.
    pub fn cost(&self) -> u64 {
        self.cost
    }

    /// Whether the leaf `input` describes passes. A leaf over the bounds, an error or a
    /// non-boolean result is false.
    pub fn admits(&self, input: &FilterInput) -> bool {
        self.verdict(input).unwrap_or(false)
    }

    /// `Err` with the reason when the filter counts as false without saying so.
    fn verdict(&self, input: &FilterInput) -> Result<bool, String> {
        let Some(cert) = input.cert.as_deref() else {
            return Err(input.refusal.clone());
        };
        match self.evaluate(cert) {
            Outcome::Verdict(v) => Ok(v),
            Outcome::NotBoolean(kind) => Err(format!("it evaluated to a {kind}, not a boolean")),
            Outcome::Failed(why) => Err(why),
        }
    }

    fn evaluate(&self, cert: &dyn Val) -> Outcome {
        let resolver = CertVariable(cert);
        let mut context = Context::with_env(env().clone());
        context.set_variable_resolver(&resolver);
        match self.program.execute(&context) {
            Ok(Value::Bool(verdict)) => Outcome::Verdict(verdict),
            Ok(other) => Outcome::NotBoolean(format!("{:?}", other.type_of())),
            Err(e) => Outcome::Failed(format!("it does not evaluate: {e}")),
        }
    }
}

/// Hands the evaluator the `cert` value without copying it.
struct CertVariable<'a>(&'a dyn Val);

impl VariableResolver for CertVariable<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        (variable == "cert").then_some(CowVal::Borrowed(self.0))
    }
}

/// The `cert` variable of one leaf, built once and shared by every filter evaluated on it;
/// absent when the leaf is over the bounds the cost estimate assumes (more than [`MAX_LIST`]
/// entries in a SAN list, or a string over [`MAX_STRING`] bytes): such a leaf passes no filter.
pub struct FilterInput {
    cert: Option<Box<dyn Val>>,
    /// Why `cert` is absent.
    refusal: String,
}

impl std::fmt::Debug for FilterInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilterInput")
            .field("within_bounds", &self.cert.is_some())
            .finish_non_exhaustive()
    }
}

impl FilterInput {
    /// The input of the leaf certificate `der` (one that does not parse has no facts set).
    pub fn of_leaf(der: &[u8]) -> FilterInput {
        FilterInput::of(&LeafFacts::of(der).unwrap_or_default())
    }

    pub fn of(facts: &LeafFacts) -> FilterInput {
        let lists = [
            ("san_dns", &facts.san_dns),
            ("san_uri", &facts.san_uri),
            ("san_email", &facts.san_email),
            ("san_ip", &facts.san_ip),
        ];
        let refusal = if let Some((name, list)) =
            lists.iter().find(|(_, l)| l.len() as u64 > MAX_LIST)
        {
            Some(format!(
                "the leaf has {} entries in cert.{name}; filters see at most {MAX_LIST}",
                list.len()
            ))
        } else {
            let singles = [
                &facts.subject,
                &facts.subject_cn,
                &facts.issuer,
                &facts.serial,
                &facts.sha256,
            ];
            let longest = singles
                .into_iter()
                .chain(lists.iter().flat_map(|(_, l)| l.iter()))
                .map(String::len)
                .max()
                .unwrap_or(0);
            (longest as u64 > MAX_STRING).then(|| {
                format!("the leaf has a {longest}-byte string; filters see at most {MAX_STRING}")
            })
        };
        match refusal {
            Some(refusal) => FilterInput {
                cert: None,
                refusal,
            },
            None => FilterInput {
                cert: Box::<dyn Val>::try_from(facts_value(facts)).ok(),
                refusal: "the leaf's facts could not be made".to_owned(),
            },
        }
    }

    /// Whether filters see this leaf at all.
    pub fn within_bounds(&self) -> bool {
        self.cert.is_some()
    }
}

/// The `cert` variable for `facts`.
fn facts_value(facts: &LeafFacts) -> Value {
    let strings = |v: &[String]| {
        Value::from(
            v.iter()
                .map(|s| Value::from(s.as_str()))
                .collect::<Vec<_>>(),
        )
    };
    let mut map = std::collections::HashMap::<&str, Value>::new();
    map.insert("subject", facts.subject.as_str().into());
    map.insert("subject_cn", facts.subject_cn.as_str().into());
    map.insert("issuer", facts.issuer.as_str().into());
    map.insert("serial", facts.serial.as_str().into());
    map.insert("sha256", facts.sha256.as_str().into());
    map.insert("san_dns", strings(&facts.san_dns));
    map.insert("san_uri", strings(&facts.san_uri));
    map.insert("san_email", strings(&facts.san_email));
    map.insert("san_ip", strings(&facts.san_ip));
    map.insert("not_before", facts.not_before.into());
    map.insert("not_after", facts.not_after.into());
    map.into()
}

/// A stored filter as a trust index holds it: compiled on first use, which is on the pool that
/// evaluates it, so that building an index parses no filter (a new or changed filter costs the
/// index build nothing, whatever its text).
pub struct StoredFilter {
    certificate_id: String,
    source: String,
    digest: FilterDigest,
    compiled: OnceLock<Result<ClientFilter, String>>,
}

impl std::fmt::Debug for StoredFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredFilter")
            .field("certificate_id", &self.certificate_id)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl StoredFilter {
    pub fn new(certificate_id: &str, source: &str) -> StoredFilter {
        StoredFilter {
            certificate_id: certificate_id.to_owned(),
            source: source.to_owned(),
            digest: sha2::Sha256::digest(source.as_bytes()).into(),
            compiled: OnceLock::new(),
        }
    }

    pub fn digest(&self) -> &FilterDigest {
        &self.digest
    }

    /// The compiled filter, compiling it on first use (CPU work: off the async workers). One
    /// that no longer passes the checks (stored before they existed) refuses everyone.
    pub fn compiled(&self) -> Result<&ClientFilter, &str> {
        self.compiled
            .get_or_init(|| {
                ClientFilter::compile(&self.source).inspect_err(|why| {
                    tracing::error!(certificate_id = %self.certificate_id, filter = ?self.source, error = ?why, "a stored client filter cannot be used; its CA admits no one until the filter is changed");
                })
            })
            .as_ref()
            .map_err(String::as_str)
    }

    /// Whether it admits the leaf `input` describes (see [`ClientFilter::admits`]); why not,
    /// when that is not the filter's own answer, is logged at debug level, escaped, without the
    /// certificate.
    pub fn admits(&self, input: &FilterInput) -> bool {
        let Ok(filter) = self.compiled() else {
            return false;
        };
        match filter.verdict(input) {
            Ok(verdict) => verdict,
            Err(why) => {
                tracing::debug!(certificate_id = %self.certificate_id, filter = ?self.source, error = ?why, "client filter counts as false");
                false
            }
        }
    }
}

/// Verdicts by (leaf, filter), shared by every connection of a process: a verdict depends only
/// on the leaf's DER and the filter's text, so a client that reconnects costs no evaluation.
/// Bounded; evicting an entry only costs an evaluation.
pub struct VerdictCache(quick_cache::sync::Cache<([u8; 32], FilterDigest), bool>);

impl VerdictCache {
    pub const CAPACITY: usize = 16_384;

    pub fn new(capacity: usize) -> Self {
        VerdictCache(quick_cache::sync::Cache::new(capacity.max(1)))
    }

    pub fn get(&self, leaf: &[u8; 32], filter: &FilterDigest) -> Option<bool> {
        self.0.get(&(*leaf, *filter))
    }

    pub fn put(&self, leaf: [u8; 32], filter: FilterDigest, verdict: bool) {
        self.0.insert((leaf, filter), verdict);
    }
}

impl Default for VerdictCache {
    fn default() -> Self {
        VerdictCache::new(VerdictCache::CAPACITY)
    }
}

impl std::fmt::Debug for VerdictCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerdictCache")
            .field("len", &self.0.len())
            .finish()
    }
}
