//! The moving test pattern of the reference client (being written by the client helper).
