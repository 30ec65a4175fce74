//! The master over real sockets on 127.0.0.1:0: nodes register with the real node code
//! (`centrum_net::register_and_heartbeat`) or a raw framed link, and the HTTP API is read
//! with a minimal HTTP/1.1 client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use centrum_config::{
    BackConfig, ChannelConfig, ClusterConfig, Config, FrontConfig, Limits, MasterConfig,
    MasterLimits,
};
use centrum_master::{MasterError, MasterListeners};
use centrum_net::auth::ClusterKey;
use centrum_net::{
    Framed, RegisterError, Registration, Shutdown, Unregistered, framed, recv, send,
};
use centrum_protocol::{
    CLUSTER_VERSION, ChannelStats, Heartbeat, MasterToNode, Metric, MetricKind, NodeStats,
    NodeToMaster, Register, Role,
};

/// Every network await in a test is bounded by this.
const TIMEOUT: Duration = Duration::from_secs(10);

async fn within<F: Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(TIMEOUT, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out: {what}"),
    }
}

/// Polls `check` until it returns `Some`, for at most [`TIMEOUT`].
async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    within(what, async {
        loop {
            if let Some(v) = check().await {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

/// A master running in this test, with fronts `front-1`, `front-2` and backs `back-1`
/// (channels `arena`, `lobby`) and `back-2` (channel `race`).
struct TestMaster {
    config: Arc<Config>,
    http: SocketAddr,
    nodes: SocketAddr,
    shutdown: Shutdown,
    task: JoinHandle<Result<(), MasterError>>,
}

/// A node registered through the real node code, whose heartbeat reports `stats`.
struct TestNode {
    stats: Arc<Mutex<NodeStats>>,
    shutdown: Shutdown,
    task: JoinHandle<Result<(), RegisterError>>,
}

/// An HTTP response.
#[derive(Debug)]
struct Reply {
    status: u16,
    content_type: String,
    /// Every header, names lowercased.
    headers: Vec<(String, String)>,
    body: String,
}

impl TestMaster {
    async fn start(limits: Limits) -> TestMaster {
        TestMaster::start_with(limits, None).await
    }

    async fn start_with(limits: Limits, admin_token: Option<&str>) -> TestMaster {
        TestMaster::start_full(limits, MasterLimits::default(), admin_token).await
    }

    /// A master with `http` as its `[master.limits]`.
    async fn start_http(http: MasterLimits, admin_token: Option<&str>) -> TestMaster {
        TestMaster::start_full(Limits::default(), http, admin_token).await
    }

    async fn start_full(
        limits: Limits,
        http_limits: MasterLimits,
        admin_token: Option<&str>,
    ) -> TestMaster {
        let http = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let nodes = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let (http_addr, nodes_addr) = (
            http.local_addr().expect("addr"),
            nodes.local_addr().expect("addr"),
        );
        // Node addresses are only reported, never dialled by the master.
        let listen = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        let config = Arc::new(Config {
            master: MasterConfig {
                host: "127.0.0.1".into(),
                http: http_addr,
                nodes: nodes_addr,
                advertise: None,
                admin_token: admin_token.map(centrum_config::Secret::new),
                admin_token_env: None,
                admin_token_file: None,
                limits: http_limits,
                tls: None,
            },
            cluster: ClusterConfig {
                secret: Some(centrum_config::Secret::new(SECRET)),
                ..ClusterConfig::default()
            },
            fronts: ["front-1", "front-2"]
                .iter()
                .enumerate()
                .map(|(i, id)| FrontConfig {
                    id: (*id).into(),
                    pool: false,
                    host: "127.0.0.1".into(),
                    listen: listen(7310 + i as u16),
                    public_url: None,
                    tls: None,
                    ops: None,
                })
                .collect(),
            backs: vec![
                BackConfig {
                    id: "back-1".into(),
                    host: "127.0.0.1".into(),
                    listen: listen(7320),
                    advertise: None,
                    tick_hz: 20,
                    channels: vec![
                        ChannelConfig {
                            name: "arena".into(),
                            app: "arena".into(),
                            anonymous: false,
                        },
                        ChannelConfig {
                            name: "lobby".into(),
                            app: "chat".into(),
                            anonymous: false,
                        },
                    ],
                    rooms: Vec::new(),
                    data_dir: None,
                    tls: None,
                    ops: None,
                },
                BackConfig {
                    id: "back-2".into(),
                    host: "127.0.0.1".into(),
                    listen: listen(7321),
                    advertise: None,
                    tick_hz: 30,
                    channels: vec![ChannelConfig {
                        name: "race".into(),
                        app: "race".into(),
                        anonymous: false,
                    }],
                    rooms: Vec::new(),
                    data_dir: None,
                    tls: None,
                    ops: None,
                },
            ],
            limits,
            calls: Default::default(),
            access: Default::default(),
            store: Default::default(),
            supervision: Default::default(),
            matchmaker: Default::default(),
            auth: None,
        });
        config.validate().expect("test config is valid");
        let shutdown = Shutdown::new();
        let task = tokio::spawn(centrum_master::run(
            config.clone(),
            MasterListeners { http, nodes },
            shutdown.clone(),
        ));
        TestMaster {
            config,
            http: http_addr,
            nodes: nodes_addr,
            shutdown,
            task,
        }
    }

    /// A master whose nodes heartbeat every 100 ms (dropped after 300 ms of silence).
    async fn fast() -> TestMaster {
        TestMaster::start(Limits {
            heartbeat_ms: 100,
            ..Limits::default()
        })
        .await
    }

    /// Starts `id` with the real node code, reporting `stats` in every heartbeat.
    fn node(&self, role: Role, id: &str, pid: u32, stats: NodeStats) -> TestNode {
        self.node_with(register(role, id, pid), stats)
    }

    fn node_with(&self, register: Register, stats: NodeStats) -> TestNode {
        let stats = Arc::new(Mutex::new(stats));
        let shutdown = Shutdown::new();
        let reg = Registration {
            master: self.nodes.to_string(),
            register,
            heartbeat: self.config.limits.heartbeat(),
            max_frame_bytes: self.config.limits.max_frame_bytes,
            key: ClusterKey::new(SECRET.as_bytes()),
        };
        let source = stats.clone();
        let task = tokio::spawn(centrum_net::register_and_heartbeat(
            reg,
            move || source.lock().clone(),
            shutdown.clone(),
        ));
        TestNode {
            stats,
            shutdown,
            task,
        }
    }

    /// A raw control link, not yet registered.
    async fn raw_link(&self) -> Framed<TcpStream> {
        let stream = within("connect to the master", TcpStream::connect(self.nodes))
            .await
            .expect("connect");
        framed(stream, self.config.limits.max_frame_bytes)
    }

    /// A raw control link that has registered `id` and got `Registered`.
    async fn registered_link(&self, role: Role, id: &str, pid: u32) -> Framed<TcpStream> {
        let mut link = self.raw_link().await;
        let key = ClusterKey::new(SECRET.as_bytes());
        let registered = within(
            "registration",
            centrum_net::register(&mut link, &register(role, id, pid), &key),
        )
        .await
        .expect("registered");
        assert_eq!(registered.master, self.http.to_string());
        link
    }

    /// Registers `register` once with `key`: the master's refusal, and whether the node
    /// is told to retry.
    async fn refusal(&self, register: Register, key: &ClusterKey) -> (String, bool) {
        let mut link = self.raw_link().await;
        match within("refusal", centrum_net::register(&mut link, &register, key)).await {
            Err(Unregistered::Refused { reason, retry }) => (reason, retry),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    async fn get(&self, path: &str) -> Reply {
        request(self.http, "GET", path).await
    }

    async fn status(&self) -> Value {
        let reply = self.get("/status").await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.content_type, "application/json");
        reply.json()
    }

    /// Polls /status until `check` holds.
    async fn status_until(&self, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        eventually(what, async || {
            let status = self.status().await;
            check(&status).then_some(status)
        })
        .await
    }

    /// Polls /status until node `id` is listed and `check` holds for it.
    async fn node_until(&self, id: &str, check: impl Fn(&Value) -> bool) -> Value {
        let status = self
            .status_until(&format!("{id} in /status"), |s| {
                node_entry(s, id).is_some_and(&check)
            })
            .await;
        node_entry(&status, id).cloned().expect("listed")
    }

    async fn node_gone(&self, id: &str) {
        self.status_until(&format!("{id} gone from /status"), |s| {
            node_entry(s, id).is_none()
        })
        .await;
    }

    async fn stop(self) {
        self.shutdown.cancel();
        within("master stops", self.task)
            .await
            .expect("master task")
            .expect("master stops cleanly");
    }
}

impl TestNode {
    fn set(&self, update: impl FnOnce(&mut NodeStats)) {
        update(&mut self.stats.lock());
    }

    /// Stops the node; it must not have been refused.
    async fn stop(self) {
        self.shutdown.cancel();
        within("node stops", self.task)
            .await
            .expect("node task")
            .expect("the node was not refused");
    }

    /// Waits for the master's refusal and returns its reason.
    async fn refused(self) -> String {
        match within("refusal", self.task).await.expect("node task") {
            Err(RegisterError(reason)) => reason,
            Ok(()) => panic!("the node stopped without being refused"),
        }
    }
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    fn error(&self) -> String {
        assert_eq!(self.content_type, "application/json");
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error message in {}", self.body))
            .to_owned()
    }
}

/// The cluster secret of the test masters.
const SECRET: &str = "the master tests' cluster secret";

fn register(role: Role, id: &str, pid: u32) -> Register {
    Register {
        version: CLUSTER_VERSION,
        role,
        id: id.into(),
        pid,
        listen: "127.0.0.1:7000".into(),
        // Made afresh by `centrum_net::register`.
        nonce: Default::default(),
    }
}

fn clients(n: u32) -> NodeStats {
    NodeStats {
        clients: n,
        ..NodeStats::default()
    }
}

fn node_entry<'a>(status: &'a Value, id: &str) -> Option<&'a Value> {
    status["nodes"]
        .as_array()
        .expect("nodes is a list")
        .iter()
        .find(|n| n["id"] == id)
}

fn channel_entry<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["channels"]
        .as_array()
        .expect("channels is a list")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("channel {name} in {status}"))
}

/// One HTTP/1.1 request with `Connection: close`, read to EOF.
async fn request(addr: SocketAddr, method: &str, path: &str) -> Reply {
    request_with(addr, method, path, &[], "").await
}

/// [`request`] with extra headers and a body.
async fn request_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    within(&format!("{method} {path}"), async {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        head.push_str(body);
        stream.write_all(head.as_bytes()).await.expect("write");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.expect("read");
        let text = String::from_utf8(raw).expect("utf-8 response");
        let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line in {head}"));
        let mut content_type = String::new();
        let mut headers = Vec::new();
        for line in lines {
            let (name, value) = line.split_once(':').expect("a header");
            let name = name.to_ascii_lowercase();
            assert_ne!(name, "transfer-encoding", "bodies have a known length");
            if name == "content-type" {
                content_type = value.trim().to_owned();
            }
            headers.push((name, value.trim().to_owned()));
        }
        Reply {
            status,
            content_type,
            headers,
            body: body.to_owned(),
        }
    })
    .await
}

