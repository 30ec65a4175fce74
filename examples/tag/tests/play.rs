//! Tag played the way it runs for real: `tag up` starts the whole cluster as separate
//! processes, two players connect through the gate with centrum's Rust client, one
//! chases the other until it tags it, they chat, and a server-side caller reads the
//! scoreboard over HTTP.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use centrum_client::{Client, ClientError, ClientOptions, Event as ClientEvent, Mirror, Value};
use tag::{Event, Input, Score};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(20);
const KEY: &str = "a-key-for-this-test";

/// A port free right now (the cluster binds it a moment later).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The `tag up` process; stopped (SIGTERM, so it stops its children) when dropped.
struct Cluster {
    up: Child,
    http: String,
    front: u16,
}

impl Cluster {
    fn start() -> Cluster {
        let (http, nodes, front, back) = (free_port(), free_port(), free_port(), free_port());
        let dir = std::env::temp_dir().join(format!("tag-test-{}", std::process::id()));
        // Fresh: the back keeps its channel under this directory (centrum-data/).
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a scratch dir");
        let config = dir.join("tag.toml");
        std::fs::write(
            &config,
            format!(
                "[master]\nhttp = \"127.0.0.1:{http}\"\nnodes = \"127.0.0.1:{nodes}\"\n\
                 [[fronts]]\nid = \"front-1\"\nlisten = \"127.0.0.1:{front}\"\n\
                 [[backs]]\nid = \"back-1\"\nlisten = \"127.0.0.1:{back}\"\ntick_hz = 20\n\
                 channels = [{{ name = \"tag\", app = \"tag\" }}]\n\
                 [calls]\nserver_key = \"{KEY}\"\n"
            ),
        )
        .expect("write the config");
        let up = Command::new(env!("CARGO_BIN_EXE_tag"))
            .arg("up")
            .arg(&config)
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tag up starts");
        Cluster {
            up,
            http: format!("127.0.0.1:{http}"),
            front,
        }
    }

    /// A player who joined `tag` as `name`, through the gate like a browser.
    async fn player(&self, name: &str) -> Client {
        let deadline = Instant::now() + WAIT;
        loop {
            assert!(Instant::now() < deadline, "{name} could not join");
            // The gate answers once the front has registered; the join once it has
            // linked to the back. Until then, try again shortly.
            let Ok(mut client) =
                Client::connect_via_gate(&self.http, "tag", ClientOptions::default()).await
            else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            #[derive(serde::Serialize)]
            struct Join<'a> {
                name: &'a str,
            }
            match client.join_value("tag", &Join { name }).await {
                Ok(()) => return client,
                Err(ClientError::Rejected { .. }) => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!("{name} could not join: {e}"),
            }
        }
    }

    /// A call over HTTP to the game, as a lobby or an admin script would make it:
    /// the status and the body.
    async fn call(&self, key: &str, json: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.front))
            .await
            .expect("connect to the front");
        let request = format!(
            "POST /v1/channels/tag/call HTTP/1.1\r\nHost: tag\r\nAuthorization: Bearer {key}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
            json.len()
        );
        stream.write_all(request.as_bytes()).await.expect("send");
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .await
            .expect("a response");
        let status = response[9..12].parse().expect("a status");
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.up.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.up.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.up.kill();
    }
}

/// The next message of the game to `client`, skipping everything else.
async fn next_event(client: &mut Client) -> Event {
    tokio::time::timeout(WAIT, async {
        loop {
            let event = client.next_event().await.expect("the connection holds");
            if let Some(message) = event.message::<Event>() {
                return message.expect("a tag event");
            }
        }
    })
    .await
    .expect("a message in time")
}

fn position(mirror: &Mirror, player: u32) -> (f64, f64) {
    let id = centrum_client::EntityId(player);
    (
        mirror.number(id, "x").expect("x"),
        mirror.number(id, "y").expect("y"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_players_play_tag_chat_and_a_caller_reads_the_scores() {
    let cluster = Cluster::start();
    let mut ann = cluster.player("ann").await;
    let Event::You { player: ann_id } = next_event(&mut ann).await else {
        panic!("ann is told her player first")
    };
    let mut bo = cluster.player("bo").await;
    let Event::You { player: bo_id } = next_event(&mut bo).await else {
        panic!("bo is told his player first")
    };
    // Ann joined first, so she is "it".
    let it = |c: &Client, id: u32| {
        c.mirror("tag")
            .and_then(|m| m.field(centrum_client::EntityId(id), "it"))
            .map(|(_, v)| v == &Value::Bool(true))
    };
    assert_eq!(it(&ann, ann_id), Some(true));

    // Ann runs at Bo, steering again each time Bo's view of the field moves on,
    // until she tags him.
    let deadline = Instant::now() + WAIT;
    let tagged = loop {
        assert!(Instant::now() < deadline, "ann never caught bo");
        let mirror = bo.mirror("tag").expect("bo's mirror");
        let ((ax, ay), (bx, by)) = (position(mirror, ann_id), position(mirror, bo_id));
        ann.send_value(
            "tag",
            &Input::Move {
                dx: bx - ax,
                dy: by - ay,
            },
        )
        .await
        .expect("ann moves");
        let event = tokio::time::timeout(WAIT, bo.next_event())
            .await
            .expect("bo hears something")
            .expect("bo's connection holds");
        if let Some(Ok(Event::Tagged { by })) = event.message::<Event>() {
            break by;
        }
    };
    assert_eq!(tagged, "ann");
    let Event::Scores { scores } = next_event(&mut bo).await else {
        panic!("the scores follow the tag")
    };
    assert_eq!(
        scores[0],
        Score {
            name: "ann".into(),
            score: 1
        }
    );

    // Bo says something; everyone hears it.
    bo.send_value(
        "tag",
        &Input::Say {
            text: "no fair".into(),
        },
    )
    .await
    .expect("bo speaks");
    loop {
        if let Event::Said { name, text } = next_event(&mut ann).await {
            assert_eq!((name.as_str(), text.as_str()), ("bo", "no fair"));
            break;
        }
    }

    // What the game does not take is refused, and says why.
    bo.send_input("tag", &rmp_serde::to_vec_named(&"fly").expect("encode"))
        .await
        .expect("send");
    loop {
        let event = tokio::time::timeout(WAIT, bo.next_event())
            .await
            .expect("an answer")
            .expect("the connection holds");
        if let ClientEvent::Error { code, message } = event {
            assert_eq!(code, "input_refused");
            assert!(message.contains("unknown variant `fly`"), "{message}");
            break;
        }
    }

    // A server-side caller reads the scoreboard, with the key, and only with it.
    let (status, body) = cluster.call(KEY, "\"scores\"").await;
    assert_eq!(status, 200, "{body}");
    let scores: Vec<Score> = serde_json::from_str(&body).expect("JSON scores");
    assert_eq!(
        scores,
        [
            Score {
                name: "ann".into(),
                score: 1
            },
            Score {
                name: "bo".into(),
                score: 0
            }
        ]
    );
    let (status, _) = cluster.call("not-the-key-of-this-game", "\"scores\"").await;
    assert_eq!(status, 401);
    let (status, body) = cluster.call(KEY, "{\"scores\"").await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = cluster.call(KEY, "\"reset\"").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("\"score\":0") && !body.contains("\"score\":1"),
        "{body}"
    );
}
