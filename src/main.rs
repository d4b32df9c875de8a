use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    certgate::telemetry::init();
    match certgate::cli::run(certgate::cli::Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("certgate: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
