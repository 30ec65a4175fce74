//! Ports for clusters of real processes started by a test.

/// A port free right now. The child binds it a moment later; another process taking
/// it in between would fail the test loudly, not wrongly.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}
