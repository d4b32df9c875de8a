//! TLS session resumption shortens handshakes, never decisions (issue 30 item 9): a client
//! that resumes its session is still the certificate it proved in the full handshake, and each
//! of its requests is judged against the live trust state, so a session resumed after its CA
//! was deactivated, or after its leaf was deny-listed, gets the refusal a new session would.

use std::sync::Arc;

use hyper_util::rt::TokioIo;
use rustls::HandshakeKind;
use rustls_pki_types::ServerName;

use super::{caught_up, good_leaf, identity, setup, Conn, Endpoint, Identity, Reply, DAY};
use crate::helpers::{backend_tests, TestApp};
use crate::pki;

backend_tests!(a_resumed_session_is_judged_like_a_new_one);

/// A client that keeps its TLS sessions between connections, as rustls's does by default.
struct ResumingClient {
    config: Arc<rustls::ClientConfig>,
}

impl ResumingClient {
    fn new(
        gw: &Endpoint,
        id: &Identity,
        version: &'static rustls::SupportedProtocolVersion,
    ) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(gw.server_ca.clone()).unwrap();
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
        .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.resumption = rustls::client::Resumption::in_memory_sessions(16);
        ResumingClient {
            config: Arc::new(config),
        }
    }

    /// One request on a new connection, and how that connection's handshake went.
    async fn get(&self, gw: &Endpoint) -> (HandshakeKind, Reply) {
        let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(self.config.clone())
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        let kind = tls.get_ref().1.handshake_kind().unwrap();
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        // Reading the answer also reads the session tickets sent before it.
        (kind, Conn::H1(send).get(&[]).await)
    }
}

async fn a_resumed_session_is_judged_like_a_new_one(app: TestApp) {
    let (gw, _up) = setup(&app).await;
    let deactivated = pki::ca("CA to deactivate");
    let deactivated_id = app.api.upload_active(&deactivated).await;
    let kept = pki::ca("CA kept active");
    app.api.upload_active(&kept).await;
    caught_up(&app, &gw).await;
    let of_deactivated = good_leaf(&deactivated);
    let now = crate::helpers::wall_clock();
    let denied_leaf = pki::leaf(&kept, "denied", now - DAY, now + 30 * DAY);
    let denied = identity(&denied_leaf, &[]);
    let sibling = good_leaf(&kept);
    // TLS 1.3 (single-use tickets naming a session kept by the gateway) and TLS 1.2 (session
    // ids).
    let versions = [&rustls::version::TLS13, &rustls::version::TLS12];
    let clients: Vec<[ResumingClient; 3]> = versions
        .iter()
        .map(|version| {
            [
                ResumingClient::new(&gw, &of_deactivated, version),
                ResumingClient::new(&gw, &denied, version),
                ResumingClient::new(&gw, &sibling, version),
            ]
        })
        .collect();
    for set in &clients {
        for (client, id) in set.iter().zip([&of_deactivated, &denied, &sibling]) {
            let (kind, reply) = client.get(&gw).await;
            assert_eq!(kind, HandshakeKind::Full);
            assert_eq!(
                reply.admitted()["x-client-cert-sha256"][0],
                id.leaf_sha256.as_str()
            );
            // Resumed, the session is still the client's certificate, admitted as before.
            let (kind, reply) = client.get(&gw).await;
            assert_eq!(kind, HandshakeKind::Resumed, "the gateway resumes sessions");
            assert_eq!(
                reply.admitted()["x-client-cert-sha256"][0],
                id.leaf_sha256.as_str()
            );
        }
    }

    app.api.toggle_org("deactivate", &[&deactivated_id]).await;
    app.api
        .post(
            "/organization/revoked_certificates",
            serde_json::json!({"certificate": denied_leaf.cert.pem()}),
        )
        .await
        .ok();
    caught_up(&app, &gw).await;

    for [of_deactivated, denied, sibling_client] in &clients {
        let (kind, reply) = of_deactivated.get(&gw).await;
        assert_eq!(kind, HandshakeKind::Resumed);
        reply.refused(403, "client_certificate_untrusted");
        let (kind, reply) = denied.get(&gw).await;
        assert_eq!(kind, HandshakeKind::Resumed);
        reply.refused(403, "client_certificate_revoked");
        // A sibling of the deny-listed leaf, same CA, resumes and is admitted.
        let (kind, reply) = sibling_client.get(&gw).await;
        assert_eq!(kind, HandshakeKind::Resumed);
        assert_eq!(
            reply.admitted()["x-client-cert-sha256"][0],
            sibling.leaf_sha256.as_str()
        );
    }
}
