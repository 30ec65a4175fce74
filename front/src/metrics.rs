//! A front's counters, reported to the master in every heartbeat.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use centrum_net::TlsCounters;
use centrum_net::ops::OpsCounters;

use centrum_protocol::{Metric, MetricKind};

use crate::auth::{AuthFailure, Refused};

#[derive(Debug, Default)]
pub(crate) struct FrontMetrics {
    pub(crate) connections_total: AtomicU64,
    /// Failed accepts (out of file descriptors, for example), waited out.
    pub(crate) accept_errors: AtomicU64,
    pub(crate) connections_refused: AtomicU64,
    pub(crate) handshake_failures: AtomicU64,
    pub(crate) resume_hellos: AtomicU64,
    pub(crate) protocol_errors: AtomicU64,
    pub(crate) messages_in: AtomicU64,
    pub(crate) inputs: AtomicU64,
    pub(crate) inputs_dropped: AtomicU64,
    pub(crate) patches: AtomicU64,
    pub(crate) messages_out: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) slow_client_resyncs: AtomicU64,
    pub(crate) slow_client_disconnects: AtomicU64,
    /// Messages that waited in a client's queue: its socket could not take them at once.
    pub(crate) writes_queued: AtomicU64,
    pub(crate) links: AtomicU64,
    pub(crate) link_failures: AtomicU64,
    /// Links closed because the back sent nothing for `limits.link_timeout_ms`.
    pub(crate) link_timeouts: AtomicU64,
    /// Client connections closed because nothing arrived for `limits.client_timeout_ms`.
    pub(crate) client_timeouts: AtomicU64,
    /// The games' messages queued to clients, and those dropped for a client that was
    /// behind (it is told with `messages_dropped`).
    pub(crate) game_messages: AtomicU64,
    pub(crate) game_messages_dropped: AtomicU64,
    /// HTTP calls to channels: all, answered with another status than 200, timed out.
    pub(crate) calls: AtomicU64,
    pub(crate) calls_failed: AtomicU64,
    pub(crate) calls_timed_out: AtomicU64,
    /// Hellos whose token was refused (or missing where one is required), by
    /// [`AuthFailure::index`].
    pub(crate) auth_failures: [AtomicU64; AuthFailure::LABELS.len()],
    /// Hellos with a token that verified.
    pub(crate) auth_verified: AtomicU64,
    /// Joins refused by the front for want of a token or of the token's leave, by
    /// [`Refused`] discriminant.
    pub(crate) joins_refused: [AtomicU64; Refused::LABELS.len()],
    /// Client frames dropped over `limits.client_messages_per_s` or `client_bytes_per_s`.
    pub(crate) rate_limited: AtomicU64,
    /// Clients closed after `limits.client_flood_close_ms` over those limits.
    pub(crate) rate_limit_closes: AtomicU64,
    /// Clients closed after `limits.client_idle_ms` in no channel.
    pub(crate) idle_closes: AtomicU64,
    /// Connections refused (429) at `limits.max_connections_per_ip`.
    pub(crate) ip_cap_refusals: AtomicU64,
    /// Connections refused (429) over `limits.connections_per_ip_per_s`.
    pub(crate) ip_rate_refusals: AtomicU64,
    /// Refused connections closed without an answer: too many were being answered.
    pub(crate) refusals_unanswered: AtomicU64,
    /// WebSocket upgrades refused (403) for an origin not in `access.allowed_origins`.
    pub(crate) origin_refusals: AtomicU64,
    /// Clients closed for a message in more than `ws::MAX_FRAGMENTS` frames.
    pub(crate) fragment_closes: AtomicU64,
    /// Clients closed for a frame over `limits.hello_max_bytes` before their Hello.
    pub(crate) hello_too_large: AtomicU64,
    /// From a patch's arrival from the back to its write to a client's socket.
    patch_delay_us_sum: AtomicU64,
    patch_writes: AtomicU64,
    /// The longest such delay since the last heartbeat.
    patch_delay_us_max: AtomicU64,
    /// Certificate reloads and failed TLS handshakes (all zero without `tls`).
    pub(crate) tls: Arc<TlsCounters>,
    /// What the ops port counts (all zero without `ops`).
    pub(crate) ops: Arc<OpsCounters>,
}

impl FrontMetrics {
    /// One patch written to one client, `us` microseconds after the back's patch arrived.
    pub(crate) fn record_patch_delay(&self, us: u64) {
        self.patch_delay_us_sum.fetch_add(us, Relaxed);
        self.patch_writes.fetch_add(1, Relaxed);
        self.patch_delay_us_max.fetch_max(us, Relaxed);
    }

