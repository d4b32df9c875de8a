//! Certificate insight (spec §12.4): `include[]=details` on get and both lists, the check
//! endpoint's answers and refusals, and rotation (its scopes, audit events, refusals, and
//! rotations racing other writes). The check's agreement with the real gateway is in
//! `gateway::insight`.

use std::collections::BTreeSet;

use base64::Engine as _;
use certgate::domain::Clock;
use rcgen::{DistinguishedName, DnType, DnValue, SerialNumber};
use serde_json::{json, Value};
use sha2::Digest;

use crate::client::{Answer, Api};
use crate::helpers::{backend_tests, TestApp};
use crate::pki::{self, KeyType};

backend_tests!(
    details_of_every_key_type,
    details_status_follows_the_store_clock,
    details_show_activations_without_archived_projects,
    default_answers_are_unchanged,
    check_answers_and_refusals,
    rotation_everywhere_from_is_active,
    rotation_refusals_change_nothing,
    concurrent_rotations_never_leave_a_scope_without_either,
);

const DAY: i64 = 86_400;
const CERTS: &str = "/organization/certificates";

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

fn keys(v: &Value) -> BTreeSet<&str> {
    v.as_object()
        .unwrap_or_else(|| panic!("an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect()
}

fn set<'a>(k: &[&'a str]) -> BTreeSet<&'a str> {
    k.iter().copied().collect()
}

async fn get_details(api: &Api, id: &str) -> Value {
    api.get(&format!("{CERTS}/{id}?include[]=details"))
        .await
        .ok()
        .clone()
}

/// The item `id` of a list answer.
fn item<'a>(list: &'a Value, id: &str) -> &'a Value {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("{id} not listed: {list}"))
}

pub async fn check(api: &Api, pem: &str, project: Option<&str>) -> Answer {
    let mut body = json!({ "certificate": pem });
    if let Some(p) = project {
        body["project_id"] = json!(p);
    }
    api.post(&format!("{CERTS}/check"), body).await
}

async fn rotate(api: &Api, from: &str, to: &str, retire: Option<bool>) -> Answer {
    let mut body = json!({ "from": from, "to": to });
    if let Some(r) = retire {
        body["retire_from"] = json!(r);
    }
    api.post(&format!("{CERTS}/rotate"), body).await
}

/// Every audit event of the organization, newest first.
async fn audit(api: &Api) -> Vec<Value> {
    api.list_all("/organization/audit_logs").await
}

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

