//! Timestamps found in log lines (stub; being written).
