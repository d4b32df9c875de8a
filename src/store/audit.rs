//! The audit log: events appended inside the transaction that makes the change (so an
//! acknowledged change always has its event and a rolled-back one never has), the filtered
//! list, and retention.
//!
//! Order is `(effective_at, seq, idx)`: `seq` is the organization's counter taken by the
//! writing transaction's lock ([`super::tx::lock_organization`]), `idx` the event's place in
//! that transaction. Ids spell the same triple in hex after `audit_log-` (plus 32 random bits,
//! for uniqueness across organizations), so they sort by time.

use serde_json::{json, Value};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::tx::{in_transaction, run_together, Statement};
use super::{Result, Store};
use crate::domain::{
    owner_user_id, unknown_cursor, Actor, AuditEvent, AuditEventId, CertificateRef, FilterChange,
    KeyId, OrgId, Page,
};

/// The audit events of one writing transaction, in the order they are appended. Make exactly
/// one per transaction (right after `lock_organization`, whose `seq` it takes) and append every
/// event of the change to it: a second one would restart `idx`, which the unique index
/// `audit_events_org_order` refuses (the transaction then fails whole).
pub(super) struct TxAudit<'a> {
    org: &'a OrgId,
    seq: i64,
    at: i64,
    actor: Option<&'a str>,
    next: i64,
}

impl<'a> TxAudit<'a> {
    /// `seq` is what `lock_organization` returned to this transaction; `at` its time.
    pub(super) fn new(org: &'a OrgId, seq: i64, at: i64, actor: &'a Actor) -> Self {
        TxAudit {
            org,
            seq,
            at,
            actor: match actor {
                Actor::ApiKey(key) => Some(key.as_str()),
                Actor::System => None,
            },
            next: 0,
        }
    }

    /// Writes `event` after those already appended by this transaction.
    pub(super) async fn append(
        &mut self,
        tx: &mut sqlx::AnyConnection,
        event: &AuditEvent,
    ) -> Result<()> {
        run_together(tx, self.statements(event)).await?;
        Ok(())
    }

