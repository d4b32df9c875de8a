//! The client-chain decision (`trust::precheck`, the chain checks, the client filters,
//! `trust::decide`) over any chain, against one small fixed index built once: an org-wide
//! root with a CRL, a project-level intermediate with a client filter, an unrelated org-wide
//! root, and a deny-listed leaf. Input: `[scope][u16 length][DER]…` (at most 6 certificates).
//!
//! Properties beside no panic:
//! - the gateway's way (the chain pool with the cross-connection path cache, a one-signature
//!   leaf checked inline), the check endpoint's (the pool, no cache) and the plain one
//!   (`ChainChecks::fill`, `fill_filters`) decide alike, and alike twice;
//! - revocation and filters only narrow: against the same index without deny-list, CRL and
//!   filter, an admission is still one (by the same or a smaller certificate id), a refusal
//!   as revoked or filtered becomes an admission, and any other refusal stays the same.
#![no_main]

use std::sync::{Arc, OnceLock};

use certgate::admission::{ChainPool, Prepare};
use certgate::trust::{
    self, Admission, ChainChecks, CheckCache, PeerChain, Rejection, Scope, TrustAnchor, TrustIndex,
    TrustSnapshot,
};
use certgate::trust::{FetchedCrl, StoredCrl};
use certgate_fuzz::{
    frames, runtime, CA_INTERMEDIATE, CA_OTHER, CA_ROOT, CRL_ROOT, DENIED_LEAF_SHA256, NOW,
};
use libfuzzer_sys::fuzz_target;
use rustls_pki_types::CertificateDer;

const ORG: &str = "org-fuzz";
const PROJECT: &str = "proj_fuzz";
/// The intermediate's filter: admits every leaf of it but `filteredout`.
const FILTER: &str = r#"cert.subject_cn != "filteredout""#;

fn anchor(id: &str, pem: &str, org_wide: bool, filter: Option<&str>) -> TrustAnchor {
    let parsed = certgate::x509::parse_ca_pem(pem, NOW).expect("a fixture CA");
    TrustAnchor {
        certificate_id: id.to_owned(),
        org_id: ORG.to_owned(),
        org_wide,
        projects: if org_wide {
            Vec::new()
        } else {
            vec![PROJECT.to_owned()]
        },
        pem: pem.to_owned(),
        subject_der: hex::decode(parsed.subject_der).expect("hex"),
        ski: hex::decode(parsed.ski).expect("hex"),
        valid_at: parsed.valid_at,
        expires_at: parsed.expires_at,
        client_filter: filter.map(str::to_owned),
        // No network in a fuzz run: the decision's OCSP step is the gateway's, not fuzzed here.
        ocsp: certgate::domain::OcspMode::Off,
    }
}

/// The index with everything (`full`) and the same without deny-list, CRL and filter.
fn indexes() -> &'static (Arc<TrustIndex>, Arc<TrustIndex>) {
    static INDEXES: OnceLock<(Arc<TrustIndex>, Arc<TrustIndex>)> = OnceLock::new();
    INDEXES.get_or_init(|| {
        let build = |narrowing: bool| {
            let root_sha = certgate::x509::parse_ca_pem(CA_ROOT, NOW)
                .expect("root")
                .sha256;
            let snapshot = TrustSnapshot {
                generation: 1,
                anchors: vec![
                    anchor("cert_root", CA_ROOT, true, None),
                    anchor(
                        "cert_inter",
                        CA_INTERMEDIATE,
                        false,
                        narrowing.then_some(FILTER),
                    ),
                    anchor("cert_other", CA_OTHER, true, None),
                ],
                organizations: vec![ORG.to_owned()],
                projects: vec![(ORG.to_owned(), PROJECT.to_owned())],
                revoked: if narrowing {
                    vec![(ORG.to_owned(), DENIED_LEAF_SHA256.trim().to_owned())]
                } else {
                    Vec::new()
                },
                crls: if narrowing {
                    vec![StoredCrl {
                        org_id: ORG.to_owned(),
                        certificate_id: "cert_root".to_owned(),
                        issuer_sha256: root_sha,
                        content: "fixture".to_owned(),
                        fetched: Some(FetchedCrl {
                            bytes: CRL_ROOT.len() as u64,
                            serials: certgate::crl::revoked_serials(CRL_ROOT).map(Arc::new),
                        }),
                    }]
                } else {
                    Vec::new()
                },
            };
            Arc::new(TrustIndex::build(&snapshot, &TrustIndex::empty()))
        };
        (build(true), build(false))
    })
}

