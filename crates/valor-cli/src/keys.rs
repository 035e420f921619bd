//! `valor keys create|list|revoke`: the keys file of `valor serve`.
//! `create` prints the new key once, on standard output; the file keeps
//! only its id and the SHA-256 of its secret.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use valor_serve::keys::parse_expiry;
use valor_serve::{KeysFile, Scope};

use crate::Outcome;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a key and print it (once: only its hash is stored).
    Create(CreateArgs),
    /// List the keys of a keys file (ids, scopes, expiry; never secrets).
    List(FileArgs),
    /// Revoke a key by id; a running server stops accepting it on SIGHUP.
    Revoke(RevokeArgs),
}

#[derive(Debug, Args)]
pub struct FileArgs {
    /// The keys file (TOML).
    #[arg(long, value_name = "FILE")]
    pub keys: PathBuf,
    /// JSON output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The keys file (TOML); made if missing.
    #[arg(long, value_name = "FILE")]
    pub keys: PathBuf,
    /// Comma-separated scopes: predict, explain, feedback, audit:read, admin.
    #[arg(long, value_name = "LIST", value_delimiter = ',', required = true)]
    pub scopes: Vec<Scope>,
    /// Expiry: a span from now (30d, 12h) or an RFC 3339 time.
    #[arg(long, value_name = "WHEN")]
    pub expires: Option<String>,
    /// Requests per second this key may send (also its burst); more are 429.
    #[arg(long, value_name = "N")]
    pub rate_limit: Option<u32>,
    /// Who holds the key (a note kept in the file).
    #[arg(long, value_name = "TEXT")]
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The keys file (TOML).
    #[arg(long, value_name = "FILE")]
    pub keys: PathBuf,
    /// The key's id (the 16 hex digits after `valor_`).
    pub id: String,
}

pub fn run(cmd: KeysCommand) -> Result<Outcome> {
    match cmd {
        KeysCommand::Create(a) => {
            let mut file = KeysFile::load(&a.keys, true)?;
            let expires = a
                .expires
                .as_deref()
                .map(|s| parse_expiry(s, SystemTime::now()))
                .transpose()
                .map_err(|e| anyhow::anyhow!("--expires: {e}"))?;
            if expires.is_some_and(|e| e <= SystemTime::now()) {
                bail!("--expires: the time has already passed");
            }
            let scopes: BTreeSet<Scope> = a.scopes.into_iter().collect();
            let new = file.create(scopes, expires, a.rate_limit, a.name)?;
            file.save(&a.keys)?;
            eprintln!(
                "keys: added key {} ({}) to {}; it is shown once, store it now",
                new.record.id,
                scope_list(&new.record.scopes),
                a.keys.display()
            );
            println!("{}", new.key);
        }
        KeysCommand::List(a) => {
            let file = KeysFile::load(&a.keys, false)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&file.keys)?);
            } else {
                println!("id\tscopes\tcreated\texpires\trate_limit_per_s\trevoked\tname");
                for k in &file.keys {
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                        k.id,
                        scope_list(&k.scopes),
                        k.created,
                        k.expires.as_deref().unwrap_or("-"),
                        k.rate_limit_per_s.map_or("-".into(), |r| r.to_string()),
                        k.revoked.as_deref().unwrap_or("-"),
                        k.name.as_deref().unwrap_or("-"),
                    );
                }
            }
        }
        KeysCommand::Revoke(a) => {
            let mut file = KeysFile::load(&a.keys, false)?;
            let id = file.revoke(&a.id, &a.keys)?.id.clone();
            file.save(&a.keys)?;
            eprintln!(
                "keys: revoked {id} in {}; send SIGHUP to a running `valor serve` (kill -HUP PID) to apply it",
                a.keys.display()
            );
        }
    }
    Ok(Outcome::Ok)
}

fn scope_list(scopes: &BTreeSet<Scope>) -> String {
    scopes
        .iter()
        .map(|s| s.name())
        .collect::<Vec<_>>()
        .join(",")
}
