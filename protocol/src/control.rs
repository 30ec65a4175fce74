//! Messages between a node (front or back) and the master, on a length-prefixed TCP
//! link the node opens: `Register`, the master's `Challenge`, the node's `Prove`, then
//! `Registered` and a `Heartbeat` every `limits.heartbeat_ms`. A back also reports its
//! rooms (`Rooms`, what changed since its last report on this link) and makes rooms
//! the master asks for (`CreateRoom`, answered by `RoomCreated`).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::codec::tagged_enum;

/// The largest frame on a control link once both ends have proved they hold the
/// cluster secret: a heartbeat carries every metric of every channel of the config (a
/// few KiB each), so a back of thousands of channels outgrows `limits.max_frame_bytes`.
pub const CONTROL_FRAME_BYTES: u32 = 64 << 20;

tagged_enum! {
    /// Node to master.
    #[derive(Debug, Clone, PartialEq)]
    pub enum NodeToMaster {
        Register(Register) = 0,
        Heartbeat(Heartbeat) = 1,
        Prove(Prove) = 2,
        RoomCreated(RoomCreated) = 3,
        Rooms(RoomsReport) = 4,
    }
}

tagged_enum! {
    /// Master to node.
    #[derive(Debug, Clone, PartialEq)]
    pub enum MasterToNode {
        Registered(Registered) = 0,
        Refused(Refused) = 1,
        Challenge(Challenge) = 2,
        CreateRoom(CreateRoom) = 3,
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

/// The matchmaker asks a back to make a room. `room` is the id the master chose
/// (`<type>.<random>.<back id>`); a back refuses an id it has or had.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateRoom {
    /// The master's number for this request, echoed in the answer.
    pub request: u64,
    pub room: String,
    pub kind: String,
    /// The creation options (MessagePack the game defines), decoded by the game.
    pub options: Bytes,
}

/// The answer to [`CreateRoom`]: made, or why not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomCreated {
    pub request: u64,
    /// None when the room was made; else the matchmaker's error code
    /// (`bad_options`, `no_capacity`, `unknown_type`, `exists`) and a message.
    pub error: Option<(String, String)>,
    /// The metadata the game set in its `create` (MessagePack, empty for none), so that
    /// the room is listed with it at once.
    pub metadata: Bytes,
}

/// A back's rooms that changed since its last report on this link (all of them, first).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RoomsReport {
    pub rooms: Vec<RoomReport>,
    /// Rooms disposed since the last report.
    pub gone: Vec<String>,
}

/// One room as the matchmaker sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomReport {
    pub id: String,
    pub kind: String,
    /// Members, connected or held for resume.
    pub clients: u32,
    pub max_clients: u32,
    /// What the game set as the room's searchable metadata (MessagePack), or empty.
    pub metadata: Bytes,
    pub locked: bool,
    /// Seats (by their number) taken since the last report: the matchmaker stops
    /// counting them as reservations, since `clients` now counts them.
    pub seats_taken: Vec<u64>,
}
