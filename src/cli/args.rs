//! Every flag of every subcommand, each with its `CERTGATE_*` environment variable. Parsing
//! ends here: the subcommands receive plain settings structs, never clap types.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::Args;

use crate::runtime::ConnectionLimits;
use crate::store::StoreOptions;

#[derive(Args, Debug, Clone)]
pub struct DbArgs {
    /// Database URL: <sqlite://PATH> (embedded default) or postgres://USER@HOST:PORT/DB.
    #[arg(
        long = "database",
        env = "CERTGATE_DATABASE_URL",
        default_value = "sqlite://certgate.db",
        // `--help` would otherwise print the URL's password.
        hide_env_values = true
    )]
    pub url: String,
    /// Most database connections this process opens [default: `serve` and the commands 4 per
    /// CPU core, 4 to 16; `gateway` and `authz` 2, their one reader being the trust watcher].
    #[arg(long = "db-max-connections", env = "CERTGATE_DB_MAX_CONNECTIONS")]
    pub max_connections: Option<u32>,
    /// The most a request waits for the database, all its waits together (its turn to write,
    /// a connection, its statements, retries), e.g. `5s` or `500ms`; past it, 503.
    #[arg(long = "db-timeout", env = "CERTGATE_DB_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// How long to keep trying to reach the database at start; then the process exits,
    /// naming the database and the driver's reason.
    #[arg(long = "db-connect-timeout", env = "CERTGATE_DB_CONNECT_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
}

impl DbArgs {
    /// For `serve` and the commands: concurrent requests share the pool.
    pub fn options(&self) -> StoreOptions {
        self.options_or(crate::store::default_max_connections())
    }

    /// For `gateway` and `authz`, whose only reader of the database is the trust watcher, one
    /// read at a time (decisions.md D80): a larger pool only gathers idle connections (on
    /// SQLite a thread and a page cache each, on PostgreSQL a server process each, times the
    /// replicas).
    pub fn watcher_options(&self) -> StoreOptions {
        self.options_or(crate::store::WATCHER_MAX_CONNECTIONS)
    }

    fn options_or(&self, default_max_connections: u32) -> StoreOptions {
        StoreOptions {
            url: self.url.clone(),
            max_connections: self.max_connections.unwrap_or(default_max_connections),
            timeout: self.timeout,
            connect_timeout: self.connect_timeout,
        }
    }
}

/// Bounds on the connections of `serve` and `gateway` (decisions.md D35).
#[derive(Args, Debug, Clone)]
pub struct ConnectionArgs {
    /// Longest an HTTP/1 request head may take to arrive, from its first byte.
    #[arg(long, env = "CERTGATE_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,
    /// Longest a connection may stay open with no request in flight (HTTP/2 gets a GOAWAY).
    #[arg(long, env = "CERTGATE_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Most connections open at once; beyond it new ones wait in the listen backlog. Lowered
    /// at start if the open-file limit cannot hold that many.
    #[arg(
        long = "max-connections",
        env = "CERTGATE_MAX_CONNECTIONS",
        default_value_t = 10_000
    )]
    pub connection_cap: usize,
    /// On SIGTERM, how long requests in flight may run on before the process exits anyway.
    #[arg(long, env = "CERTGATE_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
}

impl ConnectionArgs {
    pub fn limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            header_timeout: self.header_timeout,
            idle_timeout: self.idle_timeout,
            max_connections: self.connection_cap,
            shutdown_grace: self.shutdown_grace,
        }
    }
}

/// The metrics listener of `serve` and `gateway` (decisions.md D40).
#[derive(Args, Debug, Clone)]
pub struct MetricsArgs {
    /// Plain-HTTP address for Prometheus `/metrics`, `/healthz` and `/readyz` (no
    /// authentication: bind it where only the scraper reaches). Off when not given.
    #[arg(long, env = "CERTGATE_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the log line says which).
    #[arg(long, env = "CERTGATE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Do not create a default organization on an empty database (true/false, 1/0, yes/no).
    #[arg(long, env = "CERTGATE_NO_BOOTSTRAP", value_parser = BoolishValueParser::new(), default_value_t = false, num_args = 0..=1, default_missing_value = "true")]
    pub no_bootstrap: bool,
    #[command(flatten)]
    pub key_file: KeyFileArgs,
    /// Delete audit events older than this many days (by default they are kept forever).
    #[arg(long, env = "CERTGATE_AUDIT_RETENTION_DAYS", value_parser = clap::value_parser!(u32).range(1..))]
    pub audit_retention_days: Option<u32>,
    /// How long the record of each trust change is kept for gateways to catch up by (one
    /// further behind reads the whole trust state once).
    #[arg(long, env = "CERTGATE_TRUST_CHANGE_RETENTION", default_value = "60m", value_parser = parse_duration)]
    pub trust_change_retention: Duration,
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub connections: ConnectionArgs,
    #[command(flatten)]
    pub metrics: MetricsArgs,
    #[command(flatten)]
    pub fetch: FetchArgs,
}

