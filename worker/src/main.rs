#[tokio::main]
async fn main() -> std::process::ExitCode {
    callsync_worker::cli::run().await
}