#[tokio::test]
async fn a_back_shows_up_in_status_with_its_heartbeat_and_leaves_when_its_link_closes() {
    let master = TestMaster::fast().await;
    let status = master.status().await;
    assert_eq!(status["master"]["http"], master.http.to_string());
    assert_eq!(status["master"]["nodes"], master.nodes.to_string());
    assert!(status["master"]["uptime_s"].as_f64().expect("uptime") >= 0.0);
    assert_eq!(status["nodes"], serde_json::json!([]));
    assert_eq!(status["clients"], 0);
    assert_eq!(
        status["configured"],
        serde_json::json!({"fronts": ["front-1", "front-2"], "backs": ["back-1", "back-2"]})
    );
    assert_eq!(
        channel_entry(&status, "arena"),
        &serde_json::json!({
            "name": "arena", "app": "arena", "back": "back-1", "live": false, "clients": 0,
            "entities": 0, "tick": 0, "tick_hz": 0, "tick_us_avg": 0, "tick_us_max": 0,
            "overruns": 0, "inputs_per_s": 0.0, "patch_bytes_per_s": 0.0
        })
    );

    let back = master.node(
        Role::Back,
        "back-1",
        4242,
        NodeStats {
            clients: 3,
            links: 2,
            channels: vec![ChannelStats {
                name: "arena".into(),
                app: "arena".into(),
                clients: 3,
                entities: 7,
                tick: 120,
                tick_hz: 20,
                tick_us_avg: 150,
                tick_us_max: 400,
                overruns: 1,
            }],
            metrics: Vec::new(),
        },
    );
    let entry = master.node_until("back-1", |n| n["clients"] == 3).await;
    assert_eq!(entry["role"], "back");
    assert_eq!(entry["pid"], 4242);
    assert_eq!(entry["listen"], "127.0.0.1:7000");
    assert_eq!(entry["client_url"], "");
    assert_eq!(entry["links"], 2);
    assert!(
        entry["registered_s_ago"]
            .as_f64()
            .expect("registered_s_ago")
            >= 0.0
    );
    assert!(entry["last_heartbeat_ms_ago"].as_u64().expect("ms") < 10_000);

    let status = master.status().await;
    assert_eq!(
        channel_entry(&status, "arena"),
        &serde_json::json!({
            "name": "arena", "app": "arena", "back": "back-1", "live": true, "clients": 3,
            "entities": 7, "tick": 120, "tick_hz": 20, "tick_us_avg": 150, "tick_us_max": 400,
            "overruns": 1, "inputs_per_s": 0.0, "patch_bytes_per_s": 0.0
        })
    );
    // Live back, but no report for this channel: live with zeros.
    let lobby = channel_entry(&status, "lobby");
    assert_eq!(
        (&lobby["live"], &lobby["clients"]),
        (&Value::Bool(true), &0.into())
    );
    assert_eq!(channel_entry(&status, "race")["live"], false);
    // `clients` counts clients of fronts only.
    assert_eq!(status["clients"], 0);

    // Each heartbeat replaces the stats.
    back.set(|s| {
        s.clients = 5;
        s.channels[0].tick = 140;
    });
    master.node_until("back-1", |n| n["clients"] == 5).await;
    let status = master
        .status_until("the new tick", |s| channel_entry(s, "arena")["tick"] == 140)
        .await;
    assert_eq!(channel_entry(&status, "arena")["entities"], 7);

    back.stop().await;
    master.node_gone("back-1").await;
    let status = master.status().await;
    let arena = channel_entry(&status, "arena");
    assert_eq!(
        (&arena["live"], &arena["clients"]),
        (&Value::Bool(false), &0.into())
    );
    master.stop().await;
}

