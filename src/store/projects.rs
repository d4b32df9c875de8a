//! Projects: create, read, rename, archive (ending its activations), list. The Default
//! project (one per organization, made with it) cannot be modified or archived.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::audit::TxAudit;
use super::paging;
use super::tx::{
    bump_trust_generation, in_transaction, lock_organization, run_together, Columns, Statement,
    TrustChange,
};
use super::{Result, Store};
use crate::domain::{
    Actor, AuditEvent, DomainError, Order, OrgId, Page, PageRequest, Project, ProjectId,
    ProjectKind, ProjectRef,
};

const PROJECT_COLUMNS: &str = "id, name, created_at, archived_at, external_key_id, residency";

fn project_from_row(row: &AnyRow) -> Result<Project, sqlx::Error> {
    Ok(Project {
        id: ProjectId::trusted(row.try_get("id")?),
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
        archived_at: row.try_get("archived_at")?,
        external_key_id: row.try_get("external_key_id")?,
        residency: row.try_get("residency")?,
    })
}

/// What the rules ask of a project before changing it or its activations.
pub(super) struct ProjectState {
    pub(super) archived_at: Option<i64>,
    pub(super) is_default: bool,
    /// The project as an audit event names it.
    pub(super) as_ref: ProjectRef,
}

/// The project's state, or 404 if the organization has no such project.
pub(super) async fn project_state(
    conn: &mut sqlx::AnyConnection,
    org: &OrgId,
    project: &ProjectId,
) -> Result<ProjectState> {
    let rows = run_together(conn, vec![project_state_statement(org, project)]).await?;
    project_state_from(rows.first(), project)
}

/// [`project_state`]'s query, for a caller that runs it itself.
pub(super) fn project_state_statement(org: &OrgId, project: &ProjectId) -> Statement {
    Statement::new(
        "SELECT name, archived_at, is_default FROM projects WHERE id = $1 AND org_id = $2",
    )
    .bind(project.as_str())
    .bind(org.as_str())
}

/// The state in the row [`project_state_statement`] returned, or 404 without one.
pub(super) fn project_state_from(
    row: Option<&impl Columns>,
    project: &ProjectId,
) -> Result<ProjectState> {
    let row = row.ok_or_else(|| project.not_found())?;
    Ok(ProjectState {
        archived_at: row.field("archived_at")?,
        is_default: row.field::<i64>("is_default")? != 0,
        as_ref: ProjectRef {
            id: project.clone(),
            name: row.field("name")?,
        },
    })
}

impl Store {
    pub async fn create_project(
        &self,
        org: &OrgId,
        name: &str,
        external_key_id: Option<String>,
        residency: Option<String>,
        actor: &Actor,
    ) -> Result<Project> {
        let now = self.now();
        in_transaction!(self, |tx| {
            let seq = lock_organization(tx, org).await?;
            let project = Project {
                id: ProjectId::generate(),
                name: name.to_owned(),
                created_at: now,
                archived_at: None,
                external_key_id: external_key_id.clone(),
                residency: residency.clone(),
            };
            sqlx::query(
                "INSERT INTO projects (id, org_id, name, created_at, seq, archived_at, external_key_id, residency)
                 VALUES ($1, $2, $3, $4, $5, NULL, $6, $7)",
            )
            .bind(project.id.as_str())
            .bind(org.as_str())
            .bind(&project.name)
            .bind(now)
            .bind(seq)
            .bind(project.external_key_id.clone())
            .bind(project.residency.clone())
            .execute(&mut *tx)
            .await?;
            let created = ProjectRef {
                id: project.id.clone(),
                name: project.name.clone(),
            };
            TxAudit::new(org, seq, now, actor)
                .append(tx, &AuditEvent::ProjectCreated(created))
                .await?;
            // Gateways accept a project header only for projects they know of.
            let change = TrustChange::project(org, project.id.as_str());
            bump_trust_generation(tx, self, &[change]).await?;
            Ok(project)
        })
    }

    pub async fn get_project(&self, org: &OrgId, id: &ProjectId) -> Result<Project> {
        let sql = format!("SELECT {PROJECT_COLUMNS} FROM projects WHERE id = $1 AND org_id = $2");
        let row = self.read_one_of_org(&sql, id.as_str(), org).await?;
        match row {
            Some(row) => Ok(project_from_row(&row)?),
            None => Err(id.not_found().into()),
        }
    }

