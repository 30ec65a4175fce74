//! Each node's ops port over real sockets (`fronts[].ops`, `backs[].ops`): liveness,
//! a front's readiness following its link to the back, and /metrics as Prometheus text
//! with the same families the node reports to the master, behind the admin token.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use centrum_tests::http::{Response, request};
use centrum_tests::{ClusterSpec, TestCluster, within};

const TOKEN: &str = "the-ops-tests-admin-token";

async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> Response {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: node\r\n{auth}"),
        b"",
    )
    .await
}

fn body(response: &Response) -> &str {
    std::str::from_utf8(&response.body).expect("a text body")
}

/// Polls `path` until it answers `status`; the last answer.
async fn until_status(addr: SocketAddr, path: &str, status: u16) -> Response {
    within(&format!("{path} answers {status}"), async {
        loop {
            let response = get(addr, path, None).await;
            if response.status == status {
                return response;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// Each sample of an exposition as `name{labels}` without the value, after checking
/// that every line is a comment or `name{labels} number`.
fn series(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not a sample: {line:?}"));
        let number = matches!(value, "NaN" | "+Inf" | "-Inf") || value.parse::<f64>().is_ok();
        assert!(number, "not a number in {line:?}");
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad name in {line:?}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "bad labels in {line:?}");
        }
        out.insert(series.to_owned());
    }
    out
}

/// The series the master shows for node `id`, with its `node="<id>",` label taken out.
fn master_series_of(master: &str, id: &str) -> BTreeSet<String> {
    let only = format!("{{node=\"{id}\"}}");
    let first = format!("{{node=\"{id}\",");
    series(master)
        .into_iter()
        .filter_map(|s| {
            if let Some(name) = s.strip_suffix(&only) {
                Some(name.to_owned())
            } else {
                s.split_once(&first)
                    .map(|(name, rest)| format!("{name}{{{rest}"))
            }
        })
        .collect()
}

#[tokio::test]
async fn nodes_serve_health_readiness_and_their_own_metrics() {
    let cluster = TestCluster::start(ClusterSpec {
        ops: true,
        proxied_links: true,
        admin_token: Some(TOKEN.into()),
        ..ClusterSpec::default()
    })
    .await;
    let front = cluster.fronts[0].ops_addr().expect("the front's ops port");
    let back = cluster.backs[0].ops_addr().expect("the back's ops port");

    for addr in [front, back] {
        let health = get(addr, "/healthz", None).await;
        assert_eq!((health.status, body(&health)), (200, "ok\n"));
        let ready = until_status(addr, "/readyz", 200).await;
        assert_eq!(body(&ready), "ready\n");
    }

    // The front's link to the back breaks and cannot come back while the proxy holds
    // it: the front stays live and ready (its clients of that back are told the
    // channel is unavailable; a load balancer must not drop it for one back).
    cluster.proxies[0].pause();
    cluster.proxies[0].cut();
    within("the front notices its link is down", async {
        loop {
            let text = body(&get(front, "/metrics", Some(TOKEN)).await).to_owned();
            if text.lines().any(|l| l == "centrum_front_links 0") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(get(front, "/readyz", None).await.status, 200);
    assert_eq!(get(front, "/healthz", None).await.status, 200);
    cluster.proxies[0].resume();

    // /metrics needs the admin token; the probes above did not.
    for addr in [front, back] {
        let refused = get(addr, "/metrics", None).await;
        assert_eq!(refused.status, 401);
        assert!(
            refused
                .header("www-authenticate")
                .is_some_and(|v| v.starts_with("Bearer")),
            "{:?}",
            refused.headers
        );
        assert!(
            refused.error().contains("admin token"),
            "{}",
            body(&refused)
        );
        let wrong = get(addr, "/metrics", Some("not the token at all")).await;
        assert_eq!(wrong.status, 401);
    }

    let front_text = get(front, "/metrics", Some(TOKEN)).await;
    assert_eq!(front_text.status, 200);
    assert_eq!(
        front_text.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let front_series = series(body(&front_text));
    assert!(
        front_series.contains("centrum_front_clients"),
        "{front_series:?}"
    );
    assert!(
        front_series.contains("centrum_front_ops_unauthorized_total"),
        "{front_series:?}"
    );
    assert!(
        body(&front_text).contains("\ncentrum_front_ops_unauthorized_total 2\n"),
        "the two refusals are counted: {}",
        body(&front_text)
    );
    assert!(front_series.iter().all(|s| s.starts_with("centrum_front_")));

    let back_text = get(back, "/metrics", Some(TOKEN)).await;
    assert_eq!(back_text.status, 200);
    let back_series = series(body(&back_text));
    assert!(
        back_series.contains("centrum_back_ticks_total{channel=\"arena\"}"),
        "{back_series:?}"
    );
    assert!(back_series.iter().all(|s| s.starts_with("centrum_back_")));

    // The same series the nodes report in their heartbeats, as the master shows them.
    let master = cluster.master_http;
    within("the master shows both nodes' metrics", async {
        loop {
            let text = get(master, "/metrics", Some(TOKEN)).await;
            let text = body(&text);
            if master_series_of(text, "front-1") == front_series
                && master_series_of(text, "back-1") == back_series
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;

    // Anything else: a JSON 404 naming what the port serves.
    let missing = get(front, "/status", None).await;
    assert_eq!(missing.status, 404);
    assert!(missing.error().contains("/healthz"), "{}", body(&missing));

    cluster.stop().await;
}
