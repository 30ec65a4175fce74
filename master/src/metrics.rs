//! The Prometheus text exposition (format 0.0.4) of /metrics: the master's own gauges,
//! per-channel numbers from the backs' heartbeats, and every metric the live nodes
//! report, labelled with the node's id (rendered by [`centrum_net::prometheus`]). Pure
//! rendering: no I/O, no locks.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use centrum_config::Config;
use centrum_net::TlsCounters;
use centrum_net::prometheus::Exposition;
use centrum_protocol::{Metric, MetricKind, Role};

use crate::registry::Node;
use crate::{ChildState, ChildStatus};

pub(crate) use centrum_net::prometheus::CONTENT_TYPE;

/// What the master's own HTTP endpoint counts: each of its limits as it acts.
#[derive(Debug, Default)]
pub(crate) struct HttpCounters {
    /// Open connections (a gauge).
    pub(crate) connections: AtomicU64,
    pub(crate) accept_errors: AtomicU64,
    pub(crate) header_timeouts: AtomicU64,
    pub(crate) body_timeouts: AtomicU64,
    pub(crate) idle_timeouts: AtomicU64,
    /// Connections closed at `max_connections` to make room for a new one.
    pub(crate) evicted: AtomicU64,
    pub(crate) login_throttled: AtomicU64,
    pub(crate) login_failures: AtomicU64,
    /// Live admin sessions (a gauge).
    pub(crate) sessions: AtomicU64,
    /// Sessions ended early to make room at `max_sessions`.
    pub(crate) sessions_evicted: AtomicU64,
}

/// Renders /metrics from the config, the live nodes, the supervised processes, the
/// master's HTTP counters and its other own counters (`own`, without labels).
pub(crate) fn render(
    config: &Config,
    nodes: &[Node],
    supervised: &[ChildStatus],
    http: &HttpCounters,
    own: &[Metric],
) -> String {
    let mut exp = Exposition::new();
    http_samples(&mut exp, http);
    for metric in own {
        exp.own(&metric.name, &metric.help, metric.kind, &[], metric.value);
    }
    exp.own(
        "centrum_master_up",
        "Whether the master is up.",
        MetricKind::Gauge,
        &[],
        1.0,
    );
    for role in [Role::Front, Role::Back] {
        let live = nodes.iter().filter(|node| node.role == role).count();
        exp.own(
            "centrum_master_nodes",
            "Live nodes registered with the master, by role.",
            MetricKind::Gauge,
            &[("role", crate::registry::role_name(role))],
            live as f64,
        );
    }
    for child in supervised {
        // One sample per state, 1 for the current one: `== 1` selects, `max by (state)`
        // counts, and a state change never leaves a stale series behind.
        for state in ChildState::ALL {
            exp.own(
                "centrum_master_node_state",
                "What `centrum up` is doing with each node it supervises: running, restarting, \
                 failed (it keeps exiting) or stopped; 1 for the current state.",
                MetricKind::Gauge,
                &[("node", &child.name), ("state", state.as_str())],
                if child.state == state { 1.0 } else { 0.0 },
            );
        }
        exp.own(
            "centrum_master_node_restarts_total",
            "Processes `centrum up` started for a node after its first, whatever the reason.",
            MetricKind::Counter,
            &[("node", &child.name)],
            child.restarts as f64,
        );
        exp.own(
            "centrum_master_node_failures",
            "Quick exits of a supervised node in a row; at supervision.max_failures it is failed.",
            MetricKind::Gauge,
            &[("node", &child.name)],
            f64::from(child.failures),
        );
    }
    for back in &config.backs {
        let Some(node) = nodes
            .iter()
            .find(|node| node.role == Role::Back && node.id == back.id)
        else {
            continue;
        };
        for channel in &back.channels {
            let Some(stats) = node.stats.channels.iter().find(|c| c.name == channel.name) else {
                continue;
            };
            let labels = [
                ("channel", channel.name.as_str()),
                ("back", back.id.as_str()),
            ];
            exp.own(
                "centrum_channel_clients",
                "Clients joined to the channel, from its back's latest heartbeat.",
                MetricKind::Gauge,
                &labels,
                f64::from(stats.clients),
            );
            exp.own(
                "centrum_channel_tick_us_avg",
                "Mean tick duration in microseconds between the back's last two heartbeats.",
                MetricKind::Gauge,
                &labels,
                stats.tick_us_avg as f64,
            );
            exp.own(
                "centrum_channel_overruns_total",
                "Ticks of the channel that took longer than the tick period.",
                MetricKind::Counter,
                &labels,
                stats.overruns as f64,
            );
        }
    }
    for node in nodes {
        for metric in &node.stats.metrics {
            exp.reported(metric, &[("node", &node.id)]);
        }
    }
    exp.render()
}