/// Fetching from URLs tenants choose: CRLs from `crl_url` (decisions.md D59, D60).
#[derive(Args, Debug, Clone)]
pub struct FetchArgs {
    /// Let certgate fetch from loopback, private (RFC 1918, unique local), link-local and other
    /// non-public addresses. Off by default: tenants choose these URLs, and must not reach the
    /// operator's network through certgate.
    #[arg(long, env = "CERTGATE_FETCH_ALLOW_PRIVATE", value_parser = BoolishValueParser::new(), default_value_t = false, num_args = 0..=1, default_missing_value = "true")]
    pub fetch_allow_private: bool,
    /// Most bytes of a fetched body (a CRL) read; a longer one is cut there and refused, the
    /// stored CRL staying. Bytes, or with a KiB/MiB suffix: from 64KiB to 32MiB (an
    /// organization's stored CRLs are at most 32 MiB). Raise it for CAs whose CRLs pass 8 MiB
    /// (about 250,000 entries); each of the 4 fetches at once may hold this much.
    #[arg(long, env = "CERTGATE_FETCH_MAX_BYTES", value_name = "BYTES", value_parser = parse_fetch_max_bytes, default_value = "8MiB")]
    pub fetch_max_bytes: usize,
    /// Shortest time between two fetches of one CRL URL (also the first retry after a failure,
    /// doubled per failure in a row), e.g. `5m`.
    #[arg(long, env = "CERTGATE_CRL_REFRESH_MIN", value_parser = parse_duration, default_value = "5m")]
    pub crl_refresh_min: Duration,
    /// Longest time between two fetches of one CRL URL (a CRL's nextUpdate further away is
    /// not waited for; nor is a backoff longer), e.g. `60m`.
    #[arg(long, env = "CERTGATE_CRL_REFRESH_MAX", value_parser = parse_duration, default_value = "60m")]
    pub crl_refresh_max: Duration,
}

/// Where a new admin key goes.
#[derive(Args, Debug, Clone)]
pub struct KeyFileArgs {
    /// Write the new admin key to this file instead of printing it on stdout. The file is
    /// created with mode 0600; an existing file is refused, never overwritten.
    #[arg(
        long = "admin-key-file",
        env = "CERTGATE_ADMIN_KEY_FILE",
        value_name = "PATH"
    )]
    pub admin_key_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct GatewayArgs {
    /// Address the TLS listener binds (port 0 picks a free port; the log line says which).
    #[arg(
        long,
        env = "CERTGATE_GATEWAY_LISTEN",
        default_value = "127.0.0.1:8443"
    )]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub db: DbArgs,
    /// The gateway's own certificate chain, PEM, leaf first.
    #[arg(long, env = "CERTGATE_TLS_CERT")]
    pub tls_cert: PathBuf,
    /// The private key of `--tls-cert`, PEM (PKCS#8, PKCS#1 or SEC1); keep it mode 0600.
    #[arg(long, env = "CERTGATE_TLS_KEY")]
    pub tls_key: PathBuf,
    /// Where admitted requests go: `http://HOST[:PORT][/PREFIX]` or `https://…`.
    #[arg(long, env = "CERTGATE_UPSTREAM")]
    pub upstream: String,
    /// Longest wait for the upstream's response headers (bodies may stream for longer),
    /// e.g. `30s` or `10m`; past it the client gets 504.
    #[arg(long, env = "CERTGATE_UPSTREAM_TIMEOUT", default_value = "10m", value_parser = parse_duration)]
    pub upstream_timeout: Duration,
    /// Extra CA certificates (PEM) to trust for an https upstream, besides the public roots.
    #[arg(long, env = "CERTGATE_UPSTREAM_CA")]
    pub upstream_ca: Option<PathBuf>,
    /// Forward OpenAI-Organization and OpenAI-Project to the upstream (by default the gateway
    /// consumes them, since upstream ids usually differ from certgate's).
    #[arg(long, env = "CERTGATE_FORWARD_SCOPE_HEADERS", value_parser = BoolishValueParser::new(), default_value_t = false, num_args = 0..=1, default_missing_value = "true")]
    pub forward_scope_headers: bool,
    /// Plain-HTTP address for `/healthz` (alive) and `/readyz` (trust state loaded and the
    /// database answering). Off when not given.
    #[arg(long, env = "CERTGATE_HEALTH_LISTEN")]
    pub health_listen: Option<SocketAddr>,
    /// How often to read the trust generation [default: 100ms on SQLite, 1s on PostgreSQL,
    /// where LISTEN/NOTIFY wakes the gateway at once].
    #[arg(long, env = "CERTGATE_TRUST_POLL", value_parser = parse_duration)]
    pub trust_poll: Option<Duration>,
    /// How often to read the whole trust state and check that the state kept up to date by
    /// changes equals it (a difference is logged as an error, counted in
    /// `certgate_trust_reconcile_repairs_total`, and repaired). Between these, only the changes
    /// since the generation held are read.
    #[arg(long = "reconcile-interval", visible_alias = "trust-reconcile", env = "CERTGATE_RECONCILE_INTERVAL", default_value = "10m", value_parser = parse_duration)]
    pub trust_reconcile: Duration,
    /// Most TLS handshakes in progress at once; further connections wait in the listen
    /// backlog until one finishes.
    #[arg(long, env = "CERTGATE_MAX_HANDSHAKES", default_value_t = 1024)]
    pub max_handshakes: usize,
    /// Longest a client may take to complete its TLS handshake.
    #[arg(long, env = "CERTGATE_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub handshake_timeout: Duration,
    /// The organization of requests that send no OpenAI-Organization header (a default, not
    /// a restriction). Without it such requests are refused with `organization_required`.
    #[arg(long, env = "CERTGATE_GATEWAY_ORGANIZATION")]
    pub organization: Option<String>,
    /// Let OCSP requests reach loopback, private (RFC 1918, unique local), link-local and
    /// other non-public responders. Off by default: tenants' CAs name their responders, and
    /// must not reach the operator's network through certgate (decisions.md D60, D61).
    #[arg(long, env = "CERTGATE_FETCH_ALLOW_PRIVATE", value_parser = BoolishValueParser::new(), default_value_t = false, num_args = 0..=1, default_missing_value = "true")]
    pub fetch_allow_private: bool,
    #[command(flatten)]
    pub connections: ConnectionArgs,
    #[command(flatten)]
    pub metrics: MetricsArgs,
}

