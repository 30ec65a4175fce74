//! Counters a back keeps for the master's /status and /metrics: atomics written by
//! the tick loop and link tasks, read by the heartbeat.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use centrum_protocol::{ChannelStats, Metric, MetricKind};

/// One channel's counters.
#[derive(Debug, Default)]
pub(crate) struct ChannelMetrics {
    pub(crate) clients: AtomicU64,
    pub(crate) entities: AtomicU64,
    pub(crate) tick: AtomicU64,
    /// Tick durations since the last heartbeat: sum, count, max (microseconds).
    tick_us_sum: AtomicU64,
    tick_count: AtomicU64,
    tick_us_max: AtomicU64,
    /// Tick durations ever (microseconds), for a rate over any window.
    tick_us_total: AtomicU64,
    pub(crate) ticks: AtomicU64,
    pub(crate) overruns: AtomicU64,
    pub(crate) inputs: AtomicU64,
    pub(crate) inputs_dropped_full: AtomicU64,
    pub(crate) inputs_dropped_left: AtomicU64,
    pub(crate) inputs_refused: AtomicU64,
    /// Inputs whose seq was not after their membership's ack (`bad_seq`).
    pub(crate) inputs_bad_seq: AtomicU64,
    pub(crate) joins: AtomicU64,
    pub(crate) joins_rejected: AtomicU64,
    pub(crate) leaves: AtomicU64,
    /// Memberships held for a client whose connection closed, right now.
    pub(crate) held: AtomicU64,
    pub(crate) resumes: AtomicU64,
    pub(crate) resumes_expired: AtomicU64,
    pub(crate) patches: AtomicU64,
    pub(crate) patch_bytes: AtomicU64,
    pub(crate) full_states: AtomicU64,
    /// Messages the game sent (one per `send` or `broadcast`), and their data bytes.
    pub(crate) messages: AtomicU64,
    pub(crate) message_bytes: AtomicU64,
    /// Targeted messages whose client had no connection to send them on.
    pub(crate) messages_undelivered: AtomicU64,
    pub(crate) calls: AtomicU64,
    /// Calls answered with anything but a reply from the game.
    pub(crate) calls_failed: AtomicU64,
    /// Errors the game returned from `tick` or `leave`.
    pub(crate) app_errors: AtomicU64,
    /// Journal records written, and their bytes.
    pub(crate) journal_records: AtomicU64,
    pub(crate) journal_bytes: AtomicU64,
    /// Time to write (and sync) a tick's record: sum, count, max (microseconds).
    commit_us_sum: AtomicU64,
    commit_count: AtomicU64,
    pub(crate) commit_us_max: AtomicU64,
    /// Snapshots written.
    pub(crate) snapshots: AtomicU64,
    /// The longest time a tick spent copying the channel for a snapshot (microseconds).
    pub(crate) snapshot_capture_us: AtomicU64,
    /// Failed journal appends (each retried) and snapshot writes.
    pub(crate) store_errors: AtomicU64,
    /// Ticks that replayed other than they first ran (a game that is not deterministic).
    pub(crate) replay_divergences: AtomicU64,
    /// Joins refused because the state would no longer fit a link frame.
    pub(crate) joins_too_large: AtomicU64,
    /// States or patches not sent because they would not fit a link frame.
    pub(crate) frames_too_large: AtomicU64,
}

/// The back's counters across channels.
#[derive(Debug, Default)]
pub(crate) struct BackMetrics {
    pub(crate) links: AtomicU64,
    pub(crate) links_opened: AtomicU64,
    /// Failed accepts on the link port (out of file descriptors, for example).
    pub(crate) accept_errors: AtomicU64,
    /// Links refused in their handshake (any reason), and of those, the ones whose
    /// front did not prove it holds the cluster secret.
    pub(crate) links_refused: AtomicU64,
    pub(crate) links_unauthenticated: AtomicU64,
    /// Links closed in their handshake to make room for newer ones (at `PENDING_LINKS`).
    pub(crate) handshakes_evicted: AtomicU64,
    /// Certificate reloads and failed TLS handshakes of the link port (zero without
    /// `tls`).
    pub(crate) tls: std::sync::Arc<centrum_net::TlsCounters>,
    /// What the ops port counts (all zero without `ops`).
    pub(crate) ops: std::sync::Arc<centrum_net::ops::OpsCounters>,
    pub(crate) link_overflows: AtomicU64,
    pub(crate) link_errors: AtomicU64,
    /// Links closed because the front sent nothing for `limits.link_timeout_ms`.
    pub(crate) link_timeouts: AtomicU64,
}

