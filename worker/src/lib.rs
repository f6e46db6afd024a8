//! `callsync-worker`: consumes call reports, de-duplicates them in the
//! PostgreSQL ledger and applies each one's CRM effects exactly once.

pub mod app;
pub mod check;
pub mod cli;
pub mod config;
pub mod console;
pub mod consumer;
pub mod crm;
pub mod dlq;
pub mod ledger;
pub mod lifecycle;
pub mod mapping;
mod poll;
pub mod reconcile;
pub mod retry;
pub mod sync;

pub use app::Worker;
pub use config::WorkerConfig;
