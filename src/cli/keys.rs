//! `certgate key create|list|revoke`: an organization's admin keys, managed directly on the
//! database (the audit log's actor is null). The way back in when every key is lost or leaked.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Subcommand;

use super::args::{DbArgs, KeyFileArgs};
use crate::api::dto::{AdminKeyCreated, AdminKeyDeleted, AdminKeyObject, List};
use crate::domain::{
    self, Actor, DomainError, KeyId, Limit, Order, OrgId, PageRequest, SystemClock,
};
use crate::key_output::KeyOutput;
use crate::store::{Store, StoreError};

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Create an admin key; prints the create response (JSON), the value included unless
    /// --admin-key-file is given.
    Create {
        /// The organization (org-…), see `certgate org list`.
        #[arg(long)]
        org: String,
        /// The key's name.
        #[arg(long)]
        name: String,
        /// Seconds until the key stops working (1 to 31536000); no expiry when absent.
        #[arg(long, value_name = "SECONDS")]
        expires_in: Option<i64>,
        #[command(flatten)]
        key_file: KeyFileArgs,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List an organization's admin keys (JSON; never their values).
    List {
        #[arg(long)]
        org: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Revoke (delete) an admin key: it stops working on every replica from the next request.
    Revoke {
        /// The key's id (key_…).
        key_id: String,
        /// Revoke it even if it is the organization's last unexpired key.
        #[arg(long, value_parser = clap::builder::BoolishValueParser::new(), default_value_t = false, num_args = 0..=1, default_missing_value = "true")]
        force: bool,
        #[command(flatten)]
        db: DbArgs,
    },
}

pub(super) async fn run(command: KeyCommand) -> anyhow::Result<()> {
    match command {
        KeyCommand::Create {
            org,
            name,
            expires_in,
            key_file,
            db,
        } => create(&org, name, expires_in, key_file.admin_key_file, &db).await,
        KeyCommand::List { org, db } => {
            let org = OrgId::parse(&org)?;
            let store = Store::open(&db.options(), Arc::new(SystemClock)).await?;
            super::say_if_created(&store);
            let listed = all_keys(&store, &org).await;
            store.close().await;
            println!("{}", serde_json::to_string(&listed?)?);
            Ok(())
        }
        KeyCommand::Revoke { key_id, force, db } => {
            let id = KeyId::parse(&key_id)?;
            let store = Store::open(&db.options(), Arc::new(SystemClock)).await?;
            super::say_if_created(&store);
            let revoked = async {
                let org = store.admin_key_organization(&id).await?;
                store
                    .delete_admin_key(&org, &id, &Actor::System, force)
                    .await
            }
            .await;
            store.close().await;
            match revoked {
                Ok(()) => {}
                Err(StoreError::Rule(e @ DomainError::LastAdminKey(_))) => {
                    anyhow::bail!("{e} To revoke it anyway, add --force.")
                }
                Err(e) => return Err(e.into()),
            }
            println!(
                "{}",
                serde_json::to_string(&AdminKeyDeleted::new(id.into_string()))?
            );
            Ok(())
        }
    }
}

async fn create(
    org: &str,
    name: String,
    expires_in: Option<i64>,
    key_file: Option<PathBuf>,
    db: &DbArgs,
) -> anyhow::Result<()> {
    // Everything that can be refused is checked before the destination is claimed, and the
    // destination before the key is made.
    let org = OrgId::parse(org)?;
    let name = domain::parse_required_name("name", name).context("--name")?;
    let expires_in = expires_in
        .map(|s| domain::parse_key_lifetime("expires_in_seconds", s))
        .transpose()
        .context("--expires-in")?;
    let reserved = KeyOutput::new(key_file).reserve()?;
    let made = async {
        let store = Store::open(&db.options(), Arc::new(SystemClock)).await?;
        super::say_if_created(&store);
        let made = match store.get_organization(&org).await {
            Ok(_) => {
                store
                    .create_admin_key(&org, &name, expires_in, &Actor::System)
                    .await
            }
            Err(e) => Err(e),
        };
        store.close().await;
        anyhow::Ok(made?)
    }
    .await;
    match made {
        Ok(new) => {
            let answer = serde_json::to_value(AdminKeyCreated {
                value: new.value.expose().to_owned(),
                key: AdminKeyObject::from(new.key),
            })?;
            reserved.deliver(answer, "/value", &new.value)
        }
        Err(e) => {
            reserved.abandon();
            Err(e)
        }
    }
}

/// Every key of the organization that is not deleted, oldest first, in one list.
async fn all_keys(store: &Store, org: &OrgId) -> anyhow::Result<List<AdminKeyObject>> {
    store.get_organization(org).await?;
    let mut items = Vec::new();
    let mut page = PageRequest {
        limit: Limit::parse("100")?,
        after: None,
        order: Order::Asc,
    };
    loop {
        let got = store.list_admin_keys(org, &page).await?;
        page.after = got.items.last().map(|k| k.id.to_string());
        items.extend(got.items);
        if !got.has_more {
            break;
        }
    }
    Ok(List::from_page(
        domain::Page {
            items,
            has_more: false,
        },
        AdminKeyObject::from,
    ))
}