    /// The statements that write `event` after those already appended by this transaction,
    /// for a caller that runs them together with its own ([`run_together`]).
    pub(super) fn statements(&mut self, event: &AuditEvent) -> Vec<Statement> {
        let idx = self.next;
        self.next += 1;
        let id = event_id(self.at, self.seq, idx);
        let project = event.project();
        let mut statements = vec![Statement::new(
            "INSERT INTO audit_events (id, org_id, effective_at, seq, idx, type, actor_key_id, project_id, project_name, payload)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(id.as_str())
        .bind(self.org.as_str())
        .bind(self.at)
        .bind(self.seq)
        .bind(idx)
        .bind(event.kind())
        .bind(self.actor.map(str::to_owned))
        .bind(project.map(|p| p.id.as_str().to_owned()))
        .bind(project.map(|p| p.name.clone()))
        .bind(payload(event).to_string())];
        let mut resources = event.resource_ids();
        resources.sort_unstable();
        resources.dedup();
        if !resources.is_empty() {
            // One statement for all of them: a toggle names up to 10.
            let rows = (0..resources.len())
                .map(|i| format!("($1, $2, ${})", i + 3))
                .collect::<Vec<_>>()
                .join(", ");
            let mut resource_rows = Statement::new(format!(
                "INSERT INTO audit_event_resources (org_id, event_id, resource_id) VALUES {rows}"
            ))
            .bind(self.org.as_str())
            .bind(id);
            for resource in resources {
                resource_rows = resource_rows.bind(resource);
            }
            statements.push(resource_rows);
        }
        statements
    }
}

/// `audit_log-`, then `effective_at`, `seq` and `idx` in fixed-width hex, then 32 random bits.
fn event_id(at: i64, seq: i64, idx: i64) -> String {
    let hex = |v: i64| u64::try_from(v).unwrap_or(0);
    format!(
        "audit_log-{:010x}{:012x}{:04x}{:08x}",
        hex(at),
        hex(seq),
        hex(idx),
        rand::random::<u32>()
    )
}

/// The JSON of the property named like the event's `type` (decisions.md D16).
fn payload(event: &AuditEvent) -> Value {
    let certs = |list: &[CertificateRef]| -> Value {
        list.iter()
            .map(|c| json!({"id": c.id.as_str(), "name": c.name}))
            .collect()
    };
    match event {
        AuditEvent::CertificateCreated {
            certificate: c,
            client_filter,
            sources,
        } => {
            let mut payload = json!({"id": c.id.as_str(), "name": c.name});
            if let Some(filter) = client_filter {
                payload["client_filter"] = json!(filter);
            }
            if let Some(url) = &sources.crl_url {
                payload["crl_url"] = json!(url);
            }
            if let Some(ocsp) = sources.ocsp.stored() {
                payload["ocsp"] = json!(ocsp);
            }
            payload
        }
        AuditEvent::CertificateUpdated {
            certificate: c,
            client_filter,
            sources,
        } => {
            let mut payload = json!({"id": c.id.as_str(), "name": c.name});
            match client_filter {
                FilterChange::Untouched => {}
                FilterChange::InForce(filter) => payload["client_filter"] = json!(filter),
                FilterChange::Cleared => payload["client_filter"] = serde_json::Value::Null,
            }
            // Named by the call: the new value (null when the URL was cleared).
            if let Some(url) = &sources.crl_url {
                payload["crl_url"] = json!(url);
            }
            if let Some(ocsp) = sources.ocsp {
                payload["ocsp"] = json!(ocsp.as_str());
            }
            payload
        }
        AuditEvent::CertificateDeleted { certificate, pem } => {
            json!({"id": certificate.id.as_str(), "name": certificate.name, "certificate": pem})
        }
        AuditEvent::CertificatesActivated { certificates, .. }
        | AuditEvent::CertificatesDeactivated { certificates, .. } => {
            json!({"certificates": certs(certificates)})
        }
        AuditEvent::ProjectCreated(p) => {
            json!({"id": p.id.as_str(), "data": {"name": p.name, "title": p.name}})
        }
        AuditEvent::ProjectUpdated { project, title } => {
            let mut changes = serde_json::Map::new();
            if let Some(title) = title {
                changes.insert("title".into(), json!(title));
            }
            json!({"id": project.id.as_str(), "changes_requested": changes})
        }
        AuditEvent::ProjectArchived(p) => json!({"id": p.id.as_str()}),
        AuditEvent::ApiKeyCreated(k) => json!({"id": k.as_str(), "data": {"scopes": []}}),
        AuditEvent::ApiKeyDeleted(k) => json!({"id": k.as_str()}),
        AuditEvent::CertificateRevoked(r) | AuditEvent::CertificateUnrevoked(r) => {
            json!({"id": r.id.as_str(), "sha256_fingerprint": r.sha256_fingerprint, "reason": r.reason})
        }
        AuditEvent::CrlUpdated(c) => json!({
            "id": c.certificate_id.as_str(),
            "this_update": c.this_update,
            "next_update": c.next_update,
            "revoked_count": c.revoked_count,
        }),
        AuditEvent::CrlDeleted(id) => json!({"id": id.as_str()}),
        AuditEvent::CrlFetched(f) => {
            let mut payload =
                json!({"id": f.certificate_id.as_str(), "url": f.url, "ok": f.stored.is_some()});
            if let Some((number, c)) = &f.stored {
                payload["crl_number"] = json!(number);
                payload["this_update"] = json!(c.this_update);
                payload["next_update"] = json!(c.next_update);
                payload["revoked_count"] = json!(c.revoked_count);
            }
            if let Some(reason) = &f.reason {
                payload["reason"] = json!(reason);
            }
            payload
        }
    }
}

/// One stored event, as the list reads it back.
#[derive(Debug, Clone)]
pub struct AuditRecord {
    pub id: String,
    pub kind: String,
    pub effective_at: i64,
    /// `None`: certgate itself.
    pub actor_key: Option<KeyId>,
    /// The top-level `project`: (id, name).
    pub project: Option<(String, String)>,
    /// The JSON of the property named like `kind`, as written.
    pub payload: String,
}

/// Bounds on `effective_at`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeRange {
    pub gt: Option<i64>,
    pub gte: Option<i64>,
    pub lt: Option<i64>,
    pub lte: Option<i64>,
}

