//! `include[]=details` on get and both lists: every key type, the status by the store's
//! clock, activations, and answers without `include` unchanged.

use base64::Engine as _;
use certgate::domain::Clock;
use rcgen::{DistinguishedName, DnType, DnValue, SerialNumber};
use serde_json::{json, Value};
use sha2::Digest;

use super::{get_details, item, keys, set, CERTS, DAY};
use crate::helpers::{backend_tests, TestApp};
use crate::pki::{self, KeyType};

backend_tests!(
    details_of_every_key_type,
    details_status_follows_the_store_clock,
    details_show_activations_without_archived_projects,
    default_answers_are_unchanged,
);

/// The keys of `certificate_details` with `include[]=details`.
const DETAIL_KEYS: [&str; 10] = [
    "valid_at",
    "expires_at",
    "sha256_fingerprint",
    "spki_sha256",
    "subject",
    "issuer",
    "serial_number",
    "key_algorithm",
    "status",
    "crl",
];

/// The DN every details test CA carries: escapes, a `BMPString`, an OID without a short name.
fn tricky_dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "US");
    dn.push(DnType::OrganizationName, "Acme, Inc.");
    dn.push(DnType::OrganizationalUnitName, "#ops + <dev>");
    dn.push(
        DnType::LocalityName,
        DnValue::BmpString("Zürich".try_into().unwrap()),
    );
    dn.push(
        DnType::CustomDnType(vec![1, 2, 840, 113_549, 1, 9, 1]),
        DnValue::Ia5String("pki@example.com".try_into().unwrap()),
    );
    dn.push(DnType::CommonName, format!(" {cn} "));
    dn
}

/// What Python cryptography's `rfc4514_string()` gives for [`tricky_dn`].
fn tricky_dn_string(cn: &str) -> String {
    format!(
        "CN=\\ {cn}\\ ,1.2.840.113549.1.9.1=pki@example.com,L=Zürich,OU=\\#ops \\+ \\<dev\\>,O=Acme\\, Inc.,C=US"
    )
}

async fn details_of_every_key_type(app: TestApp) {
    let now = app.clock.now();
    let project = app.api.create_project("p").await;
    for (kind, algorithm) in [
        (KeyType::Rsa2048, "rsa-2048"),
        (KeyType::P256, "ecdsa-p256"),
        (KeyType::P384, "ecdsa-p384"),
        (KeyType::Ed25519, "ed25519"),
    ] {
        let cn = format!("{kind:?} CA");
        let mut params = pki::ca_params(&cn, now - DAY, now + 365 * DAY);
        params.distinguished_name = tricky_dn(&cn);
        // Leading zero octets and a high bit: the hex is of the unsigned value, no padding.
        params.serial_number = Some(SerialNumber::from(vec![0x00, 0x8a, 0xbc, 0x01]));
        let ca = pki::ca_with_key_type(params, kind);
        let id = app.api.upload(&ca.pem(), Some(&cn)).await.id();

        let got = get_details(&app.api, &id).await;
        let d = &got["certificate_details"];
        assert_eq!(keys(d), set(&DETAIL_KEYS), "{kind:?}: {got}");
        let expected = json!({
            "valid_at": now - DAY,
            "expires_at": now + 365 * DAY,
            "sha256_fingerprint": hex::encode(sha2::Sha256::digest(ca.cert.der().as_ref())),
            "spki_sha256": base64::engine::general_purpose::STANDARD
                .encode(sha2::Sha256::digest(ca.key.public_key_der())),
            "subject": tricky_dn_string(&cn),
            "issuer": tricky_dn_string(&cn),
            "serial_number": "8abc01",
            "key_algorithm": algorithm,
            "status": "valid",
            "crl": null,
        });
        assert_eq!(d, &expected, "{kind:?}");
        assert_eq!(
            got["activations"],
            json!({"organization": false, "projects": []})
        );
        assert_eq!(got["object"], "certificate");
        assert!(got.get("active").is_none(), "no `active` on get");

        // With content too: both, and the content as uploaded.
        let both = app
            .api
            .get(&format!("{CERTS}/{id}?include[]=content&include[]=details"))
            .await;
        let bd = &both.ok()["certificate_details"];
        assert_eq!(bd["content"], ca.pem());
        assert_eq!(bd["sha256_fingerprint"], expected["sha256_fingerprint"]);

        // Both lists show the same details.
        for path in [
            CERTS.to_owned(),
            format!("/organization/projects/{project}/certificates"),
        ] {
            let list = app.api.get(&format!("{path}?include[]=details")).await;
            let listed = item(list.ok(), &id);
            assert_eq!(&listed["certificate_details"], &expected, "{path}");
            assert_eq!(listed["active"], false);
            assert_eq!(
                listed["activations"],
                json!({"organization": false, "projects": []})
            );
        }
    }

    // An intermediate CA: the issuer is its root's subject.
    let mut root_params = pki::ca_params("Root", now - DAY, now + 365 * DAY);
    root_params.distinguished_name = tricky_dn("Root");
    let root = pki::ca_with_key_type(root_params, KeyType::P384);
    let issuing = pki::intermediate(&root, "Issuing CA", now - DAY, now + 300 * DAY);
    let id = app.api.upload(&issuing.pem(), None).await.id();
    let d = get_details(&app.api, &id).await["certificate_details"].clone();
    assert_eq!(d["subject"], "CN=Issuing CA");
    assert_eq!(d["issuer"], tricky_dn_string("Root"));
    assert_eq!(d["key_algorithm"], "ecdsa-p256");
}