#[tokio::test]
async fn a_second_live_instance_of_an_id_is_refused_until_the_first_is_gone() {
    let master = TestMaster::fast().await;
    let first = master.node(Role::Back, "back-1", 111, clients(0));
    master.node_until("back-1", |n| n["pid"] == 111).await;

    let key = ClusterKey::new(SECRET.as_bytes());
    // Retried: the live one may be the instance this one replaces, not yet found gone.
    let (reason, retry) = master
        .refusal(register(Role::Back, "back-1", 222), &key)
        .await;
    assert!(
        reason.starts_with("back back-1 is already running (pid 111, registered ")
            && reason.ends_with(" s ago)")
            && retry,
        "{reason} {retry}"
    );
    // The same rule holds for fronts.
    let front = master.node(Role::Front, "front-1", 333, clients(0));
    master.node_until("front-1", |n| n["pid"] == 333).await;
    let (reason, _) = master
        .refusal(register(Role::Front, "front-1", 444), &key)
        .await;
    assert!(
        reason.starts_with("front front-1 is already running (pid 333, "),
        "{reason}"
    );
    // The refused instances changed nothing.
    let status = master.status().await;
    assert_eq!(node_entry(&status, "back-1").expect("back-1")["pid"], 111);
    assert_eq!(node_entry(&status, "front-1").expect("front-1")["pid"], 333);

    first.stop().await;
    master.node_gone("back-1").await;
    let again = master.node(Role::Back, "back-1", 555, clients(0));
    master.node_until("back-1", |n| n["pid"] == 555).await;
    again.stop().await;
    front.stop().await;
    master.stop().await;
}

#[tokio::test]
async fn unknown_ids_and_other_protocol_versions_are_refused() {
    let master = TestMaster::fast().await;
    let key = ClusterKey::new(SECRET.as_bytes());
    // Retried: the master may come back with a config that has it.
    let (reason, retry) = master
        .refusal(register(Role::Back, "back-9", 1), &key)
        .await;
    assert_eq!(
        reason,
        "unknown back id \"back-9\"; the config declares backs: back-1, back-2"
    );
    assert!(retry);
    // An id of the other role is unknown too.
    let (reason, _) = master
        .refusal(register(Role::Front, "back-1", 1), &key)
        .await;
    assert_eq!(
        reason,
        "unknown front id \"back-1\"; the config declares fronts: front-1, front-2"
    );
    let reason = master
        .node_with(
            Register {
                version: 99,
                ..register(Role::Back, "back-1", 1)
            },
            clients(0),
        )
        .refused()
        .await;
    assert_eq!(
        reason,
        format!(
            "cluster version 99 is not supported; this master speaks {CLUSTER_VERSION} (every process of a cluster must run the same release)"
        )
    );
    assert_eq!(master.status().await["nodes"], serde_json::json!([]));
    master.stop().await;
}

/// Reads until the master closes `link`, which must happen without a reply.
async fn closed_by_master(link: &mut Framed<TcpStream>) {
    match within("the master closes the link", recv::<_, MasterToNode>(link)).await {
        Ok(None) | Err(_) => {}
        Ok(Some(msg)) => panic!("expected the link to close, got {msg:?}"),
    }
}