async fn check_answers_and_refusals(app: TestApp) {
    let now = app.clock.now();
    let ca = pki::ca("Client CA");
    let ca_id = app.api.upload(&ca.pem(), Some("Clients")).await.id();
    let leaf = pki::leaf(&ca, "c", now - DAY, now + 30 * DAY);
    let pem = leaf.cert.pem();

    // Inactive: refused with the gateway's code and message.
    let refused = check(&app.api, &pem, None).await;
    assert_eq!(
        refused.ok(),
        &json!({
            "object": "organization.certificate_check",
            "admitted": false,
            "code": "client_certificate_untrusted",
            "message": "The client certificate does not chain to a CA certificate active for this organization.",
            "certificate": null,
        })
    );
    app.api.toggle_org("activate", &[&ca_id]).await;
    let admitted = check(&app.api, &pem, None).await;
    let a = admitted.ok();
    assert_eq!(
        keys(a),
        set(&["object", "admitted", "code", "message", "certificate"])
    );
    assert_eq!(a["admitted"], true);
    assert_eq!(a["code"], Value::Null);
    assert_eq!(a["certificate"], json!({"id": ca_id, "name": "Clients"}));
    assert!(a["message"].as_str().unwrap().contains(&ca_id), "{a}");
    // The project is read like the OpenAI-Project header: blank is none.
    for blank in ["", "  "] {
        assert_eq!(
            check(&app.api, &pem, Some(blank)).await.ok()["admitted"],
            true
        );
    }
    let null_project = app
        .api
        .post(
            &format!("{CERTS}/check"),
            json!({"certificate": pem, "project_id": null}),
        )
        .await;
    assert_eq!(null_project.ok()["admitted"], true);
    let project = app.api.create_project("p").await;
    assert_eq!(
        check(&app.api, &pem, Some(&project)).await.ok()["admitted"],
        true
    );

    // A project the gateway would not accept in OpenAI-Project: unknown, malformed, archived,
    // another organization's.
    let archived = app.api.create_project("gone").await;
    app.api
        .post(
            &format!("/organization/projects/{archived}/archive"),
            json!({}),
        )
        .await
        .ok();
    let (_, other_api) = app.other_org().await;
    let theirs = other_api.create_project("theirs").await;
    let events_before = audit(&app.api).await.len();
    let generation = app.store.trust_generation().await.unwrap();
    for p in [
        "proj_doesnotexist",
        "nope",
        archived.as_str(),
        theirs.as_str(),
    ] {
        check(&app.api, &pem, Some(p))
            .await
            .err(400, Some("unknown_project"), Some("project_id"));
    }
    // Bad bodies.
    let post = |body: Value| {
        let api = app.api.clone();
        async move { api.post(&format!("{CERTS}/check"), body).await }
    };
    post(json!({})).await.err(400, None, Some("certificate"));
    post(json!({"certificate": 5}))
        .await
        .err(400, None, Some("certificate"));
    post(json!({"certificate": pem, "project_id": 5}))
        .await
        .err(400, None, Some("project_id"));
    post(json!({"certificate": pem, "extra": 1}))
        .await
        .err(400, None, Some("extra"));
    let key_pem = leaf.key.serialize_pem();
    check(&app.api, &format!("{pem}{key_pem}"), None).await.err(
        400,
        Some("private_key_not_allowed"),
        Some("certificate"),
    );
    // Key material without its PEM armour is a private key all the same.
    let bare: String = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .join("\n");
    check(&app.api, &format!("{pem}\n{bare}\n"), None)
        .await
        .err(400, Some("private_key_not_allowed"), Some("certificate"));
    for not_a_certificate in [
        "hello".to_owned(),
        leaf.key.public_key_pem(),
        "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n".to_owned(),
    ] {
        check(&app.api, &not_a_certificate, None).await.err(
            400,
            Some("invalid_certificate"),
            Some("certificate"),
        );
    }
    // A check changes nothing.
    assert_eq!(audit(&app.api).await.len(), events_before);
    assert_eq!(app.store.trust_generation().await.unwrap(), generation);
}

/// Events of `kind` about certificate `id`, oldest first: (project id or null, payload ids).
fn scope_events(events: &[Value], kind: &str) -> Vec<(Value, Vec<String>)> {
    events
        .iter()
        .rev()
        .filter(|e| e["type"] == kind)
        .map(|e| {
            let ids = e[kind]["certificates"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["id"].as_str().unwrap().to_owned())
                .collect();
            (
                e.get("project").map_or(Value::Null, |p| p["id"].clone()),
                ids,
            )
        })
        .collect()
}

