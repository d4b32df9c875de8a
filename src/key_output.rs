//! Where a new admin key's value goes, the one time it exists outside a client: a file
//! created for it (mode 0600, never overwriting anything), or else stdout. Never a log line,
//! in any log format.
//!
//! The destination is reserved *before* the key is made, so an existing file refuses the
//! command before anything changes, and a key is never made with nowhere to put it.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::Value;

use crate::domain::AdminKeySecret;

/// Where `serve` (bootstrap), `org create` and `key create` put a new key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum KeyOutput {
    /// Printed once, inside the command's JSON answer on stdout.
    #[default]
    Stdout,
    /// Written (the bare value and a newline) to a new file of mode 0600; the JSON answer on
    /// stdout then has no `value`.
    File(PathBuf),
}

impl KeyOutput {
    pub fn new(file: Option<PathBuf>) -> Self {
        file.map_or(KeyOutput::Stdout, KeyOutput::File)
    }

    /// Claims the destination: creates the file (0600, refusing an existing one).
    pub fn reserve(&self) -> anyhow::Result<Reserved> {
        match self {
            KeyOutput::Stdout => Ok(Reserved::Stdout),
            KeyOutput::File(path) => Ok(Reserved::File {
                file: create_private(path)?,
                path: path.clone(),
            }),
        }
    }
}

/// A claimed destination, to be given the key ([`Reserved::deliver`]) or released
/// ([`Reserved::abandon`]) when no key was made after all.
#[derive(Debug)]
pub enum Reserved {
    Stdout,
    File { file: std::fs::File, path: PathBuf },
}

impl Reserved {
    /// Puts the key where it was meant to go and prints `answer` on stdout: with a file, the
    /// `value` at `value_at` (a JSON pointer, e.g. `/admin_key/value`) is taken out of it first.
    pub fn deliver(
        self,
        mut answer: Value,
        value_at: &str,
        value: &AdminKeySecret,
    ) -> anyhow::Result<()> {
        if let Reserved::File { mut file, path } = self {
            let write = file
                .write_all(format!("{}\n", value.expose()).as_bytes())
                .and_then(|()| file.sync_all());
            write.with_context(|| format!("cannot write the admin key to {}", path.display()))?;
            if let Some((parent, field)) = value_at.rsplit_once('/') {
                if let Some(Value::Object(obj)) = answer.pointer_mut(parent) {
                    obj.remove(field);
                }
            }
        }
        let mut out = std::io::stdout().lock();
        writeln!(out, "{answer}")
            .and_then(|()| out.flush())
            .context("cannot print on stdout")
    }

    /// Removes the file reserved for a key that was not made.
    pub fn abandon(self) {
        if let Reserved::File { file, path } = self {
            drop(file);
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A new file only its owner can read and write; an existing path is refused.
fn create_private(path: &Path) -> anyhow::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow::anyhow!(
                "--admin-key-file {} already exists; refusing to overwrite it. Choose a new path (or move the old file away).",
                path.display()
            )
        } else {
            anyhow::anyhow!("cannot create --admin-key-file {}: {e}", path.display())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_private_new_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let out = KeyOutput::File(path.clone());
        let key = AdminKeySecret::generate();
        out.reserve()
            .unwrap()
            .deliver(
                serde_json::json!({"admin_key": {"value": key.expose()}}),
                "/admin_key/value",
                &key,
            )
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{}\n", key.expose())
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = out.reserve().unwrap_err().to_string();
        assert!(again.contains("already exists"), "{again}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{}\n", key.expose())
        );
        // An abandoned reservation leaves nothing behind.
        let other = KeyOutput::File(dir.path().join("other"));
        other.reserve().unwrap().abandon();
        assert!(!dir.path().join("other").exists());
    }
}