impl ChannelMetrics {
    pub(crate) fn record_tick(&self, us: u64) {
        self.tick_us_total.fetch_add(us, Relaxed);
        self.tick_us_sum.fetch_add(us, Relaxed);
        self.tick_count.fetch_add(1, Relaxed);
        self.tick_us_max.fetch_max(us, Relaxed);
        self.ticks.fetch_add(1, Relaxed);
    }

    pub(crate) fn record_commit(&self, us: u64) {
        self.commit_us_sum.fetch_add(us, Relaxed);
        self.commit_count.fetch_add(1, Relaxed);
        self.commit_us_max.fetch_max(us, Relaxed);
    }

    /// The mean tick time since the last heartbeat (µs), which resets it (`reset`; a
    /// scrape only reads it): a room's share of its back's load, without the
    /// allocations of [`ChannelMetrics::stats`].
    pub(crate) fn tick_us_avg(&self, reset: bool) -> u64 {
        let (sum, count) = self.tick_window(reset);
        if reset {
            self.tick_us_max.store(0, Relaxed);
        }
        sum.checked_div(count).unwrap_or(0)
    }

    /// The sum and count of tick durations since the last heartbeat; reset with `reset`.
    fn tick_window(&self, reset: bool) -> (u64, u64) {
        if reset {
            (
                self.tick_us_sum.swap(0, Relaxed),
                self.tick_count.swap(0, Relaxed),
            )
        } else {
            (
                self.tick_us_sum.load(Relaxed),
                self.tick_count.load(Relaxed),
            )
        }
    }

    /// The channel's stats; a heartbeat resets the per-heartbeat tick timing (`reset`),
    /// a scrape only reads it.
    pub(crate) fn stats(&self, name: &str, app: &str, tick_hz: u32, reset: bool) -> ChannelStats {
        let (sum, count) = self.tick_window(reset);
        let max = if reset {
            self.tick_us_max.swap(0, Relaxed)
        } else {
            self.tick_us_max.load(Relaxed)
        };
        ChannelStats {
            name: name.to_owned(),
            app: app.to_owned(),
            clients: self.clients.load(Relaxed) as u32,
            entities: self.entities.load(Relaxed) as u32,
            tick: self.tick.load(Relaxed) as u32,
            tick_hz,
            tick_us_avg: sum.checked_div(count).unwrap_or(0),
            tick_us_max: max,
            overruns: self.overruns.load(Relaxed),
        }
    }

    pub(crate) fn metrics(&self, channel: &str, out: &mut Vec<Metric>) {
        let labels = vec![("channel".to_owned(), channel.to_owned())];
        self.each(|name, help, kind, value| {
            out.push(Metric {
                name: name.into(),
                help: help.into(),
                kind,
                labels: labels.clone(),
                value,
            });
        });
    }