#[tokio::test]
async fn a_bad_frame_closes_only_that_link() {
    let master = TestMaster::fast().await;
    let back = master.node(Role::Back, "back-1", 10, clients(0));
    master.node_until("back-1", |_| true).await;

    // Garbage instead of a register.
    let mut stream = within("connect", TcpStream::connect(master.nodes))
        .await
        .expect("connect");
    stream
        .write_all(&[0, 0, 0, 2, 0xc1, 0xc1])
        .await
        .expect("write");
    let mut rest = Vec::new();
    let n = within("close after garbage", stream.read_to_end(&mut rest))
        .await
        .unwrap_or(0);
    assert_eq!(n, 0, "the master replied to garbage: {rest:?}");

    // A frame over the size limit, announced by its length prefix.
    let mut stream = within("connect", TcpStream::connect(master.nodes))
        .await
        .expect("connect");
    let too_big = master.config.limits.max_frame_bytes + 1;
    stream
        .write_all(&too_big.to_be_bytes())
        .await
        .expect("write");
    let n = within(
        "close after an oversized frame",
        stream.read_to_end(&mut rest),
    )
    .await
    .unwrap_or(0);
    assert_eq!(n, 0);

    // A heartbeat before registering is refused.
    let mut link = master.raw_link().await;
    send(
        &mut link,
        &NodeToMaster::Heartbeat(Heartbeat { stats: clients(0) }),
    )
    .await
    .expect("send");
    match within("refusal", recv::<_, MasterToNode>(&mut link)).await {
        Ok(Some(MasterToNode::Refused(r))) => {
            assert_eq!(
                r.reason,
                "the first message must be Register, not Heartbeat"
            )
        }
        other => panic!("expected a refusal, got {other:?}"),
    }

    // Garbage from a registered node closes its link and removes it.
    let mut link = master.registered_link(Role::Front, "front-1", 20).await;
    master.node_until("front-1", |_| true).await;
    link.get_mut()
        .write_all(&[0, 0, 0, 3, 0x92, 0x07, 0xc1])
        .await
        .expect("write");
    closed_by_master(&mut link).await;
    master.node_gone("front-1").await;

    // The master keeps serving: the back is still live and front-1 can register again.
    let status = master.status().await;
    assert_eq!(node_entry(&status, "back-1").expect("back-1")["pid"], 10);
    let _link = master.registered_link(Role::Front, "front-1", 21).await;
    master.node_until("front-1", |n| n["pid"] == 21).await;
    back.stop().await;
    master.stop().await;
}

#[tokio::test]
async fn a_link_that_does_not_register_in_time_is_closed() {
    let master = TestMaster::start(Limits {
        handshake_timeout_ms: 200,
        ..Limits::default()
    })
    .await;
    let mut link = master.raw_link().await;
    let start = Instant::now();
    closed_by_master(&mut link).await;
    assert!(
        start.elapsed() >= Duration::from_millis(200),
        "{:?}",
        start.elapsed()
    );
    master.stop().await;
}

#[tokio::test]
async fn a_silent_node_is_dropped_after_three_heartbeat_periods() {
    let master = TestMaster::fast().await;
    let back = master.node(Role::Back, "back-1", 1, clients(0));
    let mut silent = master.registered_link(Role::Front, "front-1", 2).await;
    send(
        &mut silent,
        &NodeToMaster::Heartbeat(Heartbeat { stats: clients(4) }),
    )
    .await
    .expect("send heartbeat");
    let last_heartbeat = Instant::now();
    master.node_until("front-1", |n| n["clients"] == 4).await;

    closed_by_master(&mut silent).await;
    let silent_for = last_heartbeat.elapsed();
    assert!(
        silent_for >= Duration::from_millis(300),
        "dropped after {silent_for:?}, before 3 x 100 ms"
    );
    master.node_gone("front-1").await;
    // The node that kept heartbeating is still there.
    master.node_until("back-1", |_| true).await;
    back.stop().await;
    master.stop().await;
}

#[tokio::test]
async fn the_gate_picks_the_least_loaded_live_front() {
    let master = TestMaster::fast().await;
    let reply = master.get("/gate?channel=arena").await;
    assert_eq!((reply.status, reply.error()), (503, "no live front".into()));
    let reply = master.get("/gate?channel=nowhere").await;
    assert_eq!(
        (reply.status, reply.error()),
        (404, "unknown channel \"nowhere\"".into())
    );
    for path in ["/gate", "/gate?channel=", "/gate?chanel=arena"] {
        let reply = master.get(path).await;
        assert_eq!(reply.status, 400, "{path}");
        assert!(
            reply.error().contains("\"channel\""),
            "{path}: {}",
            reply.body
        );
    }

    let front_1 = master.node(Role::Front, "front-1", 1, clients(5));
    let front_2 = master.node(Role::Front, "front-2", 2, clients(2));
    master.node_until("front-1", |n| n["clients"] == 5).await;
    master.node_until("front-2", |n| n["clients"] == 2).await;
    let reply = master.get("/gate?channel=arena").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.content_type, "application/json");
    assert_eq!(
        reply.json(),
        serde_json::json!({"url": "ws://127.0.0.1:7311", "front": "front-2", "channel": "arena"}),
        "the URL is the config's, whatever the front registered with"
    );
    assert_eq!(master.status().await["clients"], 7);

    front_2.set(|s| s.clients = 9);
    master.node_until("front-2", |n| n["clients"] == 9).await;
    let reply = master.get("/gate?channel=race").await;
    assert_eq!(reply.json()["front"], "front-1");
    assert_eq!(reply.json()["channel"], "race");

    // A tie goes to the smaller id.
    front_1.set(|s| s.clients = 9);
    master.node_until("front-1", |n| n["clients"] == 9).await;
    assert_eq!(
        master.get("/gate?channel=lobby").await.json()["front"],
        "front-1"
    );

    front_1.stop().await;
    master.node_gone("front-1").await;
    assert_eq!(
        master.get("/gate?channel=arena").await.json()["front"],
        "front-2"
    );
    front_2.stop().await;
    master.node_gone("front-2").await;
    assert_eq!(master.get("/gate?channel=arena").await.status, 503);
    master.stop().await;
}

