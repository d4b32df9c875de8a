//! The guarded HTTP client for tenant-chosen URLs (spec §13.4, decisions.md D60), against a
//! real HTTP server on loopback: private targets refused unless allowed, redirects not followed,
//! bodies cut at 8 MiB or the operator's `--fetch-max-bytes` (decisions.md D70), with a length
//! or without, one 10 s limit (limits tested from both sides) of which each address gets a
//! third to connect in (both sides: one that never connects leaves time for the next, one that
//! connects within its third is kept), and `serve` with and without `--fetch-allow-private`,
//! never echoing a fetched body in its events or logs.

use std::time::{Duration, Instant};

use certgate::fetch::client::{fetch, Request, CRL_FETCH_TIMEOUT};
use certgate::fetch::{FetchError, FetchPolicy, MAX_BODY_BYTES};
use serde_json::{json, Value};

use crate::bounds::assert_on_time;
use crate::helpers::{db_tests, TestDb};
use crate::openssl_ca::{CrlServer, OpenSslCa, Publish};
use crate::process::Process;

db_tests!(
    serve_refuses_private_targets_unless_allowed_and_never_echoes_a_body,
    serve_reads_up_to_its_limit_and_the_setting_raises_it,
);

async fn get(url: &str, allow_private: bool) -> Result<bytes::Bytes, FetchError> {
    get_with(url, FetchPolicy::new(allow_private, CRL_FETCH_TIMEOUT)).await
}

