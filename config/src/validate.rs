//! The rules a parsed [`Config`] must satisfy. Every problem is collected, each naming its
//! field path (`backs[1].channels[0].name`), so one run of `centrum` shows them all.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::{
    AccessConfig, BackConfig, CallsConfig, Config, FieldError, FrontConfig, Limits, MasterLimits,
    MatchmakerConfig, RoomTypeConfig, StoreConfig, SupervisionConfig, TlsConfig,
};

/// What [`is_name`] asks of a name, as an error says it.
pub const NAME_RULE: &str = "must be 1-64 characters of a-z, A-Z, 0-9, '-' or '_'";

/// Problems found so far, plus what earlier fields claimed, to report duplicates against.
#[derive(Debug, Default)]
struct Checker<'a> {
    problems: Vec<FieldError>,
    /// Front and back id -> the field that declared it first.
    ids: HashMap<&'a str, String>,
    /// Channel name -> the back that owns it first (`backs[0]`).
    channels: HashMap<&'a str, String>,
    /// Room type -> the first field that offered it, with its app and max_clients.
    room_types: HashMap<&'a str, (String, &'a str, u32)>,
    /// Every address that binds a socket, with its field and the host it is bound on.
    addresses: Vec<(String, &'a str, SocketAddr)>,
    /// Every address other nodes dial (the master's and the backs'), with its field.
    advertised: Vec<(String, String)>,
    /// Front pools: the field of each, and its id.
    pools: Vec<(String, &'a str)>,
}

/// What a link frame carrying a call holds besides the call's body.
const CALL_FRAME_OVERHEAD: u32 = 64;

/// Bounds of a token's length (`master.admin_token`, `calls.server_key`).
const MIN_TOKEN: usize = 12;
const MAX_TOKEN: usize = 256;

impl<'a> Checker<'a> {
    fn push(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.problems.push(FieldError {
            field: field.into(),
            reason: reason.into(),
        });
    }

    fn master(&mut self, config: &'a Config) {
        let master = &config.master;
        self.host("master.host", &master.host);
        self.addresses
            .push(("master.http".into(), &master.host, master.http));
        self.addresses
            .push(("master.nodes".into(), &master.host, master.nodes));
        self.advertise("master", &master.host, &master.advertise, master.nodes);
        if let Some(token) = &master.admin_token {
            self.token("master.admin_token", token.expose());
        }
        self.secret_source(
            "master.admin_token",
            &master.admin_token_env,
            &master.admin_token_file,
        );
        self.master_limits(&master.limits);
        if let Some(tls) = &master.tls {
            self.tls("master.tls", tls);
        }
    }

    fn master_limits(&mut self, limits: &MasterLimits) {
        // Destructured so that a new limit is a compile error here until it has a rule.
        let MasterLimits {
            header_timeout_ms,
            idle_timeout_ms,
            max_connections,
            login_attempts_per_minute,
            session_ms,
            max_sessions,
        } = *limits;
        let ranges = [
            ("header_timeout_ms", header_timeout_ms, 100, 120_000),
            ("idle_timeout_ms", idle_timeout_ms, 100, 3_600_000),
            ("max_connections", max_connections, 1, 65_536),
            (
                "login_attempts_per_minute",
                login_attempts_per_minute,
                1,
                1_000,
            ),
            ("session_ms", session_ms, 60_000, 2_592_000_000),
            ("max_sessions", max_sessions, 1, 65_536),
        ];
        for (name, value, min, max) in ranges {
            if !(min..=max).contains(&value) {
                self.push(
                    format!("master.limits.{name}"),
                    format!("must be between {min} and {max}"),
                );
            }
        }
    }

    /// What can be checked without reading the environment or the secret's file: the
    /// inline secret's length and the variable's name.
    fn cluster(&mut self, cluster: &crate::ClusterConfig) {
        if let Some(secret) = &cluster.secret {
            let len = secret.expose().len();
            if !crate::CLUSTER_SECRET_BYTES.contains(&len) {
                self.push(
                    "cluster.secret",
                    format!("must be 16-1024 bytes (got {len})"),
                );
            }
        }
        self.secret_source("cluster.secret", &cluster.secret_env, &cluster.secret_file);
    }

    /// The `_env` and `_file` siblings of the secret `field`: a variable name and a path.
    fn secret_source(&mut self, field: &str, env: &Option<String>, file: &Option<PathBuf>) {
        if let Some(env) = env
            && !is_env_name(env)
        {
            self.push(
                format!("{field}_env"),
                "must be an environment variable name: A-Z, a-z, 0-9 and '_', not starting with a digit",
            );
        }
        if file.as_ref().is_some_and(|f| f.as_os_str().is_empty()) {
            self.push(format!("{field}_file"), "must not be empty");
        }
    }

    /// Whether the files exist and hold PEM is checked where they are read (a node's
    /// start, `centrum check`): a host other than theirs may validate the config.
    fn tls(&mut self, at: &str, tls: &TlsConfig) {
        for (name, path) in [("cert", &tls.cert), ("key", &tls.key)] {
            if path.as_os_str().is_empty() {
                self.push(format!("{at}.{name}"), "must not be empty");
            }
        }
    }

    /// A secret that travels in a cookie or an Authorization header must be a plain
    /// token; short ones are guessable.
    fn token(&mut self, field: &str, token: &str) {
        if token.len() < MIN_TOKEN || token.len() > MAX_TOKEN {
            self.push(
                field,
                format!(
                    "must be {MIN_TOKEN}-{MAX_TOKEN} characters (got {})",
                    token.len()
                ),
            );
        } else if !token
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b';' && b != b',')
        {
            self.push(field, "must be printable ASCII without spaces, ';' or ','");
        }
    }

    fn calls(&mut self, calls: &CallsConfig, limits: &Limits) {
        let CallsConfig {
            server_key,
            server_key_env,
            server_key_file,
            timeout_ms,
            max_body_bytes,
            max_in_flight,
        } = calls;
        if let Some(key) = server_key {
            self.token("calls.server_key", key.expose());
        }
        self.secret_source("calls.server_key", server_key_env, server_key_file);
        let ranges = [
            ("timeout_ms", *timeout_ms, 100, 120_000),
            ("max_body_bytes", *max_body_bytes, 64, 16_777_216),
            ("max_in_flight", *max_in_flight, 1, 65_536),
        ];
        for (name, value, min, max) in ranges {
            if !(min..=max).contains(&value) {
                self.push(
                    format!("calls.{name}"),
                    format!("must be between {min} and {max}"),
                );
            }
        }
        // A call travels to the back inside one frame, with a few bytes around it.
        let room = limits.max_frame_bytes.saturating_sub(CALL_FRAME_OVERHEAD);
        if limits.max_frame_bytes >= 1024 && *max_body_bytes > room {
            self.push(
                "calls.max_body_bytes",
                format!("must not exceed limits.max_frame_bytes - {CALL_FRAME_OVERHEAD} ({room})"),
            );
        }
    }

    fn store(&mut self, store: &StoreConfig) {
        let ranges = [
            (
                "fsync_interval_ms",
                u64::from(store.fsync_interval_ms),
                1,
                60_000,
            ),
            (
                "snapshot_every_ms",
                store.snapshot_every_ms,
                1_000,
                86_400_000,
            ),
            (
                "snapshot_journal_bytes",
                store.snapshot_journal_bytes,
                65_536,
                16 << 30,
            ),
            ("lease_ms", u64::from(store.lease_ms), 1_000, 600_000),
        ];
        for (name, value, min, max) in ranges {
            if !(min..=max).contains(&value) {
                self.push(
                    format!("store.{name}"),
                    format!("must be between {min} and {max}"),
                );
            }
        }
        if store.dir.as_os_str().is_empty() {
            self.push("store.dir", "must not be empty");
        }
        // The URL from the environment or its file is checked where it is read (a
        // back's start, `centrum check`); the inline one here, without printing it.
        if let Some(url) = &store.url
            && !crate::STORE_URL_SCHEMES
                .iter()
                .any(|s| url.expose().starts_with(s))
        {
            self.push(
                "store.url",
                "must start with redis:// or redis+unix:// (rediss:// is not supported: reach the server over a private network)",
            );
        }
        self.secret_source("store.url", &store.url_env, &store.url_file);
        let prefix_ok = (1..=64).contains(&store.prefix.len())
            && store
                .prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b));
        if !prefix_ok {
            self.push(
                "store.prefix",
                "must be 1-64 characters of A-Z, a-z, 0-9, '_', '-', '.' and ':'",
            );
        }
    }

    fn front(&mut self, i: usize, front: &'a FrontConfig) {
        let at = format!("fronts[{i}]");
        self.id(&at, &front.id);
        if front.pool {
            self.pools.push((at.clone(), &front.id));
        }
        self.host(&format!("{at}.host"), &front.host);
        self.addresses
            .push((format!("{at}.listen"), &front.host, front.listen));
        if let Some(ops) = front.ops {
            self.addresses.push((format!("{at}.ops"), &front.host, ops));
        }
        match &front.public_url {
            Some(url) if !(url.starts_with("ws://") || url.starts_with("wss://")) => {
                self.push(
                    format!("{at}.public_url"),
                    "must start with ws:// or wss://",
                );
            }
            Some(_) => {}
            None => {
                // Clients are sent to `host` when the front listens on a wildcard IP.
                let url = crate::dial_address(&front.host, front.listen);
                if front.listen.ip().is_unspecified()
                    && let Err(why) = crate::split_dial_address(&url)
                {
                    self.push(
                        format!("{at}.public_url"),
                        format!("must be set: listen is on a wildcard IP, and clients cannot be sent to host {:?} ({why})", front.host),
                    );
                }
            }
        }
        if let Some(tls) = &front.tls {
            self.tls(&format!("{at}.tls"), tls);
        }
    }

    fn back(&mut self, i: usize, back: &'a BackConfig) {
        let at = format!("backs[{i}]");
        self.id(&at, &back.id);
        self.host(&format!("{at}.host"), &back.host);
        self.addresses
            .push((format!("{at}.listen"), &back.host, back.listen));
        if let Some(ops) = back.ops {
            self.addresses.push((format!("{at}.ops"), &back.host, ops));
        }
        self.advertise(&at, &back.host, &back.advertise, back.listen);
        if !(1..=240).contains(&back.tick_hz) {
            self.push(format!("{at}.tick_hz"), "must be between 1 and 240");
        }
        if back.channels.is_empty() && back.rooms.is_empty() {
            self.push(
                format!("{at}.channels"),
                "at least one channel (or a room type in rooms) is required",
            );
        }
        if let Some(tls) = &back.tls {
            self.tls(&format!("{at}.tls"), tls);
        }
        for (j, channel) in back.channels.iter().enumerate() {
            let field = format!("{at}.channels[{j}]");
            if !is_name(&channel.name) {
                self.push(format!("{field}.name"), NAME_RULE);
            } else if let Some(owner) = self.channels.get(channel.name.as_str()) {
                let reason = format!("channel {:?} is already owned by {owner}", channel.name);
                self.push(format!("{field}.name"), reason);
            } else {
                self.channels.insert(&channel.name, at.clone());
            }
            if channel.app.is_empty() {
                self.push(format!("{field}.app"), "must not be empty");
            }
        }
        for (j, room) in back.rooms.iter().enumerate() {
            self.room_type(&format!("{at}.rooms[{j}]"), room);
            if back.rooms[..j].iter().any(|r| r.kind == room.kind) {
                let reason = format!("room type {:?} is offered twice by this back", room.kind);
                self.push(format!("{at}.rooms[{j}].type"), reason);
            }
        }
    }

    fn room_type(&mut self, field: &str, room: &'a RoomTypeConfig) {
        if !is_name(&room.kind) {
            self.push(format!("{field}.type"), NAME_RULE);
        }
        if room.app.is_empty() {
            self.push(format!("{field}.app"), "must not be empty");
        }
        if !(1..=10_000).contains(&room.max_clients) {
            self.push(
                format!("{field}.max_clients"),
                "must be between 1 and 10000",
            );
        }
        if !(1..=100_000).contains(&room.max_rooms) {
            self.push(format!("{field}.max_rooms"), "must be between 1 and 100000");
        }
        if room.empty_dispose_s > 86_400 {
            self.push(
                format!("{field}.empty_dispose_s"),
                "must be between 0 and 86400",
            );
        }
        match self.room_types.get(room.kind.as_str()) {
            Some((first, app, max)) if *app != room.app || *max != room.max_clients => {
                let reason = format!(
                    "room type {:?} is offered by {first} with app {app:?} and max_clients {max}: every back must offer a type alike",
                    room.kind
                );
                self.push(field.to_owned(), reason);
            }
            Some(_) => {}
            None => {
                self.room_types
                    .insert(&room.kind, (field.to_owned(), &room.app, room.max_clients));
            }
        }
    }

    fn matchmaker(&mut self, m: &MatchmakerConfig) {
        let MatchmakerConfig {
            seat_ttl_ms,
            creates_per_minute,
            create_timeout_ms,
        } = *m;
        if !(1_000..=600_000).contains(&seat_ttl_ms) {
            self.push("matchmaker.seat_ttl_ms", "must be between 1000 and 600000");
        }
        if creates_per_minute > 100_000 {
            self.push(
                "matchmaker.creates_per_minute",
                "must be between 0 and 100000",
            );
        }
        if !(100..=60_000).contains(&create_timeout_ms) {
            self.push(
                "matchmaker.create_timeout_ms",
                "must be between 100 and 60000",
            );
        }
    }

    /// `at` is the front or back (`fronts[0]`); ids are unique over fronts and backs together
    /// because a node registers with the master by id alone.
    fn id(&mut self, at: &str, id: &'a str) {
        let field = format!("{at}.id");
        // A malformed id is reported once, not again as a duplicate.
        if !is_name(id) {
            self.push(field, NAME_RULE);
        } else if let Some(first) = self.ids.get(id) {
            let reason = format!("duplicate id {id:?} (also {first})");
            self.push(field, reason);
        } else {
            self.ids.insert(id, field);
        }
    }

    fn host(&mut self, field: &str, host: &str) {
        if host.is_empty() {
            self.push(field, "must not be empty");
        }
    }

    /// The address node `at` is dialed at: `advertise` if set, else its bound address,
    /// with its host for a wildcard IP. It must be dialable, and no other node's.
    fn advertise(&mut self, at: &str, host: &str, advertise: &Option<String>, bind: SocketAddr) {
        let (field, address) = match advertise {
            Some(address) => (format!("{at}.advertise"), address.clone()),
            None if bind.port() == 0 => return, // The OS picks the port: nothing to compare.
            None => (format!("{at}.advertise"), crate::dial_address(host, bind)),
        };
        if let Err(why) = crate::split_dial_address(&address) {
            let reason = match advertise {
                Some(_) => why,
                None => format!(
                    "must be set: {at} listens on a wildcard IP, and host {host:?} cannot stand for it ({why})"
                ),
            };
            self.push(field, reason);
            return;
        }
        self.advertised.push((field, address.to_ascii_lowercase()));
    }

    /// An id that is also an instance of a front pool would name two nodes.
    fn pool_clashes(&mut self, config: &Config) {
        let fronts = config
            .fronts
            .iter()
            .enumerate()
            .map(|(i, f)| (format!("fronts[{i}]"), &f.id));
        let backs = config
            .backs
            .iter()
            .enumerate()
            .map(|(i, b)| (format!("backs[{i}]"), &b.id));
        let mut clashes = Vec::new();
        for (at, id) in fronts.chain(backs) {
            let pool = self
                .pools
                .iter()
                .find(|(_, pool)| crate::is_pool_instance(id, pool));
            if let Some((pool_at, pool)) = pool {
                clashes.push((
                    format!("{at}.id"),
                    format!("{id:?} is also the id of an instance of the front pool {pool:?} ({pool_at}); choose another id"),
                ));
            }
        }
        for (field, reason) in clashes {
            self.push(field, reason);
        }
    }

    /// Two nodes dialed at one address would each get the other's connections.
    fn advertised_clashes(&mut self) {
        let mut clashes = Vec::new();
        for (later, (field, address)) in self.advertised.iter().enumerate() {
            if let Some((other, _)) = self.advertised[..later].iter().find(|(_, a)| a == address) {
                clashes.push((
                    field.clone(),
                    format!("{address} is also where {other} is dialed; each node needs an address of its own"),
                ));
            }
        }
        for (field, reason) in clashes {
            self.push(field, reason);
        }
    }

    /// Two sockets on one machine cannot bind the same port on the same or an overlapping
    /// (wildcard) address. Port 0 is never a clash: the OS picks a free port for each.
    fn address_clashes(&mut self) {
        let mut clashes = Vec::new();
        for (later, (field, host, addr)) in self.addresses.iter().enumerate() {
            let earlier = self.addresses[..later]
                .iter()
                .find(|(_, other_host, other)| {
                    other_host == host && addr.port() != 0 && overlaps(*addr, *other)
                });
            if let Some((other_field, _, other)) = earlier {
                let reason = if addr == other {
                    format!("address {addr} is already used by {other_field} on host {host:?}")
                } else {
                    format!("address {addr} overlaps {other_field} ({other}) on host {host:?}")
                };
                clashes.push((field.clone(), reason));
            }
        }
        for (field, reason) in clashes {
            self.push(field, reason);
        }
    }

    fn limits(&mut self, limits: &Limits) {
        // Destructured so that a new limit is a compile error here until it has a rule.
        let Limits {
            max_frame_bytes,
            max_message_bytes,
            client_queue,
            link_queue,
            link_linger_us,
            channel_inputs,
            max_connections,
            handshake_timeout_ms,
            heartbeat_ms,
            link_grace_ms,
            resume_grace_ms,
            link_heartbeat_ms,
            link_timeout_ms,
            client_ping_ms,
            client_timeout_ms,
            slow_client: _,
            client_messages_per_s,
            client_message_burst,
            client_bytes_per_s,
            client_bytes_burst,
            client_flood_close_ms,
            hello_max_bytes,
            client_idle_ms,
            max_connections_per_ip,
            connections_per_ip_per_s,
            connections_per_ip_burst,
        } = *limits;
        let ranges = [
            ("max_frame_bytes", max_frame_bytes, 1024, 67_108_864),
            ("max_message_bytes", max_message_bytes, 64, 16_777_216),
            ("client_queue", client_queue, 1, 65_536),
            ("link_queue", link_queue, 1, 1_048_576),
            ("link_linger_us", link_linger_us, 0, 10_000),
            ("channel_inputs", channel_inputs, 1, 16_777_216),
            ("max_connections", max_connections, 1, 1_000_000),
            ("handshake_timeout_ms", handshake_timeout_ms, 100, 120_000),
            ("heartbeat_ms", heartbeat_ms, 50, 60_000),
            ("link_grace_ms", link_grace_ms, 0, 600_000),
            ("resume_grace_ms", resume_grace_ms, 0, 600_000),
            ("link_heartbeat_ms", link_heartbeat_ms, 50, 60_000),
            ("link_timeout_ms", link_timeout_ms, 100, 600_000),
            ("client_ping_ms", client_ping_ms, 100, 600_000),
            ("client_timeout_ms", client_timeout_ms, 200, 600_000),
            ("client_messages_per_s", client_messages_per_s, 0, 1_000_000),
            ("client_message_burst", client_message_burst, 1, 1_000_000),
            ("client_bytes_per_s", client_bytes_per_s, 0, 1 << 30),
            ("client_bytes_burst", client_bytes_burst, 1, 1 << 30),
            ("client_flood_close_ms", client_flood_close_ms, 0, 600_000),
            ("hello_max_bytes", hello_max_bytes, 64, 16_777_216),
            (
                "max_connections_per_ip",
                max_connections_per_ip,
                0,
                1_000_000,
            ),
            (
                "connections_per_ip_per_s",
                connections_per_ip_per_s,
                0,
                1_000_000,
            ),
            (
                "connections_per_ip_burst",
                connections_per_ip_burst,
                1,
                1_000_000,
            ),
        ];
        for (name, value, min, max) in ranges {
            if !(min..=max).contains(&value) {
                self.push(
                    format!("limits.{name}"),
                    format!("must be between {min} and {max}"),
                );
            }
        }
        // One late heartbeat must not close a link, nor one unanswered ping a client.
        let pairs = [
            (
                "link_timeout_ms",
                link_timeout_ms,
                "link_heartbeat_ms",
                link_heartbeat_ms,
            ),
            (
                "client_timeout_ms",
                client_timeout_ms,
                "client_ping_ms",
                client_ping_ms,
            ),
        ];
        for (timeout, t, period, p) in pairs {
            if u64::from(t) < 2 * u64::from(p) {
                self.push(
                    format!("limits.{timeout}"),
                    format!("must be at least twice limits.{period} ({p})"),
                );
            }
        }
        if client_idle_ms != 0 && !(100..=86_400_000).contains(&client_idle_ms) {
            self.push(
                "limits.client_idle_ms",
                "must be 0 (never) or between 100 and 86400000",
            );
        }
        // Every message the size limit lets through must be able to pass the byte budget.
        if client_bytes_burst < max_message_bytes {
            self.push(
                "limits.client_bytes_burst",
                format!("must be at least limits.max_message_bytes ({max_message_bytes})"),
            );
        }
        // A client message travels to the back inside one frame.
        if max_message_bytes > max_frame_bytes {
            self.push(
                "limits.max_message_bytes",
                format!("must not exceed limits.max_frame_bytes ({max_frame_bytes})"),
            );
        }
    }
}

