//! Fuzz logic for harness targets (being written).
