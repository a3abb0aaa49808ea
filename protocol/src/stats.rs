//! Per-stage timing records shared by the reference peers and the harness (being written by the server helper).
