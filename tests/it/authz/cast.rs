//! The certificates and trust state the end-to-end cases share (`parity`, `proxies`,
//! `haproxy`): one of each thing the decision tells apart, made through the real Admin API.

use serde_json::json;

use crate::client::Api;
use crate::gateway::{good_leaf, identity, Identity, DAY};
use crate::helpers::{wall_clock, TestApp};
use crate::pki;

/// Who is who: an active org-wide CA with a client, a CA active for one project only,
/// another organization with its own active CA, a deny-listed leaf, a leaf in its CA's CRL,
/// and an active CA whose client filter refuses `good_leaf` (it admits only CN `allowed`).
pub struct Cast {
    pub ca: pki::Ca,
    pub ca_id: String,
    /// A client of `ca`.
    pub good: Identity,
    pub project: String,
    pub project_ca: pki::Ca,
    pub project_ca_id: String,
    pub other_org: String,
    pub other: Api,
    pub theirs: pki::Ca,
    /// Issued by `ca`, then deny-listed.
    pub denied: Identity,
    /// Issued by an active CA whose CRL lists it.
    pub listed: Identity,
    pub filter_ca: pki::Ca,
}

impl Cast {
    pub async fn new(app: &TestApp) -> Cast {
        let now = wall_clock();
        let ca = pki::ca("Org CA");
        let ca_id = app.api.upload_active(&ca).await;
        let good = good_leaf(&ca);
        let project = app.api.create_project("one").await;
        let project_ca = pki::ca("Project CA");
        let project_ca_id = app.api.upload(&project_ca.pem(), None).await.id();
        app.api
            .toggle_project(&project, "activate", &[&project_ca_id])
            .await;
        let (other_org, other) = app.other_org().await;
        let theirs = pki::ca("Their CA");
        other.upload_active(&theirs).await;
        let denied = identity(&pki::leaf(&ca, "denied", now - DAY, now + 30 * DAY), &[]);
        app.api
            .post(
                "/organization/revoked_certificates",
                json!({"certificate": pem::encode(&pem::Pem::new("CERTIFICATE", denied.chain[0].to_vec()))}),
            )
            .await
            .id();
        let crl_ca = pki::ca("CRL CA");
        let crl_ca_id = app.api.upload_active(&crl_ca).await;
        let crl_leaf = pki::leaf(&crl_ca, "listed", now - DAY, now + 30 * DAY);
        let crl = pki::crl(
            &crl_ca,
            &[pki::serial_of(&crl_leaf.cert)],
            now - 60,
            now + 3600,
        );
        app.api
            .put_json(
                &format!("/organization/certificates/{crl_ca_id}/crl"),
                json!({"crl": crl.pem().unwrap()}),
            )
            .await
            .ok();
        let listed = identity(&crl_leaf, &[]);
        let filter_ca = pki::ca("Filter CA");
        let filter_ca_id = app
            .api
            .post(
                "/organization/certificates",
                json!({"certificate": filter_ca.pem(), "client_filter": r#"cert.subject_cn == "allowed""#}),
            )
            .await
            .id();
        app.api.toggle_org("activate", &[&filter_ca_id]).await;
        Cast {
            ca,
            ca_id,
            good,
            project,
            project_ca,
            project_ca_id,
            other_org,
            other,
            theirs,
            denied,
            listed,
            filter_ca,
        }
    }
}
