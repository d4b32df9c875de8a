//! Structured logs via tracing. `RUST_LOG` filters (default `info`); `CERTGATE_LOG_FORMAT=json`
//! switches to one JSON object per line. Keys, certificate bodies and private keys are never
//! logged: spans carry method, path and request id only.

/// Sets up logging from `RUST_LOG` and `CERTGATE_LOG_FORMAT`. An unknown format is an error
/// (the caller exits): silently logging in another format would break a log collector.
pub fn init() -> Result<(), String> {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let format = LogFormat::from_env()?;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    // Colour only for a person at a terminal; files and collectors get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    Ok(())
}

/// The values `CERTGATE_LOG_FORMAT` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    /// `CERTGATE_LOG_FORMAT`: `text` (also when unset or empty) or `json`, in any case.
    pub fn from_env() -> Result<LogFormat, String> {
        match std::env::var("CERTGATE_LOG_FORMAT") {
            Err(std::env::VarError::NotPresent) => Ok(LogFormat::Text),
            Ok(raw) => LogFormat::parse(&raw),
            Err(std::env::VarError::NotUnicode(raw)) => LogFormat::parse(&raw.to_string_lossy()),
        }
    }

    pub fn parse(raw: &str) -> Result<LogFormat, String> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "" | "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!(
                "unknown CERTGATE_LOG_FORMAT {raw:?}; expected one of: text (the default), json"
            )),
        }
    }
}

/// Displays an error with its whole chain of causes, `outer: cause: root`, for log lines.
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// Tells the operator something whatever `RUST_LOG` says (a new database file was created,
/// say): `certgate: MESSAGE` on stderr, or in JSON log mode one JSON object shaped like the
/// log lines (`level`, `target`, `fields.message`), so a log collector can still parse every
/// line.
pub fn notice(message: &str) {
    use std::io::Write;
    let line = match LogFormat::from_env() {
        Ok(LogFormat::Json) => serde_json::json!({
            "level": "INFO",
            "target": "certgate",
            "fields": {"message": message},
        })
        .to_string(),
        _ => format!("certgate: {message}"),
    };
    let _ = writeln!(std::io::stderr(), "{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_formats() {
        assert_eq!(LogFormat::parse(""), Ok(LogFormat::Text));
        assert_eq!(LogFormat::parse("text"), Ok(LogFormat::Text));
        assert_eq!(LogFormat::parse("JSON"), Ok(LogFormat::Json));
        let e = LogFormat::parse("xml").unwrap_err();
        assert!(
            e.contains("\"xml\"") && e.contains("text") && e.contains("json"),
            "{e}"
        );
    }
}