async fn rotation_everywhere_from_is_active(app: TestApp) {
    let old = app
        .api
        .upload(&pki::ca("Old").pem(), Some("old"))
        .await
        .id();
    let new = app
        .api
        .upload(&pki::ca("New").pem(), Some("new"))
        .await
        .id();
    let p1 = app.api.create_project("one").await;
    let p2 = app.api.create_project("two").await;
    let p3 = app.api.create_project("three").await;
    let untouched = app.api.create_project("untouched").await;
    app.api.toggle_org("activate", &[&old]).await;
    for p in [&p2, &p1, &p3] {
        app.api.toggle_project(p, "activate", &[&old]).await;
    }
    // `new` already active in p2: still reported, activation is idempotent.
    app.api.toggle_project(&p2, "activate", &[&new]).await;
    app.api
        .post(&format!("/organization/projects/{p3}/archive"), json!({}))
        .await
        .ok();
    let before = audit(&app.api).await.len();

    // Stage: `new` joins `old` everywhere.
    let staged = rotate(&app.api, &old, &new, None).await;
    assert_eq!(
        staged.ok(),
        &json!({
            "object": "organization.certificate_rotation",
            "from": old, "to": new,
            "organization": true, "projects": [p1, p2],
            "retired": false,
        })
    );
    let both = json!({"organization": true, "projects": [p1, p2]});
    assert_eq!(get_details(&app.api, &new).await["activations"], both);
    assert_eq!(get_details(&app.api, &old).await["activations"], both);
    let events = audit(&app.api).await;
    let added = &events[..events.len() - before];
    assert_eq!(
        scope_events(added, "certificates.activated"),
        [
            (Value::Null, vec![new.clone()]),
            (json!(p1), vec![new.clone()]),
            (json!(p2), vec![new.clone()]),
        ]
    );
    assert!(scope_events(added, "certificates.deactivated").is_empty());
    let key = app.api.get("/organization/admin_api_keys").await.ok()["data"][0]["id"].clone();
    for e in added {
        assert_eq!(e["actor"]["api_key"]["id"], key, "{e}");
    }

    // Retire: `old` leaves every scope it was in, `new` stays.
    let before = events.len();
    let retired = rotate(&app.api, &old, &new, Some(true)).await;
    assert_eq!(retired.ok()["retired"], true);
    assert_eq!(retired.ok()["projects"], json!([p1, p2]));
    assert_eq!(
        get_details(&app.api, &old).await["activations"],
        json!({"organization": false, "projects": []})
    );
    assert_eq!(get_details(&app.api, &new).await["activations"], both);
    let events = audit(&app.api).await;
    let added = &events[..events.len() - before];
    let types: Vec<&str> = added
        .iter()
        .rev()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "certificates.activated",
            "certificates.deactivated",
            "certificates.activated",
            "certificates.deactivated",
            "certificates.activated",
            "certificates.deactivated",
        ]
    );
    assert_eq!(
        scope_events(added, "certificates.deactivated"),
        [
            (Value::Null, vec![old.clone()]),
            (json!(p1), vec![old.clone()]),
            (json!(p2), vec![old.clone()]),
        ]
    );
    // The project of a project event carries its name.
    let p1_event = added
        .iter()
        .find(|e| e.get("project").is_some_and(|p| p["id"] == p1.as_str()))
        .unwrap();
    assert_eq!(p1_event["project"]["name"], "one");
    // Nothing happened in the project `old` was never active for.
    let untouched_list = app
        .api
        .get(&format!("/organization/projects/{untouched}/certificates"))
        .await;
    assert_eq!(item(untouched_list.ok(), &new)["active"], false);
    // `old` is active nowhere now: it can be deleted, and rotating from it is refused.
    rotate(&app.api, &old, &new, None)
        .await
        .err(400, Some("certificate_not_active"), Some("from"));
    app.api.delete(&format!("{CERTS}/{old}")).await.ok();

    // A project-only rotation: the organization flag is left alone.
    let fourth = app.api.upload_new("Fourth").await;
    app.api.toggle_project(&p1, "activate", &[&fourth]).await;
    let fifth = app.api.upload_new("Fifth").await;
    let r = rotate(&app.api, &fourth, &fifth, Some(true)).await;
    assert_eq!(r.ok()["organization"], false);
    assert_eq!(r.ok()["projects"], json!([p1]));
    assert_eq!(
        get_details(&app.api, &fifth).await["activations"],
        json!({"organization": false, "projects": [p1]})
    );
}