async fn get_with(url: &str, policy: FetchPolicy) -> Result<bytes::Bytes, FetchError> {
    let url = url::Url::parse(url).unwrap();
    fetch(
        Request {
            url: &url,
            accept: "*/*",
            body: None,
        },
        &policy,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_targets_are_refused_unless_allowed() {
    let server = CrlServer::start(Publish::Body("crl".into())).await;
    let port = server.addr.port();
    for host in ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]"] {
        let url = format!("http://{host}:{port}/x.crl");
        assert_eq!(
            get(&url, false).await,
            Err(FetchError::PrivateAddress),
            "{url}"
        );
    }
    assert_eq!(server.count(), 0, "refused before connecting");
    assert_eq!(get(&server.url("/x.crl"), true).await.unwrap(), "crl");
    assert_eq!(server.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_not_followed() {
    let target = CrlServer::start(Publish::Body("elsewhere".into())).await;
    let server = CrlServer::start(Publish::Redirect(target.url("/inside"))).await;
    let got = get(&server.url("/x.crl"), true).await;
    assert_eq!(got, Err(FetchError::Redirect(302)));
    assert_eq!(target.count(), 0, "the redirect's target is never asked");
    assert!(got.unwrap_err().to_string().contains("not followed"));
}

/// A server on loopback answering every request with `body` in 64 KiB chunks and no length:
/// the client cannot refuse it from the head, and must count as it reads. Its URL.
async fn chunked_server(body: bytes::Bytes) -> String {
    let app = axum::Router::new().fallback(move || {
        let body = body.clone();
        async move {
            let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = body
                .chunks(64 * 1024)
                .map(|c| Ok(body.slice_ref(c)))
                .collect();
            axum::body::Body::from_stream(futures::stream::iter(chunks))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/x.crl")
}

/// `limit` from both sides under `policy`, with the length announced (refused from the head)
/// and without it (cut while read): `limit` bytes pass whole, `limit + 1` are refused naming
/// the limit.
async fn assert_cut_at(policy: &FetchPolicy, limit: usize) {
    let server = CrlServer::start(Publish::Body(vec![b'A'; limit].into())).await;
    let got = get_with(&server.url("/x.crl"), policy.clone()).await;
    assert_eq!(got.unwrap().len(), limit, "announced, exactly the limit");
    server.publish(Publish::Body(vec![b'A'; limit + 1].into()));
    let got = get_with(&server.url("/x.crl"), policy.clone()).await;
    assert_eq!(got, Err(FetchError::TooLarge(limit)), "announced, one more");
    let url = chunked_server(vec![b'A'; limit].into()).await;
    let got = get_with(&url, policy.clone()).await;
    assert_eq!(got.unwrap().len(), limit, "no length, exactly the limit");
    let url = chunked_server(vec![b'A'; limit + 1].into()).await;
    let got = get_with(&url, policy.clone()).await.unwrap_err();
    assert_eq!(got, FetchError::TooLarge(limit), "no length, one more");
    assert!(
        got.to_string()
            .contains(&format!("larger than {limit} bytes")),
        "{got}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_cut_at_8_mib() {
    let policy = FetchPolicy::new(true, CRL_FETCH_TIMEOUT);
    assert_eq!(policy.max_body_bytes, MAX_BODY_BYTES, "the spec's 8 MiB");
    // An endless body: refused as too large as soon as the limit is passed, not at the timeout.
    let server = CrlServer::start(Publish::Endless).await;
    let started = Instant::now();
    assert_eq!(
        get(&server.url("/x.crl"), true).await,
        Err(FetchError::TooLarge(MAX_BODY_BYTES))
    );
    assert!(started.elapsed() < CRL_FETCH_TIMEOUT);
    assert_cut_at(&policy, MAX_BODY_BYTES).await;
}

/// The operator's limit (`--fetch-max-bytes`) replaces 8 MiB, upwards (a 500,000-entry CRL is
/// about 15 MB) and downwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operators_limit_replaces_8_mib() {
    let raised = FetchPolicy::new(true, CRL_FETCH_TIMEOUT).with_max_body_bytes(16 * 1024 * 1024);
    assert_cut_at(&raised, 16 * 1024 * 1024).await;
    let lowered = FetchPolicy::new(true, CRL_FETCH_TIMEOUT).with_max_body_bytes(64 * 1024);
    assert_cut_at(&lowered, 64 * 1024).await;
    let server = CrlServer::start(Publish::Endless).await;
    assert_eq!(
        get_with(&server.url("/x.crl"), raised).await,
        Err(FetchError::TooLarge(16 * 1024 * 1024))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_is_given_up_on_at_10_s() {
    let server = CrlServer::start(Publish::Silence).await;
    let started = Instant::now();
    assert_eq!(
        get(&server.url("/x.crl"), true).await,
        Err(FetchError::Timeout(10))
    );
    assert_on_time("fetch time limit", started.elapsed(), CRL_FETCH_TIMEOUT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_never_carry_the_body() {
    let marker = "SECRET-BODY-MARKER-c41d";
    let server = CrlServer::start(Publish::Status(500, marker)).await;
    let got = get(&server.url("/x.crl"), true).await.unwrap_err();
    assert_eq!(got, FetchError::Status(500));
    assert!(!got.to_string().contains(marker));
    assert!(!format!("{got:?}").contains(marker));
}

/// A name whose first address never completes the TCP handshake and whose second answers:
/// the first gets its share of the limit (a third, 2 s of 6 s), not all of it, so the fetch
/// succeeds; it is given up on time (not before its share, not more than `LATE` after it,
/// which still ends well before the whole limit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_that_never_connects_leaves_time_for_the_next() {
    let server = CrlServer::start(Publish::Body("crl".into())).await;
    let port = server.addr.port();
    let silent = std::net::Ipv4Addr::new(127, 0, 0, 2);
    let _held = unanswered_listener(std::net::SocketAddr::from((silent, port))).await;
    let limit = Duration::from_secs(6);
    let policy =
        FetchPolicy::new(true, limit).resolving("two.test", vec![silent.into(), server.addr.ip()]);
    let started = Instant::now();
    let got = get_with(&format!("http://two.test:{port}/x.crl"), policy).await;
    assert_on_time("a silent address's share", started.elapsed(), limit / 3);
    assert_eq!(got.unwrap(), "crl");
    assert_eq!(server.count(), 1);
}

/// The other side: an address that connects within its third is not abandoned. The first
/// address's backlog is full when the fetch starts, so its SYN is dropped; 0.3 s later the
/// listener starts accepting and answering, and the kernel's retransmitted SYN (after 1 s)
/// connects, well inside the third (2 s) of a 6 s limit: the first address answers, and the
/// second is never asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_that_connects_within_its_share_is_kept() {
    let second = CrlServer::start(Publish::Body("second".into())).await;
    let port = second.addr.port();
    let slow = std::net::Ipv4Addr::new(127, 0, 0, 3);
    let (listener, queued) = unanswered_listener(std::net::SocketAddr::from((slow, port))).await;
    let first = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(queued);
        CrlServer::serve_on(listener, Publish::Body("first".into()))
    });
    let policy = FetchPolicy::new(true, Duration::from_secs(6))
        .resolving("two.test", vec![slow.into(), second.addr.ip()]);
    let started = Instant::now();
    let got = get_with(&format!("http://two.test:{port}/x.crl"), policy).await;
    let took = started.elapsed();
    assert_eq!(got.unwrap(), "first", "after {took:?}");
    assert!(
        took >= Duration::from_millis(300),
        "the first SYN was dropped: {took:?}"
    );
    assert_eq!(first.await.unwrap().count(), 1);
    assert_eq!(second.count(), 0, "the second address was never asked");
}

/// A listener at `addr` that accepts nothing and whose backlog is full: further SYNs are
/// dropped, so a connection to it never completes (what a firewall dropping packets does).
/// It stays so while what it returns is held.
async fn unanswered_listener(
    addr: std::net::SocketAddr,
) -> (tokio::net::TcpListener, Vec<tokio::net::TcpStream>) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(addr).unwrap();
    let listener = socket.listen(0).unwrap();
    let mut queued = Vec::new();
    for _ in 0..16 {
        match tokio::time::timeout(
            Duration::from_millis(300),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            Ok(stream) => queued.push(stream.unwrap()),
            Err(_) => return (listener, queued),
        }
    }
    panic!("the backlog of {addr} never filled");
}

async fn serve_refuses_private_targets_unless_allowed_and_never_echoes_a_body(db: TestDb) {
    let marker = "SECRET-BODY-MARKER-90be";
    let ca = OpenSslCa::new("Fetched CA");
    let server = CrlServer::start(Publish::Body(
        format!("-----BEGIN {marker}-----\nAAAA\n-----END {marker}-----\n").into(),
    ))
    .await;
    let url = server.url("/ca.crl");

    // Without the flag: the loopback target is refused, and the refusal is an event.
    let mut serve = Process::serve(&db.url, &[]).await;
    let key = serve.process.bootstrap_key().expect("bootstrap key");
    let api = serve.api(&key);
    let id = api
        .post(
            "/organization/certificates",
            json!({"certificate": ca.pem(), "crl_url": url}),
        )
        .await
        .id();
    let events_path = format!(
        "/organization/audit_logs?event_types[]=certificate.crl_fetched&resource_ids[]={id}"
    );
    let mut events = serde_json::Value::Null;
    for _ in 0..200 {
        events = api.get(&events_path).await.ok().clone();
        if !events["data"].as_array().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let event = &events["data"][0]["certificate.crl_fetched"];
    assert_eq!(event["ok"], false, "{events}");
    assert!(
        event["reason"]
            .as_str()
            .unwrap()
            .contains("--fetch-allow-private"),
        "{event}"
    );
    assert_eq!(server.count(), 0, "never connected");
    serve.process.terminate_and_wait();

    // With it (and the lease row due again: a new URL): fetched, refused as not a CRL, and the
    // body is nowhere, not in the event, not in the logs.
    let mut serve = Process::serve(&db.url, &["--fetch-allow-private"]).await;
    let api = serve.api(&key);
    let other = server.url("/again.crl");
    api.post(
        &format!("/organization/certificates/{id}"),
        json!({"crl_url": other}),
    )
    .await
    .ok();
    for _ in 0..200 {
        if server.count() > 0
            && api.get(&events_path).await.ok()["data"]
                .as_array()
                .unwrap()
                .len()
                == 2
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let events = api.get(&events_path).await.ok().clone();
    let event = &events["data"][0]["certificate.crl_fetched"];
    assert_eq!(event["ok"], false, "{events}");
    assert_eq!(event["url"], other.as_str());
    assert!(
        event["reason"].as_str().unwrap().starts_with("invalid_crl"),
        "{event}"
    );
    assert!(!events.to_string().contains(marker));
    serve.process.terminate_and_wait();
    assert!(
        !serve.process.output().contains(marker),
        "{}",
        serve.process.output()
    );
}

/// `der` (a CRL) as PEM, padded with trailing line breaks to exactly `len` bytes: still the
/// same CRL to certgate (surrounding white space is ignored), at the length a test needs.
fn pem_of_length(der: &[u8], len: usize) -> Vec<u8> {
    let mut text = pem::encode(&pem::Pem::new("X509 CRL", der.to_vec())).into_bytes();
    assert!(text.len() <= len, "the CRL alone is {} bytes", text.len());
    text.resize(len, b'\n');
    text
}

/// The `certificate.crl_fetched` payloads for `id`, newest first.
async fn fetch_events(api: &crate::client::Api, id: &str) -> Vec<Value> {
    let path = format!(
        "/organization/audit_logs?event_types[]=certificate.crl_fetched&resource_ids[]={id}&limit=100"
    );
    api.get(&path).await.ok()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["certificate.crl_fetched"].clone())
        .collect()
}

/// Polls (every 50 ms, 20 s at most) until `check` holds.
macro_rules! within_20_s {
    ($what:expr, $check:expr) => {{
        let mut held = false;
        for _ in 0..400 {
            if $check {
                held = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(held, "not within 20 s: {}", $what);
    }};
}

/// The binary, its default and its setting: a CRL of exactly 8 MiB is stored; a newer one of
/// 8 MiB + 1 byte is refused unread, nothing stored and nothing of it in the event or the logs;
/// `serve` started with `CERTGATE_FETCH_MAX_BYTES` one byte higher stores that same body.
async fn serve_reads_up_to_its_limit_and_the_setting_raises_it(db: TestDb) {
    let ca = OpenSslCa::new("Limit CA");
    let leaf = ca.issue_client("client");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let now = i64::try_from(now).unwrap();
    let first = pem_of_length(&ca.gencrl(now - 120, now + 3600), MAX_BODY_BYTES);
    ca.revoke(&leaf);
    let second = pem_of_length(&ca.gencrl(now - 60, now + 3600), MAX_BODY_BYTES + 1);
    // A line of the second CRL's base64 (its signature): what would show if any of it leaked.
    let text = String::from_utf8(second.clone()).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    let telltale = lines[lines.len() - 3].to_owned();
    assert_eq!(telltale.len(), 64, "{telltale}");

    let server = CrlServer::start(Publish::Body(first.into())).await;
    // Fetched again every second, so that each publication is seen at once.
    let fast = [
        "--fetch-allow-private",
        "--crl-refresh-min",
        "1s",
        "--crl-refresh-max",
        "1s",
    ];
    let mut serve = Process::serve(&db.url, &fast).await;
    let key = serve.process.bootstrap_key().expect("bootstrap key");
    let api = serve.api(&key);
    let id = api
        .post(
            "/organization/certificates",
            json!({"certificate": ca.pem(), "crl_url": server.url("/ca.crl")}),
        )
        .await
        .id();
    let crl_path = format!("/organization/certificates/{id}/crl");
    within_20_s!(
        "exactly 8 MiB stored",
        api.get(&crl_path).await.status == 200
    );
    let kept = api.get(&crl_path).await.ok().clone();
    assert_eq!(kept["revoked_count"], 0);

    server.publish(Publish::Body(second.clone().into()));
    within_20_s!(
        "the refusal",
        fetch_events(&api, &id)
            .await
            .first()
            .is_some_and(|e| e["ok"] == false)
    );
    let events = fetch_events(&api, &id).await;
    assert_eq!(
        events[0]["reason"],
        format!(
            "fetch_failed: the body is larger than {MAX_BODY_BYTES} bytes (the fetch limit, \
             --fetch-max-bytes); reading stopped there."
        ),
    );
    assert_eq!(api.get(&crl_path).await.ok(), &kept, "nothing stored");
    let all = api.get("/organization/audit_logs?limit=100").await;
    assert!(!all.ok().to_string().contains(&telltale));
    serve.process.terminate_and_wait();
    assert!(!serve.process.output().contains(&telltale));

    // One byte more allowed, from the environment; a new URL, so that its lease row is due.
    let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--database", &db.url];
    args.extend_from_slice(&fast);
    let raised = (MAX_BODY_BYTES + 1).to_string();
    let mut process = Process::spawn(&args, &[("CERTGATE_FETCH_MAX_BYTES", raised.as_str())]);
    let addr = process.listening("certgate serve listening").await;
    let mut serve = crate::process::Server { process, addr };
    let api = serve.api(&key);
    api.post(
        &format!("/organization/certificates/{id}"),
        json!({"crl_url": server.url("/again.crl")}),
    )
    .await
    .ok();
    within_20_s!(
        "8 MiB + 1 stored under the raised limit",
        api.get(&crl_path).await.ok()["revoked_count"] == 1
    );
    let events = fetch_events(&api, &id).await;
    assert_eq!(events[0]["ok"], true, "{}", events[0]);
    serve.process.terminate_and_wait();
    assert!(!serve.process.output().contains(&telltale));
}