#[tokio::test]
async fn without_the_cluster_secret_no_process_registers_or_redirects_the_gate() {
    let master = TestMaster::fast().await;
    let front = master.node(Role::Front, "front-1", 1, clients(0));
    master.node_until("front-1", |_| true).await;
    front.stop().await;
    master.node_gone("front-1").await;

    // Right after front-1 went away, a stranger claims its id with its own address. It
    // cannot check the master's proof, so it skips that and proves what it can.
    let stranger = ClusterKey::new(b"not this cluster's secret at all");
    let mut link = master.raw_link().await;
    let nonce = centrum_net::auth::nonce().expect("random");
    let claim = Register {
        listen: "203.0.113.9:443".into(),
        nonce: nonce.clone(),
        ..register(Role::Front, "front-1", 666)
    };
    send(&mut link, &NodeToMaster::Register(claim))
        .await
        .expect("send");
    let Ok(Some(MasterToNode::Challenge(challenge))) =
        within("challenge", recv::<_, MasterToNode>(&mut link)).await
    else {
        panic!("expected a challenge");
    };
    let proof = stranger.prove(
        centrum_net::auth::Proof::Node,
        &centrum_net::auth::Handshake {
            opener: "front-1",
            acceptor: centrum_net::MASTER_ID,
            opener_nonce: &nonce,
            acceptor_nonce: &challenge.nonce,
        },
    );
    send(
        &mut link,
        &NodeToMaster::Prove(centrum_protocol::Prove { proof }),
    )
    .await
    .expect("send");
    let Ok(Some(MasterToNode::Refused(refused))) =
        within("refusal", recv::<_, MasterToNode>(&mut link)).await
    else {
        panic!("expected a refusal");
    };
    let (reason, retry) = (refused.reason, refused.retry);
    assert_eq!(
        reason,
        "the node did not prove it holds the cluster secret (another cluster, or a wrong secret on one side)"
    );
    assert!(
        retry,
        "a node with a stale secret keeps trying while it is rotated"
    );
    assert_eq!(master.status().await["nodes"], serde_json::json!([]));
    assert_eq!(master.get("/gate?channel=arena").await.status, 503);

    // The real front gets back in, and clients go where the config says.
    let front = master.node(Role::Front, "front-1", 2, clients(0));
    master.node_until("front-1", |n| n["pid"] == 2).await;
    assert_eq!(
        master.get("/gate?channel=arena").await.json()["url"],
        "ws://127.0.0.1:7310"
    );
    let metrics = master.get("/metrics").await.body;
    assert!(
        metrics.contains("\ncentrum_master_registrations_unauthenticated_total 1\n"),
        "{metrics}"
    );
    front.stop().await;
    master.stop().await;
}

#[tokio::test]
async fn a_node_does_not_register_with_a_master_that_cannot_prove_itself() {
    let master = TestMaster::fast().await;
    let mut link = master.raw_link().await;
    let other_cluster = ClusterKey::new(b"the secret of some other cluster");
    let ended = within(
        "registration",
        centrum_net::register(
            &mut link,
            &register(Role::Back, "back-1", 1),
            &other_cluster,
        ),
    )
    .await;
    assert!(
        matches!(&ended, Err(Unregistered::Link(centrum_net::LinkError::Unproven(who))) if who == "the master"),
        "{ended:?}"
    );
    master.stop().await;
}

#[tokio::test]
async fn unknown_paths_and_methods_get_json_errors() {
    let master = TestMaster::fast().await;
    let reply = master.get("/nope").await;
    assert_eq!(reply.status, 404);
    assert!(reply.error().contains("/nope"), "{}", reply.body);
    let reply = request(master.http, "POST", "/status").await;
    assert_eq!(reply.status, 405);
    assert!(reply.error().contains("POST"), "{}", reply.body);
    master.stop().await;
}

#[tokio::test]
async fn status_reports_each_counter_and_its_rate_per_second_and_the_nodes_that_are_down() {
    let master = TestMaster::fast().await;
    let inputs = |value: f64| Metric {
        name: "centrum_back_inputs_total".into(),
        help: "Inputs applied.".into(),
        kind: MetricKind::Counter,
        labels: vec![("channel".into(), "arena".into())],
        value,
    };
    let back = master.node(
        Role::Back,
        "back-1",
        7,
        NodeStats {
            metrics: vec![inputs(0.0)],
            ..NodeStats::default()
        },
    );
    master
        .node_until("back-1", |n| {
            n["rates"].get("centrum_back_inputs_total").is_some()
        })
        .await;
    let status = master.status().await;
    assert_eq!(
        status["down"],
        serde_json::json!(["front-1", "front-2", "back-2"])
    );

    // 1000 more inputs within one 100 ms heartbeat period: a rate near 10,000 per second.
    back.set(|s| s.metrics = vec![inputs(1000.0)]);
    let entry = master
        .node_until("back-1", |n| {
            n["metrics"]["centrum_back_inputs_total"] == 1000.0
        })
        .await;
    let rate = entry["rates"]["centrum_back_inputs_total"]
        .as_f64()
        .expect("a rate");
    // Heartbeats are 100 ms apart, give or take scheduling.
    assert!((2_000.0..=50_000.0).contains(&rate), "{rate}");
    let status = master.status().await;
    let per_s = channel_entry(&status, "arena")["inputs_per_s"]
        .as_f64()
        .expect("rate");
    assert!(per_s > 0.0, "{per_s}");
    assert_eq!(channel_entry(&status, "lobby")["inputs_per_s"], 0.0);

    // The next heartbeat reports the same count: the rate drops to 0.
    master
        .node_until("back-1", |n| n["rates"]["centrum_back_inputs_total"] == 0.0)
        .await;
    back.stop().await;
    master.stop().await;
}

