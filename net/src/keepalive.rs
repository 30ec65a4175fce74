//! TCP keepalive on every socket centrum opens or accepts (links, client WebSockets,
//! master node connections): the kernel's last resort for a peer whose host vanished
//! while nothing was being sent. The heartbeats of links and clients find it sooner.

use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tokio::net::TcpStream;

/// Idle time before the first keepalive probe.
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
/// Time between two unanswered probes.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// Unanswered probes after which the kernel resets the connection: a dead peer is found
/// within `KEEPALIVE_IDLE + KEEPALIVE_RETRIES * KEEPALIVE_INTERVAL` (25 s) of silence.
pub const KEEPALIVE_RETRIES: u32 = 3;

/// Turns on TCP keepalive for `stream` with the settings above.
///
/// # Errors
/// The `setsockopt` error, which callers log and otherwise ignore: a socket without
/// keepalive still works, and the heartbeats above it still apply.
pub fn keepalive(stream: &TcpStream) -> std::io::Result<()> {
    let params = TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_RETRIES);
    SockRef::from(stream).set_tcp_keepalive(&params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keepalive_is_set_on_both_ends() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let (client, (server, _)) = (client.unwrap(), accepted.unwrap());
        for stream in [&client, &server] {
            let sock = SockRef::from(stream);
            assert!(!sock.keepalive().unwrap(), "off until asked for");
            keepalive(stream).unwrap();
            assert!(sock.keepalive().unwrap());
            assert_eq!(sock.tcp_keepalive_time().unwrap(), KEEPALIVE_IDLE);
            assert_eq!(sock.tcp_keepalive_interval().unwrap(), KEEPALIVE_INTERVAL);
            assert_eq!(sock.tcp_keepalive_retries().unwrap(), KEEPALIVE_RETRIES);
        }
    }
}
