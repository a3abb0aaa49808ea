//! Fuzz logic for the `stream` target (being written).
