//! A CA run with the `openssl` command line, as a real PKI runs one (`openssl ca`: issue,
//! revoke, `-gencrl`), and a test HTTP server that publishes what the tests tell it to at a
//! CRL distribution point: a CRL, an error status, a redirect, an endless body, nothing at all.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sha2::Digest;

/// A CA in a temporary directory, driven by `openssl ca`.
pub struct OpenSslCa {
    dir: tempfile::TempDir,
    issued: Mutex<u32>,
}

/// A client certificate `openssl ca` issued: its PEM, its key (PKCS#8 PEM) and its file.
pub struct IssuedLeaf {
    pub pem: String,
    pub key_pem: String,
    pub path: PathBuf,
}

impl IssuedLeaf {
    /// The leaf and its key as a TLS client presents them.
    pub fn identity(&self) -> crate::gateway::Identity {
        let der = pem::parse(&self.pem).unwrap().into_contents();
        let key = pem::parse(&self.key_pem).unwrap().into_contents();
        crate::gateway::Identity {
            leaf_sha256: hex::encode(sha2::Sha256::digest(&der)),
            chain: vec![rustls_pki_types::CertificateDer::from(der)],
            key: rustls_pki_types::PrivateKeyDer::Pkcs8(key.into()),
        }
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `YYYYMMDDHHMMSSZ`, as `-crl_lastupdate` and `-crl_nextupdate` take it.
fn generalized(unix: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(unix).unwrap();
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

impl OpenSslCa {
    /// A new CA named `cn` (EC P-256; CA:TRUE, keyCertSign and cRLSign, an SKI), valid 30 days.
    pub fn new(cn: &str) -> OpenSslCa {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("newcerts")).unwrap();
        std::fs::write(d.join("index.txt"), "").unwrap();
        std::fs::write(d.join("serial"), "1000\n").unwrap();
        std::fs::write(d.join("crlnumber"), "01\n").unwrap();
        std::fs::write(
            d.join("ca.cnf"),
            CONFIG.replace("@DIR@", &d.display().to_string()),
        )
        .unwrap();
        openssl(
            d,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                "ca.key",
            ],
        );
        let subject = format!("/CN={cn}");
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                "ca.key",
                "-subj",
                &subject,
                "-days",
                "30",
                "-config",
                "ca.cnf",
                "-extensions",
                "v3_ca",
                "-out",
                "ca.pem",
            ],
        );
        OpenSslCa {
            dir,
            issued: Mutex::new(0),
        }
    }

    pub fn pem(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("ca.pem")).unwrap()
    }

    /// A client certificate (clientAuth) for `cn`, valid 10 days.
    pub fn issue_client(&self, cn: &str) -> IssuedLeaf {
        self.issue(cn, None)
    }

    /// The CA's directory (`ca.pem`, `ca.key`, `index.txt`: what `openssl ocsp` reads).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A certificate for `cn` with the extensions of `extensions` (the body of an OpenSSL
    /// extension section, e.g. `authorityInfoAccess = OCSP;URI:…`), valid 10 days.
    pub fn issue_with(&self, cn: &str, extensions: &str) -> IssuedLeaf {
        self.issue(cn, Some(extensions))
    }

    fn issue(&self, cn: &str, extensions: Option<&str>) -> IssuedLeaf {
        let n = {
            let mut issued = self.issued.lock().unwrap();
            *issued += 1;
            *issued
        };
        let d = self.dir.path();
        let (key, csr, cert) = (
            format!("leaf{n}.key"),
            format!("leaf{n}.csr"),
            format!("leaf{n}.pem"),
        );
        openssl(
            d,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                &key,
            ],
        );
        let subject = format!("/CN={cn}");
        openssl(
            d,
            &[
                "req", "-new", "-key", &key, "-subj", &subject, "-config", "ca.cnf", "-out", &csr,
            ],
        );
        let ext_file = format!("leaf{n}.ext");
        let mut args = vec![
            "ca",
            "-batch",
            "-config",
            "ca.cnf",
            "-in",
            &csr,
            "-out",
            &cert,
            "-days",
            "10",
            "-notext",
            "-extensions",
        ];
        match extensions {
            Some(body) => {
                std::fs::write(d.join(&ext_file), format!("[ leaf_ext ]\n{body}\n")).unwrap();
                args.extend(["leaf_ext", "-extfile", &ext_file]);
            }
            None => args.push("client_ext"),
        }
        openssl(d, &args);
        IssuedLeaf {
            pem: std::fs::read_to_string(d.join(&cert)).unwrap(),
            key_pem: std::fs::read_to_string(d.join(&key)).unwrap(),
            path: d.join(cert),
        }
    }

    /// Revokes `leaf` in the CA's database (the next CRL lists it).
    pub fn revoke(&self, leaf: &IssuedLeaf) {
        let path = leaf.path.display().to_string();
        openssl(
            self.dir.path(),
            &["ca", "-config", "ca.cnf", "-revoke", &path],
        );
    }

    /// `openssl ca -gencrl` with thisUpdate `this_update` and nextUpdate `next_update` (Unix
    /// seconds): the CRL's DER. Each CRL takes the next CRL number.
    pub fn gencrl(&self, this_update: i64, next_update: i64) -> Vec<u8> {
        let d = self.dir.path();
        let (last, next) = (generalized(this_update), generalized(next_update));
        openssl(
            d,
            &[
                "ca",
                "-config",
                "ca.cnf",
                "-gencrl",
                "-crlexts",
                "crl_ext",
                "-crl_lastupdate",
                &last,
                "-crl_nextupdate",
                &next,
                "-out",
                "crl.pem",
            ],
        );
        openssl(
            d,
            &[
                "crl", "-in", "crl.pem", "-outform", "DER", "-out", "crl.der",
            ],
        );
        std::fs::read(d.join("crl.der")).unwrap()
    }
}

