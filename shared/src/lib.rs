//! Code shared by callsync's ingest and worker: the canonical [`CallReport`],
//! the provider formats that parse into it, the webhook signature schemes,
//! the RabbitMQ topology, and configuration and logging helpers.

pub mod broker;
pub mod config;
pub mod health;
pub mod phone;
pub mod publish;
pub mod report;
pub mod shutdown;
pub mod signature;
pub mod sources;
pub mod telemetry;
pub mod time;
pub mod topology;

pub use phone::{Phone, Region};
pub use report::{
    CallId, CallReport, Caller, Direction, Outcome, Source, Transcript, TranscriptLine,
};
