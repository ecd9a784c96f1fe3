//! The parse stage: raw lines into events.

pub mod syslog;
pub mod timefmt;
