#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = certgate::cli::parse();
    if let Err(e) = certgate::telemetry::init() {
        eprintln!("certgate: {e}");
        return std::process::ExitCode::FAILURE;
    }
    match certgate::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("certgate: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
