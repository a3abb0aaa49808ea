//! Fuzz logic for the `packet` target (being written).
