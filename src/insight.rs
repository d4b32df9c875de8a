//! The check and rotate use case (spec §12.4, decisions.md D20, D21), called alike by the Admin
//! API (`POST /organization/certificates/check|rotate`) and the CLI (`certgate cert
//! check|rotate`). The check runs the gateway's own decision ([`trust::precheck`],
//! [`ChainPool::prepare`], [`trust::decide()`]) on the committed state. Answers and refusals
//! are domain-level: each edge renders them its own way (JSON and OpenAI's error body, or a
//! line on stderr with the same code).

use std::sync::{Arc, Mutex, PoisonError};

use rustls_pki_types::CertificateDer;

use crate::admission::{ChainPool, Prepare};
use crate::domain::{self, Actor, CertificateId, CertificateInclude, OrgId, Rotation};
use crate::ocsp::{self, OcspChecker, OcspSaid};
use crate::store::{Store, StoreError};
use crate::trust::{
    self, Admission, ChainChecks, PeerChain, Rejection, RejectionKind, Scope, TrustIndex,
};

/// The answer of a check: what the gateway would do with a request presenting the certificate.
#[derive(Debug)]
pub enum Check {
    /// Admitted, by the active CA `certificate` (named `name` now, if it still exists).
    Admitted {
        certificate: CertificateId,
        name: Option<String>,
        /// What the gateway would admit the client for, for a person.
        message: String,
        /// What the client's OCSP responder said, when the CA's `ocsp` mode is not `off`.
        ocsp: Option<OcspSaid>,
    },
    /// The gateway would refuse the certificate, with this refusal (its code and message), and
    /// what OCSP said when it was asked.
    Refused(Rejection, Option<OcspSaid>),
}

/// Why a check or a rotation could not be made (as opposed to a refusal of the certificate,
/// which is a [`Check::Refused`] answer).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// A rule refused the request (a malformed chain, an unknown id, …), or the database did
    /// not answer.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A request the gateway would refuse before looking at the certificate (an unknown or
    /// archived project), with the gateway's code (decisions.md D31).
    #[error("{0}")]
    Refused(Rejection),
}

impl From<domain::DomainError> for CheckError {
    fn from(e: domain::DomainError) -> Self {
        CheckError::Store(StoreError::Rule(e))
    }
}

impl CheckError {
    /// The `code` OpenAI's error body gives this refusal, if it has one: the rule's
    /// ([`domain::DomainError::code`]) or the gateway's ([`Rejection::code`]).
    pub fn code(&self) -> Option<&'static str> {
        match self {
            CheckError::Store(StoreError::Rule(d)) => d.code(),
            CheckError::Store(_) => None,
            CheckError::Refused(r) => Some(r.code()),
        }
    }
}

/// A rotation, as the API and `certgate cert rotate` make it: activate `to` wherever `from` is
/// active, and optionally retire `from`, in one transaction.
pub async fn rotate_certificate(
    store: &Store,
    org: &OrgId,
    from: &str,
    to: &str,
    retire_from: bool,
    actor: &Actor,
) -> Result<Rotation, CheckError> {
    let (from, to) = domain::parse_rotation_ids(from, to)?;
    let rotation = store
        .rotate_certificate(org, &from, &to, retire_from, actor)
        .await?;
    Ok(rotation)
}

/// Would the gateway admit a client presenting `certificate` (PEM: its leaf, then its
/// intermediates) to `org`, and `project` when given (read exactly like the gateway reads
/// `OpenAI-Project`: trimmed, empty meaning none)? Decided on the committed trust state at the
/// store's now. A refusal of the certificate is an answer ([`Check::Refused`] with the
/// gateway's code); a request the gateway would refuse before looking at the certificate (an
/// unknown or archived project) is an error with the gateway's code.
pub async fn check_client(
    store: &Store,
    cache: &TrustCache,
    org: &OrgId,
    certificate: &str,
    project: Option<&str>,
) -> Result<Check, CheckError> {
    let chain = crate::x509::parse_client_chain(certificate)?;
    let project = project
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned);
    let index = cache.current(store).await?;
    let now = store.now();
    let (decided, said) =
        decide_now(cache, &index, chain, org.as_str(), project.as_deref(), now).await;
    match decided {
        Ok(admission) => admitted(store, org, project.as_deref(), &admission, said).await,
        Err(rejection) if rejection.kind() == RejectionKind::Forbidden => {
            Ok(Check::Refused(rejection, said))
        }
        Err(rejection) => Err(CheckError::Refused(rejection)),
    }
}