    /// Changes name and/or external key id; archived projects and the Default project cannot
    /// be changed. Every call answered 200 writes one `project.updated`.
    pub async fn update_project(
        &self,
        org: &OrgId,
        id: &ProjectId,
        name: Option<String>,
        external_key_id: Option<Option<String>>,
        actor: &Actor,
    ) -> Result<Project> {
        let now = self.now();
        let select = format!("SELECT {PROJECT_COLUMNS} FROM projects WHERE id = $1");
        in_transaction!(self, |tx| {
            let seq = lock_organization(tx, org).await?;
            let state = project_state(tx, org, id).await?;
            if state.is_default {
                return Err(DomainError::DefaultProjectUpdate.into());
            }
            if state.archived_at.is_some() {
                return Err(DomainError::ProjectArchived(id.to_string()).into());
            }
            if let Some(name) = &name {
                sqlx::query("UPDATE projects SET name = $1 WHERE id = $2")
                    .bind(name)
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await?;
            }
            if let Some(ext) = &external_key_id {
                sqlx::query("UPDATE projects SET external_key_id = $1 WHERE id = $2")
                    .bind(ext.clone())
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await?;
            }
            let project = project_from_row(
                &sqlx::query(&select)
                    .bind(id.as_str())
                    .fetch_one(&mut *tx)
                    .await?,
            )?;
            let event = AuditEvent::ProjectUpdated {
                project: ProjectRef {
                    id: project.id.clone(),
                    name: project.name.clone(),
                },
                title: name.clone(),
            };
            TxAudit::new(org, seq, now, actor)
                .append(tx, &event)
                .await?;
            Ok(project)
        })
    }

    /// Archives a project and ends its certificate activations; archiving an archived project
    /// changes nothing (and writes no event). The Default project cannot be archived.
    pub async fn archive_project(
        &self,
        org: &OrgId,
        id: &ProjectId,
        actor: &Actor,
    ) -> Result<Project> {
        let now = self.now();
        let select = format!("SELECT {PROJECT_COLUMNS} FROM projects WHERE id = $1");
        in_transaction!(self, |tx| {
            let seq = lock_organization(tx, org).await?;
            let state = project_state(tx, org, id).await?;
            if state.is_default {
                return Err(DomainError::DefaultProjectArchive.into());
            }
            if state.archived_at.is_none() {
                sqlx::query("UPDATE projects SET archived_at = $1 WHERE id = $2")
                    .bind(now)
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await?;
                let ended = sqlx::query(
                    "DELETE FROM project_activations WHERE project_id = $1 RETURNING certificate_id",
                )
                .bind(id.as_str())
                .fetch_all(&mut *tx)
                .await?;
                // Its activations end, and gateways stop accepting it as a project header.
                let mut changes = vec![TrustChange::project(org, id.as_str())];
                for row in &ended {
                    let certificate: String = row.try_get("certificate_id")?;
                    changes.push(TrustChange::certificate(org, &certificate));
                }
                bump_trust_generation(tx, self, &changes).await?;
                TxAudit::new(org, seq, now, actor)
                    .append(tx, &AuditEvent::ProjectArchived(state.as_ref))
                    .await?;
            }
            Ok(project_from_row(
                &sqlx::query(&select)
                    .bind(id.as_str())
                    .fetch_one(&mut *tx)
                    .await?,
            )?)
        })
    }

    /// Projects in creation order (oldest first), as OpenAI lists them; `page.order` is
    /// ignored (OpenAI's project list has none).
    pub async fn list_projects(
        &self,
        org: &OrgId,
        page: &PageRequest,
        include_archived: bool,
    ) -> Result<Page<Project>> {
        let archived_sql = if include_archived {
            ""
        } else {
            "AND archived_at IS NULL"
        };
        let select =
            format!("SELECT {PROJECT_COLUMNS} FROM projects WHERE org_id = $1 {archived_sql}");
        // OpenAI's project list has no `order`: oldest first.
        let page = PageRequest {
            order: Order::Asc,
            ..page.clone()
        };
        self.read(|pool| async move {
            let cursor =
                paging::cursor::<ProjectKind>(pool, "projects", org, page.after.as_deref()).await?;
            paging::fetch(pool, &select, "", org, &page, cursor, project_from_row).await
        })
        .await
    }
}
