//! Connecting to RabbitMQ and noticing when the connection is gone.
//!
//! Both services run their own reconnect loop instead of lapin's opt-in
//! auto-recovery: after a reconnect the topology must be re-declared, a
//! consumer re-registered and confirms that were pending counted as failed,
//! and that is clearer as one explicit loop per service than as recovery hooks.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use futures_util::StreamExt;
use lapin::{Connection, ConnectionProperties, Event};

/// `CALLSYNC_AMQP_URL`, validated at start-up so that a typo fails fast
/// instead of surfacing as endless reconnect attempts.
pub fn amqp_url(
    env: &crate::config::Env,
) -> Result<crate::config::SecretUrl, crate::config::ConfigError> {
    let url = env.string("CALLSYNC_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f");
    url.parse::<lapin::uri::AMQPUri>()
        .map_err(|e| crate::config::ConfigError {
            var: "CALLSYNC_AMQP_URL".to_owned(),
            message: format!("not a valid AMQP URL ({e})"),
        })?;
    Ok(crate::config::SecretUrl::new(url))
}

/// How long opening a connection and preparing its channels may take. A
/// broker, or anything between us and it, can accept the TCP connection and
/// then never finish the AMQP handshake; unbounded, a reconnect loop would
/// wait on that one attempt forever.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long closing a connection may wait for the broker's close-ok. A
/// connection that is already broken may never answer, and a reconnect loop
/// must not stop on it.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Opens a connection named after the service (visible in the management UI
/// and in `rabbitmqctl list_connections`), within [`SETUP_TIMEOUT`].
pub async fn connect(url: &str, name: &str) -> Result<Connection, lapin::Error> {
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    within(
        "connecting to the broker",
        Connection::connect(url, properties),
    )
    .await
}

/// Runs a connection or channel set-up step within [`SETUP_TIMEOUT`]; a
/// step that takes longer fails like a broken connection would.
pub async fn within<T>(
    what: &str,
    step: impl Future<Output = Result<T, lapin::Error>>,
) -> Result<T, lapin::Error> {
    match tokio::time::timeout(SETUP_TIMEOUT, step).await {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("{what} took longer than {SETUP_TIMEOUT:?}"),
        )
        .into()),
    }
}

/// Closes a connection, waiting at most [`CLOSE_TIMEOUT`] for the broker.
/// Dropping the last handle afterwards releases the socket either way.
pub async fn close(connection: &Connection, reason: &str) {
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, connection.close(200, reason.into())).await;
}

/// A channel in confirm mode on which the exchanges and the calls and
/// parking queues are declared: what every publisher of call reports
/// (ingest, operator replay, reconciliation) needs. Confirm mode is set
/// before the channel is handed out: a publish on a channel without it
/// would be "accepted" unconfirmed.
pub async fn confirm_channel(
    connection: &Connection,
    topology: &crate::topology::Topology,
) -> Result<lapin::Channel, lapin::Error> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(lapin::options::ConfirmSelectOptions::default())
        .await?;
    topology.declare_core(&channel).await?;
    Ok(channel)
}

/// Closes a channel, waiting at most [`CLOSE_TIMEOUT`] for the broker.
///
/// Every channel must be closed this way before its connection is: lapin
/// closes a channel by itself when its last handle is dropped, and when that
/// close is still queued as the connection starts closing, it fails
/// ("invalid channel state: Closing") and lapin logs the failure at ERROR,
/// on a perfectly clean stop. A channel closed first is left alone.
pub async fn close_channel(channel: &lapin::Channel, reason: &str) {
    if !channel.status().connected() {
        return;
    }
    match tokio::time::timeout(CLOSE_TIMEOUT, channel.close(200, reason.into())).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::debug!(%error, "closing a channel failed"),
        Err(_) => tracing::debug!("closing a channel took longer than {CLOSE_TIMEOUT:?}"),
    }
}

/// Resolves when `connection` is no longer usable: an error event, or a
/// status that is neither connected nor connecting (checked every second as
/// a backstop for a close that produced no event).
pub async fn closed(connection: &Connection) {
    let mut events = connection.events_listener();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(Event::Error(error)) => {
                    tracing::warn!(%error, "broker connection failed");
                    return;
                }
                Some(_) => {}
                None => return,
            },
            _ = tick.tick() => {
                let status = connection.status();
                if !status.connected() && !status.connecting() {
                    return;
                }
            }
        }
    }
}

/// Delays between reconnect attempts: 100 ms doubling to 5 s, with jitter so
/// that many replicas do not reconnect in lockstep after a broker restart.
pub fn reconnect_delays() -> impl Iterator<Item = Duration> + Send {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
        .build()
}
