//! State shared by all connections of one server: the slot pool (ACIP-SPEC.md 7.1), the registry of
//! connections and of active clients (whose latest frames make up the grid, 7.4), and the statistics of
//! connections that have ended.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use acip::PacketType;
use tokio::sync::watch;

use crate::config::ServerConfig;
use crate::conn::Outbox;
use crate::conninfo::{ConnInfo, ConnStats};
use crate::render::RgbFrame;
use crate::slots::{SlotLease, Slots};
use crate::sync::lock;

/// Which listener a connection came in on: the workspace's one transport enum.
pub use acip::Transport;

/// What the renderer needs to know about a client (from its CLIENT_CAPABILITIES).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RenderCaps {
    pub width: u16,
    pub height: u16,
    pub fps: u8,
}

/// A client past CLIENT_CAPABILITIES: a source in the grid and a receiver of ASCII frames.
#[derive(Debug)]
pub(crate) struct ClientEntry {
    pub conn: Arc<ConnInfo>,
    pub caps: Mutex<RenderCaps>,
    /// Latest IMAGE_FRAME (latest wins; the replaced frame is simply superseded, as in the real server).
    pub latest: Mutex<Option<Arc<RgbFrame>>>,
    pub outbox: Outbox,
}

/// Server-wide state.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: ServerConfig,
    pub slots: Slots,
    pub conns: Mutex<BTreeMap<u64, Arc<ConnInfo>>>,
    pub clients: Mutex<BTreeMap<u64, Arc<ClientEntry>>>,
    /// Stats of ended connections, merged in at teardown, plus server-level events (SERVER_FULL, HTTP).
    pub retired: Mutex<ConnStats>,
    pub next_id: AtomicU64,
    pub started: Instant,
    pub shutdown: watch::Receiver<bool>,
    /// `--fault hang-on-interleave` fired: nothing is accepted or read any more.
    pub hung: watch::Sender<bool>,
}

impl Shared {
    pub fn new(config: ServerConfig, shutdown: watch::Receiver<bool>) -> Self {
        let slots = Slots::new(config.slot_capacity, config.max_clients, config.faults.stale_callback);
        Shared {
            config,
            slots,
            conns: Mutex::new(BTreeMap::new()),
            clients: Mutex::new(BTreeMap::new()),
            retired: Mutex::new(ConnStats::default()),
            next_id: AtomicU64::new(1),
            started: Instant::now(),
            shutdown,
            hung: watch::channel(false).0,
        }
    }

    /// Registers a new connection.
    pub fn open_conn(&self, transport: Transport, peer: SocketAddr) -> Arc<ConnInfo> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (closing, _) = watch::channel(false);
        let info = Arc::new(ConnInfo {
            id,
            transport,
            peer,
            stats: Mutex::new(ConnStats::default()),
            phase: Mutex::new("handshake"),
            closing,
        });
        lock(&info.stats).counters.connections_opened += 1;
        lock(&self.conns).insert(id, info.clone());
        info
    }

    /// Unregisters a connection and keeps its statistics.
    /// Lock order is `conns`, then the connection's `stats`, then `retired`: holding `conns` while the
    /// counts move makes every snapshot see them exactly once (live or retired, never neither).
    pub fn retire_conn(&self, info: &ConnInfo) {
        let mut conns = lock(&self.conns);
        conns.remove(&info.id);
        let s = lock(&info.stats);
        let mut r = lock(&self.retired);
        r.stages.merge(&s.stages);
        r.counters.merge(&s.counters);
        r.counters.connections_closed += 1;
    }

    /// The retired totals and the live connections, taken together under `conns` so that a connection
    /// retiring meanwhile is in exactly one of them.
    pub fn retired_and_live(&self) -> (ConnStats, Vec<Arc<ConnInfo>>) {
        let conns = lock(&self.conns);
        let r = lock(&self.retired);
        let retired = ConnStats { stages: r.stages.clone(), counters: r.counters.clone() };
        (retired, conns.values().cloned().collect())
    }

    /// Counts a server-level event that belongs to no connection (e.g. `server_full`).
    pub fn count_error(&self, kind: &str) {
        lock(&self.retired).counters.count_error(kind);
    }

    /// Adds a client to the grid and returns the number of active clients.
    pub fn add_client(&self, entry: Arc<ClientEntry>) -> usize {
        let mut c = lock(&self.clients);
        c.insert(entry.conn.id, entry);
        c.len()
    }

    /// Removes a client from the grid; `true` if it was there.
    pub fn remove_client(&self, id: u64) -> bool {
        lock(&self.clients).remove(&id).is_some()
    }

    pub fn active_clients(&self) -> usize {
        lock(&self.clients).len()
    }

    /// The latest frame of every client that has sent one, in client order (the grid's sources).
    pub fn grid_sources(&self) -> Vec<Arc<RgbFrame>> {
        let clients: Vec<Arc<ClientEntry>> = lock(&self.clients).values().cloned().collect();
        clients.iter().filter_map(|c| lock(&c.latest).clone()).collect()
    }

    /// Sends SERVER_STATE (ACIP-SPEC.md 3.14) to every active client. Never waits: a full queue counts a
    /// drop on that connection.
    pub fn broadcast_state(&self) {
        let clients: Vec<Arc<ClientEntry>> = lock(&self.clients).values().cloned().collect();
        // A connection being torn down no longer counts (the real server broadcasts after remove_client).
        let connected = lock(&self.conns).values().filter(|c| !c.is_closing()).count() as u32;
        let active = clients.len() as u32;
        let mut payload = [0u8; 32];
        payload[0..4].copy_from_slice(&connected.to_be_bytes());
        payload[4..8].copy_from_slice(&active.to_be_bytes());
        for c in clients {
            c.outbox.try_send(acip::Packet::new(PacketType::SERVER_STATE, payload.to_vec()));
        }
    }

    /// Reserves a slot for a new connection.
    pub fn reserve_slot(&self) -> Result<SlotLease, crate::slots::SlotFull> {
        self.slots.reserve()
    }
}
