//! One table of cases, every refusal the decision knows and an admission, run through the
//! gateway (a real TLS client), the check endpoint (where it can be asked: it is scoped by
//! the admin key and needs a certificate), gRPC authz (a tonic client, both places Envoy puts
//! the certificate) and HTTP authz (two encodings): every transport must give the same
//! outcome, the same code and the same message (decisions.md D45).

use base64::Engine;
use serde_json::json;

use super::cast::Cast;
use super::{
    chain_pem, check_request, escape, grpc_check, grpc_outcome, http_check, raw_headers, Outcome,
    Via,
};
use crate::client::Api;
use crate::gateway::{good_leaf, identity, once, Identity, DAY};
use crate::helpers::{backend_tests, wall_clock, TestApp};
use crate::pki;

backend_tests!(every_refusal_is_answered_alike_by_every_transport);

/// One row: who asks (no certificate, or a chain), with which headers, and whether the check
/// endpoint can be asked the same question (as the admin of `check_as`, for `project`).
struct Case<'a> {
    name: &'a str,
    id: Option<&'a Identity>,
    headers: Vec<(&'a str, &'a str)>,
    check: Option<(&'a Api, Option<&'a str>)>,
    expect: Option<&'a str>,
}

/// The check endpoint's answer as an [`Outcome`].
async fn check_outcome(api: &Api, id: &Identity, project: Option<&str>) -> Outcome {
    let mut body = json!({"certificate": chain_pem(id)});
    if let Some(p) = project {
        body["project_id"] = json!(p);
    }
    let answer = api.post("/organization/certificates/check", body).await;
    if answer.status == 400 {
        let e = &answer.body["error"];
        return Outcome::Refused {
            status: 400,
            code: e["code"].as_str().map(str::to_owned),
            message: e["message"].as_str().unwrap_or_default().to_owned(),
        };
    }
    let c = answer.ok();
    if c["admitted"] == true {
        Outcome::Admitted(c["certificate"]["id"].as_str().unwrap().to_owned())
    } else {
        Outcome::Refused {
            status: 403,
            code: c["code"].as_str().map(str::to_owned),
            message: c["message"].as_str().unwrap_or_default().to_owned(),
        }
    }
}

