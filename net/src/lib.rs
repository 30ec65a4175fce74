//! What every centrum process shares on the network: accepting under resource
//! exhaustion, cluster authentication, length-prefixed framed links, reconnect back-off,
//! liveness timers and TCP keepalive, the shutdown signal, a node's registration with the
//! master, server TLS (reloadable certificates, one stream type for plain and TLS), the
//! Prometheus text format and a node's operations port (health, readiness, metrics).

mod accept;
pub mod auth;
mod backoff;
mod frame;
mod keepalive;
mod liveness;
mod open_link;
pub mod ops;
mod pending;
pub mod prometheus;
mod register;
pub mod seat;
mod stream;
mod tasks;
pub mod tls;

pub use accept::Acceptor;
pub use backoff::Backoff;
pub use frame::{FrameError, Framed, LinkError, framed, recv, send, send_bytes};
pub use keepalive::{KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_RETRIES, keepalive};
pub use liveness::{Beat, LiveFrames, Liveness};
pub use open_link::{LinkOpener, shown};
pub use pending::{Pending, PendingSlot};
pub use register::{
    Control, MASTER_ID, RegisterError, Registration, Unregistered, register, register_and_heartbeat,
};
pub use stream::ServerStream;
pub use tasks::{wait_tasks, write_queued};
pub use tls::{LinkTls, ServerTls, TlsCounters, TlsError, TlsPart, link_connector};
pub use tokio_util::sync::CancellationToken as Shutdown;
