//! Fuzz logic for the `handshake` target (being written).