// `[access]`: who may connect to a front.
impl Checker<'_> {
    fn access(&mut self, access: &AccessConfig) {
        let AccessConfig {
            trusted_proxies: _,
            allowed_origins,
        } = access;
        for (i, origin) in allowed_origins.iter().enumerate() {
            if !is_origin(origin) {
                self.push(
                    format!("access.allowed_origins[{i}]"),
                    format!(
                        "{origin:?} is not an origin: http:// or https:// and a host, with an optional port and no path (like \"https://game.example.com\")"
                    ),
                );
            }
        }
    }
}

/// An origin as browsers send it (RFC 6454): scheme, host and optional port, nothing else.
fn is_origin(origin: &str) -> bool {
    let Some(rest) = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
    else {
        return false;
    };
    !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
}

// `[supervision]`: how `centrum up` restarts its nodes.
impl Checker<'_> {
    fn supervision(&mut self, supervision: &SupervisionConfig) {
        // Destructured so that a new setting is a compile error here until it has a rule.
        let SupervisionConfig {
            run_dir,
            restart_min_ms,
            restart_max_ms,
            max_failures,
            stable_after_ms,
            stop_grace_ms,
        } = supervision;
        if run_dir
            .as_ref()
            .is_some_and(|dir| dir.as_os_str().is_empty())
        {
            self.push("supervision.run_dir", "must not be empty");
        }
        let ranges = [
            ("restart_min_ms", *restart_min_ms, 10, 60_000),
            ("restart_max_ms", *restart_max_ms, 10, 3_600_000),
            ("max_failures", *max_failures, 1, 1_000),
            ("stable_after_ms", *stable_after_ms, 100, 3_600_000),
            ("stop_grace_ms", *stop_grace_ms, 100, 600_000),
        ];
        for (name, value, min, max) in ranges {
            if !(min..=max).contains(&value) {
                self.push(
                    format!("supervision.{name}"),
                    format!("must be between {min} and {max}"),
                );
            }
        }
        if restart_max_ms < restart_min_ms {
            self.push(
                "supervision.restart_max_ms",
                format!("must not be less than supervision.restart_min_ms ({restart_min_ms})"),
            );
        }
    }
}

