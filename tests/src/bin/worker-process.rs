//! The `callsync-worker` program, built inside the test crate so that the
//! end-to-end tests always run the current code as a process they can
//! SIGKILL (cargo builds a package's own binaries before its tests).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    callsync_worker::cli::run().await
}
