//! Keyset pages of the lists ordered by `(created_at, seq)` and paged by an `after` id
//! (projects, admin keys, the deny-list): where the cursor sits, and one page after it.

use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use super::certificates::order_sql;
use super::Result;
use crate::domain::{unknown_cursor, Id, IdKind, OrgId, Page, PageRequest};

/// The `(created_at, seq)` of the `after` id in `table`, `None` without one. An id that is
/// malformed or not this organization's row refuses the request (400 naming `after`); a
/// deleted row is still found, so a cursor survives the deletion of the row it names.
pub(super) async fn cursor<K: IdKind>(
    pool: &AnyPool,
    table: &'static str,
    org: &OrgId,
    after: Option<&str>,
) -> Result<Option<(i64, i64)>> {
    let Some(after) = after else {
        return Ok(None);
    };
    let id = Id::<K>::parse_opt(after).ok_or_else(|| unknown_cursor("after", after))?;
    let row = sqlx::query(&format!(
        "SELECT created_at, seq FROM {table} WHERE id = $1 AND org_id = $2"
    ))
    .bind(id.as_str())
    .bind(org.as_str())
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| unknown_cursor("after", after))?;
    Ok(Some((row.try_get("created_at")?, row.try_get("seq")?)))
}

/// One page of `select` (a `SELECT … WHERE org_id = $1 …` without ORDER BY), rows after
/// `cursor` in `page.order` by `{prefix}created_at, {prefix}seq` (`prefix` is a table alias and a
/// dot, or empty), and whether more follow.
pub(super) async fn fetch<T>(
    pool: &AnyPool,
    select: &str,
    prefix: &str,
    org: &OrgId,
    page: &PageRequest,
    cursor: Option<(i64, i64)>,
    from_row: impl Fn(&AnyRow) -> std::result::Result<T, sqlx::Error>,
) -> Result<Page<T>> {
    let (cmp, dir) = order_sql(page.order);
    let cursor_sql = if cursor.is_some() {
        format!("AND ({prefix}created_at, {prefix}seq) {cmp} ($3, $4)")
    } else {
        String::new()
    };
    let sql = format!(
        "{select} {cursor_sql} ORDER BY {prefix}created_at {dir}, {prefix}seq {dir} LIMIT $2"
    );
    let limit = page.limit.get() as usize;
    let mut q = sqlx::query(&sql)
        .bind(org.as_str())
        .bind(i64::from(page.limit.get()) + 1);
    if let Some((at, seq)) = cursor {
        q = q.bind(at).bind(seq);
    }
    let rows = q.fetch_all(pool).await?;
    let has_more = rows.len() > limit;
    let items = rows
        .iter()
        .take(limit)
        .map(from_row)
        .collect::<std::result::Result<_, _>>()?;
    Ok(Page { items, has_more })
}
