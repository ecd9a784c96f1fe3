//! Syslog headers (stub; being written).
