//! Per-CA client filters (spec §12.6): a CEL expression over the client's leaf (`cert.*`,
//! see [`crate::x509::LeafFacts`]) that must be true for that CA to admit it.
//!
//! Written filters are compiled and tried once on a sample certificate that sets every
//! variable, so a syntax error, an unknown variable or field, or a non-boolean result is
//! refused when the filter is written (CEL compiles without type-checking, so only an
//! evaluation finds the last two). At decision time an evaluation error or a non-boolean
//! result counts as false: a filter never fails open.

use std::sync::{Arc, OnceLock};

use cel::{Context, Env, Program, Value};

use crate::x509::LeafFacts;

/// A compiled client filter.
pub struct ClientFilter {
    source: String,
    program: Program,
}

impl std::fmt::Debug for ClientFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientFilter")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// The standard library, built once (building it costs tens of microseconds).
fn env() -> &'static Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| Arc::new(Env::stdlib()))
}

impl ClientFilter {
    /// Compiles `source` and tries it on [`LeafFacts::sample`]; the error says why it cannot
    /// be used.
    pub fn compile(source: &str) -> Result<ClientFilter, String> {
        let program = env()
            .compile(source)
            .map_err(|e| format!("it does not parse: {e}"))?;
        let filter = ClientFilter {
            source: source.to_owned(),
            program,
        };
        match filter.evaluate(&facts_value(&LeafFacts::sample())) {
            Ok(_) => Ok(filter),
            Err(why) => Err(why),
        }
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the leaf whose facts are `cert` passes; errors and non-booleans are false.
    pub fn admits(&self, cert: &Value) -> bool {
        match self.evaluate(cert) {
            Ok(verdict) => verdict,
            Err(why) => {
                // The reason only: never the certificate.
                tracing::debug!(filter = %self.source, error = %why, "client filter did not evaluate to a boolean; refusing");
                false
            }
        }
    }

    fn evaluate(&self, cert: &Value) -> Result<bool, String> {
        let mut context = Context::with_env(env().clone());
        context.add_variable_from_value("cert", cert.clone());
        match self.program.execute(&context) {
            Ok(Value::Bool(verdict)) => Ok(verdict),
            Ok(other) => Err(format!(
                "it evaluates to a {:?}, not a boolean",
                other.type_of()
            )),
            Err(e) => Err(format!("it does not evaluate: {e}")),
        }
    }
}

/// The `cert` variable for `facts`.
pub fn facts_value(facts: &LeafFacts) -> Value {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_filters_are_checked_on_a_sample() {
        for good in [
            r#"cert.san_uri.exists(u, u.startsWith("spiffe://example.com/"))"#,
            r#"cert.subject_cn == "client" || "a" in cert.san_dns"#,
            "cert.not_after - cert.not_before < 400 * 86400",
            r#"cert.sha256.size() == 64 && cert.serial != """#,
        ] {
            assert!(ClientFilter::compile(good).is_ok(), "{good}");
        }
        for (bad, says) in [
            ("cert.san_uri.exists(u,", "parse"),
            ("cert.nope == 1", "evaluate"),
            ("other == 1", "evaluate"),
            ("cert.subject_cn", "not a boolean"),
        ] {
            let err = ClientFilter::compile(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn evaluation_errors_refuse() {
        let f = ClientFilter::compile(r#"cert.san_dns[0] == "client.example.com""#).unwrap();
        let mut facts = LeafFacts::sample();
        assert!(f.admits(&facts_value(&facts)));
        facts.san_dns.clear();
        assert!(
            !f.admits(&facts_value(&facts)),
            "an index error is a refusal"
        );
    }
}
