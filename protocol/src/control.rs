//! Messages between a node (front or back) and the master, on a length-prefixed TCP
//! link the node opens: `Register`, the master's `Challenge`, the node's `Prove`, then
//! `Registered` and a `Heartbeat` every `limits.heartbeat_ms`.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::codec::tagged_enum;

tagged_enum! {
    /// Node to master.
    #[derive(Debug, Clone, PartialEq)]
    pub enum NodeToMaster {
        Register(Register) = 0,
        Heartbeat(Heartbeat) = 1,
        Prove(Prove) = 2,
    }
}

tagged_enum! {
    /// Master to node.
    #[derive(Debug, Clone, PartialEq)]
    pub enum MasterToNode {
        Registered(Registered) = 0,
        Refused(Refused) = 1,
        Challenge(Challenge) = 2,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Front,
    Back,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Register {
    pub version: u32,
    pub role: Role,
    pub id: String,
    pub pid: u32,
    /// The address the node actually listens on (clients for a front, links for a back).
    pub listen: String,
    /// Fresh random bytes (`NONCE_BYTES` of them) for this link's proofs.
    pub nonce: Bytes,
}

/// The master's answer to `Register`: its nonce and its proof that it holds the cluster
/// secret. A node that cannot verify the proof closes the link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Challenge {
    pub nonce: Bytes,
    pub proof: Bytes,
}

/// The node's proof that it holds the cluster secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prove {
    pub proof: Bytes,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registered {
    pub master: String,
}

/// Registration refused. With `retry` the cause can pass (a wrong proof while secrets
/// are being rotated, an id still held by an instance that is going away) and the node
/// tries again after a back-off; without it (another cluster version) the node stops.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refused {
    pub reason: String,
    pub retry: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub stats: NodeStats,
}

/// What a node reports about itself; the master serves it in /status and /metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeStats {
    /// Connected clients (front) or joined clients (back).
    pub clients: u32,
    /// Open front-back links.
    pub links: u32,
    pub channels: Vec<ChannelStats>,
    /// Monotonic counters and gauges, Prometheus-named (`centrum_...`).
    pub metrics: Vec<Metric>,
}

/// A back's view of one of its channels.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChannelStats {
    pub name: String,
    pub app: String,
    pub clients: u32,
    pub entities: u32,
    pub tick: u32,
    pub tick_hz: u32,
    /// Mean and max time of one tick (inputs, app, patch) since the last heartbeat.
    pub tick_us_avg: u64,
    pub tick_us_max: u64,
    /// Ticks that took longer than the tick period, since start.
    pub overruns: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    pub name: String,
    pub help: String,
    pub kind: MetricKind,
    /// Label pairs beyond `node`, which the master adds.
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricKind {
    Counter,
    Gauge,
}