async fn rotation_refusals_change_nothing(app: TestApp) {
    let now = app.clock.now();
    let from = app.api.upload_new("From").await;
    app.api.toggle_org("activate", &[&from]).await;
    let inactive = app.api.upload_new("Inactive").await;
    let to = app.api.upload_new("To").await;
    let staged = app
        .api
        .upload(
            &pki::ca_valid("Staged", now + 3600, now + 100 * DAY).pem(),
            None,
        )
        .await
        .id();
    let short = app
        .api
        .upload(
            &pki::ca_valid("Short", now - DAY, now + 2 * DAY).pem(),
            None,
        )
        .await
        .id();
    let deleted = app.api.upload_new("Deleted").await;
    app.api.delete(&format!("{CERTS}/{deleted}")).await.ok();
    let (_, other_api) = app.other_org().await;
    let theirs = other_api.upload_new("Theirs").await;
    // Time passes: `short` has expired.
    app.clock.set(now + 3 * DAY);
    let events = audit(&app.api).await.len();
    let generation = app.store.trust_generation().await.unwrap();

    let cases: Vec<(Value, u16, Option<&str>, Option<&str>)> = vec![
        (
            json!({"from": "cert_nope", "to": to}),
            404,
            None,
            Some("from"),
        ),
        (
            json!({"from": from, "to": "cert_nope"}),
            404,
            None,
            Some("to"),
        ),
        (
            json!({"from": "garbage", "to": to}),
            404,
            None,
            Some("from"),
        ),
        (json!({"from": from, "to": deleted}), 404, None, Some("to")),
        (json!({"from": theirs, "to": to}), 404, None, Some("from")),
        (json!({"from": from, "to": theirs}), 404, None, Some("to")),
        (json!({"from": from, "to": from}), 400, None, Some("to")),
        (
            json!({"from": inactive, "to": to}),
            400,
            Some("certificate_not_active"),
            Some("from"),
        ),
        (
            json!({"from": from, "to": short}),
            400,
            Some("invalid_certificate"),
            Some("to"),
        ),
        (
            json!({"from": from, "to": short, "retire_from": true}),
            400,
            Some("invalid_certificate"),
            Some("to"),
        ),
        (json!({"to": to}), 400, None, Some("from")),
        (json!({"from": from}), 400, None, Some("to")),
        (json!({"from": from, "to": 7}), 400, None, Some("to")),
        (
            json!({"from": from, "to": to, "retire_from": "yes"}),
            400,
            None,
            Some("retire_from"),
        ),
        (
            json!({"from": from, "to": to, "also": 1}),
            400,
            None,
            Some("also"),
        ),
    ];
    for (body, status, code, param) in cases {
        let shown = body.to_string();
        let r = app.api.post(&format!("{CERTS}/rotate"), body).await;
        let message = r.err(status, code, param);
        assert!(!message.is_empty(), "{shown}");
    }
    app.clock.set(now);
    // Retiring in favour of a CA not valid yet would lock clients out.
    let msg = rotate(&app.api, &from, &staged, Some(true))
        .await
        .err(400, Some("certificate_not_yet_valid"), Some("to"))
        .to_owned();
    assert!(msg.contains(&staged), "{msg}");
    assert_eq!(
        audit(&app.api).await.len(),
        events,
        "refusals write nothing"
    );
    assert_eq!(app.store.trust_generation().await.unwrap(), generation);
    assert_eq!(
        get_details(&app.api, &from).await["activations"],
        json!({"organization": true, "projects": []})
    );
    for id in [&to, &staged, &short, &inactive] {
        assert_eq!(
            get_details(&app.api, id).await["activations"]["organization"],
            false
        );
    }
    // Staging it without retiring is fine (both stay active; it admits from its valid_at).
    rotate(&app.api, &from, &staged, Some(false)).await.ok();
    assert_eq!(
        get_details(&app.api, &staged).await["activations"]["organization"],
        true
    );
}