/// The master's HTTP limits: every sample always present, 0 until the limit acts.
fn http_samples(exp: &mut Exposition, http: &HttpCounters) {
    let value = |counter: &AtomicU64| counter.load(Relaxed) as f64;
    exp.own(
        "centrum_master_http_connections",
        "HTTP connections open on the master.",
        MetricKind::Gauge,
        &[],
        value(&http.connections),
    );
    exp.own(
        "centrum_master_http_accept_errors_total",
        "Failed accepts on the master's HTTP port (for want of file descriptors or memory).",
        MetricKind::Counter,
        &[],
        value(&http.accept_errors),
    );
    for (kind, counter) in [
        ("header", &http.header_timeouts),
        ("body", &http.body_timeouts),
        ("idle", &http.idle_timeouts),
    ] {
        exp.own(
            "centrum_master_http_timeouts_total",
            "HTTP connections or requests the master ended for time: a head or a body not \
             sent within master.limits.header_timeout_ms, or a connection idle for \
             master.limits.idle_timeout_ms.",
            MetricKind::Counter,
            &[("kind", kind)],
            value(counter),
        );
    }
    exp.own(
        "centrum_master_http_evicted_total",
        "HTTP connections closed at master.limits.max_connections to make room for a new one.",
        MetricKind::Counter,
        &[],
        value(&http.evicted),
    );
    exp.own(
        "centrum_master_login_throttled_total",
        "Dashboard logins refused with 429: over master.limits.login_attempts_per_minute.",
        MetricKind::Counter,
        &[],
        value(&http.login_throttled),
    );
    exp.own(
        "centrum_master_login_failures_total",
        "Dashboard logins with a wrong admin token.",
        MetricKind::Counter,
        &[],
        value(&http.login_failures),
    );
    exp.own(
        "centrum_master_admin_sessions",
        "Dashboard logins in force.",
        MetricKind::Gauge,
        &[],
        value(&http.sessions),
    );
    exp.own(
        "centrum_master_admin_sessions_evicted_total",
        "Dashboard logins ended early to make room at master.limits.max_sessions.",
        MetricKind::Counter,
        &[],
        value(&http.sessions_evicted),
    );
}

/// One of the master's own counters, unlabelled, as a metric for [`render`].
pub(crate) fn counter(name: &str, help: &str, value: &AtomicU64) -> Metric {
    Metric {
        name: name.into(),
        help: help.into(),
        kind: MetricKind::Counter,
        labels: Vec::new(),
        value: value.load(Relaxed) as f64,
    }
}