/// A page request of the audit log: cursors and filters, already parsed. Filters combine with
/// AND, values within one filter with OR; an empty list does not filter.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub limit: u32,
    pub after: Option<String>,
    pub before: Option<String>,
    pub effective_at: TimeRange,
    pub event_types: Vec<String>,
    pub project_ids: Vec<String>,
    pub actor_ids: Vec<String>,
    pub resource_ids: Vec<String>,
    /// True when a filter can match nothing at all (`actor_emails[]`, `tenant_only=true`).
    pub matches_nothing: bool,
}

/// A bind parameter of the dynamically built list query.
enum Param {
    Text(String),
    Int(i64),
}

/// Collects `WHERE` terms and their parameters, numbering placeholders as it goes.
struct Conditions {
    terms: Vec<String>,
    params: Vec<Param>,
}

impl Conditions {
    fn next(&mut self, p: Param) -> String {
        self.params.push(p);
        format!("${}", self.params.len())
    }

    fn int(&mut self, sql_before: &str, value: i64) {
        let ph = self.next(Param::Int(value));
        self.terms.push(format!("{sql_before} {ph}"));
    }

    /// The event's place in the log compared with a cursor's.
    fn position(&mut self, op: &str, (at, seq, idx): (i64, i64, i64)) {
        let at = self.next(Param::Int(at));
        let seq = self.next(Param::Int(seq));
        let idx = self.next(Param::Int(idx));
        self.terms.push(format!(
            "(e.effective_at, e.seq, e.idx) {op} ({at}, {seq}, {idx})"
        ));
    }

    /// `column IN (…)` over `values`.
    fn any_of(&mut self, column: &str, values: &[String]) -> String {
        let phs: Vec<String> = values
            .iter()
            .map(|v| self.next(Param::Text(v.clone())))
            .collect();
        format!("{column} IN ({})", phs.join(", "))
    }
}

const AUDIT_COLUMNS: &str =
    "e.id, e.type, e.effective_at, e.actor_key_id, e.project_id, e.project_name, e.payload";

fn record_from_row(row: &AnyRow) -> Result<AuditRecord, sqlx::Error> {
    let project_id: Option<String> = row.try_get("project_id")?;
    let project_name: Option<String> = row.try_get("project_name")?;
    Ok(AuditRecord {
        id: row.try_get("id")?,
        kind: row.try_get("type")?,
        effective_at: row.try_get("effective_at")?,
        actor_key: row
            .try_get::<Option<String>, _>("actor_key_id")?
            .map(KeyId::trusted),
        project: project_id.map(|id| (id, project_name.unwrap_or_default())),
        payload: row.try_get("payload")?,
    })
}

