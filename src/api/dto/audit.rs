//! The audit log's wire shapes (`organization.audit_log` and its actor and project).

use super::{constant, owner_user_id, AuditRecord, Map, OrgId, Serialize, ToSchema, Value};

/// The top-level `project` of an audit event.
#[derive(Serialize, ToSchema)]
#[schema(as = AuditLogProject)]
pub struct AuditProject {
    pub id: String,
    pub name: String,
}

/// `AuditLog`: the common fields, and one property named exactly like `type`.
#[derive(Serialize)]
pub struct AuditLogObject {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub effective_at: i64,
    pub actor: Option<AuditLogActor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project: Option<AuditProject>,
    #[serde(flatten)]
    pub detail: Map<String, Value>,
}

impl AuditLogObject {
    /// `org` names the owner shown for key-made events. Fails only on a stored payload that
    /// is not JSON, which certgate never writes.
    pub fn build(org: &OrgId, r: AuditRecord) -> Result<Self, serde_json::Error> {
        let payload: Value = serde_json::from_str(&r.payload)?;
        let actor = r.actor_key.map(|key| AuditLogActor {
            api_key: AuditLogActorApiKey {
                id: key.as_str().to_owned(),
                kind: "user",
                user: AuditLogActorUser {
                    email: None,
                    id: owner_user_id(org),
                },
            },
            kind: "api_key",
        });
        let mut detail = Map::new();
        detail.insert(r.kind.clone(), payload);
        Ok(AuditLogObject {
            id: r.id,
            kind: r.kind,
            effective_at: r.effective_at,
            actor,
            project: r.project.map(|(id, name)| AuditProject { id, name }),
            detail,
        })
    }
}

// Fields in sorted order: these answers were serialized from JSON maps, which sort their keys.

/// Who made a change: an admin key of the organization's owner.
#[derive(Serialize, ToSchema)]
pub struct AuditLogActor {
    pub api_key: AuditLogActorApiKey,
    #[serde(rename = "type")]
    #[schema(schema_with = constant::api_key)]
    pub kind: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct AuditLogActorApiKey {
    /// The key's id, `key_…`.
    pub id: String,
    #[serde(rename = "type")]
    #[schema(schema_with = constant::user)]
    pub kind: &'static str,
    pub user: AuditLogActorUser,
}

#[derive(Serialize, ToSchema)]
pub struct AuditLogActorUser {
    /// Always null: certgate's owners have no email.
    #[schema(required = true)]
    pub email: Option<String>,
    /// The organization's owner, `user_…`.
    pub id: String,
}
