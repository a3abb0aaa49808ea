//! One connection's identity, life-cycle phase and counters, shared by its tasks and the hub.

use std::net::SocketAddr;
use std::sync::Mutex;

use acip::stats::{Counters, Stage, StageHistograms};
use acip::{PacketType, Transport};
use tokio::sync::watch;

use crate::sync::lock;

/// Per-connection timings and counters.
#[derive(Debug, Default)]
pub(crate) struct ConnStats {
    pub stages: StageHistograms,
    pub counters: Counters,
}

/// One connection, from accept to teardown.
#[derive(Debug)]
pub(crate) struct ConnInfo {
    pub id: u64,
    pub transport: Transport,
    pub peer: SocketAddr,
    pub stats: Mutex<ConnStats>,
    /// Life-cycle phase, for `/stats` (`handshake`, `active`, `closing`).
    pub phase: Mutex<&'static str>,
    /// Set to `true` to end the connection (kick, server shutdown, a task that failed).
    pub closing: watch::Sender<bool>,
}

impl ConnInfo {
    pub fn record(&self, stage: Stage, d: std::time::Duration) {
        lock(&self.stats).stages.record(stage, d);
    }
    pub fn count_rx(&self, t: PacketType, wire: usize) {
        lock(&self.stats).counters.count_rx(t, wire);
    }
    pub fn count_tx(&self, t: PacketType, wire: usize) {
        lock(&self.stats).counters.count_tx(t, wire);
    }
    pub fn count_drop(&self, reason: &str) {
        lock(&self.stats).counters.count_drop(reason);
    }
    pub fn count_error(&self, kind: &str) {
        lock(&self.stats).counters.count_error(kind);
    }
    pub fn set_phase(&self, phase: &'static str) {
        *lock(&self.phase) = phase;
    }
    /// Asks every task of this connection to stop.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }
    pub fn is_closing(&self) -> bool {
        *self.closing.borrow()
    }
}
