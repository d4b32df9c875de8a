//! Incremental trust sync (spec §13.3, issue 27): the index a watcher keeps by applying the
//! changes since its generation is the one a full snapshot builds, after every kind of
//! trust-changing write, in any batching; gaps (pruned records) lead to one full read; a write
//! committing during a full read is neither lost nor applied twice; the reconcile finds nothing
//! to repair unless the state was changed behind the records' back. On both backends, against
//! the real store.
//!
//! The property test is a seeded random loop (not proptest): each run uses a fresh seed and
//! prints it; `CERTGATE_SYNC_SEED=N` replays one.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use certgate::domain::{
    Actor, CertificateId, Clock, OrgId, ProjectId, RevokedCertificateId, Scope, ToggleIds,
};
use certgate::gateway::reload::TrustState;
use certgate::store::Store;
use certgate::trust::{IndexView, TrustIndex};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::helpers::{backend_tests, TestApp};
use crate::pki;

backend_tests!(
    random_writes_keep_the_index_equal_to_a_full_build,
    pruned_changes_lead_to_one_full_read,
    writes_during_a_full_read_are_neither_lost_nor_doubled,
    reconcile_counts_a_repair_only_when_state_changed_behind_its_back,
);

/// The view of an index built from a full snapshot read now.
pub(crate) async fn fresh(store: &Store) -> IndexView {
    let snapshot = store.trust_snapshot(&HashSet::new()).await.unwrap();
    TrustIndex::build(&snapshot, &TrustIndex::empty()).view()
}

/// A watcher's state, loaded in full.
pub(crate) async fn watcher(store: &Store) -> Arc<TrustState> {
    let state = TrustState::new();
    state.refresh(store, false).await.unwrap();
    assert_eq!(state.sync_stats().full_reads, 1);
    state
}

/// What the random writes act on.
struct World {
    store: Store,
    clock: Arc<certgate::domain::ManualClock>,
    cas: Vec<pki::Ca>,
    orgs: Vec<OrgId>,
    /// (organization, certificate, index in `cas`)
    certs: Vec<(OrgId, CertificateId, usize)>,
    projects: Vec<(OrgId, ProjectId)>,
    denied: Vec<(OrgId, RevokedCertificateId)>,
    /// Serial of each CRL made, so that every CRL of a CA is a new version.
    crl_no: i64,
}

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> Option<&'a T> {
    if items.is_empty() {
        None
    } else {
        Some(&items[rng.gen_range(0..items.len())])
    }
}