    /// Every metric. The delay maximum is since the last heartbeat: a heartbeat resets
    /// it (`reset`), a scrape of the ops port only reads it.
    pub(crate) fn metrics(&self, clients: usize, reset: bool) -> Vec<Metric> {
        use MetricKind::{Counter, Gauge};
        let all: [(&str, &str, MetricKind, &AtomicU64); 37] = [
            (
                "centrum_front_accept_errors_total",
                "Failed accepts of client connections (out of file descriptors, for example); each is waited out, not retried at once.",
                Counter,
                &self.accept_errors,
            ),
            (
                "centrum_front_connections_total",
                "Client connections accepted.",
                Counter,
                &self.connections_total,
            ),
            (
                "centrum_front_connections_refused_total",
                "Connections refused at the connection limit.",
                Counter,
                &self.connections_refused,
            ),
            (
                "centrum_front_handshake_failures_total",
                "Connections that failed the WebSocket handshake or hello.",
                Counter,
                &self.handshake_failures,
            ),
            (
                "centrum_front_resume_hellos_total",
                "Hellos with a well-formed resume token (the backs decide what is restored).",
                Counter,
                &self.resume_hellos,
            ),
            (
                "centrum_front_protocol_errors_total",
                "Client messages refused as malformed or out of place.",
                Counter,
                &self.protocol_errors,
            ),
            (
                "centrum_front_messages_in_total",
                "Client messages received.",
                Counter,
                &self.messages_in,
            ),
            (
                "centrum_front_inputs_total",
                "Inputs forwarded to backs.",
                Counter,
                &self.inputs,
            ),
            (
                "centrum_front_inputs_dropped_total",
                "Inputs dropped because the link to the back was full.",
                Counter,
                &self.inputs_dropped,
            ),
            (
                "centrum_front_patches_total",
                "Patches received from backs and fanned out.",
                Counter,
                &self.patches,
            ),
            (
                "centrum_front_messages_out_total",
                "Messages written to clients.",
                Counter,
                &self.messages_out,
            ),
            (
                "centrum_front_bytes_out_total",
                "WebSocket payload bytes written to clients.",
                Counter,
                &self.bytes_out,
            ),
            (
                "centrum_front_slow_client_resyncs_total",
                "Slow-client events resolved by a full-state resync.",
                Counter,
                &self.slow_client_resyncs,
            ),
            (
                "centrum_front_slow_client_disconnects_total",
                "Slow clients disconnected.",
                Counter,
                &self.slow_client_disconnects,
            ),
            (
                "centrum_front_writes_queued_total",
                "Messages that waited in a client's queue because its socket could not take them at once (the rest are written straight into the socket).",
                Counter,
                &self.writes_queued,
            ),
            (
                "centrum_front_links",
                "Open links to backs.",
                Gauge,
                &self.links,
            ),
            (
                "centrum_front_link_failures_total",
                "Link attempts or links to backs that failed.",
                Counter,
                &self.link_failures,
            ),
            (
                "centrum_front_link_timeouts_total",
                "Links closed because the back sent nothing, not even a heartbeat, for limits.link_timeout_ms (also counted in link_failures).",
                Counter,
                &self.link_timeouts,
            ),
            (
                "centrum_front_client_timeouts_total",
                "Client connections closed because nothing, not even a pong, arrived for limits.client_timeout_ms.",
                Counter,
                &self.client_timeouts,
            ),
            (
                "centrum_front_rate_limited_total",
                "Client WebSocket frames dropped over limits.client_messages_per_s or limits.client_bytes_per_s (the client is told rate_limited).",
                Counter,
                &self.rate_limited,
            ),
            (
                "centrum_front_rate_limit_closes_total",
                "Clients closed (1008 rate_limited) after limits.client_flood_close_ms of frames dropped over their limits.",
                Counter,
                &self.rate_limit_closes,
            ),
            (
                "centrum_front_idle_closes_total",
                "Clients closed (1000 idle) after limits.client_idle_ms in no channel without a message other than Ping.",
                Counter,
                &self.idle_closes,
            ),
            (
                "centrum_front_ip_cap_refusals_total",
                "Connections refused with 429 because limits.max_connections_per_ip were open from the client's address.",
                Counter,
                &self.ip_cap_refusals,
            ),
            (
                "centrum_front_ip_rate_refusals_total",
                "Connections refused with 429 over limits.connections_per_ip_per_s from the client's address.",
                Counter,
                &self.ip_rate_refusals,
            ),
            (
                "centrum_front_refusals_unanswered_total",
                "Connections refused by the per-address limits and closed without a 429, because too many refusals were being answered already.",
                Counter,
                &self.refusals_unanswered,
            ),
            (
                "centrum_front_origin_refusals_total",
                "WebSocket upgrades refused with 403: their Origin is not in access.allowed_origins.",
                Counter,
                &self.origin_refusals,
            ),
            (
                "centrum_front_fragment_closes_total",
                "Clients closed (1008 too_many_fragments) for a message in more than 64 frames.",
                Counter,
                &self.fragment_closes,
            ),
            (
                "centrum_front_hello_too_large_total",
                "Clients closed (1009 too_large) for a frame over limits.hello_max_bytes before their Hello (also counted in handshake_failures).",
                Counter,
                &self.hello_too_large,
            ),
            (
                "centrum_front_game_messages_total",
                "Messages of the games (not state) queued to clients.",
                Counter,
                &self.game_messages,
            ),
            (
                "centrum_front_game_messages_dropped_total",
                "Messages of the games dropped for a client that was behind (told with messages_dropped).",
                Counter,
                &self.game_messages_dropped,
            ),
            (
                "centrum_front_calls_total",
                "HTTP calls to channels.",
                Counter,
                &self.calls,
            ),
            (
                "centrum_front_calls_failed_total",
                "HTTP calls answered with another status than 200.",
                Counter,
                &self.calls_failed,
            ),
            (
                "centrum_front_calls_timed_out_total",
                "HTTP calls whose channel did not answer within calls.timeout_ms (504).",
                Counter,
                &self.calls_timed_out,
            ),
            (
                "centrum_front_tls_reloads_total",
                "TLS certificates reloaded (SIGHUP, or the files changed).",
                Counter,
                &self.tls.reloads,
            ),
            (
                "centrum_front_tls_reload_failures_total",
                "TLS certificate reloads that failed; the certificate loaded before stays in use.",
                Counter,
                &self.tls.reload_failures,
            ),
            (
                "centrum_front_tls_handshake_failures_total",
                "Client connections whose TLS handshake failed or did not finish within limits.handshake_timeout_ms.",
                Counter,
                &self.tls.handshake_failures,
            ),
            (
                "centrum_front_patch_writes_total",
                "Patches written to clients (one per client per patch).",
                Counter,
                &self.patch_writes,
            ),
        ];
        // Values that are not a plain counter load: computed, converted or reset.
        let seconds = |us: u64| us as f64 / 1e6;
        let computed: [(&str, &str, MetricKind, f64); 3] = [
            (
                "centrum_front_patch_delay_seconds_total",
                "Sum over patch writes of the time from the patch's arrival from the back to its write to the client's socket; divided by centrum_front_patch_writes_total it is the front's mean fan-out delay.",
                Counter,
                seconds(self.patch_delay_us_sum.load(Relaxed)),
            ),
            (
                "centrum_front_patch_delay_max_seconds",
                "The longest fan-out delay of a patch write since the previous heartbeat.",
                Gauge,
                seconds(if reset {
                    self.patch_delay_us_max.swap(0, Relaxed)
                } else {
                    self.patch_delay_us_max.load(Relaxed)
                }),
            ),
            (
                "centrum_front_clients",
                "Connected clients.",
                Gauge,
                clients as f64,
            ),
        ];
        let loaded = all
            .into_iter()
            .map(|(name, help, kind, v)| (name, help, kind, v.load(Relaxed) as f64));
        let mut out: Vec<Metric> = loaded
            .chain(computed)
            .map(|(name, help, kind, value)| Metric {
                name: name.into(),
                help: help.into(),
                kind,
                labels: Vec::new(),
                value,
            })
            .collect();
        let labelled = |name: &str, help: &str, labels: &[&str], values: &[AtomicU64]| {
            labels
                .iter()
                .zip(values)
                .map(|(label, v)| Metric {
                    name: name.into(),
                    help: help.into(),
                    kind: Counter,
                    labels: vec![("reason".into(), (*label).into())],
                    value: v.load(Relaxed) as f64,
                })
                .collect::<Vec<_>>()
        };
        out.extend(labelled(
            "centrum_front_auth_failures_total",
            "Hellos refused for their token (close 1008, unauthorized), by what failed; missing: no token where one is required.",
            &AuthFailure::LABELS,
            &self.auth_failures,
        ));
        out.extend(labelled(
            "centrum_front_joins_refused_total",
            "Joins the front rejected before the back saw them: unauthorized (the channel needs a token), forbidden (the token's channel claim does not list it).",
            &Refused::LABELS,
            &self.joins_refused,
        ));
        out.push(Metric {
            name: "centrum_front_auth_verified_total".into(),
            help: "Hellos whose token verified.".into(),
            kind: Counter,
            labels: Vec::new(),
            value: self.auth_verified.load(Relaxed) as f64,
        });
        self.ops.metrics("front", &mut out);
        out
    }
}