/// `certgate authz` (spec §13.2, decisions.md D45).
#[derive(Args, Debug)]
pub struct AuthzArgs {
    /// Envoy's external authorization (gRPC `envoy.service.auth.v3.Authorization/Check`):
    /// `HOST:PORT`, or `unix:/path` for a Unix socket (created mode 0660). Never let clients
    /// reach it: it believes the certificate the proxy says it saw.
    #[arg(
        long,
        env = "CERTGATE_AUTHZ_GRPC_LISTEN",
        default_value = "127.0.0.1:9191",
        value_name = "ADDR"
    )]
    pub grpc_listen: crate::authz::ListenAddr,
    /// The forward-auth endpoint (nginx `auth_request`, Traefik `ForwardAuth`, `HAProxy`), any
    /// method and path: `HOST:PORT` or `unix:/path` (mode 0660). Never let clients reach it.
    #[arg(
        long,
        env = "CERTGATE_AUTHZ_HTTP_LISTEN",
        default_value = "127.0.0.1:9192",
        value_name = "ADDR"
    )]
    pub http_listen: crate::authz::ListenAddr,
    /// The forward-auth request header the proxy puts the client certificate in: URL-encoded
    /// PEM (nginx `$ssl_client_escaped_cert`), PEM with its line breaks as spaces or tabs, or
    /// comma-separated base64 DER (Traefik), leaf first.
    #[arg(
        long,
        env = "CERTGATE_AUTHZ_CERT_HEADER",
        default_value = "X-SSL-Client-Cert",
        value_name = "NAME",
        value_parser = parse_header_name
    )]
    pub cert_header: axum::http::HeaderName,
    /// The organization of requests that send no OpenAI-Organization header (and, for gRPC,
    /// whose route sets no `organization` context extension): a default, not a restriction.
    /// Without it such requests are refused with `organization_required`.
    #[arg(long, env = "CERTGATE_AUTHZ_ORGANIZATION")]
    pub organization: Option<String>,
    /// Let OCSP requests reach loopback, private (RFC 1918, unique local), link-local and
    /// other non-public responders. Off by default: tenants' CAs name their responders, and
    /// must not reach the operator's network through certgate (decisions.md D60, D61).
    #[arg(long, env = "CERTGATE_FETCH_ALLOW_PRIVATE", value_parser = BoolishValueParser::new(), default_value_t = false, num_args = 0..=1, default_missing_value = "true")]
    pub fetch_allow_private: bool,
    /// Let OpenAI-Organization and OpenAI-Project reach the upstream (by default Envoy is told
    /// to remove them, since upstream ids usually differ from certgate's).
    #[arg(long, env = "CERTGATE_FORWARD_SCOPE_HEADERS", value_parser = BoolishValueParser::new(), default_value_t = false, num_args = 0..=1, default_missing_value = "true")]
    pub forward_scope_headers: bool,
    #[command(flatten)]
    pub db: DbArgs,
    /// How often to read the trust generation [default: 100ms on SQLite, 1s on PostgreSQL,
    /// where LISTEN/NOTIFY wakes the process at once].
    #[arg(long, env = "CERTGATE_TRUST_POLL", value_parser = parse_duration)]
    pub trust_poll: Option<Duration>,
    /// How often to read the whole trust state and check that the state kept up to date by
    /// changes equals it (a difference is logged as an error, counted in
    /// `certgate_trust_reconcile_repairs_total`, and repaired). Between these, only the changes
    /// since the generation held are read.
    #[arg(long = "reconcile-interval", visible_alias = "trust-reconcile", env = "CERTGATE_RECONCILE_INTERVAL", default_value = "10m", value_parser = parse_duration)]
    pub trust_reconcile: Duration,
    #[command(flatten)]
    pub connections: ConnectionArgs,
    #[command(flatten)]
    pub metrics: MetricsArgs,
}