async fn details_status_follows_the_store_clock(app: TestApp) {
    let now = app.clock.now();
    let until = now + 100 * DAY;
    let current = app
        .api
        .upload(&pki::ca_valid("Current", now - DAY, until).pem(), None)
        .await
        .id();
    // Staged for a rotation: accepted, not valid for another hour.
    let staged = app
        .api
        .upload(&pki::ca_valid("Staged", now + 3600, until).pem(), None)
        .await
        .id();
    let project = app.api.create_project("p").await;
    let project_list = format!("/organization/projects/{project}/certificates");
    let ids = [current.as_str(), staged.as_str()];
    let statuses = |at: i64| statuses_at(&app, ids, &project_list, at);
    assert_eq!(statuses(now).await, ["valid", "not_yet_valid"]);
    assert_eq!(statuses(now + 3600).await, ["valid", "valid"]);
    // No write happens between these reads: the list cache must not serve the old status.
    let soon = until - certgate::domain::EXPIRING_SOON_SECS;
    assert_eq!(statuses(soon - 1).await, ["valid", "valid"]);
    assert_eq!(statuses(soon).await, ["expiring_soon", "expiring_soon"]);
    assert_eq!(statuses(until).await, ["expiring_soon", "expiring_soon"]);
    assert_eq!(statuses(until + 1).await, ["expired", "expired"]);
    // Back in time: not yet valid.
    assert_eq!(
        statuses(now - 2 * DAY).await,
        ["not_yet_valid", "not_yet_valid"]
    );
}