/// Every rule `config` breaks, in file order; empty if it is valid.
pub(crate) fn problems(config: &Config) -> Vec<FieldError> {
    let mut checker = Checker::default();
    checker.master(config);
    checker.cluster(&config.cluster);
    // Fronts check a back's certificate against the cluster's roots: no roots, no link.
    if config.cluster.ca.is_none()
        && let Some(i) = config.backs.iter().position(|b| b.tls.is_some())
    {
        checker.push(
            "cluster.ca",
            format!("required when a back serves TLS (backs[{i}].tls): the certificates fronts trust for it"),
        );
    }
    if config.fronts.is_empty() {
        checker.push("fronts", "at least one front is required");
    }
    for (i, front) in config.fronts.iter().enumerate() {
        checker.front(i, front);
    }
    if config.backs.is_empty() {
        checker.push("backs", "at least one back is required");
    }
    for (i, back) in config.backs.iter().enumerate() {
        checker.back(i, back);
    }
    checker.address_clashes();
    checker.advertised_clashes();
    checker.pool_clashes(config);
    checker.limits(&config.limits);
    checker.calls(&config.calls, &config.limits);
    checker.access(&config.access);
    checker.store(&config.store);
    // Two backs with one id are reported above; two ids with one directory here.
    let dir_of = |b: &BackConfig| {
        b.data_dir
            .clone()
            .unwrap_or_else(|| config.store.dir.join(&b.id))
    };
    for (i, a) in config.backs.iter().enumerate() {
        let clash = config.backs[..i]
            .iter()
            .position(|b| b.id != a.id && dir_of(a) == dir_of(b));
        if let Some(j) = clash {
            checker.push(
                format!("backs[{i}].data_dir"),
                format!("is also the data_dir of backs[{j}]: two backs cannot share one"),
            );
        }
    }
    checker.supervision(&config.supervision);
    checker.matchmaker(&config.matchmaker);
    if let Some(auth) = &config.auth {
        for (field, reason) in auth.problems() {
            checker.push(field, reason);
        }
    }
    checker.problems
}

