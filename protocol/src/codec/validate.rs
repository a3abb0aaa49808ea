//! Per-type length rules of the handshake-phase receive path (ACIP-SPEC.md 1.4 (a)). (Being written.)