/// Sets the clock to `at`, then reads the status of `ids` every way details are shown (get,
/// organization list, project list), which must agree.
async fn statuses_at(app: &TestApp, ids: [&str; 2], project_list: &str, at: i64) -> Vec<String> {
    let status = |v: &Value| {
        v["certificate_details"]["status"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    app.clock.set(at);
    let mut seen = Vec::new();
    for id in ids {
        let got = get_details(&app.api, id).await;
        let org_list = app.api.get(&format!("{CERTS}?include[]=details")).await;
        let proj = app
            .api
            .get(&format!("{project_list}?include[]=details"))
            .await;
        let one = status(&got);
        assert_eq!(one, status(item(org_list.ok(), id)), "org list at {at}");
        assert_eq!(one, status(item(proj.ok(), id)), "project list at {at}");
        seen.push(one);
    }
    seen
}

async fn details_show_activations_without_archived_projects(app: TestApp) {
    let id = app.api.upload_new("A").await;
    let other = app.api.upload_new("B").await;
    let p1 = app.api.create_project("one").await;
    let p2 = app.api.create_project("two").await;
    let p3 = app.api.create_project("three").await;
    // Activated in the order 2, 3, 1: listed in the projects' creation order.
    for p in [&p2, &p3, &p1] {
        app.api.toggle_project(p, "activate", &[&id]).await;
    }
    app.api.toggle_org("activate", &[&id]).await;
    app.api
        .post(&format!("/organization/projects/{p3}/archive"), json!({}))
        .await
        .ok();
    let want = json!({"organization": true, "projects": [p1, p2]});
    assert_eq!(get_details(&app.api, &id).await["activations"], want);
    let list = app.api.get(&format!("{CERTS}?include[]=details")).await;
    assert_eq!(item(list.ok(), &id)["activations"], want);
    assert_eq!(
        item(list.ok(), &other)["activations"],
        json!({"organization": false, "projects": []})
    );
    // The project list: `active` is the project's flag, `activations` every scope.
    let list = app
        .api
        .get(&format!(
            "/organization/projects/{p1}/certificates?include[]=details"
        ))
        .await;
    let listed = item(list.ok(), &id);
    assert_eq!(listed["active"], true);
    assert_eq!(listed["activations"], want);
    app.api.toggle_org("deactivate", &[&id]).await;
    app.api.toggle_project(&p1, "deactivate", &[&id]).await;
    assert_eq!(
        get_details(&app.api, &id).await["activations"],
        json!({"organization": false, "projects": [p2]})
    );
}

async fn default_answers_are_unchanged(app: TestApp) {
    let id = app.api.upload_new("Plain").await;
    let project = app.api.create_project("p").await;
    let base = set(&["object", "id", "name", "created_at", "certificate_details"]);
    let got = app.api.get(&format!("{CERTS}/{id}")).await;
    assert_eq!(keys(got.ok()), base);
    assert_eq!(
        keys(&got.ok()["certificate_details"]),
        set(&["valid_at", "expires_at"])
    );
    let got = app
        .api
        .get(&format!("{CERTS}/{id}?include[]=content"))
        .await;
    assert_eq!(keys(got.ok()), base);
    assert_eq!(
        keys(&got.ok()["certificate_details"]),
        set(&["valid_at", "expires_at", "content"])
    );
    let mut listed = base.clone();
    listed.insert("active");
    for path in [
        CERTS.to_owned(),
        format!("/organization/projects/{project}/certificates"),
    ] {
        // Twice: the second answer comes from the page cache.
        for _ in 0..2 {
            let list = app.api.get(&path).await;
            let it = item(list.ok(), &id);
            assert_eq!(keys(it), listed, "{path}");
            assert_eq!(
                keys(&it["certificate_details"]),
                set(&["valid_at", "expires_at"])
            );
        }
        // A details page of the same parameters is not the cached plain one, nor the other
        // way round.
        let detailed = app.api.get(&format!("{path}?include[]=details")).await;
        assert!(item(detailed.ok(), &id).get("activations").is_some());
        let plain = app.api.get(&path).await;
        assert!(item(plain.ok(), &id).get("activations").is_none());
        // Content on lists too, when asked for.
        let with = app.api.get(&format!("{path}?include[]=content")).await;
        assert!(item(with.ok(), &id)["certificate_details"]["content"]
            .as_str()
            .is_some_and(|c| c.contains("BEGIN CERTIFICATE")));
        app.api
            .get(&format!("{path}?include[]=everything"))
            .await
            .err(400, None, Some("include"));
    }
    // Writes answer as before.
    let renamed = app
        .api
        .post(&format!("{CERTS}/{id}"), json!({"name": "x"}))
        .await;
    assert_eq!(keys(renamed.ok()), base);
}