#[tokio::test]
async fn an_admin_token_guards_the_dashboard_status_and_metrics_but_not_the_gate_the_demo_or_probes()
 {
    const TOKEN: &str = "a-good-token-1234";
    let master = TestMaster::start_with(Limits::default(), Some(TOKEN)).await;
    let get = |path: &'static str, headers: &'static [(&'static str, &'static str)]| {
        request_with(master.http, "GET", path, headers, "")
    };

    for path in ["/status", "/metrics"] {
        let reply = get(path, &[]).await;
        assert_eq!(reply.status, 401, "{path}");
        assert!(reply.error().contains("admin token"), "{}", reply.body);
        assert_eq!(
            reply.header("www-authenticate"),
            Some("Bearer realm=\"centrum admin\"")
        );
        let wrong = get(path, &[("Authorization", "Bearer a-bad-token-12345")]).await;
        assert_eq!(wrong.status, 401, "{path}");
        let right = get(path, &[("Authorization", "Bearer a-good-token-1234")]).await;
        assert_eq!(right.status, 200, "{path}: {}", right.body);
    }
    // Probes carry no token: health and readiness stay open.
    for (path, body) in [("/healthz", "ok\n"), ("/readyz", "ready\n")] {
        let reply = get(path, &[]).await;
        assert_eq!((reply.status, reply.body.as_str()), (200, body), "{path}");
    }
    // Game clients need the gate and the demo without any token.
    assert_eq!(get("/gate?channel=arena", &[]).await.status, 503);
    let demo = get("/", &[]).await;
    assert_eq!(
        (demo.status, demo.content_type.as_str()),
        (200, "text/html; charset=utf-8")
    );
    assert_eq!(get("/assets/centrum.js", &[]).await.status, 200);

    // The dashboard answers with the login form until the form sets the cookie.
    let form = get("/admin", &[]).await;
    assert_eq!(form.status, 401);
    assert!(form.body.contains("name=\"token\""), "{}", form.body);
    let form_type = [("Content-Type", "application/x-www-form-urlencoded")];
    let failed = request_with(
        master.http,
        "POST",
        "/admin/login",
        &form_type,
        "token=nope",
    )
    .await;
    assert_eq!(failed.status, 303);
    assert_eq!(failed.header("location"), Some("/admin?login=failed"));
    assert_eq!(failed.header("set-cookie"), None);
    let login = request_with(
        master.http,
        "POST",
        "/admin/login",
        &form_type,
        &format!("token={TOKEN}"),
    )
    .await;
    assert_eq!(login.status, 303);
    assert_eq!(login.header("location"), Some("/admin"));
    let cookie = login.header("set-cookie").expect("a cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    // A random session id, never the token; not `Secure` on plain HTTP.
    let pair = cookie.split(';').next().expect("name=value");
    let id = pair
        .strip_prefix("centrum_admin=")
        .expect("the admin cookie");
    assert_ne!(id, TOKEN);
    assert!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
    assert!(cookie.contains("; Path=/"), "{cookie}");
    assert!(!cookie.contains("Secure"), "{cookie}");
    for forged in [
        format!("centrum_admin={TOKEN}"),
        "centrum_admin=0123456789abcdef0123456789abcdef".to_owned(),
    ] {
        let forged = [("Cookie", forged.as_str())];
        let reply = request_with(master.http, "GET", "/status", &forged, "").await;
        assert_eq!(reply.status, 401, "{forged:?}");
    }
    let with_cookie = [("Cookie", pair)];
    let dashboard = request_with(master.http, "GET", "/admin", &with_cookie, "").await;
    assert_eq!(dashboard.status, 200);
    assert!(
        !dashboard.body.contains("name=\"token\""),
        "the dashboard, not the form"
    );
    let status = request_with(master.http, "GET", "/status", &with_cookie, "").await;
    assert_eq!(status.status, 200, "{}", status.body);

    let logout = request_with(master.http, "POST", "/admin/logout", &with_cookie, "").await;
    assert_eq!(logout.status, 303);
    assert!(
        logout
            .header("set-cookie")
            .is_some_and(|c| c.contains("Max-Age=0"))
    );
    // The session ended on the master: the old cookie no longer opens anything.
    let after = request_with(master.http, "GET", "/status", &with_cookie, "").await;
    assert_eq!(after.status, 401);
    let after = request_with(master.http, "GET", "/admin", &with_cookie, "").await;
    assert!(after.body.contains("name=\"token\""), "the form again");
    master.stop().await;
}

#[tokio::test]
async fn without_an_admin_token_everything_is_open_and_assets_are_served() {
    let master = TestMaster::fast().await;
    let dashboard = master.get("/admin").await;
    assert_eq!(dashboard.status, 200);
    for (path, kind) in [
        ("/assets/centrum.js", "text/javascript; charset=utf-8"),
        ("/assets/play.js", "text/javascript; charset=utf-8"),
        ("/assets/admin.css", "text/css; charset=utf-8"),
    ] {
        let reply = master.get(path).await;
        assert_eq!(
            (reply.status, reply.content_type.as_str()),
            (200, kind),
            "{path}"
        );
    }
    let missing = master.get("/assets/secret.txt").await;
    assert_eq!(missing.status, 404);
    assert!(missing.error().contains("secret.txt"), "{}", missing.body);
    master.stop().await;
}

/// One sample line of the text format.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

/// Parses the text exposition format 0.0.4 line by line, failing on anything out of
/// shape: each name has one HELP and one TYPE before its samples, and its samples are
/// contiguous.
fn parse_exposition(text: &str) -> Vec<Sample> {
    use std::collections::HashSet;
    let mut helped = HashSet::new();
    let mut typed = HashSet::new();
    let mut current: Option<String> = None;
    let mut samples = Vec::new();
    assert!(text.ends_with('\n'));
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, _) = rest.split_once(' ').expect("HELP name text");
            assert!(valid_name(name), "{line}");
            assert!(helped.insert(name.to_owned()), "second HELP for {name}");
            assert!(!typed.contains(name), "HELP after TYPE for {name}");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(["counter", "gauge"].contains(&kind), "{line}");
            assert!(helped.contains(name), "TYPE before HELP for {name}");
            assert!(typed.insert(name.to_owned()), "second TYPE for {name}");
            current = Some(name.to_owned());
        } else {
            let sample = parse_sample(line);
            assert_eq!(
                Some(&sample.name),
                current.as_ref(),
                "sample outside its family: {line}"
            );
            samples.push(sample);
        }
    }
    samples
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn parse_sample(line: &str) -> Sample {
    let end = line.find(['{', ' ']).unwrap_or_else(|| panic!("{line}"));
    let name = &line[..end];
    assert!(valid_name(name), "{line}");
    let mut rest = &line[end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        rest = inner;
        loop {
            let (key, after) = rest.split_once("=\"").unwrap_or_else(|| panic!("{line}"));
            assert!(valid_name(key) && !key.contains(':'), "{line}");
            let mut value = String::new();
            let mut chars = after.char_indices();
            let close = loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, '\\')) => value.push('\\'),
                        Some((_, '"')) => value.push('"'),
                        Some((_, 'n')) => value.push('\n'),
                        other => panic!("bad escape {other:?} in {line}"),
                    },
                    Some((i, '"')) => break i,
                    Some((_, '\n')) | None => panic!("unterminated label value in {line}"),
                    Some((_, c)) => value.push(c),
                }
            };
            labels.push((key.to_owned(), value));
            rest = &after[close + 1..];
            if let Some(more) = rest.strip_prefix(',') {
                rest = more;
            } else {
                rest = rest.strip_prefix('}').unwrap_or_else(|| panic!("{line}"));
                break;
            }
        }
    }
    let value = rest.strip_prefix(' ').unwrap_or_else(|| panic!("{line}"));
    let value = match value {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
    };
    Sample {
        name: name.to_owned(),
        labels,
        value,
    }
}

fn find<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    samples.iter().find(|s| {
        s.name == name
            && s.labels.len() == labels.len()
            && s.labels
                .iter()
                .zip(labels)
                .all(|((k, v), (ek, ev))| k == ek && v == ev)
    })
}

