//! `GET /organization/audit_logs` (OpenAI's shapes; decisions.md D17): newest first,
//! `after`/`before` cursors, and every filter, combined with AND (values within one filter with
//! OR).

use axum::extract::State;
use axum::Json;

use super::dto::{AuditLogObject, List};
use super::error::ApiError;
use super::extract::{AdminCaller, Query};
use super::openapi::{AuditLog, AuditLogQuery};
use super::AppState;
use crate::domain::{echo, Limit};
use crate::store::{AuditQuery, TimeRange};

/// Most values one list filter takes (each becomes a bound parameter).
const MAX_FILTER_VALUES: usize = 100;

/// List audit events, newest first; filters combine with AND.
#[utoipa::path(
    get,
    path = "/organization/audit_logs",
    tag = "Audit logs",
    operation_id = "list-audit-logs",
    params(AuditLogQuery),
    responses(
        (status = 200, description = "A page of events.", body = List<AuditLog>),
    ),
    security(("AdminApiKeyAuth" = []))
)]
pub async fn list(
    State(s): State<AppState>,
    caller: AdminCaller,
    q: Query,
) -> Result<Json<List<AuditLogObject>>, ApiError> {
    let query = audit_query(&q)?;
    let page = s.store.list_audit_events(&caller.org_id, &query).await?;
    let data = page
        .items
        .into_iter()
        .map(|r| AuditLogObject::build(&caller.org_id, r))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(Json(List::from_page(
        crate::domain::Page {
            items: data,
            has_more: page.has_more,
        },
        |o| o,
    )))
}

fn audit_query(q: &Query) -> Result<AuditQuery, ApiError> {
    let limit = q
        .get("limit")
        .map(Limit::parse)
        .transpose()?
        .unwrap_or(Limit::DEFAULT);
    let cursor = |name: &str| q.get(name).filter(|v| !v.is_empty()).map(str::to_owned);
    let list = |name: &'static str| -> Result<Vec<String>, ApiError> {
        let values: Vec<String> = q
            .all(name)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .collect();
        if values.len() > MAX_FILTER_VALUES {
            return Err(ApiError::bad_request(
                Some(name),
                format!(
                    "'{name}' has {} values; at most {MAX_FILTER_VALUES} are accepted.",
                    values.len()
                ),
            ));
        }
        Ok(values)
    };
    let effective_at = TimeRange {
        gt: q.integer("effective_at[gt]")?,
        gte: q.integer("effective_at[gte]")?,
        lt: q.integer("effective_at[lt]")?,
        lte: q.integer("effective_at[lte]")?,
    };
    if let Some(raw) = q.get("effective_at") {
        // The SDKs send the bounds as `effective_at[gte]=…`; a bare value means nothing.
        return Err(ApiError::bad_request(
            Some("effective_at"),
            format!(
                "Invalid 'effective_at' ('{}'): give bounds as effective_at[gt], effective_at[gte], effective_at[lt] or effective_at[lte].",
                echo(raw)
            ),
        ));
    }
    let actor_emails = list("actor_emails")?;
    // Read before combining: a bad `tenant_only` is refused whatever the other filters say.
    let tenant_only = q.bool("tenant_only")?;
    // No actor has an email, and certgate has no tenant-scoped events.
    let matches_nothing = !actor_emails.is_empty() || tenant_only;
    Ok(AuditQuery {
        limit: limit.get(),
        after: cursor("after"),
        before: cursor("before"),
        effective_at,
        event_types: list("event_types")?,
        project_ids: list("project_ids")?,
        actor_ids: list("actor_ids")?,
        resource_ids: list("resource_ids")?,
        matches_nothing,
    })
}
