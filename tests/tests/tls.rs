//! TLS end to end: fronts serving wss:// and the master https:// with certificates made
//! at test time, a Rust client playing through both, plain clients refused, and
//! certificates reloaded while clients play.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;

use centrum_client::{Client, ClientError, ClientOptions};
use centrum_config::{Config, Limits};
use centrum_front::{Front, FrontError};
use centrum_net::Shutdown;
use centrum_protocol::{Seq, Value};
use centrum_tests::http::Connection;
use centrum_tests::tls::{TestCert, connect};
use centrum_tests::{ClusterSpec, TestCluster, join, steer, until, within};

fn spec(cert: &TestCert) -> ClusterSpec {
    ClusterSpec {
        tls: Some(cert.config()),
        // Fronts report their counters to the master's /metrics this often.
        limits: Limits {
            heartbeat_ms: 100,
            ..Limits::default()
        },
        ..ClusterSpec::default()
    }
}

/// Through the https gate, once the front has registered.
async fn via_gate(master: SocketAddr, options: &ClientOptions) -> Client {
    let master = format!("https://{master}");
    within("gate", async {
        loop {
            match Client::connect_via_gate(&master, "arena", options.clone()).await {
                Ok(client) => return client,
                Err(ClientError::Gate { status: 503, .. }) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("gate failed: {e}"),
            }
        }
    })
    .await
}

/// `GET path` over https, trusting `root`.
async fn get(addr: SocketAddr, root: &CertificateDer<'static>, path: &str) -> (u16, String) {
    let mut conn = Connection::open_tls(addr, root).await;
    conn.send(
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n"),
        b"",
    )
    .await;
    let response = conn.response().await;
    (
        response.status,
        String::from_utf8_lossy(&response.body).into_owned(),
    )
}