#[tokio::test]
async fn metrics_are_valid_exposition_text_with_node_labels() {
    let master = TestMaster::fast().await;
    let metric = |name: &str, kind, labels: &[(&str, &str)], value| Metric {
        name: name.into(),
        help: format!("Help for {name}."),
        kind,
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        value,
    };
    let back = master.node(
        Role::Back,
        "back-1",
        1,
        NodeStats {
            channels: vec![ChannelStats {
                name: "arena".into(),
                clients: 6,
                tick_us_avg: 90,
                overruns: 4,
                ..ChannelStats::default()
            }],
            metrics: vec![
                metric(
                    "centrum_test_inputs_total",
                    MetricKind::Counter,
                    &[("channel", "odd \"name\"\\with\nnewline")],
                    12.0,
                ),
                metric("centrum_test_ratio", MetricKind::Gauge, &[], 0.5),
            ],
            ..NodeStats::default()
        },
    );
    let front = master.node(
        Role::Front,
        "front-1",
        2,
        NodeStats {
            metrics: vec![metric(
                "centrum_test_inputs_total",
                MetricKind::Counter,
                &[],
                30.0,
            )],
            ..NodeStats::default()
        },
    );
    let reply = eventually("both nodes' metrics", async || {
        let reply = master.get("/metrics").await;
        (reply
            .body
            .contains("centrum_test_inputs_total{node=\"front-1\"}")
            && reply.body.contains("centrum_channel_clients"))
        .then_some(reply)
    })
    .await;
    assert_eq!(reply.status, 200);
    assert!(
        reply.content_type.starts_with("text/plain; version=0.0.4"),
        "{}",
        reply.content_type
    );
    let samples = parse_exposition(&reply.body);
    let value = |name, labels: &[(&str, &str)]| {
        find(&samples, name, labels)
            .unwrap_or_else(|| panic!("{name} {labels:?} in\n{}", reply.body))
            .value
    };
    assert_eq!(value("centrum_master_up", &[]), 1.0);
    assert_eq!(value("centrum_master_nodes", &[("role", "front")]), 1.0);
    assert_eq!(value("centrum_master_nodes", &[("role", "back")]), 1.0);
    assert_eq!(
        value(
            "centrum_test_inputs_total",
            &[
                ("node", "back-1"),
                ("channel", "odd \"name\"\\with\nnewline")
            ]
        ),
        12.0
    );
    assert_eq!(
        value("centrum_test_inputs_total", &[("node", "front-1")]),
        30.0
    );
    assert_eq!(value("centrum_test_ratio", &[("node", "back-1")]), 0.5);
    let channel = [("channel", "arena"), ("back", "back-1")];
    assert_eq!(value("centrum_channel_clients", &channel), 6.0);
    assert_eq!(value("centrum_channel_tick_us_avg", &channel), 90.0);
    assert_eq!(value("centrum_channel_overruns_total", &channel), 4.0);
    assert!(
        reply
            .body
            .contains("# TYPE centrum_test_inputs_total counter\n"),
        "{}",
        reply.body
    );
    assert!(
        reply
            .body
            .contains("# TYPE centrum_channel_overruns_total counter\n")
    );
    assert!(reply.body.contains("# TYPE centrum_test_ratio gauge\n"));
    back.stop().await;
    front.stop().await;
    master.stop().await;
}

#[tokio::test]
async fn shutdown_closes_node_links_and_idle_connections() {
    let master = TestMaster::fast().await;
    let mut link = master.registered_link(Role::Back, "back-1", 1).await;
    // An HTTP connection that never sends a request, and one that finished a request.
    let _idle = within("connect", TcpStream::connect(master.http))
        .await
        .expect("connect");
    assert_eq!(master.get("/status").await.status, 200);
    let start = Instant::now();
    master.stop().await;
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "stopping took {:?}: something waited for the 5 s bound",
        start.elapsed()
    );
    closed_by_master(&mut link).await;
}

/// `[master.limits]` with small timeouts for the tests below.
fn http_limits(header_ms: u32, idle_ms: u32) -> MasterLimits {
    MasterLimits {
        header_timeout_ms: header_ms,
        idle_timeout_ms: idle_ms,
        ..MasterLimits::default()
    }
}

/// Reads one response from a keep-alive connection: its status and body.
async fn read_response(stream: &mut TcpStream) -> (u16, String) {
    within("a response", async {
        let mut raw = Vec::new();
        let head_end = loop {
            if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.expect("read");
            assert!(n > 0, "closed before a response: {raw:?}");
            raw.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8(raw[..head_end].to_vec()).expect("utf-8 head");
        let length: usize = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .unwrap_or_else(|| panic!("no content-length in {head}"));
        let mut body = raw[head_end..].to_vec();
        while body.len() < length {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.expect("read");
            assert!(n > 0, "closed in a body");
            body.extend_from_slice(&chunk[..n]);
        }
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line in {head}"));
        (status, String::from_utf8(body).expect("utf-8 body"))
    })
    .await
}

/// Waits until the master closes `stream` (end of stream or reset), reading and
/// discarding anything before; returns when that happened.
async fn closed_at(stream: &mut TcpStream) -> Instant {
    within("the master closes the connection", async {
        let mut chunk = [0u8; 1024];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return Instant::now(),
                Ok(_) => {}
            }
        }
    })
    .await
}

/// The value of the one sample `name{labels}` on /metrics.
async fn metric(master: &TestMaster, name: &str, labels: &[(&str, &str)]) -> f64 {
    let reply = master.get("/metrics").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let samples = parse_exposition(&reply.body);
    find(&samples, name, labels)
        .unwrap_or_else(|| panic!("no {name} {labels:?} in\n{}", reply.body))
        .value
}

#[tokio::test]
async fn a_head_sent_a_byte_at_a_time_is_closed_at_the_header_timeout() {
    let master = TestMaster::start_http(http_limits(500, 60_000), None).await;
    let mut stream = within("connect", TcpStream::connect(master.http))
        .await
        .expect("connect");
    let opened = Instant::now();
    let (mut reader, mut writer) = stream.split();
    let head = b"GET /status HTTP/1.1\r\nHost: master\r\nX-Padding: slowly, slowly\r\n\r\n";
    let trickle = async {
        for byte in head {
            if writer.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the whole head went through a byte per 100 ms");
    };
    let closed = async {
        let mut chunk = [0u8; 1024];
        within("the master closes the connection", async {
            match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => Instant::now(),
                Ok(n) => panic!("an answer to a trickled head: {:?}", &chunk[..n]),
            }
        })
        .await
    };
    let at = tokio::select! {
        at = closed => at,
        () = trickle => unreachable!("the trickle panics or returns after the close"),
    };
    let after = at - opened;
    assert!(
        after >= Duration::from_millis(450) && after < Duration::from_millis(2_000),
        "closed after {after:?}"
    );
    assert_eq!(
        metric(
            &master,
            "centrum_master_http_timeouts_total",
            &[("kind", "header")]
        )
        .await,
        1.0
    );
    master.stop().await;
}

