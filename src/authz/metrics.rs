//! `certgate authz`'s own metric families (spec §13.2), beside the HTTP ones of
//! [`crate::metrics::Metrics`]: decisions by transport and outcome, how long each took, and
//! what the chain cache holds.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use std::sync::{Arc, OnceLock};

use crate::gateway::reload::TrustState;
use crate::metrics::Metrics;

/// Which listener a question came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Grpc,
    Http,
}

impl Transport {
    pub fn label(self) -> &'static str {
        match self {
            Transport::Grpc => "grpc",
            Transport::Http => "http",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    transport: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransportLabels {
    transport: &'static str,
}

/// Upper bounds of the decision-time buckets, in seconds: a decision on a known chain takes
/// microseconds, chain work and filters milliseconds.
const DECISION_BUCKETS: [f64; 12] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 1.0,
];

/// Handles of the families; clones record into the same series.
#[derive(Clone)]
pub struct AuthzMetrics {
    decisions: Family<DecisionLabels, Counter>,
    seconds: Family<TransportLabels, Histogram>,
    trust_generation: Gauge,
    chains: Gauge,
    chain_bytes: Gauge,
    /// Each transport's `admitted` counter and histogram, looked up in their families once
    /// (at the first decision, so the series appear as before): most answers are admissions,
    /// and a family lookup hashes its labels under a lock.
    hot: Arc<[OnceLock<(Counter, Histogram)>; 2]>,
}

impl AuthzMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let decisions = Family::default();
        registry.register(
            "authz_decisions",
            "Trust decisions answered to proxies, by transport (grpc, http) and outcome: admitted, or the refusal code",
            decisions.clone(),
        );
        let seconds = Family::<TransportLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(DECISION_BUCKETS)
        });
        registry.register(
            "authz_decision_seconds",
            "Time to answer one question, from its arrival to its answer (certificate parsing, chain work, decision)",
            seconds.clone(),
        );
        let trust_generation = Gauge::default();
        registry.register(
            "trust_generation",
            "The trust generation this process enforces (-1 before the first load)",
            trust_generation.clone(),
        );
        let chains = Gauge::default();
        registry.register(
            "authz_chains_kept",
            "Certificate texts whose parsed chain and chain work are kept for repeated questions",
            chains.clone(),
        );
        let chain_bytes = Gauge::default();
        registry.register(
            "authz_chains_kept_bytes",
            "What the kept chains weigh (their certificates and bookkeeping), at most 64 MiB",
            chain_bytes.clone(),
        );
        AuthzMetrics {
            decisions,
            seconds,
            trust_generation,
            chains,
            chain_bytes,
            hot: Arc::default(),
        }
    }

    /// One answer: `admitted` or a refusal's code (a fixed set, so the label stays bounded).
    pub fn decided(&self, transport: Transport, outcome: &'static str, seconds: f64) {
        if outcome == "admitted" {
            let (count, time) = self.hot[transport as usize].get_or_init(|| {
                let transport = transport.label();
                (
                    self.decisions
                        .get_or_create(&DecisionLabels { transport, outcome })
                        .clone(),
                    self.seconds
                        .get_or_create(&TransportLabels { transport })
                        .clone(),
                )
            });
            count.inc();
            time.observe(seconds);
            return;
        }
        let transport = transport.label();
        self.decisions
            .get_or_create(&DecisionLabels { transport, outcome })
            .inc();
        self.seconds
            .get_or_create(&TransportLabels { transport })
            .observe(seconds);
    }

    /// What a scrape reads from the watcher.
    pub fn refresh(&self, metrics: &Metrics, trust: &TrustState) {
        self.trust_generation
            .set(trust.readiness().generation.unwrap_or(-1));
        metrics.set_database_up(trust.database_answering());
    }

    /// What a scrape reads from the chain cache: entries and their weight in bytes.
    pub fn chains_kept(&self, entries: usize, bytes: u64) {
        self.chains.set(i64::try_from(entries).unwrap_or(i64::MAX));
        self.chain_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }
}
