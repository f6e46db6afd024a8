//! The `callsync-worker` program, built inside the test crate so that the
//! end-to-end tests always run the current code as a process they can
//! SIGKILL (cargo builds a package's own binaries before its tests).

// mimalloc: fewer cycles in malloc/free under many concurrent requests than
// glibc's allocator (measured with the benchmark; README, Performance).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    callsync_worker::cli::run().await
}