    /// Every metric of the channel, in a fixed order: name, help, kind, value. No
    /// allocation, so that a back can sum thousands of rooms' every heartbeat.
    pub(crate) fn each(&self, mut f: impl FnMut(&'static str, &'static str, MetricKind, f64)) {
        let mut push = |name: &'static str, help: &'static str, kind, v: &AtomicU64| {
            f(name, help, kind, v.load(Relaxed) as f64);
        };
        use MetricKind::{Counter, Gauge};
        push(
            "centrum_back_ticks_total",
            "Ticks run.",
            Counter,
            &self.ticks,
        );
        push(
            "centrum_back_tick_overruns_total",
            "Ticks that took longer than the tick period.",
            Counter,
            &self.overruns,
        );
        push(
            "centrum_back_inputs_total",
            "Inputs applied.",
            Counter,
            &self.inputs,
        );
        push(
            "centrum_back_inputs_dropped_queue_full_total",
            "Inputs dropped because the channel's queue was full.",
            Counter,
            &self.inputs_dropped_full,
        );
        push(
            "centrum_back_inputs_dropped_left_total",
            "Inputs dropped because their client had left.",
            Counter,
            &self.inputs_dropped_left,
        );
        push(
            "centrum_back_inputs_refused_total",
            "Inputs the application refused.",
            Counter,
            &self.inputs_refused,
        );
        push(
            "centrum_back_inputs_bad_seq_total",
            "Inputs dropped because their seq was not after the client's ack.",
            Counter,
            &self.inputs_bad_seq,
        );
        push(
            "centrum_back_joins_total",
            "Joins accepted.",
            Counter,
            &self.joins,
        );
        push(
            "centrum_back_joins_rejected_total",
            "Joins rejected.",
            Counter,
            &self.joins_rejected,
        );
        push(
            "centrum_back_leaves_total",
            "Clients that left.",
            Counter,
            &self.leaves,
        );
        push(
            "centrum_back_held_sessions",
            "Memberships kept for disconnected clients to resume.",
            Gauge,
            &self.held,
        );
        push(
            "centrum_back_resumes_total",
            "Memberships a client resumed (on any front) within limits.resume_grace_ms.",
            Counter,
            &self.resumes,
        );
        push(
            "centrum_back_resumes_expired_total",
            "Held memberships whose client did not resume in time (they left).",
            Counter,
            &self.resumes_expired,
        );
        push(
            "centrum_back_patches_total",
            "Patches produced (each sent to every linked front with clients).",
            Counter,
            &self.patches,
        );
        push(
            "centrum_back_patch_bytes_total",
            "Bytes of patch bodies produced.",
            Counter,
            &self.patch_bytes,
        );
        push(
            "centrum_back_full_states_total",
            "Full states encoded (joins, relinks, resyncs).",
            Counter,
            &self.full_states,
        );
        push(
            "centrum_back_messages_total",
            "Messages the game sent to one client or to all.",
            Counter,
            &self.messages,
        );
        push(
            "centrum_back_message_bytes_total",
            "Bytes of the game's message data.",
            Counter,
            &self.message_bytes,
        );
        push(
            "centrum_back_messages_undelivered_total",
            "Messages to a client without a connection (away, or its front unlinked).",
            Counter,
            &self.messages_undelivered,
        );
        push(
            "centrum_back_calls_total",
            "Calls to the channel's game (HTTP, through a front).",
            Counter,
            &self.calls,
        );
        push(
            "centrum_back_calls_failed_total",
            "Calls not answered by the game: undecodable, refused, unsupported or overloaded.",
            Counter,
            &self.calls_failed,
        );
        push(
            "centrum_back_app_errors_total",
            "Errors the game returned from tick or leave.",
            Counter,
            &self.app_errors,
        );
        push(
            "centrum_back_journal_records_total",
            "Tick records written to the channel's journal.",
            Counter,
            &self.journal_records,
        );
        push(
            "centrum_back_journal_bytes_total",
            "Bytes of tick records written to the channel's journal.",
            Counter,
            &self.journal_bytes,
        );
        push(
            "centrum_back_snapshots_total",
            "Snapshots of the channel written to its store.",
            Counter,
            &self.snapshots,
        );
        push(
            "centrum_back_store_errors_total",
            "Failed journal writes (retried until they succeed) and snapshot writes.",
            Counter,
            &self.store_errors,
        );
        push(
            "centrum_back_replay_divergences_total",
            "Ticks that replayed from the journal other than they first ran: a game that is not deterministic.",
            Counter,
            &self.replay_divergences,
        );
        push(
            "centrum_back_joins_too_large_total",
            "Joins refused because the channel's full state would no longer fit a link frame (limits.max_frame_bytes).",
            Counter,
            &self.joins_too_large,
        );
        push(
            "centrum_back_frames_too_large_total",
            "Full states or patches not sent because they would not fit a link frame; their clients got a full state instead or left the channel.",
            Counter,
            &self.frames_too_large,
        );
        push(
            "centrum_back_clients",
            "Clients joined to the channel.",
            Gauge,
            &self.clients,
        );
        push(
            "centrum_back_entities",
            "Entities in the channel's state.",
            Gauge,
            &self.entities,
        );
        // Kept in microseconds, shown in seconds.
        let seconds = [
            (
                "centrum_back_tick_seconds_total",
                "Time spent in the channel's ticks (game, patch, encoding).",
                Counter,
                &self.tick_us_total,
            ),
            (
                "centrum_back_journal_commit_seconds_sum",
                "Time spent writing (and syncing) tick records.",
                Counter,
                &self.commit_us_sum,
            ),
            (
                "centrum_back_journal_commit_seconds_max",
                "The longest time a tick record took to write (and sync) so far.",
                Gauge,
                &self.commit_us_max,
            ),
            (
                "centrum_back_snapshot_capture_seconds_max",
                "The longest time a tick spent copying the channel for a snapshot.",
                Gauge,
                &self.snapshot_capture_us,
            ),
        ];
        for (name, help, kind, us) in seconds {
            f(name, help, kind, us.load(Relaxed) as f64 / 1e6);
        }
    }
}

