//! The client-slot pool (ACIP-SPEC.md section 7). (Being written: see issue 2.)

/// Slot pool errors.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {}
