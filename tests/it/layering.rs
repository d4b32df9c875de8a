//! The layering rules ARCHITECTURE.md states, enforced: every source file under `src/` is read,
//! its comments dropped, and each reference to another module of the crate (`crate::x…`,
//! `use crate::{x, …}`) or to an outside crate is held to its module's rules. A rule broken
//! by a later change fails here, naming the file and the reference.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// A module's rules: the crate modules and outside crates it must not name. `allowed_paths`
/// are exceptions within a forbidden module (a path prefix, such as `api::dto`).
struct Rule {
    module: &'static str,
    no_modules: &'static [&'static str],
    allowed_paths: &'static [&'static str],
    no_crates: &'static [&'static str],
}

/// Every top-level module of the crate, for rules that forbid "any other".
const ALL: &[&str] = &[
    "admission",
    "api",
    "authz",
    "cli",
    "crl",
    "domain",
    "fetch",
    "gateway",
    "insight",
    "key_output",
    "metrics",
    "ocsp",
    "openai_error",
    "runtime",
    "serve",
    "store",
    "telemetry",
    "trust",
    "x509",
];

/// Crates that do I/O or speak a protocol: what the pure modules must not name.
const IO_CRATES: &[&str] = &[
    "axum",
    "hyper",
    "hyper_util",
    "sqlx",
    "rusqlite",
    "tokio",
    "rustls",
    "tower",
];

const RULES: &[Rule] = &[
    // The rules themselves: no I/O, no other module.
    Rule {
        module: "domain",
        no_modules: ALL,
        allowed_paths: &[],
        no_crates: &[
            "axum",
            "hyper",
            "sqlx",
            "rusqlite",
            "tokio",
            "rustls",
            "serde",
            "serde_json",
        ],
    },
    // Pure parsers: the domain's vocabulary and nothing else.
    Rule {
        module: "x509",
        no_modules: &[
            "api", "cli", "crl", "gateway", "metrics", "runtime", "serve", "store", "trust",
        ],
        allowed_paths: &[],
        no_crates: IO_CRATES,
    },
    Rule {
        module: "crl",
        no_modules: &[
            "api", "cli", "gateway", "metrics", "runtime", "serve", "store", "trust",
        ],
        allowed_paths: &[],
        no_crates: IO_CRATES,
    },
    // The one decision: no HTTP, SQL, sockets or TLS stack.
    Rule {
        module: "trust",
        no_modules: &[
            "api", "cli", "gateway", "metrics", "runtime", "serve", "store",
        ],
        allowed_paths: &[],
        no_crates: &["axum", "hyper", "sqlx", "rusqlite", "rustls", "tokio"],
    },
    // The decision's expensive work, shared by the gateway and the check endpoint: it knows
    // neither of them, nor the database.
    Rule {
        module: "admission",
        no_modules: &["api", "cli", "gateway", "serve", "store"],
        allowed_paths: &[],
        no_crates: &["axum", "hyper", "sqlx", "rusqlite", "rustls"],
    },
    // The check and rotate use case: the API and the CLI call it, so it knows neither, nor the
    // gateway (it runs the gateway's decision through `trust` and `admission`).
    Rule {
        module: "insight",
        no_modules: &["api", "cli", "gateway", "metrics", "runtime", "serve"],
        allowed_paths: &[],
        no_crates: &["axum", "hyper", "rustls"],
    },
    // The Admin API never reaches into the gateway (nor the gateway into it).
    Rule {
        module: "api",
        no_modules: &["cli", "gateway", "serve"],
        allowed_paths: &[],
        no_crates: &["rustls", "tokio_rustls", "hyper_rustls"],
    },
    Rule {
        module: "gateway",
        no_modules: &["api", "cli", "serve"],
        allowed_paths: &[],
        no_crates: &[],
    },
    // `certgate authz` serves the gateway's decision to other proxies: it uses the gateway's
    // watcher, scope rules and decision (never a copy), and knows neither the Admin API, the
    // CLI, the database's drivers, nor the TLS stack (the proxy did the handshake).
    Rule {
        module: "authz",
        no_modules: &["api", "cli", "serve", "x509", "crl", "domain", "key_output"],
        allowed_paths: &["domain::SystemClock"],
        no_crates: &["rustls", "tokio_rustls", "hyper_rustls", "sqlx", "rusqlite"],
    },
    // Fetching from tenant-chosen URLs (CRLs, OCSP): called by serve and the decision's edges,
    // it knows none of them, and reaches the database only through the store.
    Rule {
        module: "fetch",
        no_modules: &["api", "cli", "gateway", "serve"],
        allowed_paths: &[],
        no_crates: &["axum", "sqlx", "rusqlite"],
    },
    // OCSP (decisions.md D61): called by the decision's edges (gateway, authz through the
    // gateway's decision, the check use case), it knows none of them nor the database; it
    // reaches responders only through `fetch`'s guarded client.
    Rule {
        module: "ocsp",
        no_modules: &[
            "api", "authz", "cli", "gateway", "insight", "serve", "store",
        ],
        allowed_paths: &[],
        no_crates: &["axum", "sqlx", "rusqlite", "hyper", "reqwest"],
    },
    // Storage knows no HTTP.
    Rule {
        module: "store",
        no_modules: &["api", "cli", "gateway", "metrics", "serve"],
        allowed_paths: &[],
        no_crates: &["axum", "hyper", "rustls"],
    },
    // The CLI reaches the business logic only through what the API and the gateway also call;
    // of the API it uses the wire shapes it prints.
    Rule {
        module: "cli",
        no_modules: &["api"],
        allowed_paths: &["api::dto"],
        no_crates: &[],
    },
];

