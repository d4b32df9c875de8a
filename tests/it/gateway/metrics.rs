//! The gateway's metrics (decisions.md D40) after real TLS traffic, on both backends: requests under
//! the route `proxy`, one decision per request by outcome, the trust generation it enforces,
//! database up; and the same listener's health endpoints.

use super::{caught_up, good_leaf, once, setup};
use crate::client::Api;
use crate::helpers::{backend_tests, serve_in_background, TestApp};
use crate::metrics::Scrape;
use crate::pki;

backend_tests!(gateway_metrics_after_traffic);

async fn gateway_metrics_after_traffic(app: TestApp) {
    let (gw, _up) = setup(&app).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics_addr = listener.local_addr().unwrap();
    serve_in_background(
        listener,
        gw.gateway.metrics_router(),
        certgate::runtime::ConnectionLimits::default(),
    );

    let ca = pki::ca("Metrics CA");
    app.api.upload_active(&ca).await;
    caught_up(&app, &gw).await;
    let trusted = good_leaf(&ca);
    let stranger = good_leaf(&pki::ca("Stranger CA"));
    for _ in 0..3 {
        once(&gw, Some(&trusted), &[]).await.admitted();
    }
    once(&gw, Some(&stranger), &[])
        .await
        .refused(403, "client_certificate_untrusted");
    once(&gw, None, &[])
        .await
        .refused(403, "client_certificate_required");
    once(&gw, Some(&trusted), &[("openai-organization", "org-nope")])
        .await
        .refused(400, "unknown_organization");

    let scrape = Scrape::of(metrics_addr).await;
    let decisions = "certgate_gateway_decisions_total";
    assert_eq!(scrape.value(decisions, &[("outcome", "admitted")]), 3);
    for code in [
        "client_certificate_untrusted",
        "client_certificate_required",
        "unknown_organization",
    ] {
        assert_eq!(scrape.value(decisions, &[("outcome", code)]), 1, "{code}");
    }
    let requests = "certgate_http_requests_total";
    let labels = |status| {
        [
            ("role", "gateway"),
            ("route", "proxy"),
            ("method", "GET"),
            ("status", status),
        ]
    };
    assert_eq!(scrape.value(requests, &labels("200")), 3);
    assert_eq!(scrape.value(requests, &labels("403")), 2);
    assert_eq!(scrape.value(requests, &labels("400")), 1);
    assert_eq!(
        scrape.label_values(requests, "route"),
        vec!["proxy"; 3],
        "{}",
        scrape.text
    );
    assert_eq!(
        scrape.value(
            "certgate_http_request_duration_seconds_count",
            &[("role", "gateway"), ("route", "proxy"), ("method", "GET")]
        ),
        6
    );
    let generation = app.store.trust_generation().await.unwrap();
    assert_eq!(scrape.value("certgate_trust_generation", &[]), generation);
    assert_eq!(scrape.value("certgate_database_up", &[]), 1);

    let beside = Api::new(metrics_addr, None);
    assert_eq!(beside.probe("/healthz").await.status, 200);
    let ready = beside.probe("/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(ready.body["status"], "ready");
}
