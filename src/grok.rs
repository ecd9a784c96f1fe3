//! Grok-style pattern libraries (stub; being written).