fn parse_header_name(raw: &str) -> Result<axum::http::HeaderName, String> {
    axum::http::HeaderName::from_bytes(raw.trim().as_bytes())
        .map_err(|_| format!("'{raw}' is not a valid HTTP header name"))
}

/// `--fetch-max-bytes`: a byte count, bare or with a `KiB`/`MiB` suffix, within
/// [`MIN_BODY_BYTES_SETTING`](crate::fetch::MIN_BODY_BYTES_SETTING)..=
/// [`MAX_BODY_BYTES_SETTING`](crate::fetch::MAX_BODY_BYTES_SETTING).
pub fn parse_fetch_max_bytes(raw: &str) -> Result<usize, String> {
    use crate::fetch::{MAX_BODY_BYTES_SETTING as MAX, MIN_BODY_BYTES_SETTING as MIN};
    let raw = raw.trim();
    let (num, unit) = match raw.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => raw.split_at(i),
        None => (raw, ""),
    };
    let scale: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1024,
        "MiB" => 1024 * 1024,
        _ => {
            return Err(format!(
                "invalid size '{raw}': use a number of bytes, or e.g. 512KiB or 16MiB"
            ))
        }
    };
    let bytes = num
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| format!("invalid size '{raw}': use a number of bytes, or e.g. 16MiB"))?;
    if !(MIN..=MAX).contains(&bytes) {
        return Err(format!(
            "size '{raw}' ({bytes} bytes) must be from {MIN} (64KiB) to {MAX} (32MiB) bytes"
        ));
    }
    Ok(bytes)
}

/// `250ms`, `5s`, `2m`, or a bare number of seconds.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let (num, unit) = match raw.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => raw.split_at(i),
        None => (raw, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration '{raw}': use e.g. 500ms, 5s or 1m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("invalid duration unit in '{raw}': use ms, s or m")),
    };
    if !(secs > 0.0 && secs < 86_400.0) {
        return Err(format!(
            "duration '{raw}' must be more than 0 and less than a day"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("5").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5h").is_err());
    }

    /// The limit's own bounds, from both sides: 64 KiB and 32 MiB pass, a byte beyond does not.
    #[test]
    fn fetch_sizes() {
        assert_eq!(parse_fetch_max_bytes("8MiB").unwrap(), 8 * 1024 * 1024);
        assert_eq!(parse_fetch_max_bytes("512KiB").unwrap(), 512 * 1024);
        assert_eq!(parse_fetch_max_bytes(" 9437185 ").unwrap(), 9_437_185);
        assert_eq!(parse_fetch_max_bytes("65536").unwrap(), 65_536);
        assert_eq!(parse_fetch_max_bytes("64KiB").unwrap(), 65_536);
        assert!(parse_fetch_max_bytes("65535").is_err());
        assert_eq!(parse_fetch_max_bytes("32MiB").unwrap(), 33_554_432);
        assert_eq!(parse_fetch_max_bytes("33554432").unwrap(), 33_554_432);
        let over = parse_fetch_max_bytes("33554433").unwrap_err();
        assert!(
            over.contains("from 65536 (64KiB) to 33554432 (32MiB)"),
            "{over}"
        );
        for bad in [
            "",
            "MiB",
            "8 GB",
            "8mb",
            "-1",
            "1.5MiB",
            "99999999999999999999",
        ] {
            assert!(parse_fetch_max_bytes(bad).is_err(), "{bad:?}");
        }
    }
}
