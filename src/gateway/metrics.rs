//! The gateway's own metric families (decisions.md D40), registered beside the HTTP ones of
//! [`crate::metrics::Metrics`]. A new family is a field here and one `register` line.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::reload::TrustState;
use super::upgrade::{Closed, UpgradeStats};
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
    crl_bytes_read: Counter,
    reconcile_repairs: Counter,
    trust_rows_read: Counter,
    trust_bytes_read: Counter,
    /// Held while `crl_bytes_read` is brought up to the index's total (scrapes may overlap).
    crl_sync: Arc<std::sync::Mutex<()>>,
}

impl GatewayMetrics {
    /// Registers the gateway's families; the WebSocket ones are read from `upgrades` (the
    /// relays' own counters) when scraped.
    pub fn register(registry: &mut Registry, upgrades: Arc<UpgradeStats>) -> Self {
        registry.register_collector(Box::new(UpgradeCollector(upgrades)));
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
        let crl_bytes_read = Counter::default();
        registry.register(
            "trust_crl_bytes_read",
            "CRL bytes (DER) read from the database by trust reloads; unchanged CRLs are not read again",
            crl_bytes_read.clone(),
        );
        let reconcile_repairs = Counter::default();
        registry.register(
            "trust_reconcile_repairs",
            "Reconciles that found the trust state kept up to date by changes different from the database's (a bug; repaired)",
            reconcile_repairs.clone(),
        );
        let trust_rows_read = Counter::default();
        registry.register(
            "trust_rows_read",
            "Rows the trust watcher read from the database (generations, changes, snapshots)",
            trust_rows_read.clone(),
        );
        let trust_bytes_read = Counter::default();
        registry.register(
            "trust_bytes_read",
            "Bytes of the rows the trust watcher read (text columns by length, others 8)",
            trust_bytes_read.clone(),
        );
        GatewayMetrics {
            decisions,
            trust_generation,
            crl_bytes_read,
            reconcile_repairs,
            trust_rows_read,
            trust_bytes_read,
            crl_sync: Arc::default(),
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
        // The index carries the running total over from the one it was built from.
        let _sync = self
            .crl_sync
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let read = trust.index().crl_bytes_read();
        let stats = trust.sync_stats();
        let reads = crate::store::Store::trust_reads();
        for (counter, total) in [
            (&self.crl_bytes_read, read),
            (&self.reconcile_repairs, stats.reconcile_repairs),
            (&self.trust_rows_read, reads.rows),
            (&self.trust_bytes_read, reads.bytes),
        ] {
            let counted = counter.get();
            if total > counted {
                counter.inc_by(total - counted);
            }
        }
        metrics.set_database_up(trust.database_answering());
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// `certgate_gateway_upgraded_connections` and `certgate_gateway_connections_closed_total`
/// (decisions.md D39), read from [`UpgradeStats`] at each scrape: the relays count with plain
/// atomics and never touch the registry.
struct UpgradeCollector(Arc<UpgradeStats>);

impl std::fmt::Debug for UpgradeCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UpgradeCollector")
    }
}

impl Collector for UpgradeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let open = ConstGauge::new(self.0.open());
        open.encode(encoder.encode_descriptor(
            "gateway_upgraded_connections",
            "Upgraded (WebSocket) connections open now",
            None,
            MetricType::Gauge,
        )?)?;
        let mut family = encoder.encode_descriptor(
            "gateway_connections_closed",
            "Upgraded (WebSocket) connections closed, by reason",
            None,
            MetricType::Counter,
        )?;
        for why in Closed::ALL {
            let labels = ReasonLabels {
                reason: why.label(),
            };
            ConstCounter::new(self.0.closed(why)).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
