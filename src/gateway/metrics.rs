//! The gateway's own metric families (spec §12.7), registered beside the HTTP ones of
//! [`crate::metrics::Metrics`]. A new family is a field here and one `register` line.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::reload::TrustState;
use crate::metrics::Metrics;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// Handles of the gateway's families; clones record into the same series.
#[derive(Clone)]
pub struct GatewayMetrics {
    decisions: Family<OutcomeLabels, Counter>,
    trust_generation: Gauge,
}

impl GatewayMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let decisions = Family::default();
        registry.register(
            "gateway_decisions",
            "Trust decisions, by outcome: admitted, or the refusal code",
            decisions.clone(),
        );
        let trust_generation = Gauge::default();
        registry.register(
            "trust_generation",
            "The trust generation this gateway enforces (-1 before the first load)",
            trust_generation.clone(),
        );
        GatewayMetrics {
            decisions,
            trust_generation,
        }
    }

    /// One decision: `admitted` or a refusal's code (a fixed set, so the label stays bounded).
    pub fn decided(&self, outcome: &'static str) {
        self.decisions
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// What a scrape reads from the watcher: the generation in force and whether the
    /// database answered at the watcher's last look.
    pub fn refresh(&self, metrics: &Metrics, trust: &TrustState) {
        let readiness = trust.readiness();
        self.trust_generation
            .set(readiness.generation.unwrap_or(-1));
        metrics.set_database_up(trust.database_answering());
    }
}
