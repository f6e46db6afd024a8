//! End-to-end test support for callsync: `crm-sim`, a stateful CRM
//! simulator, and a harness that starts ingest and workers in-process (or
//! as processes) against the local RabbitMQ and PostgreSQL, each test in
//! its own database and under its own exchange and queue names.

// A test harness reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod app;
pub mod bench;
pub mod contacts;
pub mod harness;
pub mod sim;
pub mod sources;
pub mod wait;
