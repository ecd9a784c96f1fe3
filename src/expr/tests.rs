//! Tests for the expression language.
