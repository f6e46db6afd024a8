//! End-to-end test support for callsync: `crm-sim`, a stateful CRM
//! simulator, and a harness that starts ingest and workers in-process (or
//! as processes) against the local RabbitMQ and PostgreSQL, each test in
//! its own database and under its own exchange and queue names.

// A test harness reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod app;
pub mod bench;
pub mod console;
pub mod contacts;
pub mod deals;
pub mod harness;
pub mod mapping;
pub mod platforms;
pub mod prometheus;
pub mod sim;
pub mod sources;
pub mod wait;

/// One module per scenario holding one test per CRM in the bracketed list,
/// so that test names read `<scenario>::<crm>`. Test names must be
/// identifiers, so the list is written out; `LISTED_CRMS` holds it, for a
/// test that compares it with the worker's registry.
#[macro_export]
macro_rules! for_crms {
    (@listed [$($crm:ident),* $(,)?]) => {
        const LISTED_CRMS: &[&str] = &[$(stringify!($crm)),*];
    };
    (@scenario $scenario:ident [$($crm:ident),* $(,)?]) => {
        mod $scenario {$(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $crm() { super::$scenario(stringify!($crm)).await }
        )*}
    };
    ($crms:tt: $($scenario:ident),* $(,)?) => {
        $crate::for_crms!(@listed $crms);
        $($crate::for_crms!(@scenario $scenario $crms);)*
    };
}
