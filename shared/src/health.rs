//! `healthcheck` subcommands: container images carry no curl, so each binary
//! can probe its own readiness endpoint (`callsync-ingest healthcheck`).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// GETs `path` on `127.0.0.1:port` and reports whether the answer was 200.
pub async fn probe(port: u16, path: &str) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await?;
        Ok::<_, std::io::Error>(
            head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200"),
        )
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(3), attempt).await,
        Ok(Ok(true))
    )
}

/// Runs a probe as a process: exit status 0 when ready, 1 otherwise.
pub async fn exit_with_probe(port: u16, path: &str) -> ! {
    let ready = probe(port, path).await;
    std::process::exit(if ready { 0 } else { 1 })
}