/// The gateway's decision for one request from a fresh connection presenting `chain`: the
/// checks that need no chain work, then every chain check and client filter the decision needs
/// (off the async workers, on a bounded pool, as the gateway runs them), then the decision,
/// then the OCSP step when the admitting CA's mode is not `off` (what OCSP said comes back
/// with the decision).
async fn decide_now(
    cache: &TrustCache,
    index: &Arc<TrustIndex>,
    chain: Vec<Vec<u8>>,
    organization: &str,
    project: Option<&str>,
    now: i64,
) -> (Result<Admission, Rejection>, Option<OcspSaid>) {
    let pool = cache.pool();
    let peer = PeerChain::new(chain.into_iter().map(CertificateDer::from).collect());
    let scope = Scope {
        organization,
        project,
    };
    if let Err(rejection) = trust::precheck(index, peer.as_ref(), scope) {
        return (Err(rejection), None);
    }
    let Some(peer) = peer.map(Arc::new) else {
        return (Err(Rejection::CertificateRequired), None);
    };
    let mut checks = ChainChecks::default();
    let work = Prepare {
        index,
        chain: &peer,
        scope,
        now,
        algs: trust::SIGNATURE_ALGORITHMS,
        paths: None,
        inline_leaf_check: false,
    };
    pool.prepare(work, &mut checks).await;
    let admission = match trust::decide(index, Some(&peer), &checks, scope, now) {
        Ok(admission) => admission,
        Err(rejection) => return (Err(rejection), None),
    };
    let Some(subject) = index.ocsp_subject(&admission, &peer, &checks) else {
        return (Ok(admission), None);
    };
    let (said, verdict) = ocsp::judge(&cache.ocsp, &subject, now).await;
    (verdict.map(|()| admission), Some(said))
}

async fn admitted(
    store: &Store,
    org: &OrgId,
    project: Option<&str>,
    admission: &Admission,
    ocsp: Option<OcspSaid>,
) -> Result<Check, CheckError> {
    let id = CertificateId::trusted(admission.certificate_id.clone());
    // The name as it is now (names are not part of the trust state). The CA cannot be deleted
    // while active, but it may have been deactivated and deleted since the decision.
    let name = match store
        .get_certificate(org, &id, CertificateInclude::default())
        .await
    {
        Ok(c) => c.name,
        Err(StoreError::Rule(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let named = match &name {
        Some(n) => format!("'{n}' ({id})"),
        None => id.to_string(),
    };
    let scope = match project {
        Some(p) => format!("requests to project '{p}'"),
        None => "requests to the organization".to_owned(),
    };
    Ok(Check::Admitted {
        certificate: id,
        name,
        message: format!(
            "The client certificate is admitted for {scope}: it chains to the active CA certificate {named}."
        ),
        ocsp,
    })
}

/// The trust index of the committed state, rebuilt only when the trust generation moved (every
/// change of who may connect moves it, in its transaction), from the same snapshot the
/// gateway reads ([`Store::trust_snapshot`]): whatever stages the gateway's decision gains,
/// the check sees the same state. Decoded anchors are reused across rebuilds, as on the
/// gateway.
#[derive(Default)]
pub struct TrustCache {
    index: Mutex<Arc<TrustIndex>>,
    /// Where the check's chain work and client filters run, and written filters are checked:
    /// bounded, off the async workers.
    pool: ChainPool,
    /// The check's OCSP answers (as the gateway's: same rules, its own cache).
    ocsp: OcspChecker,
}

impl TrustCache {
    /// A cache whose OCSP requests may reach non-public responders when `allow_private`
    /// (`--fetch-allow-private`).
    pub fn new(allow_private: bool) -> Self {
        TrustCache {
            ocsp: OcspChecker::new(allow_private, ocsp::OcspMetrics::default()),
            ..TrustCache::default()
        }
    }

    /// The bounded pool of this process's API for CPU work on tenants' input.
    pub fn pool(&self) -> &ChainPool {
        &self.pool
    }

    async fn current(&self, store: &Store) -> Result<Arc<TrustIndex>, StoreError> {
        let generation = store.trust_generation().await?;
        let cached = self
            .index
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if cached.generation() == Some(generation) {
            return Ok(cached);
        }
        let snapshot = store.trust_snapshot(&cached.crl_versions()).await?;
        let index = tokio::task::spawn_blocking(move || TrustIndex::build(&snapshot, &cached))
            .await
            .map_err(|e| StoreError::Internal(Box::new(e)))?;
        let index = Arc::new(index);
        let mut slot = self.index.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.generation() < index.generation() {
            *slot = index.clone();
        }
        Ok(index)
    }
}
