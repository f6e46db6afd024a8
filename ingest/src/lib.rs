//! `callsync-ingest`: receives voice-AI webhooks, verifies them on their raw
//! bytes, and answers 202 only after RabbitMQ confirmed the report.

pub mod app;
pub mod auth;
pub mod config;
pub mod publisher;
pub mod routes;
pub mod spool;

pub use app::App;
pub use config::IngestConfig;
