//! `certgate cert check|rotate`: the check and rotate use case of the API's endpoints
//! ([`crate::insight`], decisions.md D20, D21), run directly on the database (the audit log's
//! actor is null), printed in the API's wire shapes.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Subcommand;

use super::args::DbArgs;
use crate::api::dto::{CertificateCheck, RotationObject};
use crate::domain::{Actor, OrgId, SystemClock};
use crate::insight::{check_client, rotate_certificate, Check, CheckError, TrustCache};
use crate::store::Store;

/// The exit status of `cert check` for a certificate the gateway would refuse (the answer is
/// still printed); 0 means admitted, 1 that the check itself failed.
const EXIT_REFUSED: i32 = 2;

#[derive(Subcommand, Debug)]
pub enum CertCommand {
    /// Would the gateway admit a client presenting this certificate? Prints the check answer
    /// (JSON); exits 0 when admitted, 2 when refused, 1 when the check could not be made.
    Check {
        /// The organization (org-…) the requests are for, see `certgate org list`.
        #[arg(long)]
        org: String,
        /// The project (proj_…) the requests name in OpenAI-Project, if any.
        #[arg(long)]
        project: Option<String>,
        /// PEM file: the client certificate, optionally followed by its intermediates.
        client_pem: PathBuf,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Activate TO wherever FROM is active (organization and unarchived projects), in one
    /// transaction; prints the rotation answer (JSON).
    Rotate {
        /// The organization (org-…).
        #[arg(long)]
        org: String,
        /// The certificate being replaced (cert_…).
        #[arg(long)]
        from: String,
        /// The certificate taking over (cert_…).
        #[arg(long)]
        to: String,
        /// Also deactivate FROM in those scopes.
        #[arg(long, value_parser = clap::builder::BoolishValueParser::new(), default_value_t = false, num_args = 0..=1, default_missing_value = "true")]
        retire_from: bool,
        #[command(flatten)]
        db: DbArgs,
    },
}

pub(super) async fn run(command: CertCommand) -> anyhow::Result<()> {
    match command {
        CertCommand::Check {
            org,
            project,
            client_pem,
            db,
        } => {
            let org = OrgId::parse(&org)?;
            let pem = std::fs::read_to_string(&client_pem)
                .with_context(|| format!("cannot read {}", client_pem.display()))?;
            let answer = with_store(&db, &org.clone(), |store| async move {
                check_client(
                    &store,
                    &TrustCache::default(),
                    &org,
                    &pem,
                    project.as_deref(),
                )
                .await
            })
            .await?;
            let refused = matches!(answer, Check::Refused(..));
            println!(
                "{}",
                serde_json::to_string(&CertificateCheck::from(answer))?
            );
            if refused {
                std::io::stdout().flush()?;
                std::process::exit(EXIT_REFUSED);
            }
            Ok(())
        }
        CertCommand::Rotate {
            org,
            from,
            to,
            retire_from,
            db,
        } => {
            let org = OrgId::parse(&org)?;
            let answer = with_store(&db, &org.clone(), |store| async move {
                rotate_certificate(&store, &org, &from, &to, retire_from, &Actor::System).await
            })
            .await?;
            println!("{}", serde_json::to_string(&RotationObject::from(answer))?);
            Ok(())
        }
    }
}

/// Opens the database, checks that `org` exists, runs `work`, closes the database. A refusal
/// is reported with its code ([`CheckError::code`]), the one the API answers with.
async fn with_store<T, F, Fut>(db: &DbArgs, org: &OrgId, work: F) -> anyhow::Result<T>
where
    F: FnOnce(Store) -> Fut,
    Fut: std::future::Future<Output = Result<T, CheckError>>,
{
    let store = Store::open(&db.options(), Arc::new(SystemClock)).await?;
    let done = match store.get_organization(org).await {
        Ok(_) => work(store.clone()).await.map_err(|e| match e.code() {
            Some(code) => anyhow::anyhow!("{code}: {e}"),
            None => anyhow::Error::from(e),
        }),
        Err(e) => Err(e.into()),
    };
    store.close().await;
    done
}
