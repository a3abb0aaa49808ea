//! Tests of the WebSocket message layer across its parts: property tests, captures, error texts.
