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

/// Opens a connection named after the service (visible in the management UI
/// and in `rabbitmqctl list_connections`).
pub async fn connect(url: &str, name: &str) -> Result<Connection, lapin::Error> {
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    Connection::connect(url, properties).await
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