async fn every_refusal_is_answered_alike_by_every_transport(app: TestApp) {
    let (gw, up) = crate::gateway::setup(&app).await;
    // An authz with no default organization, for `organization_required`, and one with the
    // app's organization as the gateway has it.
    let az = super::setup(&app).await;
    let bare = super::authz(app.store.clone(), |_| {}).await;
    let org = app.org_id.clone();
    let now = wall_clock();

    let cast = Cast::new(&app).await;
    let stranger = pki::ca("Stranger CA");
    let filtered = good_leaf(&cast.filter_ca);
    let expired = identity(&pki::leaf(&cast.ca, "old", now - 30 * DAY, now - DAY), &[]);
    let no_eku = identity(
        &pki::leaf_without_eku(&cast.ca, "no-eku", now - DAY, now + DAY),
        &[],
    );
    let inter = pki::intermediate(&cast.ca, "Issuing CA", now - DAY, now + 100 * DAY);
    let too_long = identity(
        &pki::leaf(&inter, "deep", now - DAY, now + DAY),
        &[&inter, &inter, &inter, &inter, &inter],
    );
    let via_intermediate = identity(&pki::leaf(&inter, "below", now - DAY, now + DAY), &[&inter]);
    let stranger_leaf = good_leaf(&stranger);
    let theirs_leaf = good_leaf(&cast.theirs);
    let project_leaf = good_leaf(&cast.project_ca);
    super::caught_up(&app, &az).await;
    super::caught_up(&app, &bare).await;
    crate::gateway::caught_up(&app, &gw).await;

    let org_h = ("openai-organization", org.as_str());
    let cases = vec![
        Case {
            name: "admitted",
            id: Some(&cast.good),
            headers: vec![],
            check: Some((&app.api, None)),
            expect: None,
        },
        Case {
            name: "admitted through an intermediate",
            id: Some(&via_intermediate),
            headers: vec![],
            check: Some((&app.api, None)),
            expect: None,
        },
        Case {
            name: "admitted for its project",
            id: Some(&project_leaf),
            headers: vec![("openai-project", &cast.project)],
            check: Some((&app.api, Some(&cast.project))),
            expect: None,
        },
        Case {
            name: "no certificate",
            id: None,
            headers: vec![],
            check: None,
            expect: Some("client_certificate_required"),
        },
        Case {
            name: "another CA",
            id: Some(&stranger_leaf),
            headers: vec![],
            check: Some((&app.api, None)),
            expect: Some("client_certificate_untrusted"),
        },
        Case {
            name: "another organization's CA",
            id: Some(&theirs_leaf),
            headers: vec![org_h],
            check: Some((&app.api, None)),
            expect: Some("client_certificate_untrusted"),
        },
        Case {
            name: "ours, asking for another organization",
            id: Some(&cast.good),
            headers: vec![("openai-organization", &cast.other_org)],
            check: Some((&cast.other, None)),
            expect: Some("client_certificate_untrusted"),
        },
        Case {
            name: "inactive for the project",
            id: Some(&project_leaf),
            headers: vec![],
            check: Some((&app.api, None)),
            expect: Some("client_certificate_not_active_for_project"),
        },
        Case {
            name: "deny-listed",
            id: Some(&cast.denied),
            headers: vec![],
            check: Some((&app.api, None)),
            expect: Some("client_certificate_revoked"),
        },
        Case {
            name: "in a CRL",
            id: Some(&cast.listed),
            headers: vec![],
            check: Some((&app.api, None)),
            expect: Some("client_certificate_revoked"),
        },
        Case {
            name: "filtered",
            id: Some(&filtered),
            headers: vec![],
            check: Some((&app.api, None)),
            expect: Some("client_certificate_filtered"),
        },
        Case {
            name: "expired",
            id: Some(&expired),
            headers: vec![],
            check: Some((&app.api, None)),
            expect: Some("client_certificate_expired"),
        },
        Case {
            name: "no clientAuth usage",
            id: Some(&no_eku),
            headers: vec![],
            check: Some((&app.api, None)),
            expect: Some("client_certificate_untrusted"),
        },
        Case {
            name: "chain too long",
            id: Some(&too_long),
            headers: vec![],
            check: None,
            expect: Some("client_certificate_untrusted"),
        },
        Case {
            name: "unknown project",
            id: Some(&cast.good),
            headers: vec![("openai-project", "proj_nope")],
            check: Some((&app.api, Some("proj_nope"))),
            expect: Some("unknown_project"),
        },
        Case {
            name: "unknown organization",
            id: Some(&cast.good),
            headers: vec![("openai-organization", "org-nope")],
            check: None,
            expect: Some("unknown_organization"),
        },
        Case {
            name: "duplicate organization header",
            id: Some(&cast.good),
            headers: vec![org_h, org_h],
            check: None,
            expect: Some(""),
        },
        Case {
            name: "duplicate project header",
            id: Some(&cast.good),
            headers: vec![
                ("openai-project", &cast.project),
                ("openai-project", &cast.project),
            ],
            check: None,
            expect: Some(""),
        },
    ];
    for case in &cases {
        let name = case.name;
        let gateway = gateway_outcome(&gw, case).await;
        match (case.expect, &gateway) {
            (None, Outcome::Admitted(_))
            | (
                Some(""),
                Outcome::Refused {
                    status: 400,
                    code: None,
                    ..
                },
            ) => {}
            (
                Some(code),
                Outcome::Refused {
                    code: Some(got), ..
                },
            ) if code == got => {}
            _ => panic!("{name}: the gateway answered {gateway:?}"),
        }
        if let (Some((api, scoped)), Some(id)) = (case.check, case.id) {
            assert_eq!(
                check_outcome(api, id, scoped).await,
                gateway,
                "{name}: check endpoint"
            );
        }
        for via in [Via::Xfcc, Via::Source] {
            if matches!(via, Via::Source) && case.id.is_some_and(|id| id.chain.len() > 1) {
                // Envoy's `source.certificate` is the leaf alone.
                continue;
            }
            let request = check_request(case.id, via, &case.headers, &[]);
            let merged = grpc_outcome(&grpc_check(&az, request.clone()).await);
            assert_eq!(merged, gateway, "{name}: gRPC ({via:?}, headers map)");
            let raw = grpc_outcome(&grpc_check(&az, raw_headers(request)).await);
            assert_eq!(raw, gateway, "{name}: gRPC ({via:?}, raw header_map)");
        }
        let pem = case.id.map(chain_pem);
        let encodings: Vec<Option<String>> = match &pem {
            None => vec![None],
            Some(pem) => vec![
                Some(escape(pem)),
                Some(pem.replace("\r\n", " ").replace('\n', " ")),
                Some(base64_ders(case.id.unwrap())),
            ],
        };
        for cert in encodings {
            let answer = http_check(&az, cert.as_deref(), &case.headers).await;
            assert_eq!(answer.outcome(), gateway, "{name}: HTTP authz");
        }
    }
    // Without a default organization, every transport asks for one.
    let gw_bare =
        crate::gateway::gateway(app.store.clone(), &format!("http://{}", up.addr), |_| {}).await;
    crate::gateway::caught_up(&app, &gw_bare).await;
    let gateway = Outcome::from_reply(&once(&gw_bare, Some(&cast.good), &[]).await);
    assert_eq!(gateway.code(), Some("organization_required"));
    let grpc = grpc_outcome(
        &grpc_check(&bare, check_request(Some(&cast.good), Via::Xfcc, &[], &[])).await,
    );
    assert_eq!(grpc, gateway, "gRPC without a default organization");
    let http = http_check(&bare, Some(&escape(&chain_pem(&cast.good))), &[]).await;
    assert_eq!(
        http.outcome(),
        gateway,
        "HTTP without a default organization"
    );
    // The route's context names the scope when the headers do not.
    let ctx = [
        ("organization", org.as_str()),
        ("project", cast.project.as_str()),
    ];
    let r = grpc_check(
        &bare,
        check_request(Some(&project_leaf), Via::Xfcc, &[], &ctx),
    )
    .await;
    assert_eq!(
        grpc_outcome(&r),
        Outcome::Admitted(cast.project_ca_id.clone())
    );
    assert_eq!(
        gateway_outcome(&gw, &cases[0]).await,
        Outcome::Admitted(cast.ca_id)
    );
}

/// Traefik's encoding: each certificate's DER in base64, comma-separated.
fn base64_ders(id: &Identity) -> String {
    let parts: Vec<String> = id
        .chain
        .iter()
        .map(|d| base64::engine::general_purpose::STANDARD.encode(d))
        .collect();
    parts.join(",")
}

async fn gateway_outcome(gw: &crate::gateway::Gw, case: &Case<'_>) -> Outcome {
    Outcome::from_reply(&once(gw, case.id, &case.headers).await)
}

impl Outcome {
    fn from_reply(reply: &crate::gateway::Reply) -> Outcome {
        if reply.status == 200 {
            let id = reply.admitted()["x-certgate-certificate-id"][0]
                .as_str()
                .unwrap();
            return Outcome::Admitted(id.to_owned());
        }
        Outcome::of_error(reply.status, &reply.body)
    }
}