/// Rotations racing toggles, deletes, an archive and rotations the other way: every answer
/// is a 200 or a refusal (never a 5xx), and no committed state (read as the gateway reads it)
/// ever has a scope where either CA was active with neither active. Nothing here deactivates
/// except rotations, so any such state would be a rotation's fault.
async fn concurrent_rotations_never_leave_a_scope_without_either(app: TestApp) {
    let a = app.api.upload_new("A").await;
    let b = app.api.upload_new("B").await;
    let projects = [
        app.api.create_project("one").await,
        app.api.create_project("two").await,
        app.api.create_project("three").await,
    ];
    app.api.toggle_org("activate", &[&a]).await;
    for p in &projects {
        app.api.toggle_project(p, "activate", &[&a]).await;
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let observer = {
        let (store, org, stop) = (app.store.clone(), app.org_id.clone(), stop.clone());
        let (a, b, projects) = (a.clone(), b.clone(), projects.clone());
        tokio::spawn(async move {
            let mut seen = 0u32;
            loop {
                let done = stop.load(std::sync::atomic::Ordering::SeqCst);
                let snap = store
                    .trust_snapshot(&std::collections::HashSet::new())
                    .await
                    .expect("snapshot");
                let ours = |id: &str| snap.anchors.iter().find(|x| x.certificate_id == id);
                let covers = |id: &str, p: Option<&str>| {
                    ours(id).is_some_and(|x| match p {
                        None => x.org_wide,
                        Some(p) => x.projects.iter().any(|q| q == p),
                    })
                };
                assert!(
                    covers(&a, None) || covers(&b, None),
                    "organization left with neither CA at generation {}",
                    snap.generation
                );
                for p in &projects {
                    let live = snap.projects.contains(&(org.clone(), p.clone()));
                    assert!(
                        !live || covers(&a, Some(p)) || covers(&b, Some(p)),
                        "project {p} left with neither CA at generation {}",
                        snap.generation
                    );
                }
                seen += 1;
                if done {
                    return seen;
                }
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
        })
    };
    let allowed = |r: &Answer, what: &str| {
        let s = r.status.as_u16();
        assert!(matches!(s, 200 | 400 | 404 | 409), "{what}: {s} {}", r.body);
        if s != 200 {
            r.err(
                s,
                r.body["error"]["code"].as_str(),
                r.body["error"]["param"].as_str(),
            );
        }
        s
    };
    let mut writers = Vec::new();
    for (i, (from, to)) in [(&a, &b), (&b, &a), (&a, &b)].into_iter().enumerate() {
        let (api, from, to) = (app.api.clone(), from.clone(), to.clone());
        writers.push(tokio::spawn(async move {
            let mut ok = 0;
            for round in 0..12 {
                let retire = (round + i) % 2 == 0;
                let r = rotate(&api, &from, &to, Some(retire)).await;
                if allowed(&r, "rotate") == 200 {
                    ok += 1;
                }
            }
            ok
        }));
    }
    {
        let (api, a, b, projects) = (app.api.clone(), a.clone(), b.clone(), projects.clone());
        writers.push(tokio::spawn(async move {
            for round in 0..12usize {
                let id = if round % 2 == 0 { &a } else { &b };
                let p = &projects[round % projects.len()];
                let r = api
                    .post(
                        &format!("/organization/projects/{p}/certificates/activate"),
                        json!({"certificate_ids": [id]}),
                    )
                    .await;
                allowed(&r, "activate");
                let r = api.delete(&format!("{CERTS}/{id}")).await;
                allowed(&r, "delete");
                if round == 6 {
                    let r = api
                        .post(
                            &format!("/organization/projects/{}/archive", projects[2]),
                            json!({}),
                        )
                        .await;
                    allowed(&r, "archive");
                }
            }
            0
        }));
    }
    let mut rotated = 0;
    for w in writers {
        rotated += w.await.expect("writer");
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = observer
        .await
        .expect("the invariant held in every observed state");
    assert!(
        rotated > 0,
        "some rotations went through (else this tests nothing)"
    );
    assert!(seen > 1, "the observer saw states while writers ran");
}
