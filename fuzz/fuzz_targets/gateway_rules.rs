//! The gateway's request rules before any trust work: the path rule
//! (`gateway::proxy::check_path`), the forwarded URI, the scope headers, the reserved and
//! hop-by-hop headers, and an upgrade that announces a body. Input: the request target on the
//! first line, then `name: value` header lines (lines that are no valid header are skipped).
//!
//! Properties beside no panic:
//! - a path `check_path` lets through cannot leave the upstream's prefix for an upstream that
//!   decodes it once, reads `\` as `/`, cuts segments at `;` and resolves dot segments (an
//!   oracle written independently of the rule: it decodes the whole path at once), and holds
//!   no control character; forwarded, it stays under the prefix;
//! - a scope header is one value, trimmed, non-empty and visible ASCII, or refused;
//! - which headers are reserved or scope headers does not depend on spelling `-` as `_`;
//! - after `strip_hop_by_hop`, no hop-by-hop header and none the `Connection` header named is
//!   left.
#![no_main]

use std::sync::OnceLock;

use axum::http::header::{HeaderMap, HeaderName, HeaderValue};
use axum::http::Uri;
use certgate::gateway::fuzzing::{
    announces_body, is_reserved, is_scope_header, single_header, uri_for,
};
use certgate::gateway::proxy::{check_path, strip_hop_by_hop, Upstream};
use libfuzzer_sys::fuzz_target;

const PREFIX: &str = "/prefix";

fn upstream() -> &'static Upstream {
    static UPSTREAM: OnceLock<Upstream> = OnceLock::new();
    UPSTREAM.get_or_init(|| Upstream::parse("http://upstream.test:8080/prefix/").expect("upstream"))
}

fn percent_decode(bytes: &[u8]) -> Vec<u8> {
    let hex = |b: u8| char::from(b).to_digit(16).map(|d| d as u8);
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// Whether an upstream that decodes `path` once (the whole of it), reads `\` as `/` and cuts
/// segments at `;` could be led anywhere but where the raw path points.
fn could_escape(path: &str) -> bool {
    let decoded = percent_decode(path.as_bytes());
    let raw_separators = path.bytes().filter(|&b| b == b'/').count();
    let separators = decoded.iter().filter(|&&b| b == b'/' || b == b'\\').count();
    if separators != raw_separators {
        return true;
    }
    if decoded.iter().any(|b| b.is_ascii_control()) {
        return true;
    }
    let Ok(text) = std::str::from_utf8(&decoded) else {
        return true;
    };
    text.split(['/', '\\'])
        .map(|segment| segment.split(';').next().unwrap_or_default())
        .any(|name| name == "." || name == "..")
}

fuzz_target!(|data: &[u8]| {
    let mut lines = data.split(|&b| b == b'\n');
    let target = String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
    let path = target.split('?').next().unwrap_or_default();

    if check_path(path).is_ok() {
        assert!(!could_escape(path), "{path:?} passed the path rule");
        if let Ok(uri) = target.parse::<Uri>() {
            if uri.path() == path && uri.scheme().is_none() {
                let out = uri_for(upstream(), &uri).expect("an admitted path is forwarded");
                assert!(out.path().starts_with(&format!("{PREFIX}/")), "{out}");
                assert_eq!(
                    out.authority().map(|a| a.as_str()),
                    Some("upstream.test:8080")
                );
                assert_eq!(out.query(), uri.query());
            }
        }
    }

    let mut headers = HeaderMap::new();
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.trim_ascii()),
            HeaderValue::from_bytes(value.trim_ascii()),
        ) else {
            continue;
        };
        headers.append(name, value);
    }

    for scope in ["openai-organization", "openai-project"] {
        let count = headers.get_all(scope).iter().count();
        match single_header(&headers, scope) {
            Ok(Some(value)) => {
                assert_eq!(count, 1);
                assert!(!value.is_empty() && value.trim() == value);
                assert!(value
                    .bytes()
                    .all(|b| (0x20..0x7f).contains(&b) || b == b'\t'));
            }
            Ok(None) => assert!(count <= 1),
            Err(_) => {
                let one_visible =
                    count == 1 && headers.get(scope).is_some_and(|v| v.to_str().is_ok());
                assert!(!one_visible, "a single visible-ASCII {scope} was refused");
            }
        }
    }

    for name in headers.keys() {
        let spelled: [String; 2] = [
            name.as_str().replace('_', "-"),
            name.as_str().replace('-', "_"),
        ];
        for other in spelled {
            let other = HeaderName::from_bytes(other.as_bytes()).expect("still a header name");
            assert_eq!(is_reserved(name), is_reserved(&other), "{name} / {other}");
            assert_eq!(
                is_scope_header(name),
                is_scope_header(&other),
                "{name} / {other}"
            );
        }
        if name.as_str().replace('_', "-").starts_with("x-certgate-") {
            assert!(is_reserved(name));
        }
    }

    let _ = announces_body(&headers);

    let named: Vec<String> = headers
        .get_all("connection")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .collect();
    let mut stripped = headers.clone();
    strip_hop_by_hop(&mut stripped);
    for gone in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ] {
        assert!(!stripped.contains_key(gone), "{gone} was forwarded");
    }
    for name in &named {
        if HeaderName::from_bytes(name.as_bytes()).is_ok() {
            assert!(
                !stripped.contains_key(name.as_str()),
                "{name} (named by Connection) was forwarded"
            );
        }
    }
    for (name, value) in &stripped {
        assert!(
            headers.get_all(name).iter().any(|v| v == value),
            "{name} was invented"
        );
    }
});
