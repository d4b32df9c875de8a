//! The hostile tenant's CRLs, written by hand (200,000 entries take milliseconds, where rcgen
//! takes seconds), and how long certgate takes to parse one.

use std::path::Path;
use std::time::Instant;

use rustls_pki_types::PrivateKeyDer;
use serde_json::json;

use super::{at, hostile_ids, now, read_setup, BoxError, CHURNED};

fn tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = contents.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(contents);
    out
}

fn utc_time(unix: i64) -> Result<Vec<u8>, BoxError> {
    let t = at(unix)?;
    let text = format!(
        "{:02}{:02}{:02}{:02}{:02}{:02}Z",
        t.year() % 100,
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    Ok(tlv(0x17, text.as_bytes()))
}

/// A complete CRL of the CA in `DIR/hostile/ca-I.*`, revoking `entries` serials, signed with
/// the CA's key (ECDSA P-256 through rustls's ring signer), with cRLNumber `number`. Both
/// versions of a CA share `this_update`, so either may replace the other.
fn hostile_crl(
    dir: &Path,
    i: usize,
    entries: usize,
    number: u8,
    this_update: i64,
) -> Result<Vec<u8>, BoxError> {
    use x509_parser::prelude::FromDer;
    let hdir = dir.join("hostile");
    let ca_der = std::fs::read(hdir.join(format!("ca-{i}.der")))?;
    let (_, ca) = x509_parser::certificate::X509Certificate::from_der(&ca_der)?;
    let alg = tlv(
        0x30,
        &tlv(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]),
    );
    let revoked_at = utc_time(this_update - 3600)?;
    let mut list = Vec::with_capacity(entries * 28);
    for n in 0..entries as u64 {
        // Positive 8-byte serials no real client has (rcgen gives leaves 20 random bytes).
        let mut serial = vec![0x02, 0x08];
        serial.extend((n | (0x42 << 56)).to_be_bytes());
        let mut entry = serial;
        entry.extend_from_slice(&revoked_at);
        list.extend(tlv(0x30, &entry));
    }
    // cRLNumber (2.5.29.20).
    let crl_number = tlv(
        0x30,
        &[
            tlv(0x06, &[0x55, 0x1d, 0x14]),
            tlv(0x04, &[0x02, 0x01, number]),
        ]
        .concat(),
    );
    let tbs = tlv(
        0x30,
        &[
            vec![0x02, 0x01, 0x01],
            alg.clone(),
            ca.subject().as_raw().to_vec(),
            utc_time(this_update)?,
            utc_time(this_update + 7 * 86_400)?,
            tlv(0x30, &list),
            tlv(0xa0, &tlv(0x30, &crl_number)),
        ]
        .concat(),
    );
    let key = PrivateKeyDer::Pkcs8(std::fs::read(hdir.join(format!("ca-{i}.key")))?.into());
    let signer = rustls::crypto::ring::sign::any_ecdsa_type(&key)?
        .choose_scheme(&[rustls::SignatureScheme::ECDSA_NISTP256_SHA256])
        .ok_or("no signer")?;
    let mut bits = vec![0u8];
    bits.extend(signer.sign(&tbs)?);
    Ok(tlv(0x30, &[tbs, alg, tlv(0x03, &bits)].concat()))
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