impl Store {
    /// The organization's audit events, newest first (decisions.md D16).
    pub async fn list_audit_events(
        &self,
        org: &OrgId,
        filter: &AuditQuery,
    ) -> Result<Page<AuditRecord>> {
        let after = self
            .audit_cursor(org, "after", filter.after.as_deref())
            .await?;
        let before = self
            .audit_cursor(org, "before", filter.before.as_deref())
            .await?;
        if filter.matches_nothing {
            return Ok(Page {
                items: Vec::new(),
                has_more: false,
            });
        }
        let mut cond = Conditions {
            terms: Vec::new(),
            params: vec![Param::Text(org.as_str().to_owned())],
        };
        cond.terms.push("e.org_id = $1".into());
        let range = filter.effective_at;
        for (op, bound) in [
            (">", range.gt),
            (">=", range.gte),
            ("<", range.lt),
            ("<=", range.lte),
        ] {
            if let Some(v) = bound {
                cond.int(&format!("e.effective_at {op}"), v);
            }
        }
        if !filter.event_types.is_empty() {
            let term = cond.any_of("e.type", &filter.event_types);
            cond.terms.push(term);
        }
        if !filter.project_ids.is_empty() {
            let term = cond.any_of("e.project_id", &filter.project_ids);
            cond.terms.push(term);
        }
        if !filter.actor_ids.is_empty() {
            // The owner's user id stands for every key of the organization; other values
            // match key ids (anything else matches nothing).
            let owner = owner_user_id(org);
            let keys: Vec<String> = filter
                .actor_ids
                .iter()
                .filter(|a| **a != owner)
                .cloned()
                .collect();
            let mut any = Vec::new();
            if filter.actor_ids.contains(&owner) {
                any.push("e.actor_key_id IS NOT NULL".to_owned());
            }
            if !keys.is_empty() {
                any.push(cond.any_of("e.actor_key_id", &keys));
            }
            cond.terms.push(format!("({})", any.join(" OR ")));
        }
        if !filter.resource_ids.is_empty() {
            let list = cond.any_of("r.resource_id", &filter.resource_ids);
            cond.terms.push(format!(
                "e.id IN (SELECT r.event_id FROM audit_event_resources r WHERE r.org_id = $1 AND {list})"
            ));
        }
        if let Some(pos) = after {
            cond.position("<", pos);
        }
        if let Some(pos) = before {
            cond.position(">", pos);
        }
        // `before` alone reads upwards from its cursor (the nearest newer events), then the
        // page is turned back to newest first; otherwise read downwards.
        let upwards = before.is_some() && after.is_none();
        let dir = if upwards { "ASC" } else { "DESC" };
        let limit = cond.next(Param::Int(i64::from(filter.limit) + 1));
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_events e WHERE {}
             ORDER BY e.effective_at {dir}, e.seq {dir}, e.idx {dir} LIMIT {limit}",
            cond.terms.join(" AND ")
        );
        let mut query = sqlx::query(&sql);
        for p in cond.params {
            query = match p {
                Param::Text(s) => query.bind(s),
                Param::Int(i) => query.bind(i),
            };
        }
        let rows = self.read(|pool| query.fetch_all(pool)).await?;
        let limit = filter.limit as usize;
        let has_more = rows.len() > limit;
        let mut items = rows
            .iter()
            .take(limit)
            .map(record_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        if upwards {
            items.reverse();
        }
        Ok(Page { items, has_more })
    }

    /// The position of a cursor: an event of this organization, else 400 with `param`.
    async fn audit_cursor(
        &self,
        org: &OrgId,
        param: &'static str,
        raw: Option<&str>,
    ) -> Result<Option<(i64, i64, i64)>> {
        let Some(raw) = raw else { return Ok(None) };
        let id = AuditEventId::parse_opt(raw).ok_or_else(|| unknown_cursor(param, raw))?;
        let row = self
            .read(|pool| {
                sqlx::query(
                    "SELECT effective_at, seq, idx FROM audit_events WHERE id = $1 AND org_id = $2",
                )
                .bind(id.as_str())
                .bind(org.as_str())
                .fetch_optional(pool)
            })
            .await?
            .ok_or_else(|| unknown_cursor(param, raw))?;
        Ok(Some((
            row.try_get("effective_at")?,
            row.try_get("seq")?,
            row.try_get("idx")?,
        )))
    }

    /// Deletes the events of every organization older than `before` (Unix seconds); returns
    /// how many went. Retention is not a change anyone made, so it writes no event.
    pub async fn purge_audit_events(&self, before: i64) -> Result<u64> {
        in_transaction!(self, |tx| {
            sqlx::query(
                "DELETE FROM audit_event_resources WHERE event_id IN
                 (SELECT id FROM audit_events WHERE effective_at < $1)",
            )
            .bind(before)
            .execute(&mut *tx)
            .await?;
            Ok(
                sqlx::query("DELETE FROM audit_events WHERE effective_at < $1")
                    .bind(before)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected(),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_like_the_log() {
        let ids = [
            event_id(100, 7, 0),
            event_id(100, 7, 1),
            event_id(100, 8, 0),
            event_id(101, 2, 0),
        ];
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(sorted, ids);
        assert!(ids.iter().all(|id| AuditEventId::parse_opt(id).is_some()));
        assert_ne!(event_id(1, 1, 1), event_id(1, 1, 1), "random tail");
    }
}