/// Waits until the master's /metrics has `sample` (name and labels) at `value`.
async fn metric_reaches(
    addr: SocketAddr,
    root: &CertificateDer<'static>,
    sample: &str,
    value: f64,
) {
    within(&format!("{sample} reaches {value}"), async {
        loop {
            let (_, text) = get(addr, root, "/metrics").await;
            let now = text.lines().find_map(|line| {
                let rest = line.strip_prefix(sample)?.strip_prefix(' ')?;
                rest.parse::<f64>().ok()
            });
            if now == Some(value) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

/// Waits until a new TLS connection to `addr` is served `cert`.
async fn serves(addr: SocketAddr, cert: &CertificateDer<'static>) {
    within("the new certificate is served", async {
        while connect(addr, cert).await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

async fn plays(client: &mut Client, seq: u32) {
    client.send_input("arena", &[]).await.expect("input");
    until(client, "the input is acked", |c, _| {
        c.ack("arena") == Seq(seq)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_plays_over_wss_found_through_an_https_gate() {
    let cert = TestCert::new("play");
    let cluster = TestCluster::start(spec(&cert)).await;
    let front = cluster.fronts[0].local_addr();
    assert_eq!(cluster.front_url(0), format!("wss://{front}"));

    let (status, body) = get(cluster.master_http, &cert.der(), "/gate?channel=arena").await;
    // Before the front registers, the gate has none to offer.
    assert!(status == 200 || status == 503, "{status}: {body}");
    let mut client = via_gate(cluster.master_http, &cert.options()).await;
    let (status, body) = get(cluster.master_http, &cert.der(), "/gate?channel=arena").await;
    assert_eq!(status, 200, "{body}");
    let gate: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(gate["url"], format!("wss://{front}"));

    let name = rmp_serde::to_vec_named(&serde_json::json!({ "name": "ana" })).expect("encode");
    join(&mut client, "arena", &name).await;
    let mirror = client.mirror("arena").expect("a mirror");
    let me = mirror
        .entities()
        .keys()
        .copied()
        .find(|&id| matches!(mirror.field(id, "name"), Some((_, Value::Str(n))) if n == "ana"))
        .expect("the player");
    let x0 = mirror.number(me, "x").expect("x");
    let right = if x0 < 32.0 { 1.0 } else { -1.0 };
    client
        .send_input("arena", &steer(right))
        .await
        .expect("input");
    until(&mut client, "the input is acked", |c, _| {
        c.ack("arena") == Seq(1)
    })
    .await;
    until(&mut client, "patches move the player", |c, _| {
        c.mirror("arena")
            .and_then(|m| m.number(me, "x"))
            .is_some_and(|x| (x - x0) * right > 1.0)
    })
    .await;

    let (status, body) = get(cluster.master_http, &cert.der(), "/status").await;
    assert_eq!(status, 200, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(status["clients"], 1, "{status}");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_clients_to_tls_ports_fail_cleanly_and_are_counted() {
    let cert = TestCert::new("plain");
    let cluster = TestCluster::start(spec(&cert)).await;
    let front = cluster.fronts[0].local_addr();

    let plain = within(
        "plain ws",
        Client::connect(&format!("ws://{front}"), ClientOptions::default()),
    )
    .await;
    assert!(
        matches!(plain, Err(ClientError::Connect { .. })),
        "{plain:?}"
    );
    // A client that does not trust the certificate is refused by its own TLS.
    let untrusted = within(
        "untrusted wss",
        Client::connect(&cluster.front_url(0), ClientOptions::default()),
    )
    .await;
    assert!(
        matches!(untrusted, Err(ClientError::Connect { .. })),
        "{untrusted:?}"
    );
    let plain_gate = within(
        "plain gate",
        Client::connect_via_gate(&cluster.master_http.to_string(), "arena", cert.options()),
    )
    .await;
    assert!(
        matches!(plain_gate, Err(ClientError::Connect { .. })),
        "{plain_gate:?}"
    );

    let root = cert.der();
    metric_reaches(
        cluster.master_http,
        &root,
        "centrum_front_tls_handshake_failures_total{node=\"front-1\"}",
        2.0,
    )
    .await;
    metric_reaches(
        cluster.master_http,
        &root,
        "centrum_master_tls_handshake_failures_total",
        1.0,
    )
    .await;
    // The front serves on.
    let mut client = within(
        "wss",
        Client::connect(&cluster.front_url(0), cert.options()),
    )
    .await
    .expect("connect over wss");
    join(&mut client, "arena", &[]).await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_serves_new_connections_while_old_ones_play_on() {
    let mut cert = TestCert::new("renew");
    let cluster = TestCluster::start(spec(&cert)).await;
    let (front, master) = (cluster.fronts[0].local_addr(), cluster.master_http);
    let old = cert.options();
    let mut before = within("wss", Client::connect(&cluster.front_url(0), old.clone()))
        .await
        .expect("connect");
    join(&mut before, "arena", &[]).await;
    plays(&mut before, 1).await;

    cert.renew();
    let root = cert.der();
    serves(front, &root).await;
    serves(master, &root).await;
    // The connection from before the renewal keeps its session and plays on.
    plays(&mut before, 2).await;
    let refused = within("old root", Client::connect(&cluster.front_url(0), old)).await;
    assert!(refused.is_err(), "the old certificate is no longer served");
    let mut after = within(
        "wss",
        Client::connect(&cluster.front_url(0), cert.options()),
    )
    .await
    .expect("connect with the new certificate");
    join(&mut after, "arena", &[]).await;
    plays(&mut after, 1).await;
    metric_reaches(
        master,
        &root,
        "centrum_front_tls_reloads_total{node=\"front-1\"}",
        1.0,
    )
    .await;
    metric_reaches(master, &root, "centrum_master_tls_reloads_total", 1.0).await;

    // A broken key: counted, logged, and the renewed certificate stays in use.
    let aside = cert.key.with_extension("new");
    std::fs::write(&aside, "-----BEGIN PRIVATE KEY-----\nnot base64!\n").expect("write");
    std::fs::rename(&aside, &cert.key).expect("rename");
    metric_reaches(
        master,
        &root,
        "centrum_front_tls_reload_failures_total{node=\"front-1\"}",
        1.0,
    )
    .await;
    metric_reaches(
        master,
        &root,
        "centrum_front_tls_reloads_total{node=\"front-1\"}",
        1.0,
    )
    .await;
    let mut last = within(
        "wss",
        Client::connect(&cluster.front_url(0), cert.options()),
    )
    .await
    .expect("the certificate loaded before still serves");
    join(&mut last, "arena", &[]).await;
    plays(&mut before, 3).await;
    cluster.stop().await;
}

#[tokio::test]
async fn unusable_certificate_files_stop_a_node_naming_the_field() {
    let cert = TestCert::new("start");
    let mut config = Config::embedded_default();
    config.cluster.secret = Some(centrum_config::Secret::new(centrum_tests::CLUSTER_SECRET));
    config.fronts[0].listen = "127.0.0.1:0".parse().expect("addr");
    config.fronts[0].tls = Some(centrum_config::TlsConfig {
        cert: cert.cert.clone(),
        // The certificate where the key should be.
        key: cert.cert.clone(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let shutdown = Shutdown::new();
    let err = Front::start(
        Arc::new(config.clone()),
        "front-1",
        listener,
        shutdown.clone(),
    )
    .expect_err("a front without a key");
    assert!(matches!(err, FrontError::Tls { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "fronts[0].tls.key: no private key in {} (expected PEM \"PRIVATE KEY\")",
            cert.cert.display()
        )
    );

    config.master.tls = Some(centrum_config::TlsConfig {
        cert: cert.dir.join("missing.pem"),
        key: cert.key.clone(),
    });
    let listeners = centrum_master::MasterListeners {
        http: tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind"),
        nodes: tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind"),
    };
    let err = within(
        "master refuses",
        centrum_master::run(Arc::new(config), listeners, shutdown),
    )
    .await
    .expect_err("a master without a certificate");
    let message = err.to_string();
    assert!(
        message.starts_with(&format!(
            "master.tls.cert: cannot read {}: ",
            cert.dir.join("missing.pem").display()
        )),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_cookie_is_secure_over_https() {
    let cert = TestCert::new("cookie");
    let token = "a-long-enough-admin-token";
    let cluster = TestCluster::start(ClusterSpec {
        admin_token: Some(token.into()),
        ..spec(&cert)
    })
    .await;
    let mut conn = Connection::open_tls(cluster.master_http, &cert.der()).await;
    conn.send(
        "POST /admin/login HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\n",
        format!("token={token}").as_bytes(),
    )
    .await;
    let response = conn.response().await;
    let cookie = response.header("set-cookie").expect("a cookie");
    assert!(cookie.ends_with("; Secure"), "{cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_to_backs_run_over_tls_checked_against_the_clusters_roots() {
    let back = TestCert::new("link");
    let cluster = TestCluster::start(ClusterSpec {
        link_tls: Some((back.config(), back.cert.clone())),
        ..ClusterSpec::default()
    })
    .await;
    let mut client = cluster.connect(0).await;
    join(&mut client, "arena", &[]).await;
    plays(&mut client, 1).await;
    cluster.stop().await;

    // A front whose roots do not include the back's certificate never links.
    let stranger = TestCert::new("link-stranger");
    let cluster = TestCluster::start(ClusterSpec {
        link_tls: Some((back.config(), stranger.cert.clone())),
        limits: Limits {
            heartbeat_ms: 100,
            ..Limits::default()
        },
        ..ClusterSpec::default()
    })
    .await;
    // The front has tried, and failed, to link (the master's /metrics shows it).
    within("a failed link", async {
        loop {
            let head = "GET /metrics HTTP/1.1\r\nHost: master\r\n";
            let metrics = centrum_tests::http::request(cluster.master_http, head, b"").await;
            let text = String::from_utf8_lossy(&metrics.body).into_owned();
            let failed = text.lines().any(|line| {
                line.starts_with("centrum_front_link_failures_total{")
                    && line.rsplit(' ').next().is_some_and(|v| v != "0")
            });
            if failed {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let mut client = cluster.connect(0).await;
    let refused = client.join("arena", &[]).await;
    assert!(
        matches!(&refused, Err(ClientError::Rejected { reason, .. }) if reason.contains("unavailable")),
        "{refused:?}"
    );
    cluster.stop().await;
}
