//! Typed payloads for every layout of ACIP-SPEC.md section 3. (Being written: see issue 2.)

/// A decoded payload.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Payload {}
