//! Ports, and a cluster secret, for clusters of real processes started by a test.

/// A port free right now. The child binds it a moment later; another process taking
/// it in between would fail the test loudly, not wrongly.
#[allow(dead_code)] // The test over several hosts uses fixed ports in its own namespaces.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// The `[cluster]` table of a test's config, for nodes started one by one (`centrum up`
/// makes a secret of its own when the config has none).
#[allow(dead_code)] // Only the test binaries that start nodes one by one use it.
pub(crate) const CLUSTER_SECRET_TOML: &str =
    "[cluster]\nsecret = \"the process tests' cluster secret\"\n";
