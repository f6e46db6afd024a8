//! One publishing lane: a broker connection with its confirm channel,
//! re-established whenever it drops, independently of the other lanes.
//!
//! lapin drives each connection's socket from a thread of its own, and the
//! broker runs each channel as a process of its own, so several lanes can
//! spread publishing over more cores than one. On two cores shared with the
//! broker they cost more than they bring (docs/performance.md), hence one
//! lane by default.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use callsync_shared::broker;
use callsync_shared::config::SecretUrl;
use callsync_shared::topology::Topology;
use lapin::{Channel, Connection};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// What a lane's supervisor needs to (re)connect it.
#[derive(Debug)]
pub struct LaneSettings {
    pub url: SecretUrl,
    pub topology: Topology,
}

/// A connection and its confirm channel while they are up.
#[derive(Debug)]
pub struct Live {
    connection: Connection,
    channel: Channel,
    /// Wakes the supervisor when a publish found the channel broken. One
    /// per connection, so that a publish failing on a connection already
    /// replaced cannot make the supervisor replace its successor too.
    broken: Notify,
}

impl Live {
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Asks the supervisor to replace this connection: a publish on it
    /// timed out or failed on the channel, so it is stuck or gone even if
    /// lapin has not noticed yet.
    pub fn replace(&self) {
        self.broken.notify_one();
    }
}

#[derive(Debug)]
pub struct Lane {
    /// The connection's name on the broker (management UI,
    /// `rabbitmqctl list_connections`): which lane of which service.
    name: String,
    live: RwLock<Option<Arc<Live>>>,
}

impl Lane {
    pub fn new(name: String) -> Self {
        Self {
            name,
            live: RwLock::new(None),
        }
    }

    /// The lane's connection, if it is up; `None` when it is down or its
    /// channel was closed (the supervisor is then told to replace it), so
    /// that the caller tries another lane.
    pub fn take(&self) -> Option<Arc<Live>> {
        let live = read(&self.live).clone()?;
        if live.channel.status().connected() {
            Some(live)
        } else {
            live.replace();
            None
        }
    }

    /// True while the connection and its channel are usable and the broker
    /// has not blocked publishing (memory or disk alarm).
    pub fn is_ready(&self) -> bool {
        read(&self.live).as_ref().is_some_and(|live| {
            let status = live.connection.status();
            status.connected() && !status.blocked() && live.channel.status().connected()
        })
    }

    /// Keeps the lane connected until `stop`, then closes it.
    pub async fn supervise(self: Arc<Self>, settings: Arc<LaneSettings>, stop: CancellationToken) {
        let mut delays = broker::reconnect_delays();
        while !stop.is_cancelled() {
            let attempt = tokio::select! {
                attempt = self.connect(&settings) => attempt,
                () = stop.cancelled() => break,
            };
            match attempt {
                Ok(live) => {
                    tracing::info!(lane = %self.name, "connected to the broker; publishing with confirms");
                    delays = broker::reconnect_delays();
                    *write(&self.live) = Some(Arc::clone(&live));
                    tokio::select! {
                        () = broker::closed(&live.connection) => {}
                        () = live.broken.notified() => {}
                        () = stop.cancelled() => {}
                    }
                    write(&self.live).take();
                    if stop.is_cancelled() {
                        // Publishes in flight were drained before `stop`.
                        close(&live, "callsync-ingest shutting down").await;
                        break;
                    }
                    close(&live, "reconnecting").await;
                    tracing::warn!(lane = %self.name, "broker connection lost; reconnecting");
                }
                Err(error) => {
                    tracing::warn!(lane = %self.name, %error, "cannot connect to the broker; retrying");
                }
            }
            let delay = delays.next().unwrap_or(Duration::from_secs(5));
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = stop.cancelled() => {}
            }
        }
    }

    async fn connect(&self, settings: &LaneSettings) -> Result<Arc<Live>, lapin::Error> {
        let connection = broker::connect(settings.url.expose(), &self.name).await?;
        let setup = broker::confirm_channel(&connection, &settings.topology);
        match broker::within("preparing the confirm channel", setup).await {
            Ok(channel) => Ok(Arc::new(Live {
                connection,
                channel,
                broken: Notify::new(),
            })),
            Err(error) => {
                broker::close(&connection, "set-up failed").await;
                Err(error)
            }
        }
    }
}

/// Closes the channel before its connection (see `broker::close_channel`).
async fn close(live: &Live, reason: &str) {
    broker::close_channel(&live.channel, reason).await;
    broker::close(&live.connection, reason).await;
}

// A poisoned lock only means another task panicked while holding it; the
// Option inside is still a valid value, so recover it instead of propagating.
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