impl World {
    /// One random trust-changing write (or a clock step past an anchor's expiry); a write the
    /// store refuses changes nothing. Returns its name.
    async fn step(&mut self, rng: &mut StdRng) -> &'static str {
        let s = &self.store;
        let sys = &Actor::System;
        match rng.gen_range(0..15) {
            0 | 1 => {
                let org = pick(rng, &self.orgs).unwrap().clone();
                let i = rng.gen_range(0..self.cas.len());
                let pem = self.cas[i].pem();
                // Refused once the clock has passed its expiry: then nothing changes.
                let Ok(parsed) = certgate::x509::parse_ca_pem(&pem, self.clock.now()) else {
                    return "upload (expired CA refused)";
                };
                let filter = rng
                    .gen_bool(0.3)
                    .then(|| r#"cert.subject_cn.startsWith("a")"#.to_owned());
                if let Ok(c) = s
                    .upload_certificate(&org, None, &pem, &parsed, filter, sys)
                    .await
                {
                    self.certs.push((org, c.id, i));
                }
                "upload"
            }
            2 | 3 => {
                if let Some((org, id, _)) = pick(rng, &self.certs).cloned() {
                    let ids = ToggleIds::parse(&[id.to_string()]).unwrap();
                    let on = rng.gen_bool(0.6);
                    let _ = s
                        .toggle_certificates(&org, &Scope::Organization, &ids, on, sys)
                        .await;
                }
                "toggle organization"
            }
            4 | 5 => {
                if let Some((org, id, _)) = pick(rng, &self.certs).cloned() {
                    let ours: Vec<_> = self.projects.iter().filter(|(o, _)| *o == org).collect();
                    if let Some((_, p)) = pick(rng, &ours).copied() {
                        let ids = ToggleIds::parse(&[id.to_string()]).unwrap();
                        let on = rng.gen_bool(0.6);
                        let scope = Scope::Project(p.clone());
                        let _ = s.toggle_certificates(&org, &scope, &ids, on, sys).await;
                    }
                }
                "toggle project"
            }
            6 => {
                let org = pick(rng, &self.orgs).unwrap().clone();
                if rng.gen_bool(0.7) {
                    if let Ok(p) = s.create_project(&org, "p", None, None, sys).await {
                        self.projects.push((org, p.id));
                    }
                    "create project"
                } else {
                    if let Some((org, p)) = pick(rng, &self.projects).cloned() {
                        let _ = s.archive_project(&org, &p, sys).await;
                    }
                    "archive project"
                }
            }
            7 => {
                if let Some((org, id, _)) = pick(rng, &self.certs).cloned() {
                    let filter = if rng.gen_bool(0.5) {
                        Some(format!(r#"cert.subject_cn == "c{}""#, rng.gen_range(0..3)))
                    } else {
                        None
                    };
                    let _ = s
                        .modify_certificate(&org, &id, None, Some(filter), sys)
                        .await;
                }
                "filter set/clear"
            }
            8 => {
                if let Some((org, id, _)) = pick(rng, &self.certs).cloned() {
                    let _ = s.delete_certificate(&org, &id, sys).await;
                }
                "delete"
            }
            9 => {
                let mine: Vec<_> = self.certs.clone();
                if let (Some((org, from, _)), Some((org2, to, _))) =
                    (pick(rng, &mine), pick(rng, &mine))
                {
                    if org == org2 && from != to {
                        let _ = s
                            .rotate_certificate(org, from, to, rng.gen_bool(0.5), sys)
                            .await;
                    }
                }
                "rotate"
            }
            10 => {
                let org = pick(rng, &self.orgs).unwrap().clone();
                if rng.gen_bool(0.6) || self.denied.is_empty() {
                    // The fingerprint of one of the CAs (it then decides) or of nothing.
                    let sha = if rng.gen_bool(0.5) {
                        let i = rng.gen_range(0..self.cas.len());
                        certgate::x509::certificate_sha256(&self.cas[i].pem()).unwrap()
                    } else {
                        format!("{:064x}", rng.gen::<u128>())
                    };
                    if let Ok(e) = s.revoke_certificate(&org, &sha, None, sys).await {
                        self.denied.push((org, e.id));
                    }
                    "deny-list add"
                } else {
                    let (org, id) = self.denied.swap_remove(rng.gen_range(0..self.denied.len()));
                    let _ = s.unrevoke_certificate(&org, &id, sys).await;
                    "deny-list remove"
                }
            }
            11 | 12 => {
                if let Some((org, id, i)) = pick(rng, &self.certs).cloned() {
                    if rng.gen_bool(0.75) {
                        self.crl_no += 1;
                        let now = self.clock.now();
                        let serial = vec![1, u8::try_from(self.crl_no % 200).unwrap() + 1];
                        let crl = pki::crl(
                            &self.cas[i],
                            &[serial],
                            now - 3600 + self.crl_no,
                            now + 86_400,
                        );
                        let text = base64::engine::general_purpose::STANDARD.encode(crl.der());
                        let parsed = certgate::crl::parse_crl(&text, now).unwrap();
                        let _ = s.put_crl(&org, &id, &parsed, sys).await;
                        "CRL put"
                    } else {
                        let _ = s.delete_crl(&org, &id, sys).await;
                        "CRL delete"
                    }
                } else {
                    "CRL (none)"
                }
            }
            13 => {
                if self.orgs.len() < 4 {
                    let (org, _) = s.create_organization("another").await.unwrap();
                    self.orgs.push(org.id);
                }
                "create organization"
            }
            _ => {
                // Past the expiry of the CA that expires first (anchors expire at decision
                // time: nothing is written, nothing may change in the index).
                self.clock.advance(rng.gen_range(1..3) * 6 * 3600);
                "clock past an anchor's expiry"
            }
        }
    }
}

async fn world(app: &TestApp) -> World {
    let now = app.clock.now();
    // Some CAs expire within days, so clock steps take them past their expiry.
    let cas = (0..6)
        .map(|i| {
            pki::ca_valid(
                &format!("Sync CA {i}"),
                now - 86_400,
                now + (2 + i) * 86_400,
            )
        })
        .collect();
    let org = OrgId::parse(&app.org_id).unwrap();
    let (other, _) = app.store.create_organization("Other").await.unwrap();
    World {
        store: app.store.clone(),
        clock: app.clock.clone(),
        cas,
        orgs: vec![org, other.id],
        certs: Vec::new(),
        projects: Vec::new(),
        denied: Vec::new(),
        crl_no: 0,
    }
}

fn seed() -> u64 {
    let seed = std::env::var("CERTGATE_SYNC_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    crate::helpers::say_skipped(&format!(
        "(not skipped) trust sync property test seed: {seed}"
    ));
    seed
}

async fn random_writes_keep_the_index_equal_to_a_full_build(app: TestApp) {
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut w = world(&app).await;
    // The clock steps would otherwise prune records (that is the next test's case).
    app.store
        .set_trust_change_retention(Duration::from_secs(365 * 86_400));
    // One watcher applies after every write; the other after random batches.
    let each = watcher(&app.store).await;
    let batched = watcher(&app.store).await;
    let mut pending = Vec::new();
    for n in 0..150 {
        let what = w.step(&mut rng).await;
        pending.push(what);
        each.refresh(&app.store, false).await.unwrap();
        let want = fresh(&app.store).await;
        assert_eq!(
            each.index().view(),
            want,
            "seed {seed}, step {n} ({what}): the index kept by changes differs from a full build"
        );
        if rng.gen_bool(0.3) {
            batched.refresh(&app.store, false).await.unwrap();
            assert_eq!(
                batched.index().view(),
                want,
                "seed {seed}, step {n}: after the batch {pending:?}"
            );
            pending.clear();
        }
    }
    batched.refresh(&app.store, false).await.unwrap();
    assert_eq!(
        batched.index().view(),
        each.index().view(),
        "seed {seed}: the watchers converge"
    );
    for state in [&each, &batched] {
        let stats = state.sync_stats();
        // Nothing but the first load was read in full: every step went by its changes.
        assert_eq!(stats.full_reads, 1, "seed {seed}: {stats:?}");
        assert_eq!(stats.gaps, 0, "seed {seed}: {stats:?}");
        assert!(stats.change_reads > 0, "seed {seed}: {stats:?}");
        // The safety net finds nothing to repair.
        state.refresh(&app.store, true).await.unwrap();
        assert_eq!(state.sync_stats().reconcile_repairs, 0, "seed {seed}");
    }
}

async fn pruned_changes_lead_to_one_full_read(app: TestApp) {
    let mut rng = StdRng::seed_from_u64(7);
    let mut w = world(&app).await;
    for _ in 0..10 {
        w.step(&mut rng).await;
    }
    let state = watcher(&app.store).await;
    let away = watcher(&app.store).await;
    // Kept for the default hour: a watcher an hour behind still reads only the changes.
    let org = OrgId::parse(&app.org_id).unwrap();
    let sys = &Actor::System;
    app.store
        .create_project(&org, "a", None, None, sys)
        .await
        .unwrap();
    app.clock.advance(3000);
    app.store
        .create_project(&org, "b", None, None, sys)
        .await
        .unwrap();
    state.refresh(&app.store, false).await.unwrap();
    assert_eq!(state.sync_stats().full_reads, 1);
    assert_eq!(state.sync_stats().gaps, 0);
    assert_eq!(state.index().view(), fresh(&app.store).await);
    // Past the retention, a write prunes the records the other watcher still needs.
    app.clock.advance(700);
    app.store
        .create_project(&org, "c", None, None, sys)
        .await
        .unwrap();
    away.refresh(&app.store, false).await.unwrap();
    let away_stats = away.sync_stats();
    assert_eq!(
        (away_stats.gaps, away_stats.full_reads),
        (1, 2),
        "{away_stats:?}"
    );
    assert_eq!(away.index().view(), fresh(&app.store).await);
    // The watcher that kept up needs only the last record.
    state.refresh(&app.store, false).await.unwrap();
    assert_eq!(state.sync_stats().gaps, 0);
    assert_eq!(state.index().view(), away.index().view());
    // A shorter retention prunes sooner.
    app.store
        .set_trust_change_retention(Duration::from_secs(10));
    app.store
        .create_project(&org, "d", None, None, sys)
        .await
        .unwrap();
    app.clock.advance(11);
    app.store
        .create_project(&org, "e", None, None, sys)
        .await
        .unwrap();
    state.refresh(&app.store, false).await.unwrap();
    assert_eq!(state.sync_stats().gaps, 1);
    assert_eq!(state.index().view(), fresh(&app.store).await);
}

async fn writes_during_a_full_read_are_neither_lost_nor_doubled(app: TestApp) {
    let mut rng = StdRng::seed_from_u64(11);
    let mut w = world(&app).await;
    for _ in 0..20 {
        w.step(&mut rng).await;
    }
    let org = OrgId::parse(&app.org_id).unwrap();
    for round in 0..8 {
        // A full read (a new watcher's first load) while writes commit around it.
        let store = app.store.clone();
        let writes = tokio::spawn({
            let store = store.clone();
            let org = org.clone();
            async move {
                for k in 0..4 {
                    store
                        .create_project(&org, &format!("r{round}-{k}"), None, None, &Actor::System)
                        .await
                        .unwrap();
                    tokio::task::yield_now().await;
                }
            }
        });
        let state = TrustState::new();
        state.refresh(&store, false).await.unwrap();
        writes.await.unwrap();
        // Then by changes only, up to the last write.
        state.refresh(&store, false).await.unwrap();
        let counts = state.sync_stats();
        assert_eq!((counts.full_reads, counts.gaps), (1, 0), "{counts:?}");
        assert_eq!(state.index().view(), fresh(&store).await, "round {round}");
        assert_eq!(
            state.index().generation(),
            Some(store.trust_generation().await.unwrap())
        );
    }
}

async fn reconcile_counts_a_repair_only_when_state_changed_behind_its_back(app: TestApp) {
    let org = OrgId::parse(&app.org_id).unwrap();
    let sys = &Actor::System;
    let ca = pki::ca("Reconciled CA");
    let parsed = certgate::x509::parse_ca_pem(&ca.pem(), app.clock.now()).unwrap();
    let cert = app
        .store
        .upload_certificate(&org, None, &ca.pem(), &parsed, None, sys)
        .await
        .unwrap();
    let ids = ToggleIds::parse(&[cert.id.to_string()]).unwrap();
    let state = watcher(&app.store).await;
    app.store
        .toggle_certificates(&org, &Scope::Organization, &ids, true, sys)
        .await
        .unwrap();
    state.refresh(&app.store, false).await.unwrap();
    state.refresh(&app.store, true).await.unwrap();
    assert_eq!(state.sync_stats().reconcile_repairs, 0);
    assert_eq!(state.index().len(), 1);
    // Behind its back: the activation ends without a change record or a new generation.
    tamper(
        &app.db.url,
        &format!(
            "UPDATE certificates SET active_org = 0 WHERE id = '{}'",
            cert.id
        ),
    )
    .await;
    state.refresh(&app.store, false).await.unwrap();
    assert_eq!(state.index().len(), 1, "no record, no change seen");
    state.refresh(&app.store, true).await.unwrap();
    assert_eq!(state.sync_stats().reconcile_repairs, 1);
    assert_eq!(state.index().len(), 0, "repaired from the full read");
    assert_eq!(state.index().view(), fresh(&app.store).await);
    state.refresh(&app.store, true).await.unwrap();
    assert_eq!(
        state.sync_stats().reconcile_repairs,
        1,
        "nothing more to repair"
    );
}

/// Runs `sql` on the test's database with a connection of its own.
async fn tamper(url: &str, sql: &str) {
    use sqlx::{Connection, Executor};
    if url.starts_with("postgres") {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        conn.execute(sql).await.unwrap();
    } else {
        let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
        conn.execute(sql).await.unwrap();
    }
}