/// The master's TLS counters, when it serves https://, as its own metrics.
pub(crate) fn tls_metrics(tls: &TlsCounters) -> Vec<Metric> {
    vec![
        counter(
            "centrum_master_tls_reloads_total",
            "TLS certificates of the master's https:// reloaded (SIGHUP, or the files changed).",
            &tls.reloads,
        ),
        counter(
            "centrum_master_tls_reload_failures_total",
            "TLS certificate reloads of the master that failed; the certificate loaded before stays in use.",
            &tls.reload_failures,
        ),
        counter(
            "centrum_master_tls_handshake_failures_total",
            "HTTP connections to the master whose TLS handshake failed or did not finish within limits.handshake_timeout_ms.",
            &tls.handshake_failures,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    use centrum_config::{BackConfig, ChannelConfig, FrontConfig, Limits, MasterConfig};
    use centrum_protocol::{CLUSTER_VERSION, ChannelStats, NodeStats, Register};
    use tokio::time::Instant;

    use crate::registry::Registry;

    fn config() -> Config {
        let addr = "127.0.0.1:0".parse().expect("addr");
        Config {
            cluster: Default::default(),
            master: MasterConfig {
                host: "127.0.0.1".into(),
                http: addr,
                nodes: addr,
                advertise: None,
                admin_token: None,
                admin_token_env: None,
                admin_token_file: None,
                limits: Default::default(),
                tls: None,
            },
            fronts: vec![FrontConfig {
                id: "front-1".into(),
                pool: false,
                host: "127.0.0.1".into(),
                listen: addr,
                public_url: None,
                tls: None,
                ops: None,
            }],
            backs: vec![BackConfig {
                id: "back-1".into(),
                host: "127.0.0.1".into(),
                listen: addr,
                advertise: None,
                tick_hz: 20,
                channels: vec![ChannelConfig {
                    name: "arena".into(),
                    app: "arena".into(),
                    anonymous: false,
                }],
                rooms: Vec::new(),
                data_dir: None,
                tls: None,
                ops: None,
            }],
            limits: Limits::default(),
            calls: Default::default(),
            access: Default::default(),
            store: Default::default(),
            supervision: Default::default(),
            matchmaker: Default::default(),
            auth: None,
        }
    }

    fn metric(name: &str, kind: MetricKind, labels: &[(&str, &str)], value: f64) -> Metric {
        Metric {
            name: name.into(),
            help: format!("Help of {name}."),
            kind,
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            value,
        }
    }

    fn nodes(reports: Vec<(Role, &str, NodeStats)>) -> Vec<Node> {
        let registry = Registry::new(
            std::time::Duration::from_secs(3),
            std::time::Duration::from_secs(10),
        );
        let now = Instant::now();
        for (role, id, stats) in reports {
            let reg = Register {
                version: CLUSTER_VERSION,
                role,
                id: id.into(),
                pid: 1,
                listen: String::new(),
                nonce: Default::default(),
            };
            let link = registry.insert(&reg, now).expect("insert");
            assert!(registry.heartbeat(id, link, stats, now));
        }
        registry.live(now)
    }

    #[test]
    fn master_gauges_without_nodes() {
        let text = render(&config(), &[], &[], &HttpCounters::default(), &[]);
        // After the master's HTTP families (`centrum_master_a..`, `_h..`, `_l..`).
        assert!(
            text.ends_with(
                "# HELP centrum_master_nodes Live nodes registered with the master, by role.\n\
             # TYPE centrum_master_nodes gauge\n\
             centrum_master_nodes{role=\"front\"} 0\n\
             centrum_master_nodes{role=\"back\"} 0\n\
             # HELP centrum_master_up Whether the master is up.\n\
             # TYPE centrum_master_up gauge\n\
             centrum_master_up 1\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn the_http_limits_are_counted() {
        let http = HttpCounters::default();
        http.connections.store(3, Relaxed);
        http.header_timeouts.store(4, Relaxed);
        http.idle_timeouts.store(5, Relaxed);
        http.evicted.store(6, Relaxed);
        http.login_throttled.store(7, Relaxed);
        http.login_failures.store(8, Relaxed);
        http.sessions.store(2, Relaxed);
        let text = render(&config(), &[], &[], &http, &[]);
        for line in [
            "# TYPE centrum_master_http_connections gauge\ncentrum_master_http_connections 3\n",
            "centrum_master_http_accept_errors_total 0\n",
            "# TYPE centrum_master_http_timeouts_total counter\n\
             centrum_master_http_timeouts_total{kind=\"header\"} 4\n\
             centrum_master_http_timeouts_total{kind=\"body\"} 0\n\
             centrum_master_http_timeouts_total{kind=\"idle\"} 5\n",
            "centrum_master_http_evicted_total 6\n",
            "centrum_master_login_throttled_total 7\n",
            "centrum_master_login_failures_total 8\n",
            "# TYPE centrum_master_admin_sessions gauge\ncentrum_master_admin_sessions 2\n",
            "centrum_master_admin_sessions_evicted_total 0\n",
        ] {
            assert!(text.contains(line), "{line} in:\n{text}");
        }
    }

    #[test]
    fn supervised_nodes_have_one_state_set_restarts_and_failures() {
        let child = ChildStatus {
            name: "back-1".into(),
            state: ChildState::Failed,
            pid: None,
            adopted: false,
            restarts: 12,
            failures: 10,
            last_exit: Some("exit code 1".into()),
            stderr_tail: None,
            retry_at: None,
            log: None,
        };
        let text = render(&config(), &[], &[child], &HttpCounters::default(), &[]);
        for line in [
            "centrum_master_node_state{node=\"back-1\",state=\"running\"} 0\n",
            "centrum_master_node_state{node=\"back-1\",state=\"restarting\"} 0\n",
            "centrum_master_node_state{node=\"back-1\",state=\"failed\"} 1\n",
            "centrum_master_node_state{node=\"back-1\",state=\"stopped\"} 0\n",
            "# TYPE centrum_master_node_restarts_total counter\n\
             centrum_master_node_restarts_total{node=\"back-1\"} 12\n",
            "# TYPE centrum_master_node_failures gauge\n\
             centrum_master_node_failures{node=\"back-1\"} 10\n",
        ] {
            assert!(text.contains(line), "{line} in:\n{text}");
        }
    }

    #[test]
    fn node_metrics_are_grouped_labelled_and_escaped() {
        let back = NodeStats {
            channels: vec![ChannelStats {
                name: "arena".into(),
                clients: 4,
                tick_us_avg: 120,
                overruns: 2,
                ..ChannelStats::default()
            }],
            metrics: vec![
                metric(
                    "centrum_x_total",
                    MetricKind::Counter,
                    &[("channel", "a\"b\\c\nd")],
                    3.0,
                ),
                metric("centrum_ratio", MetricKind::Gauge, &[], 0.25),
            ],
            ..NodeStats::default()
        };
        let front = NodeStats {
            metrics: vec![metric("centrum_x_total", MetricKind::Counter, &[], 7.0)],
            ..NodeStats::default()
        };
        let text = render(
            &config(),
            &nodes(vec![
                (Role::Back, "back-1", back),
                (Role::Front, "front-1", front),
            ]),
            &[],
            &HttpCounters::default(),
            &[],
        );
        let expected_x = "# HELP centrum_x_total Help of centrum_x_total.\n\
             # TYPE centrum_x_total counter\n\
             centrum_x_total{node=\"back-1\",channel=\"a\\\"b\\\\c\\nd\"} 3\n\
             centrum_x_total{node=\"front-1\"} 7\n";
        assert!(text.contains(expected_x), "{text}");
        assert!(
            text.contains("centrum_ratio{node=\"back-1\"} 0.25\n"),
            "{text}"
        );
        assert!(text.contains(
            "# TYPE centrum_channel_overruns_total counter\n\
             centrum_channel_overruns_total{channel=\"arena\",back=\"back-1\"} 2\n"
        ));
        assert!(text.contains("centrum_channel_clients{channel=\"arena\",back=\"back-1\"} 4\n"));
        assert!(
            text.contains("centrum_channel_tick_us_avg{channel=\"arena\",back=\"back-1\"} 120\n")
        );
        assert!(text.contains("centrum_master_nodes{role=\"front\"} 1\n"));
        assert!(text.contains("centrum_master_nodes{role=\"back\"} 1\n"));
        assert_eq!(text.matches("# TYPE centrum_x_total ").count(), 1);
    }

    #[test]
    fn metrics_that_would_break_the_exposition_are_left_out() {
        let stats = NodeStats {
            metrics: vec![
                metric("bad name", MetricKind::Gauge, &[], 1.0),
                metric("centrum_ok", MetricKind::Gauge, &[("bad-label", "v")], 1.0),
                metric("centrum_ok", MetricKind::Gauge, &[("node", "spoof")], 1.0),
                metric(
                    "centrum_ok",
                    MetricKind::Gauge,
                    &[("a", "1"), ("a", "2")],
                    1.0,
                ),
                metric("centrum_ok", MetricKind::Gauge, &[("k", "v")], f64::NAN),
                // Contradicts the kind of the first `centrum_ok`.
                metric("centrum_ok", MetricKind::Counter, &[], 1.0),
                metric("centrum_master_up", MetricKind::Gauge, &[], 0.0),
                metric("centrum_inf", MetricKind::Gauge, &[], f64::NEG_INFINITY),
            ],
            ..NodeStats::default()
        };
        let text = render(
            &config(),
            &nodes(vec![(Role::Front, "front-1", stats)]),
            &[],
            &HttpCounters::default(),
            &[],
        );
        assert!(!text.contains("bad"), "{text}");
        assert!(!text.contains("spoof"), "{text}");
        assert_eq!(text.matches("\ncentrum_master_up").count(), 1, "{text}");
        assert!(text.contains("\ncentrum_master_up 1\n"), "{text}");
        assert!(
            text.contains("# TYPE centrum_ok gauge\ncentrum_ok{node=\"front-1\",k=\"v\"} NaN\n"),
            "{text}"
        );
        assert!(
            text.contains("centrum_inf{node=\"front-1\"} -Inf\n"),
            "{text}"
        );
        assert_eq!(text.matches("centrum_ok{").count(), 1, "{text}");
    }

    #[test]
    fn help_text_is_escaped() {
        let stats = NodeStats {
            metrics: vec![Metric {
                help: "line one\nline two".into(),
                ..metric("centrum_h", MetricKind::Gauge, &[], 1.0)
            }],
            ..NodeStats::default()
        };
        let text = render(
            &config(),
            &nodes(vec![(Role::Front, "front-1", stats)]),
            &[],
            &HttpCounters::default(),
            &[],
        );
        assert!(
            text.contains("# HELP centrum_h line one\\nline two\n"),
            "{text}"
        );
    }
}
