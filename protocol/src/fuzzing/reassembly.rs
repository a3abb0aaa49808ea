//! Fuzz logic for the `reassembly` target (being written).
