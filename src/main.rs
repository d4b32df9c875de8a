use std::process::ExitCode;
use std::time::Duration;

/// How long blocking work still running when a command returns may take before the process
/// exits without it. Dropping a runtime would wait for every blocking task however long it
/// runs (a write waiting for SQLite's lock, a CPU-bound check the client gave up on), which
/// kept `serve` alive long after SIGTERM; the shutdown grace is already spent by then.
const BLOCKING_WORK_CAP: Duration = Duration::from_millis(100);

fn main() -> ExitCode {
    let cli = certgate::cli::parse();
    if let Err(e) = certgate::telemetry::init() {
        eprintln!("certgate: {e}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("certgate: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(certgate::cli::run(cli));
    runtime.shutdown_timeout(BLOCKING_WORK_CAP);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("certgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}
