//! The filter expression language (stub; being written).
