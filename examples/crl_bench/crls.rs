//! The hostile tenant's CRLs (made by the benchmarks' shared `pki::crl`, by hand: 200,000
//! entries take milliseconds, where rcgen takes seconds), and how long certgate takes to parse
//! one.

use std::path::Path;
use std::time::Instant;

use serde_json::json;

use super::pki::{crl, now, CrlSpec};
use super::{hostile_ids, read_setup, BoxError, CHURNED};

/// A complete CRL of the CA in `DIR/hostile/ca-I.*`, revoking `entries` serials, with
/// cRLNumber `number`. Both versions of a CA share `this_update`, so either may replace the
/// other.
fn hostile_crl(
    dir: &Path,
    i: usize,
    entries: usize,
    number: u8,
    this_update: i64,
) -> Result<Vec<u8>, BoxError> {
    let hdir = dir.join("hostile");
    let ca_der = std::fs::read(hdir.join(format!("ca-{i}.der")))?;
    let key = std::fs::read(hdir.join(format!("ca-{i}.key")))?;
    let spec = CrlSpec {
        number,
        this_update,
        next_update: this_update + 7 * 86_400,
        ..CrlSpec::simple(entries)
    };
    crl(&ca_der, &key, &spec)
}

pub(crate) fn crl_path(dir: &Path, i: usize, version: u8) -> std::path::PathBuf {
    dir.join("crls").join(format!("ca-{i}-v{version}.der"))
}

pub(crate) fn crls(dir: &Path, entries: usize) -> Result<(), BoxError> {
    let n = hostile_ids(&read_setup(dir)?).len();
    std::fs::create_dir_all(dir.join("crls"))?;
    let started = Instant::now();
    let this_update = now() - 3600;
    let (mut made, mut bytes) = (0, 0);
    for i in 0..n {
        for version in 0..if i < CHURNED { 2 } else { 1 } {
            let path = crl_path(dir, i, version);
            if !path.exists() {
                let der = hostile_crl(dir, i, entries, version + 1, this_update)?;
                bytes += der.len();
                std::fs::write(path, der)?;
                made += 1;
            }
        }
    }
    println!(
        "{}",
        json!({"crls_made": made, "bytes": bytes, "seconds": started.elapsed().as_secs_f64()})
    );
    Ok(())
}

pub(crate) fn parse(dir: &Path) -> Result<(), BoxError> {
    use base64::Engine as _;
    let der = std::fs::read(crl_path(dir, 0, 0))?;
    let text = base64::engine::general_purpose::STANDARD.encode(&der);
    let mb = der.len() as f64 / 1e6;
    let t = Instant::now();
    let parsed = certgate::crl::parse_crl(&text, now())?;
    let upload_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let serials = certgate::crl::revoked_serials(&der)?;
    let gateway_s = t.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({"crl_bytes": der.len(), "entries": parsed.revoked_count,
               "upload_check_ms": upload_s * 1000.0, "upload_check_mb_per_s": mb / upload_s,
               "gateway_parse_ms": gateway_s * 1000.0, "gateway_parse_mb_per_s": mb / gateway_s,
               "serial_set_bytes_per_entry": serials.heap_bytes() as f64 / serials.len() as f64})
    );
    Ok(())
}