/// Ids, channel names and application names appear in logs, URLs and metrics labels,
/// so they are kept plain.
pub fn is_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `name` is a portable environment variable name.
fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Whether two addresses with the same port would clash when bound on one machine.
fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port()
        && (a.ip() == b.ip()
            || (a.is_ipv4() == b.is_ipv4() && (a.ip().is_unspecified() || b.ip().is_unspecified())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ChannelConfig;

    /// The embedded default after `change`, and the problems found in it, as displayed.
    fn problems_after(change: impl FnOnce(&mut Config)) -> Vec<String> {
        let mut config = Config::embedded_default();
        change(&mut config);
        problems(&config).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_back_with_tls_needs_the_clusters_roots() {
        let tls = TlsConfig {
            cert: "back.crt".into(),
            key: "back.key".into(),
        };
        let missing = problems_after(|c| c.backs[0].tls = Some(tls.clone()));
        assert_eq!(
            missing,
            [
                "cluster.ca: required when a back serves TLS (backs[0].tls): the certificates fronts trust for it"
            ]
        );
        let good = problems_after(|c| {
            c.backs[0].tls = Some(tls);
            c.cluster.ca = Some("ca.pem".into());
        });
        assert!(good.is_empty(), "{good:?}");
    }

    #[test]
    fn cluster_secrets_that_are_short_or_named_oddly() {
        let short = problems_after(|c| c.cluster.secret = Some(crate::Secret::new("too-short")));
        assert_eq!(short, ["cluster.secret: must be 16-1024 bytes (got 9)"]);
        let env = problems_after(|c| c.cluster.secret_env = Some("9-LIVES".into()));
        assert_eq!(env.len(), 1);
        assert!(env[0].starts_with("cluster.secret_env: must be an environment variable name"));
        let good = problems_after(|c| {
            c.cluster.secret = Some(crate::Secret::new("sixteen-bytes-ok"));
            c.cluster.secret_env = Some("MY_CLUSTER_SECRET".into());
        });
        assert!(good.is_empty(), "{good:?}");
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    fn channel(name: &str, app: &str) -> ChannelConfig {
        ChannelConfig {
            name: name.into(),
            app: app.into(),
            anonymous: false,
        }
    }

    /// A second back, `back-2` on 127.0.0.1:7321, owning `lobby`.
    fn add_back(config: &mut Config) -> &mut BackConfig {
        let mut back = config.backs[0].clone();
        back.id = "back-2".into();
        back.listen = addr("127.0.0.1:7321");
        back.channels = vec![channel("lobby", "chat")];
        config.backs.push(back);
        config.backs.last_mut().expect("just pushed")
    }

    #[test]
    fn embedded_default_has_no_problems() {
        assert_eq!(problems_after(|_| {}), Vec::<String>::new());
    }

    #[test]
    fn every_limit_out_of_range() {
        let found = problems_after(|c| {
            c.limits = Limits {
                max_frame_bytes: 1023,
                max_message_bytes: 63,
                client_queue: 0,
                link_queue: 1_048_577,
                link_linger_us: 10_001,
                channel_inputs: 0,
                max_connections: 1_000_001,
                handshake_timeout_ms: 99,
                heartbeat_ms: 60_001,
                link_grace_ms: 600_001,
                ..Limits::default()
            }
        });
        assert_eq!(
            found,
            [
                "limits.max_frame_bytes: must be between 1024 and 67108864",
                "limits.max_message_bytes: must be between 64 and 16777216",
                "limits.client_queue: must be between 1 and 65536",
                "limits.link_queue: must be between 1 and 1048576",
                "limits.link_linger_us: must be between 0 and 10000",
                "limits.channel_inputs: must be between 1 and 16777216",
                "limits.max_connections: must be between 1 and 1000000",
                "limits.handshake_timeout_ms: must be between 100 and 120000",
                "limits.heartbeat_ms: must be between 50 and 60000",
                "limits.link_grace_ms: must be between 0 and 600000",
            ]
        );
    }

    #[test]
    fn limits_at_their_bounds_are_valid() {
        let low = Limits {
            max_frame_bytes: 1024,
            max_message_bytes: 64,
            client_queue: 1,
            link_queue: 1,
            link_linger_us: 0,
            channel_inputs: 1,
            max_connections: 1,
            handshake_timeout_ms: 100,
            heartbeat_ms: 50,
            link_grace_ms: 0,
            client_messages_per_s: 0,
            client_message_burst: 1,
            client_bytes_per_s: 0,
            client_bytes_burst: 64,
            client_flood_close_ms: 0,
            hello_max_bytes: 64,
            client_idle_ms: 0,
            max_connections_per_ip: 0,
            connections_per_ip_per_s: 0,
            connections_per_ip_burst: 1,
            ..Limits::default()
        };
        let high = Limits {
            max_frame_bytes: 67_108_864,
            max_message_bytes: 16_777_216,
            client_queue: 65_536,
            link_queue: 1_048_576,
            link_linger_us: 10_000,
            channel_inputs: 16_777_216,
            max_connections: 1_000_000,
            handshake_timeout_ms: 120_000,
            heartbeat_ms: 60_000,
            link_grace_ms: 600_000,
            client_messages_per_s: 1_000_000,
            client_message_burst: 1_000_000,
            client_bytes_per_s: 1 << 30,
            client_bytes_burst: 1 << 30,
            client_flood_close_ms: 600_000,
            hello_max_bytes: 16_777_216,
            client_idle_ms: 86_400_000,
            max_connections_per_ip: 1_000_000,
            connections_per_ip_per_s: 1_000_000,
            connections_per_ip_burst: 1_000_000,
            ..Limits::default()
        };
        assert_eq!(
            problems_after(|c| {
                c.limits = low;
                c.calls.max_body_bytes = 64;
            }),
            Vec::<String>::new()
        );
        assert_eq!(problems_after(|c| c.limits = high), Vec::<String>::new());
    }

    #[test]
    fn liveness_timeouts_cover_two_periods() {
        let found = problems_after(|c| {
            c.limits.link_heartbeat_ms = 1_000;
            c.limits.link_timeout_ms = 1_999;
            c.limits.client_ping_ms = 5_000;
            c.limits.client_timeout_ms = 9_999;
        });
        assert_eq!(
            found,
            [
                "limits.link_timeout_ms: must be at least twice limits.link_heartbeat_ms (1000)",
                "limits.client_timeout_ms: must be at least twice limits.client_ping_ms (5000)",
            ]
        );
        assert_eq!(
            problems_after(|c| {
                c.limits.link_heartbeat_ms = 1_000;
                c.limits.link_timeout_ms = 2_000;
            }),
            Vec::<String>::new()
        );
    }

    #[test]
    fn message_larger_than_frame() {
        let found = problems_after(|c| {
            c.limits.max_message_bytes = c.limits.max_frame_bytes + 1;
            c.limits.client_bytes_burst = c.limits.max_message_bytes;
        });
        assert_eq!(
            found,
            ["limits.max_message_bytes: must not exceed limits.max_frame_bytes (1048576)"]
        );
    }

    #[test]
    fn client_limits_out_of_range_or_inconsistent() {
        let found = problems_after(|c| {
            c.limits.client_messages_per_s = 1_000_001;
            c.limits.client_message_burst = 0;
            c.limits.client_bytes_burst = 1_000;
            c.limits.client_flood_close_ms = 600_001;
            c.limits.hello_max_bytes = 63;
            c.limits.client_idle_ms = 99;
            c.limits.connections_per_ip_burst = 0;
        });
        assert_eq!(
            found,
            [
                "limits.client_messages_per_s: must be between 0 and 1000000",
                "limits.client_message_burst: must be between 1 and 1000000",
                "limits.client_flood_close_ms: must be between 0 and 600000",
                "limits.hello_max_bytes: must be between 64 and 16777216",
                "limits.connections_per_ip_burst: must be between 1 and 1000000",
                "limits.client_idle_ms: must be 0 (never) or between 100 and 86400000",
                "limits.client_bytes_burst: must be at least limits.max_message_bytes (65536)",
            ]
        );
        // The smaller of the two applies before the Hello: no rule between them.
        assert!(problems_after(|c| c.limits.hello_max_bytes = 65_537).is_empty());
    }

    #[test]
    fn origins_are_scheme_and_host_only() {
        let found = problems_after(|c| {
            c.access.allowed_origins = vec![
                "https://game.example.com".into(),
                "http://localhost:8080".into(),
                "game.example.com".into(),
                "https://game.example.com/".into(),
                "https://".into(),
            ];
        });
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(
            found[0]
                .starts_with("access.allowed_origins[2]: \"game.example.com\" is not an origin"),
            "{found:?}"
        );
        assert!(found[1].starts_with("access.allowed_origins[3]: "));
        assert!(found[2].starts_with("access.allowed_origins[4]: "));
    }

    #[test]
    fn malformed_ids() {
        let found = problems_after(|c| {
            c.fronts[0].id = String::new();
            c.backs[0].id = "back 1".into();
            add_back(c).id = "b".repeat(65);
        });
        assert_eq!(
            found,
            [
                "fronts[0].id: must be 1-64 characters of a-z, A-Z, 0-9, '-' or '_'",
                "backs[0].id: must be 1-64 characters of a-z, A-Z, 0-9, '-' or '_'",
                "backs[1].id: must be 1-64 characters of a-z, A-Z, 0-9, '-' or '_'",
            ]
        );
        assert_eq!(
            problems_after(|c| add_back(c).id = format!("B_-9{}", "x".repeat(60))),
            Vec::<String>::new()
        );
    }

    #[test]
    fn duplicate_ids_across_fronts_and_backs() {
        let found = problems_after(|c| {
            add_back(c).id = "front-1".into();
        });
        assert_eq!(
            found,
            [r#"backs[1].id: duplicate id "front-1" (also fronts[0].id)"#]
        );
        let found = problems_after(|c| {
            add_back(c).id = "back-1".into();
        });
        assert_eq!(
            found,
            [r#"backs[1].id: duplicate id "back-1" (also backs[0].id)"#]
        );
    }

    #[test]
    fn empty_hosts() {
        let found = problems_after(|c| {
            c.master.host = String::new();
            c.fronts[0].host = String::new();
            c.backs[0].host = String::new();
        });
        assert_eq!(
            found,
            [
                "master.host: must not be empty",
                "fronts[0].host: must not be empty",
                "backs[0].host: must not be empty",
            ]
        );
    }

    #[test]
    fn admin_tokens_that_are_short_long_or_not_plain() {
        for (token, reason) in [
            ("short", "must be 12-256 characters (got 5)"),
            (&"x".repeat(257), "must be 12-256 characters (got 257)"),
            (
                "has a space in it",
                "must be printable ASCII without spaces, ';' or ','",
            ),
            (
                "semi;colon-token",
                "must be printable ASCII without spaces, ';' or ','",
            ),
            (
                "non-ascii-tökén",
                "must be printable ASCII without spaces, ';' or ','",
            ),
        ] {
            let found = problems_after(|c| c.master.admin_token = Some(crate::Secret::new(token)));
            assert_eq!(
                found,
                [format!("master.admin_token: {reason}")],
                "{token:?}"
            );
        }
        assert!(
            problems_after(|c| c.master.admin_token = Some(crate::Secret::new("a-good-token-1234"))).is_empty()
        );
    }

    #[test]
    fn calls_settings_out_of_range_and_keys_that_are_not_plain() {
        let found = problems_after(|c| {
            c.calls = CallsConfig {
                server_key: Some(crate::Secret::new("short")),
                timeout_ms: 99,
                max_body_bytes: 2_000_000,
                max_in_flight: 0,
                ..CallsConfig::default()
            }
        });
        assert_eq!(
            found,
            [
                "calls.server_key: must be 12-256 characters (got 5)",
                "calls.timeout_ms: must be between 100 and 120000",
                "calls.max_in_flight: must be between 1 and 65536",
                "calls.max_body_bytes: must not exceed limits.max_frame_bytes - 64 (1048512)",
            ]
        );
        let key = crate::Secret::new("a-server-key-1234");
        assert_eq!(format!("{key:?}"), "<redacted>", "never printed");
        assert!(key.matches("a-server-key-1234"));
        assert!(!key.matches("a-server-key-1235"));
        assert!(!key.matches("a-server-key-123"));
        assert!(!key.matches(""));
        assert!(problems_after(|c| c.calls.server_key = Some(key)).is_empty());
    }

    #[test]
    fn supervision_settings_out_of_range() {
        let problems = problems_after(|c| {
            c.supervision = SupervisionConfig {
                run_dir: Some("".into()),
                restart_min_ms: 5,
                restart_max_ms: 4,
                max_failures: 0,
                stable_after_ms: 50,
                stop_grace_ms: 600_001,
            };
        });
        assert_eq!(
            problems,
            [
                "supervision.run_dir: must not be empty",
                "supervision.restart_min_ms: must be between 10 and 60000",
                "supervision.restart_max_ms: must be between 10 and 3600000",
                "supervision.max_failures: must be between 1 and 1000",
                "supervision.stable_after_ms: must be between 100 and 3600000",
                "supervision.stop_grace_ms: must be between 100 and 600000",
                "supervision.restart_max_ms: must not be less than supervision.restart_min_ms (5)",
            ]
        );
        assert!(
            problems_after(|c| {
                c.supervision.restart_min_ms = 100;
                c.supervision.restart_max_ms = 100;
            })
            .is_empty()
        );
    }

    #[test]
    fn master_limits_out_of_range() {
        let problems = problems_after(|c| {
            c.master.limits = MasterLimits {
                header_timeout_ms: 99,
                idle_timeout_ms: 3_600_001,
                max_connections: 0,
                login_attempts_per_minute: 1_001,
                session_ms: 59_999,
                max_sessions: 0,
            };
        });
        assert_eq!(
            problems,
            [
                "master.limits.header_timeout_ms: must be between 100 and 120000",
                "master.limits.idle_timeout_ms: must be between 100 and 3600000",
                "master.limits.max_connections: must be between 1 and 65536",
                "master.limits.login_attempts_per_minute: must be between 1 and 1000",
                "master.limits.session_ms: must be between 60000 and 2592000000",
                "master.limits.max_sessions: must be between 1 and 65536",
            ]
        );
        let at_bounds = [
            MasterLimits {
                header_timeout_ms: 100,
                idle_timeout_ms: 100,
                max_connections: 1,
                login_attempts_per_minute: 1,
                session_ms: 60_000,
                max_sessions: 1,
            },
            MasterLimits {
                header_timeout_ms: 120_000,
                idle_timeout_ms: 3_600_000,
                max_connections: 65_536,
                login_attempts_per_minute: 1_000,
                session_ms: 2_592_000_000,
                max_sessions: 65_536,
            },
        ];
        for limits in at_bounds {
            assert!(problems_after(|c| c.master.limits = limits).is_empty());
        }
    }

    #[test]
    fn no_fronts_or_backs() {
        let found = problems_after(|c| {
            c.fronts.clear();
            c.backs.clear();
        });
        assert_eq!(
            found,
            [
                "fronts: at least one front is required",
                "backs: at least one back is required",
            ]
        );
    }

    #[test]
    fn store_settings_out_of_range_and_a_shared_data_dir() {
        let problems = problems_after(|c| {
            c.store.snapshot_every_ms = 10;
            c.store.fsync_interval_ms = 0;
            let mut twin = c.backs[0].clone();
            twin.id = "back-2".into();
            twin.listen = "127.0.0.1:7399".parse().unwrap();
            twin.channels = vec![channel("lobby", "arena")];
            twin.data_dir = Some("centrum-data/back-1".into());
            c.backs.push(twin);
        });
        assert_eq!(
            problems,
            vec![
                "store.fsync_interval_ms: must be between 1 and 60000",
                "store.snapshot_every_ms: must be between 1000 and 86400000",
                "backs[1].data_dir: is also the data_dir of backs[0]: two backs cannot share one",
            ]
        );
    }

    #[test]
    fn redis_store_settings_that_cannot_work_are_named_without_the_url() {
        let problems = problems_after(|c| {
            c.store.kind = crate::StoreKind::Redis;
            c.store.url = Some(crate::Secret::new("rediss://:hunter2@cache:6380"));
            c.store.url_env = Some("1URL".into());
            c.store.url_file = Some("".into());
            c.store.prefix = "centrum {x}".into();
            c.store.lease_ms = 999;
        });
        assert_eq!(
            problems,
            vec![
                "store.lease_ms: must be between 1000 and 600000",
                "store.url: must start with redis:// or redis+unix:// (rediss:// is not supported: reach the server over a private network)",
                "store.url_env: must be an environment variable name: A-Z, a-z, 0-9 and '_', not starting with a digit",
                "store.url_file: must not be empty",
                "store.prefix: must be 1-64 characters of A-Z, a-z, 0-9, '_', '-', '.' and ':'",
            ]
        );
        let parsed: Config = toml::from_str(&crate::DEFAULT_TOML.replace(
            "# [store]\n# kind = \"disk\"",
            "[store]\nkind = \"redis\"\nurl = \"redis://:hunter2@127.0.0.1:6379/0\"\nlease_ms = 600001",
        ))
        .unwrap();
        assert_eq!(parsed.store.kind, crate::StoreKind::Redis);
        assert_eq!(parsed.store.prefix, "centrum");
        assert_eq!(parsed.data_dir("back-1"), None);
        let found = parsed.validate().unwrap_err().to_string();
        assert!(
            found.contains("store.lease_ms") && !found.contains("hunter2"),
            "{found}"
        );
        assert!(!format!("{parsed:?}").contains("hunter2"));
    }

    #[test]
    fn the_store_url_comes_from_the_environment_its_file_or_inline() {
        let dir = std::env::temp_dir().join(format!("centrum-config-url-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("store.url"), "redis://:pw@db:6379/2\nignored\n").unwrap();
        let mut store = StoreConfig {
            kind: crate::StoreKind::Redis,
            url_env: Some("CENTRUM_CONFIG_TEST_URL_NEVER_SET".into()),
            ..StoreConfig::default()
        };
        let missing = store.url().unwrap_err().to_string();
        assert!(
            missing.contains("CENTRUM_CONFIG_TEST_URL_NEVER_SET"),
            "{missing}"
        );
        store.url = Some(crate::Secret::new("redis://127.0.0.1/"));
        assert_eq!(store.url().unwrap().expose(), "redis://127.0.0.1/");
        store.url_file = Some(dir.join("store.url"));
        assert_eq!(store.url().unwrap().expose(), "redis://:pw@db:6379/2");
        std::fs::write(dir.join("store.url"), "http://:pw@db\n").unwrap();
        let scheme = store.url().unwrap_err().to_string();
        assert!(
            scheme.contains("store.url_file")
                && scheme.contains("redis://")
                && !scheme.contains("pw"),
            "{scheme}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_back_keeps_its_channels_under_the_store_dir_unless_it_says_where() {
        let mut config = Config::embedded_default();
        assert_eq!(
            config.data_dir("back-1"),
            Some("centrum-data/back-1".into())
        );
        config.backs[0].data_dir = Some("/srv/b1".into());
        assert_eq!(config.data_dir("back-1"), Some("/srv/b1".into()));
        config.store.kind = crate::StoreKind::Memory;
        assert_eq!(config.data_dir("back-1"), None);
        let parsed: Config = toml::from_str(
            &crate::DEFAULT_TOML
                .replace("# [store]\n# kind = \"disk\"", "[store]\nkind = \"memory\""),
        )
        .unwrap();
        assert_eq!(parsed.store.kind, crate::StoreKind::Memory);
    }

    #[test]
    fn data_directories_of_a_file_are_relative_to_its_folder() {
        let dir = std::env::temp_dir().join(format!("centrum-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("cluster.toml");
        let text = crate::DEFAULT_TOML.replace(
            "# data_dir = \"/var/lib/centrum/back-1\"",
            "data_dir = \"b1\"",
        );
        std::fs::write(&file, text).unwrap();
        let config = Config::load(&file).unwrap();
        assert_eq!(config.data_dir("back-1"), Some(dir.join("b1")));
        assert_eq!(config.store.dir, dir.join("centrum-data"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn tick_hz_out_of_range() {
        let found = problems_after(|c| {
            c.backs[0].tick_hz = 0;
            add_back(c).tick_hz = 241;
        });
        assert_eq!(
            found,
            [
                "backs[0].tick_hz: must be between 1 and 240",
                "backs[1].tick_hz: must be between 1 and 240",
            ]
        );
        assert_eq!(
            problems_after(|c| c.backs[0].tick_hz = 240),
            Vec::<String>::new()
        );
    }

    #[test]
    fn back_without_channels() {
        let found = problems_after(|c| {
            c.backs[0].channels.clear();
            c.backs[0].rooms.clear();
        });
        assert_eq!(
            found,
            ["backs[0].channels: at least one channel (or a room type in rooms) is required"]
        );
        assert_eq!(
            problems_after(|c| c.backs[0].channels.clear()),
            Vec::<String>::new(),
            "a back of rooms alone"
        );
    }

    #[test]
    fn malformed_channel_names_and_empty_apps() {
        let found = problems_after(|c| {
            c.backs[0].channels = vec![channel("", "arena"), channel("a/b", ""), channel("ok", "")];
        });
        assert_eq!(
            found,
            [
                "backs[0].channels[0].name: must be 1-64 characters of a-z, A-Z, 0-9, '-' or '_'",
                "backs[0].channels[1].name: must be 1-64 characters of a-z, A-Z, 0-9, '-' or '_'",
                "backs[0].channels[1].app: must not be empty",
                "backs[0].channels[2].app: must not be empty",
            ]
        );
    }

    fn room(kind: &str, app: &str, max_clients: u32) -> RoomTypeConfig {
        RoomTypeConfig {
            kind: kind.into(),
            app: app.into(),
            max_clients,
            max_rooms: 10,
            empty_dispose_s: 30,
            anonymous: false,
        }
    }

    #[test]
    fn room_types_out_of_range_repeated_or_offered_unalike() {
        let found = problems_after(|c| {
            c.backs[0].rooms = vec![
                room("duel", "tag", 2),
                RoomTypeConfig {
                    max_rooms: 0,
                    empty_dispose_s: 90_000,
                    ..room("a b", "", 0)
                },
                room("duel", "tag", 2),
            ];
            add_back(c).rooms = vec![room("duel", "tag", 3)];
        });
        assert_eq!(
            found,
            [
                "backs[0].rooms[1].type: must be 1-64 characters of a-z, A-Z, 0-9, '-' or '_'",
                "backs[0].rooms[1].app: must not be empty",
                "backs[0].rooms[1].max_clients: must be between 1 and 10000",
                "backs[0].rooms[1].max_rooms: must be between 1 and 100000",
                "backs[0].rooms[1].empty_dispose_s: must be between 0 and 86400",
                r#"backs[0].rooms[2].type: room type "duel" is offered twice by this back"#,
                r#"backs[1].rooms[0]: room type "duel" is offered by backs[0].rooms[0] with app "tag" and max_clients 2: every back must offer a type alike"#,
            ]
        );
    }

    #[test]
    fn a_room_id_names_its_back_and_type() {
        let config = Config::embedded_default();
        let (index, back, kind) = config.room_owner("match.k3x9q2m7p4za.back-1").unwrap();
        assert_eq!(
            (index, back.id.as_str(), kind.kind.as_str()),
            (0, "back-1", "match")
        );
        for not_one in [
            "match.k3x9.back-2",
            "duel.k3x9.back-1",
            "match..back-1",
            "match.k3x9.back-1.x",
            "arena",
        ] {
            assert!(config.room_owner(not_one).is_none(), "{not_one}");
        }
    }

    #[test]
    fn matchmaker_settings_out_of_range() {
        let found = problems_after(|c| {
            c.matchmaker = MatchmakerConfig {
                seat_ttl_ms: 999,
                creates_per_minute: 100_001,
                create_timeout_ms: 60_001,
            };
        });
        assert_eq!(
            found,
            [
                "matchmaker.seat_ttl_ms: must be between 1000 and 600000",
                "matchmaker.creates_per_minute: must be between 0 and 100000",
                "matchmaker.create_timeout_ms: must be between 100 and 60000",
            ]
        );
    }

    #[test]
    fn channel_owned_twice() {
        let found = problems_after(|c| {
            add_back(c).channels.push(channel("arena", "arena"));
        });
        assert_eq!(
            found,
            [r#"backs[1].channels[1].name: channel "arena" is already owned by backs[0]"#]
        );
        let found = problems_after(|c| {
            c.backs[0].channels.push(channel("arena", "other"));
        });
        assert_eq!(
            found,
            [r#"backs[0].channels[1].name: channel "arena" is already owned by backs[0]"#]
        );
    }

    #[test]
    fn public_url_scheme() {
        let found = problems_after(|c| {
            c.fronts[0].public_url = Some("http://play.example.com".into());
        });
        assert_eq!(
            found,
            ["fronts[0].public_url: must start with ws:// or wss://"]
        );
        for url in ["ws://play.example.com:80/x", "wss://play.example.com"] {
            let found = problems_after(|c| c.fronts[0].public_url = Some(url.into()));
            assert_eq!(found, Vec::<String>::new(), "{url}");
        }
    }

    #[test]
    fn tls_paths_must_not_be_empty() {
        let found = problems_after(|c| {
            c.master.tls = Some(TlsConfig {
                cert: "master.crt".into(),
                key: "".into(),
            });
            c.fronts[0].tls = Some(TlsConfig {
                cert: "".into(),
                key: "front.key".into(),
            });
        });
        assert_eq!(
            found,
            [
                "master.tls.key: must not be empty",
                "fronts[0].tls.cert: must not be empty"
            ]
        );
    }

    #[test]
    fn duplicate_addresses_on_one_host() {
        let found = problems_after(|c| {
            c.master.nodes = c.master.http;
            c.fronts[0].listen = addr("127.0.0.1:7320");
        });
        assert_eq!(
            found,
            [
                r#"master.nodes: address 127.0.0.1:7300 is already used by master.http on host "127.0.0.1""#,
                r#"backs[0].listen: address 127.0.0.1:7320 is already used by fronts[0].listen on host "127.0.0.1""#,
            ]
        );
    }

    #[test]
    fn an_ops_port_is_an_address_of_its_own() {
        let found = problems_after(|c| {
            c.fronts[0].ops = Some(c.fronts[0].listen);
            c.backs[0].ops = Some(addr("0.0.0.0:7300"));
        });
        assert_eq!(
            found,
            [
                r#"fronts[0].ops: address 127.0.0.1:7310 is already used by fronts[0].listen on host "127.0.0.1""#,
                r#"backs[0].ops: address 0.0.0.0:7300 overlaps master.http (127.0.0.1:7300) on host "127.0.0.1""#,
            ]
        );
        let found = problems_after(|c| {
            c.fronts[0].ops = Some(addr("127.0.0.1:7390"));
            c.backs[0].ops = Some(addr("0.0.0.0:7391"));
        });
        assert_eq!(found, Vec::<String>::new());
        // Not an address at all: the parser names the key.
        let text = crate::DEFAULT_TOML.replace(
            "listen = \"127.0.0.1:7310\"",
            "listen = \"127.0.0.1:7310\"\nops = \"localhost\"",
        );
        let e = Config::parse(&text)
            .expect_err("a bad ops address")
            .to_string();
        assert!(e.contains("ops"), "{e}");
    }

    #[test]
    fn wildcard_address_overlaps_a_specific_one() {
        let found = problems_after(|c| c.fronts[0].listen = addr("0.0.0.0:7300"));
        assert_eq!(
            found,
            [
                r#"fronts[0].listen: address 0.0.0.0:7300 overlaps master.http (127.0.0.1:7300) on host "127.0.0.1""#
            ]
        );
        // IPv4 and IPv6 sockets are told apart here; dual-stack binding is the OS's business.
        let found = problems_after(|c| c.fronts[0].listen = addr("[::]:7300"));
        assert_eq!(found, Vec::<String>::new());
    }

    #[test]
    fn same_address_on_different_hosts_is_fine() {
        let found = problems_after(|c| {
            c.fronts[0].host = "game-1".into();
            c.fronts[0].listen = c.master.http;
            c.backs[0].listen = addr("0.0.0.0:7320");
            add_back(c).host = "game-2".into();
            c.backs[1].listen = c.backs[0].listen;
        });
        assert_eq!(found, Vec::<String>::new());
    }

    #[test]
    fn two_nodes_dialed_at_one_address_are_refused() {
        // Bound on two hosts, but both dialed at 127.0.0.1:7320: each front would reach
        // whichever back runs beside it.
        let found = problems_after(|c| {
            add_back(c).host = "game-2".into();
            c.backs[1].listen = c.backs[0].listen;
        });
        assert_eq!(
            found,
            [
                "backs[1].advertise: 127.0.0.1:7320 is also where backs[0].advertise is dialed; each node needs an address of its own"
            ]
        );
        let found = problems_after(|c| {
            c.master.advertise = Some("Back-1.example:7320".into());
            c.backs[0].advertise = Some("back-1.example:7320".into());
        });
        assert_eq!(
            found,
            [
                "backs[0].advertise: back-1.example:7320 is also where master.advertise is dialed; each node needs an address of its own"
            ]
        );
    }

    #[test]
    fn a_pool_instance_is_a_front_and_its_ids_are_nobody_elses() {
        let mut config = Config::embedded_default();
        config.fronts[0].id = "front".into();
        config.fronts[0].pool = true;
        assert_eq!(
            config.front("front-7f9c-x2x9q").map(|f| &f.id[..]),
            Some("front")
        );
        assert_eq!(config.front_index("front-7f9c"), Some(0));
        assert_eq!(config.field_of("front-7f9c", "listen"), "fronts[0].listen");
        assert!(config.front("front-").is_none());
        assert!(
            config.front("front").is_none(),
            "the pool itself is no instance"
        );
        assert!(config.front("frontline").is_none());
        assert!(
            config.front(&format!("front-{}", "x".repeat(60))).is_none(),
            "over 64"
        );
        config.fronts[0].pool = false;
        assert!(
            config.front("front-7f9c").is_none(),
            "only a pool has instances"
        );

        let found = problems_after(|c| {
            c.fronts[0].id = "front".into();
            c.fronts[0].pool = true;
            c.backs[0].id = "front-back".into();
        });
        assert_eq!(
            found,
            [
                r#"backs[0].id: "front-back" is also the id of an instance of the front pool "front" (fronts[0]); choose another id"#
            ]
        );
    }

    #[test]
    fn a_wildcard_listen_needs_a_dialable_host_or_address() {
        let found = problems_after(|c| {
            c.backs[0].listen = addr("0.0.0.0:7320");
            c.backs[0].host = "rack 4".into();
            c.fronts[0].listen = addr("0.0.0.0:7310");
            c.fronts[0].host = "rack 4".into();
        });
        assert_eq!(
            found,
            [
                r#"fronts[0].public_url: must be set: listen is on a wildcard IP, and clients cannot be sent to host "rack 4" ("rack 4" is neither an IP address nor a DNS name)"#,
                r#"backs[0].advertise: must be set: backs[0] listens on a wildcard IP, and host "rack 4" cannot stand for it ("rack 4" is neither an IP address nor a DNS name)"#,
            ]
        );
        let found = problems_after(|c| {
            c.backs[0].advertise = Some("0.0.0.0:7320".into());
            c.master.advertise = Some("master:0".into());
        });
        assert_eq!(
            found,
            [
                "master.advertise: port 0 cannot be dialed: give the port the socket is bound to",
                "backs[0].advertise: 0.0.0.0 is a wildcard, not an address another machine can dial",
            ]
        );
    }

    #[test]
    fn port_zero_is_never_a_duplicate() {
        let any = addr("127.0.0.1:0");
        let found = problems_after(|c| {
            c.master.http = any;
            c.master.nodes = any;
            c.fronts[0].listen = any;
            c.backs[0].listen = any;
            add_back(c).listen = any;
        });
        assert_eq!(found, Vec::<String>::new());
        // The same config with a real port does clash, so the above is not vacuous.
        let found = problems_after(|c| {
            c.master.http = addr("127.0.0.1:9");
            c.master.nodes = addr("127.0.0.1:9");
        });
        assert_eq!(found.len(), 1, "{found:?}");
    }

    #[test]
    fn several_problems_are_all_reported() {
        let found = problems_after(|c| {
            c.master.host = String::new();
            c.fronts[0].public_url = Some("front-1".into());
            c.backs[0].channels.push(channel("arena", ""));
            c.limits.heartbeat_ms = 0;
        });
        assert_eq!(
            found,
            [
                "master.host: must not be empty",
                "fronts[0].public_url: must start with ws:// or wss://",
                r#"backs[0].channels[1].name: channel "arena" is already owned by backs[0]"#,
                "backs[0].channels[1].app: must not be empty",
                "limits.heartbeat_ms: must be between 50 and 60000",
            ]
        );
    }
}
