//! The benchmarks' set-up written straight to the database (the library's `Store`, as `serve`
//! writes it): CA certificates uploaded and activated for their organization. Included with
//! `#[path = "common/seed.rs"] mod seed;` (an example is its own crate); each example uses
//! part of it.
#![allow(dead_code)]

use certgate::domain::{Actor, OrgId, Scope, ToggleIds};
use certgate::store::Store;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Uploads the CA certificate `pem` to `org`, with `filter` as its client filter; its id.
pub(crate) async fn upload(
    store: &Store,
    org: &OrgId,
    pem: &str,
    filter: Option<String>,
) -> Result<String, BoxError> {
    let parsed = certgate::x509::parse_ca_pem(pem, super::pki::now())?;
    let stored = store
        .upload_certificate(org, None, pem, &parsed, filter, &Actor::System)
        .await?;
    Ok(stored.id.into_string())
}

/// Activates `ids` for all of `org`, ten per call (the API's most).
pub(crate) async fn activate(store: &Store, org: &OrgId, ids: &[String]) -> Result<(), BoxError> {
    for chunk in ids.chunks(10) {
        store
            .toggle_certificates(
                org,
                &Scope::Organization,
                &ToggleIds::parse(chunk)?,
                true,
                &Actor::System,
            )
            .await?;
    }
    Ok(())
}

/// [`upload`], then [`activate`]; its id.
pub(crate) async fn upload_active(
    store: &Store,
    org: &OrgId,
    pem: &str,
    filter: Option<String>,
) -> Result<String, BoxError> {
    let id = upload(store, org, pem, filter).await?;
    activate(store, org, std::slice::from_ref(&id)).await?;
    Ok(id)
}