impl BackMetrics {
    pub(crate) fn metrics(&self, out: &mut Vec<Metric>) {
        let mut push = |name: &str, help: &str, kind, v: &AtomicU64| {
            out.push(Metric {
                name: name.into(),
                help: help.into(),
                kind,
                labels: Vec::new(),
                value: v.load(Relaxed) as f64,
            });
        };
        push(
            "centrum_back_links",
            "Open links from fronts.",
            MetricKind::Gauge,
            &self.links,
        );
        push(
            "centrum_back_links_opened_total",
            "Links accepted from fronts.",
            MetricKind::Counter,
            &self.links_opened,
        );
        push(
            "centrum_back_accept_errors_total",
            "Failed accepts on the link port (out of file descriptors, for example); each is waited out, not retried at once.",
            MetricKind::Counter,
            &self.accept_errors,
        );
        push(
            "centrum_back_links_refused_total",
            "Links refused in their handshake: another cluster version, an unknown front id, or no proof of the cluster secret.",
            MetricKind::Counter,
            &self.links_refused,
        );
        push(
            "centrum_back_links_unauthenticated_total",
            "Links whose front did not prove it holds the cluster secret (also counted in links_refused).",
            MetricKind::Counter,
            &self.links_unauthenticated,
        );
        push(
            "centrum_back_link_handshakes_evicted_total",
            "Links closed in their handshake to make room for newer ones (at most 64 at once).",
            MetricKind::Counter,
            &self.handshakes_evicted,
        );
        push(
            "centrum_back_tls_reloads_total",
            "TLS certificates of the link port reloaded (SIGHUP, or the files changed).",
            MetricKind::Counter,
            &self.tls.reloads,
        );
        push(
            "centrum_back_tls_reload_failures_total",
            "TLS certificate reloads of the link port that failed; the certificate loaded before stays in use.",
            MetricKind::Counter,
            &self.tls.reload_failures,
        );
        push(
            "centrum_back_tls_handshake_failures_total",
            "Link connections whose TLS handshake failed or did not finish within limits.handshake_timeout_ms.",
            MetricKind::Counter,
            &self.tls.handshake_failures,
        );
        push(
            "centrum_back_link_overflows_total",
            "Links closed because their outbound queue was full.",
            MetricKind::Counter,
            &self.link_overflows,
        );
        push(
            "centrum_back_link_errors_total",
            "Links closed on a protocol or i/o error.",
            MetricKind::Counter,
            &self.link_errors,
        );
        push(
            "centrum_back_link_timeouts_total",
            "Links closed because the front sent nothing, not even a heartbeat, for limits.link_timeout_ms (also counted in link_errors).",
            MetricKind::Counter,
            &self.link_timeouts,
        );
        self.ops.metrics("back", out);
    }
}