#[tokio::test]
async fn a_keep_alive_connection_is_closed_after_the_idle_timeout_not_before() {
    let master = TestMaster::start_http(http_limits(5_000, 400), None).await;
    let mut stream = within("connect", TcpStream::connect(master.http))
        .await
        .expect("connect");
    let request = b"GET /gate?channel=arena HTTP/1.1\r\nHost: master\r\n\r\n";
    // Two requests on one connection: it is kept alive between them.
    for _ in 0..2 {
        stream.write_all(request).await.expect("write");
        let (status, body) = read_response(&mut stream).await;
        assert_eq!(status, 503, "{body}");
    }
    let answered = Instant::now();
    let idle = closed_at(&mut stream).await - answered;
    assert!(
        idle >= Duration::from_millis(350) && idle < Duration::from_millis(2_000),
        "closed after {idle:?} idle"
    );
    assert_eq!(
        metric(
            &master,
            "centrum_master_http_timeouts_total",
            &[("kind", "idle")]
        )
        .await,
        1.0
    );
    assert_eq!(
        metric(
            &master,
            "centrum_master_http_timeouts_total",
            &[("kind", "header")]
        )
        .await,
        0.0
    );
    master.stop().await;
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_fails_its_request_and_closes_the_connection() {
    const TOKEN: &str = "a-good-token-1234";
    let master = TestMaster::start_http(http_limits(400, 60_000), Some(TOKEN)).await;
    let mut stream = within("connect", TcpStream::connect(master.http))
        .await
        .expect("connect");
    stream
        .write_all(
            b"POST /admin/login HTTP/1.1\r\nHost: master\r\n\
              Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ntoken=",
        )
        .await
        .expect("write");
    let sent = Instant::now();
    let (status, body) = read_response(&mut stream).await;
    assert_eq!(status, 400, "{body}");
    let closed = closed_at(&mut stream).await - sent;
    assert!(
        closed >= Duration::from_millis(350) && closed < Duration::from_millis(2_000),
        "closed after {closed:?}"
    );
    let bearer = [("Authorization", "Bearer a-good-token-1234")];
    let reply = request_with(master.http, "GET", "/metrics", &bearer, "").await;
    let samples = parse_exposition(&reply.body);
    let timeouts = |kind| {
        find(
            &samples,
            "centrum_master_http_timeouts_total",
            &[("kind", kind)],
        )
        .expect("a sample")
        .value
    };
    assert_eq!(timeouts("body"), 1.0);

    // A body over the limit is refused unread.
    let form_type = [("Content-Type", "application/x-www-form-urlencoded")];
    let big = format!("token={}", "x".repeat(20_000));
    let reply = request_with(master.http, "POST", "/admin/login", &form_type, &big).await;
    assert_eq!(reply.status, 413, "{}", reply.body);
    master.stop().await;
}

#[tokio::test]
async fn with_the_cap_taken_by_idle_and_slow_connections_the_gate_still_answers() {
    let master = TestMaster::start_http(
        MasterLimits {
            max_connections: 20,
            ..http_limits(60_000, 60_000)
        },
        None,
    )
    .await;
    let front = master.node(Role::Front, "front-1", 1, clients(0));
    master.node_until("front-1", |_| true).await;
    // 30 connections for a cap of 20: half never send a byte, half stop mid-head.
    let mut hogs = Vec::new();
    for i in 0..30 {
        let mut stream = within("connect", TcpStream::connect(master.http))
            .await
            .expect("connect");
        if i % 2 == 1 {
            stream.write_all(b"GET /status HT").await.expect("write");
        }
        hogs.push(stream);
    }
    let asked = Instant::now();
    let reply = request(master.http, "GET", "/gate?channel=arena").await;
    let took = asked.elapsed();
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["front"], "front-1");
    assert!(took < Duration::from_secs(1), "the gate took {took:?}");
    // Room was made by closing the longest-waiting connections, never more than the cap open.
    let evicted = metric(&master, "centrum_master_http_evicted_total", &[]).await;
    assert!(evicted >= 11.0, "{evicted} evicted");
    let open = metric(&master, "centrum_master_http_connections", &[]).await;
    assert!(open <= 20.0, "{open} open");
    // The first connections made were the first closed.
    closed_at(&mut hogs[0]).await;
    closed_at(&mut hogs[1]).await;
    front.stop().await;
    master.stop().await;
}

#[tokio::test]
async fn a_sixth_login_within_a_minute_gets_429_with_retry_after() {
    const TOKEN: &str = "a-good-token-1234";
    let master = TestMaster::start_http(MasterLimits::default(), Some(TOKEN)).await;
    let form_type = [("Content-Type", "application/x-www-form-urlencoded")];
    let login = |token: &'static str| {
        request_with(
            master.http,
            "POST",
            "/admin/login",
            &form_type,
            match token {
                "right" => "token=a-good-token-1234",
                _ => "token=a-bad-token-12345",
            },
        )
    };
    for _ in 0..5 {
        let reply = login("wrong").await;
        assert_eq!(reply.status, 303);
        assert_eq!(reply.header("location"), Some("/admin?login=failed"));
    }
    // Even the right token waits now.
    let throttled = login("right").await;
    assert_eq!(throttled.status, 429, "{}", throttled.body);
    assert!(
        throttled.error().contains("too many login attempts"),
        "{}",
        throttled.body
    );
    assert_eq!(throttled.header("set-cookie"), None);
    let retry: u64 = throttled
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After in seconds");
    assert!((1..=12).contains(&retry), "{retry}");

    let bearer = [("Authorization", "Bearer a-good-token-1234")];
    let reply = request_with(master.http, "GET", "/metrics", &bearer, "").await;
    assert_eq!(reply.status, 200, "the bearer token is not rate limited");
    let samples = parse_exposition(&reply.body);
    let value = |name| find(&samples, name, &[]).expect("a sample").value;
    assert_eq!(value("centrum_master_login_throttled_total"), 1.0);
    assert_eq!(value("centrum_master_login_failures_total"), 5.0);
    assert_eq!(value("centrum_master_admin_sessions"), 0.0);
    master.stop().await;
}
