// mimalloc: fewer cycles in malloc/free under many concurrent requests than
// glibc's allocator (measured with the benchmark; README, Performance).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    callsync_worker::cli::run().await
}
