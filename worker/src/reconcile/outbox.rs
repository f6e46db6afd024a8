//! Where reconciled calls go: the calls queue, published with a confirm,
//! exactly as ingest publishes a webhook it accepted.

use std::time::Duration;

use callsync_shared::publish::{self, Destination, PublishError};
use callsync_shared::topology::{CALL_REPORT_KEY, Topology};
use callsync_shared::{CallId, Source, broker};
use lapin::{Channel, Connection};
use time::OffsetDateTime;

/// The `app_id` of reconciled messages, so operators can tell them from
/// webhooks (`callsync-ingest`).
pub const APP_ID: &str = "callsync-reconcile";

/// A confirm-mode channel to the calls exchange.
#[derive(Debug)]
pub struct Outbox {
    connection: Connection,
    channel: Channel,
    topology: Topology,
    confirm_timeout: Duration,
}

impl Outbox {
    pub async fn connect(
        url: &str,
        topology: Topology,
        confirm_timeout: Duration,
    ) -> Result<Self, lapin::Error> {
        let connection = broker::connect(url, APP_ID).await?;
        let channel = broker::confirm_channel(&connection, &topology).await?;
        Ok(Self {
            connection,
            channel,
            topology,
            confirm_timeout,
        })
    }

    /// Publishes one call's report; `Ok` only once the broker confirmed it.
    pub async fn publish(
        &self,
        source: Source,
        call_id: &CallId,
        body: &[u8],
    ) -> Result<(), PublishError> {
        let message_id = uuid::Uuid::now_v7().to_string();
        let properties = publish::report_properties(
            source,
            call_id,
            &message_id,
            OffsetDateTime::now_utc(),
            APP_ID,
            None,
        );
        publish::publish_confirmed(
            &self.channel,
            Destination {
                exchange: &self.topology.exchange(),
                routing_key: CALL_REPORT_KEY,
            },
            body,
            properties,
            self.confirm_timeout,
        )
        .await
    }

    pub async fn close(self) {
        broker::close_channel(&self.channel, "reconcile round done").await;
        broker::close(&self.connection, "reconcile round done").await;
    }
}
