//! The server's statistics as one serde type, for [`crate::ServerHandle::stats`] and `GET /stats`
//! (issue 4, "Instrumentation"): global per-stage histograms and counters (ended connections merged with
//! live ones), and the same per live connection.

use std::collections::BTreeMap;

use acip::stats::{Counters, StageSummary};
use serde::{Deserialize, Serialize};

use crate::hub::{Shared, Transport};
use crate::sync::lock;

/// Everything `/stats` shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsSnapshot {
    pub version: String,
    pub dialect: acip::Dialect,
    pub uptime_ms: u64,
    /// Array slots not free (reserved, active, draining or leaked).
    pub slots_in_use: usize,
    pub slot_capacity: usize,
    pub max_clients: usize,
    /// Clients past CLIENT_CAPABILITIES (sources and receivers of the grid).
    pub active_clients: usize,
    /// Open connections (any phase).
    pub connections: usize,
    /// Releases of an already free slot: must stay 0.
    pub double_releases: u64,
    /// Reservations handed a slot that another connection still held: must stay 0 (`--fault
    /// stale-callback` breaks it).
    #[serde(default)]
    pub slots_shared: u64,
    /// `--fault stale-callback`: late receive callbacks that freed a live client's slot.
    #[serde(default)]
    pub late_callbacks: u64,
    /// All connections, ended and live, plus server-level events.
    pub counters: Counters,
    /// Per-stage timings, keyed by `acip::stats::Stage::name`.
    pub stages: BTreeMap<String, StageSummary>,
    /// Live connections, in id order.
    pub per_connection: Vec<ConnectionSnapshot>,
    /// Faults switched on.
    pub faults: Vec<String>,
    /// `--fault hang-on-interleave` fired: the server no longer accepts or reads.
    #[serde(default)]
    pub hung: bool,
}

/// One live connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectionSnapshot {
    pub id: u64,
    pub transport: Transport,
    pub peer: String,
    /// `handshake`, `active` or `closing`.
    pub phase: String,
    pub counters: Counters,
    pub stages: BTreeMap<String, StageSummary>,
}

pub(crate) fn snapshot(shared: &Shared) -> StatsSnapshot {
    let (retired, conns) = shared.retired_and_live();
    let (mut stages, mut counters) = (retired.stages, retired.counters);
    let mut per_connection = Vec::with_capacity(conns.len());
    for c in &conns {
        let s = lock(&c.stats);
        stages.merge(&s.stages);
        counters.merge(&s.counters);
        per_connection.push(ConnectionSnapshot {
            id: c.id,
            transport: c.transport,
            peer: c.peer.to_string(),
            phase: lock(&c.phase).to_string(),
            counters: s.counters.clone(),
            stages: s.stages.snapshot(),
        });
    }
    let slots_in_use = shared.slots.in_use();
    counters.slots_in_use = slots_in_use as u64;
    StatsSnapshot {
        version: env!("CARGO_PKG_VERSION").to_string(),
        dialect: shared.config.dialect,
        uptime_ms: shared.started.elapsed().as_millis() as u64,
        slots_in_use,
        slot_capacity: shared.slots.capacity(),
        max_clients: shared.config.max_clients,
        active_clients: shared.active_clients(),
        connections: conns.len(),
        double_releases: shared.slots.double_releases(),
        slots_shared: shared.slots.shared_reservations(),
        late_callbacks: shared.slots.late_callbacks(),
        counters,
        stages: stages.snapshot(),
        per_connection,
        faults: shared.config.faults.enabled().iter().map(|s| s.to_string()).collect(),
        hung: *shared.hung.borrow(),
    }
}