const CONFIG: &str = "
[ ca ]
default_ca = CA_default
[ CA_default ]
dir = @DIR@
database = $dir/index.txt
new_certs_dir = $dir/newcerts
certificate = $dir/ca.pem
private_key = $dir/ca.key
serial = $dir/serial
crlnumber = $dir/crlnumber
default_md = sha256
default_days = 10
default_crl_days = 1
policy = policy_any
unique_subject = no
copy_extensions = none
[ policy_any ]
commonName = supplied
[ req ]
distinguished_name = req_dn
prompt = no
[ req_dn ]
CN = placeholder
[ v3_ca ]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[ client_ext ]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ crl_ext ]
authorityKeyIdentifier = keyid
";

/// What the CRL server answers.
#[derive(Clone)]
pub enum Publish {
    /// 200 with this body.
    Body(Bytes),
    /// This status, with a body of its own.
    Status(u16, &'static str),
    /// 302 to this location.
    Redirect(String),
    /// 200 without a length, sending bytes until the client goes away.
    Endless,
    /// Accepts the request and never answers.
    Silence,
}

/// A plain-HTTP server on 127.0.0.1 publishing [`Publish`] at every path, counting requests.
pub struct CrlServer {
    pub addr: std::net::SocketAddr,
    publish: Arc<Mutex<Publish>>,
    requests: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl CrlServer {
    pub async fn start(publish: Publish) -> CrlServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        CrlServer::serve_on(listener, publish)
    }

    /// The same server on a listener already bound (whose backlog a test may have filled).
    pub fn serve_on(listener: tokio::net::TcpListener, publish: Publish) -> CrlServer {
        let publish = Arc::new(Mutex::new(publish));
        let requests: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
        let (p, r) = (publish.clone(), requests.clone());
        let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
            let (p, r) = (p.clone(), r.clone());
            async move {
                use axum::response::IntoResponse;
                r.lock()
                    .unwrap()
                    .push((Instant::now(), uri.path().to_owned()));
                let what = p.lock().unwrap().clone();
                match what {
                    Publish::Body(b) => b.into_response(),
                    Publish::Status(code, body) => {
                        (axum::http::StatusCode::from_u16(code).unwrap(), body).into_response()
                    }
                    Publish::Redirect(to) => (
                        axum::http::StatusCode::FOUND,
                        [(axum::http::header::LOCATION, to)],
                    )
                        .into_response(),
                    Publish::Endless => {
                        let chunk = Bytes::from(vec![b'A'; 64 * 1024]);
                        let stream = futures::stream::repeat_with(move || {
                            Ok::<_, std::io::Error>(chunk.clone())
                        });
                        axum::body::Body::from_stream(stream).into_response()
                    }
                    Publish::Silence => {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        ().into_response()
                    }
                }
            }
        });
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        CrlServer {
            addr,
            publish,
            requests,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn publish(&self, what: Publish) {
        *self.publish.lock().unwrap() = what;
    }

    /// How many requests came so far.
    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}