fn pool() -> &'static ChainPool {
    static POOL: OnceLock<ChainPool> = OnceLock::new();
    POOL.get_or_init(|| ChainPool::new(1))
}

fn paths() -> &'static CheckCache {
    static PATHS: OnceLock<CheckCache> = OnceLock::new();
    PATHS.get_or_init(|| CheckCache::new(1024))
}

/// The plain decision: every check here and now.
fn plain(
    index: &TrustIndex,
    peer: Option<&PeerChain>,
    scope: Scope<'_>,
) -> Result<Admission, Rejection> {
    trust::precheck(index, peer, scope)?;
    let mut checks = ChainChecks::default();
    if let Some(peer) = peer {
        checks.fill(
            index,
            peer,
            scope.organization,
            NOW,
            trust::SIGNATURE_ALGORITHMS,
        );
        checks.fill_filters(index, peer, scope, NOW);
    }
    trust::decide(index, peer, &checks, scope, NOW)
}

/// Through the chain pool, as the gateway (`gateway == true`) or the check endpoint does.
fn pooled(
    index: &Arc<TrustIndex>,
    peer: Option<&Arc<PeerChain>>,
    scope: Scope<'_>,
    gateway: bool,
) -> Result<Admission, Rejection> {
    trust::precheck(index, peer.map(|p| &**p), scope)?;
    let mut checks = ChainChecks::default();
    if let Some(chain) = peer {
        let work = Prepare {
            index,
            chain,
            scope,
            now: NOW,
            algs: trust::SIGNATURE_ALGORITHMS,
            paths: gateway.then(paths),
            inline_leaf_check: gateway,
        };
        runtime().block_on(pool().prepare(work, &mut checks));
    }
    trust::decide(index, peer.map(|p| &**p), &checks, scope, NOW)
}

fuzz_target!(|data: &[u8]| {
    let Some((&scope_byte, rest)) = data.split_first() else {
        return;
    };
    let scope = Scope {
        organization: if scope_byte & 4 == 0 {
            ORG
        } else {
            "org-unknown"
        },
        project: match scope_byte & 3 {
            0 | 1 => None,
            2 => Some(PROJECT),
            _ => Some("proj_unknown"),
        },
    };
    let certs: Vec<CertificateDer<'static>> = frames(rest, 6)
        .into_iter()
        .map(CertificateDer::from)
        .collect();
    let peer = if scope_byte & 0x80 != 0 {
        None
    } else {
        PeerChain::new(certs).map(Arc::new)
    };

    let (full, bare) = indexes();
    let decided = plain(full, peer.as_deref(), scope);
    assert_eq!(
        decided,
        plain(full, peer.as_deref(), scope),
        "not deterministic"
    );
    // The pool waits at most 50 ms for a filter verdict once its job runs; on a loaded machine
    // one late verdict (counted as false) is not a finding, two in a row are.
    for gateway in [true, false] {
        let pooled_once = pooled(full, peer.as_ref(), scope, gateway);
        if pooled_once != decided {
            assert_eq!(
                pooled(full, peer.as_ref(), scope, gateway),
                decided,
                "the {} decides otherwise",
                if gateway { "gateway" } else { "check endpoint" }
            );
        }
    }

    let unnarrowed = plain(bare, peer.as_deref(), scope);
    match (&decided, &unnarrowed) {
        (Ok(a), Ok(b)) => assert!(b.certificate_id <= a.certificate_id),
        (Ok(_), Err(e)) => {
            panic!("admitted, but refused ({e:?}) without deny-list, CRL and filter")
        }
        (Err(Rejection::Revoked | Rejection::Filtered), other) => {
            assert!(
                other.is_ok(),
                "{decided:?} without deny-list, CRL and filter: {other:?}"
            )
        }
        (Err(e), other) => assert_eq!(&Err(*e), other),
    }
});