/// The top-level module a source file belongs to (`src/trust/chain.rs` → `trust`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    Some(first.trim_end_matches(".rs").to_owned())
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of `text`: comments (line, doc and block) and the contents of string literals
/// (plain and raw) dropped, since a path named in a comment, a doc link or a message is not a
/// dependency.
fn without_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        if rest.starts_with("//") {
            i += rest.find('\n').unwrap_or(rest.len());
        } else if let Some(block) = rest.strip_prefix("/*") {
            i += block.find("*/").map_or(rest.len(), |e| e + 4);
        } else if let Some(hashes) = raw_string_start(rest) {
            let close = format!("\"{}", "#".repeat(hashes));
            let body = hashes + 2;
            out.push_str("\"\"");
            i += rest[body..]
                .find(&close)
                .map_or(rest.len(), |e| body + e + close.len());
        } else if rest.starts_with('"') && !text[..i].ends_with('\'') {
            let mut j = 1;
            let bytes = rest.as_bytes();
            while j < bytes.len() && bytes[j] != b'"' {
                j += if bytes[j] == b'\\' { 2 } else { 1 };
            }
            out.push_str("\"\"");
            i += (j + 1).min(rest.len());
        } else {
            let c = rest.chars().next().unwrap_or_default();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// The number of `#` of a raw string literal starting `rest` (`r"`, `r#"`, …), if one does.
fn raw_string_start(rest: &str) -> Option<usize> {
    let after_r = rest.strip_prefix('r')?;
    let hashes = after_r.chars().take_while(|c| *c == '#').count();
    after_r[hashes..].starts_with('"').then_some(hashes)
}

/// Whether `text` names `name::` as a path root (not as the tail of another name, so
/// `rustls::` is not found in `tokio_rustls::` or `rustls_pki_types::`).
fn names_crate(text: &str, name: &str) -> bool {
    let needle = format!("{name}::");
    text.match_indices(&needle).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
    }) || text.contains(&format!("use {name};"))
}

/// The crate paths `text` names: `crate::a::b` as `a::b`, and each item of `use crate::{a,
/// b::c}` as `a`, `b::c`.
fn crate_paths(text: &str) -> Vec<String> {
    let mut paths = Vec::new();
    for (at, _) in text.match_indices("crate::") {
        let rest = &text[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            // Nested groups are flattened to their roots, which is what the rules look at.
            for item in group[..end].split(',') {
                let item: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                    .collect();
                if !item.is_empty() {
                    paths.push(item.trim_end_matches(':').to_owned());
                }
            }
        } else {
            let path: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            paths.push(path.trim_end_matches(':').to_owned());
        }
    }
    paths
}

#[test]
fn every_module_keeps_the_layering_architecture_md_states() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut broken = BTreeSet::new();
    let mut checked = BTreeSet::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        let Some(rule) = RULES.iter().find(|r| r.module == module) else {
            continue;
        };
        checked.insert(module.clone());
        let text = without_comments(&std::fs::read_to_string(file).unwrap());
        let shown = file.strip_prefix(&src).unwrap().display().to_string();
        for path in crate_paths(&text) {
            let root = path.split("::").next().unwrap_or_default();
            let exempt = rule
                .allowed_paths
                .iter()
                .any(|allowed| path == *allowed || path.starts_with(&format!("{allowed}::")));
            if root != module && rule.no_modules.contains(&root) && !exempt {
                broken.insert(format!("src/{shown}: `{module}` names crate::{path}"));
            }
        }
        for name in rule.no_crates {
            if names_crate(&text, name) {
                broken.insert(format!("src/{shown}: `{module}` names the {name} crate"));
            }
        }
    }
    assert_eq!(
        checked.len(),
        RULES.len(),
        "a module of the rules has no source file: {checked:?}"
    );
    assert!(
        broken.is_empty(),
        "layering rules broken (ARCHITECTURE.md, \"Bird's eye view\" and each module's invariants):\n{}",
        broken.into_iter().collect::<Vec<_>>().join("\n")
    );
}

/// The checker itself finds what it must and nothing else.
#[test]
fn the_layering_checker_reads_paths_not_comments() {
    let text = without_comments(
        "use crate::{store::Store, api};\n// crate::gateway in a comment\n/* crate::cli */\nlet s = \"crate::serve\"; let q = '\"'; let r = r#\"crate::\"x\"\"#; x::rustls::y; tokio_rustls::z; crate::trust::decide(a);",
    );
    assert_eq!(crate_paths(&text), ["store::Store", "api", "trust::decide"]);
    assert!(names_crate(&text, "tokio_rustls"));
    assert!(!names_crate(&text, "rustls"), "x::rustls is not the crate");
    assert!(names_crate("use rustls::ServerConfig;", "rustls"));
    assert!(!names_crate("use rustls_pki_types::X;", "rustls"));
}
