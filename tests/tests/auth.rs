//! Client authentication end to end, in-process clusters and real sockets: tokens made
//! here with jsonwebtoken (HS256 with a secret, ES256 with a PEM key, EdDSA with a
//! JWKS) let clients in under their name; every way a token can be bad gets
//! `unauthorized` and close 1008; the channel claim and anonymous channels decide
//! which joins the front lets through.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt as _, StreamExt as _};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value as Json, json};
use tokio_tungstenite::tungstenite::Message;

use centrum_client::{Client, ClientError, ClientOptions, Mirror, Token};
use centrum_config::{AuthConfig, JwtAlgorithm, Secret};
use centrum_protocol::{ClientMsg, FrontMsg, Hello, PROTOCOL_VERSION, Value, decode, encode};
use centrum_tests::{ClusterSpec, TestCluster, join, until, within};

const SECRET: &str = "a-test-secret-that-is-long-enough-for-hs256";
const ISSUER: &str = "https://auth.centrum.test";
const AUDIENCE: &str = "centrum-tests";

fn fixture(name: &str) -> std::path::PathBuf {
    [env!("CARGO_MANIFEST_DIR"), "fixtures", "jwt", name]
        .iter()
        .collect()
}

fn hs256() -> AuthConfig {
    AuthConfig {
        algorithm: JwtAlgorithm::HS256,
        secret: Some(Secret::new(SECRET)),
        secret_env: None,
        secret_file: None,
        public_key_file: None,
        jwks_file: None,
        issuer: Some(ISSUER.into()),
        audience: Some(AUDIENCE.into()),
        leeway_s: 30,
        claims: vec!["name".into()],
        channels_claim: "channels".into(),
    }
}

/// `arena`, `match-7` and `lobby` (open to anonymous clients when `lobby_open`), all
/// running the arena game.
async fn start(auth: AuthConfig, lobby_open: bool) -> TestCluster {
    TestCluster::start(ClusterSpec {
        backs: ["arena", "match-7", "lobby"]
            .map(|c| (c.to_owned(), "arena".to_owned()))
            .to_vec(),
        auth: Some(auth),
        anonymous: if lobby_open {
            vec!["lobby".into()]
        } else {
            Vec::new()
        },
        ..ClusterSpec::default()
    })
    .await
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}

/// Valid claims for `sub`, valid for ten minutes.
fn claims(sub: &str) -> Json {
    json!({ "sub": sub, "exp": now() + 600, "iss": ISSUER, "aud": AUDIENCE })
}

fn with(mut claims: Json, key: &str, value: Json) -> Json {
    claims[key] = value;
    claims
}

fn sign_with(claims: &Json, secret: &str) -> String {
    let key = EncodingKey::from_secret(secret.as_bytes());
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key).expect("signs")
}

fn sign(claims: &Json) -> String {
    sign_with(claims, SECRET)
}

async fn connect(cluster: &TestCluster, token: impl Into<Token>) -> Result<Client, ClientError> {
    let options = ClientOptions {
        token: token.into(),
        ..ClientOptions::default()
    };
    within("connect", Client::connect(&cluster.front_url(0), options)).await
}

/// The name of the arena player the client was told is its own.
async fn my_name(client: &mut Client) -> String {
    let mut me = None;
    until(client, "my player in the state", |c, event| {
        if let Some(Ok(serde_json::Value::Object(you))) = event.message::<serde_json::Value>()
            && let Some(player) = you.get("you").and_then(|y| y.get("player"))
        {
            me = player.as_u64();
        }
        me.is_some_and(|id| name_of(c.mirror("arena"), id).is_some())
    })
    .await;
    name_of(client.mirror("arena"), me.expect("told")).expect("named")
}

fn name_of(mirror: Option<&Mirror>, id: u64) -> Option<String> {
    let id = centrum_protocol::EntityId(u32::try_from(id).ok()?);
    match mirror?.field(id, "name")? {
        (_, Value::Str(name)) => Some(name.to_string()),
        _ => None,
    }
}

/// What a front says to a hello with `token` that it refuses: the `Error`'s code and
/// message, then the close frame's code and reason.
async fn refused(cluster: &TestCluster, token: &str) -> (String, String, u16, String) {
    let url = cluster.front_url(0);
    let (mut ws, _) = within("upgrade", tokio_tungstenite::connect_async(url.as_str()))
        .await
        .expect("upgrade");
    let hello = ClientMsg::Hello(Hello {
        version: PROTOCOL_VERSION,
        token: token.into(),
        resume: None,
    });
    within("hello", ws.send(Message::Binary(encode(&hello).into())))
        .await
        .expect("sent");
    let mut error = None;
    loop {
        match within("the front's answer", ws.next()).await {
            Some(Ok(Message::Binary(bytes))) => match decode(&bytes, usize::MAX) {
                Ok(FrontMsg::Error(e)) => error = Some((e.code, e.message)),
                other => panic!("expected an error, got {other:?}"),
            },
            Some(Ok(Message::Close(Some(frame)))) => {
                let (code, message) = error.expect("an error before the close");
                return (
                    code,
                    message,
                    u16::from(frame.code),
                    frame.reason.to_string(),
                );
            }
            other => panic!("expected an error and a close, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_valid_token_joins_and_the_game_plays_under_its_name_claim_or_subject() {
    let cluster = start(hs256(), false).await;
    let token = sign(&with(claims("user-1"), "name", json!("Ann")));
    let mut ann = connect(&cluster, token).await.expect("welcomed");
    join(&mut ann, "arena", b"").await;
    assert_eq!(my_name(&mut ann).await, "Ann");

    let mut bo = connect(&cluster, sign(&claims("user-2")))
        .await
        .expect("welcomed");
    // The join's own name is no match for the token's word.
    let named = rmp_serde::to_vec_named(&json!({ "name": "Ann" })).expect("encodes");
    join(&mut bo, "arena", &named).await;
    assert_eq!(my_name(&mut bo).await, "user-2");
    cluster.stop().await;
}

#[tokio::test]
async fn every_bad_token_gets_unauthorized_and_close_1008() {
    let cluster = start(hs256(), true).await;
    let cases = [
        (
            "expired",
            sign(&with(claims("u"), "exp", json!(now() - 3600))),
        ),
        (
            "not_yet_valid",
            sign(&with(claims("u"), "nbf", json!(now() + 3600))),
        ),
        (
            "issuer",
            sign(&with(claims("u"), "iss", json!("someone-else"))),
        ),
        (
            "audience",
            sign(&with(claims("u"), "aud", json!("another-game"))),
        ),
        ("audience", {
            let mut c = claims("u");
            c.as_object_mut().expect("an object").remove("aud");
            sign(&c)
        }),
        (
            "signature",
            sign_with(&claims("u"), "another-secret-just-as-long-as-the-first"),
        ),
        ("malformed", "not-a-jwt".to_owned()),
        ("malformed", "a.b.c".to_owned()),
        ("signature", "eyJhbGciOiJIUzI1NiJ9.e30.AAAA".to_owned()),
        (
            "claims",
            sign(&with(claims("u"), "channels", json!("arena"))),
        ),
    ];
    for (reason, token) in cases {
        let (code, message, close, close_reason) = refused(&cluster, &token).await;
        assert_eq!(code, "unauthorized", "{reason}: {message}");
        assert!(
            message.starts_with(&format!("{reason}: ")),
            "{reason}: {message}"
        );
        assert!(!message.contains(&token), "the token is never quoted back");
        assert_eq!((close, close_reason.as_str()), (1008, "unauthorized"));
    }
    // The Rust client reports it as a refused hello.
    let err = connect(&cluster, "not-a-jwt").await.expect_err("refused");
    assert!(
        matches!(&err, ClientError::Handshake { code, .. } if code == "unauthorized"),
        "{err}"
    );
    cluster.stop().await;
}

#[tokio::test]
async fn the_channel_claim_allows_what_it_matches_and_the_front_rejects_the_rest() {
    let cluster = start(hs256(), true).await;
    let token = sign(&with(claims("user-1"), "channels", json!(["match-*"])));
    let mut client = connect(&cluster, token).await.expect("welcomed");
    join(&mut client, "match-7", b"").await;
    let err = within("join", client.join("arena", b"")).await.unwrap_err();
    let ClientError::Rejected { reason, .. } = err else {
        panic!("expected a rejection, got {err}")
    };
    assert_eq!(
        reason,
        "forbidden: the token does not allow channel \"arena\""
    );
    // A channel open to anyone is open to it too.
    join(&mut client, "lobby", b"").await;
    cluster.stop().await;
}

#[tokio::test]
async fn without_a_token_only_anonymous_channels_and_none_at_all_without_them() {
    let open = start(hs256(), true).await;
    let mut guest = connect(&open, Token::None).await.expect("welcomed");
    join(&mut guest, "lobby", b"").await;
    let err = within("join", guest.join("arena", b"")).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Rejected { reason, .. } if reason == "unauthorized: channel \"arena\" needs a token"),
        "{err}"
    );
    open.stop().await;

    let closed = start(hs256(), false).await;
    let (code, message, close, _) = refused(&closed, "").await;
    assert_eq!((code.as_str(), close), ("unauthorized", 1008), "{message}");
    assert!(message.starts_with("missing: "), "{message}");
    closed.stop().await;
}

#[tokio::test]
async fn a_token_function_is_asked_afresh_for_every_connect() {
    let cluster = start(hs256(), false).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let token = Token::fetch({
        let calls = calls.clone();
        move || {
            let n = calls.fetch_add(1, Relaxed) + 1;
            async move { Ok::<_, std::io::Error>(sign(&claims(&format!("user-{n}")))) }
        }
    });
    for n in 1..=2 {
        let mut client = connect(&cluster, token.clone()).await.expect("welcomed");
        join(&mut client, "arena", b"").await;
        assert_eq!(my_name(&mut client).await, format!("user-{n}"));
    }
    assert_eq!(calls.load(Relaxed), 2);
    let failing = Token::fetch(|| async { Err::<String, _>("the auth server is down") });
    let err = connect(&cluster, failing).await.expect_err("no token");
    assert!(
        matches!(&err, ClientError::Token(why) if why.contains("down")),
        "{err}"
    );
    cluster.stop().await;
}

#[tokio::test]
async fn es256_with_a_pem_key_and_eddsa_with_a_jwks_choose_keys_as_configured() {
    let es_key = EncodingKey::from_ec_pem(&std::fs::read(fixture("es256.pem")).expect("fixture"))
        .expect("an EC key");
    let es256 = AuthConfig {
        algorithm: JwtAlgorithm::ES256,
        secret: None,
        public_key_file: Some(fixture("es256.pub.pem")),
        ..hs256()
    };
    let cluster = start(es256, false).await;
    let token = jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims("es"), &es_key)
        .expect("signs");
    let mut client = connect(&cluster, token).await.expect("welcomed");
    join(&mut client, "arena", b"").await;
    assert_eq!(my_name(&mut client).await, "es");
    // An HMAC token, even one whose secret is the public key, is another algorithm.
    let (_, message, close, _) = refused(&cluster, &sign(&claims("es"))).await;
    assert!(message.starts_with("algorithm: "), "{message}");
    assert_eq!(close, 1008);
    cluster.stop().await;

    // A JWKS holding the Ed25519 key as `k1`, written where the config points.
    let ed_key = EncodingKey::from_ed_pem(&std::fs::read(fixture("ed25519.pem")).expect("fixture"))
        .expect("an Ed25519 key");
    let mut jwk = Jwk::from_encoding_key(&ed_key, Algorithm::EdDSA).expect("a JWK");
    jwk.common.key_id = Some("k1".into());
    let jwks = std::env::temp_dir().join(format!("centrum-auth-{}-jwks.json", std::process::id()));
    let set = JwkSet { keys: vec![jwk] };
    std::fs::write(&jwks, serde_json::to_vec(&set).expect("json")).expect("written");
    let eddsa = AuthConfig {
        algorithm: JwtAlgorithm::EdDSA,
        secret: None,
        jwks_file: Some(jwks.clone()),
        ..hs256()
    };
    let cluster = start(eddsa, false).await;
    std::fs::remove_file(&jwks).expect("removed");
    let signed = |kid: &str| {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, &claims("ed"), &ed_key).expect("signs")
    };
    let mut client = connect(&cluster, signed("k1")).await.expect("welcomed");
    join(&mut client, "arena", b"").await;
    assert_eq!(my_name(&mut client).await, "ed");
    let (_, message, _, _) = refused(&cluster, &signed("k2")).await;
    assert!(message.starts_with("key: "), "{message}");
    cluster.stop().await;
}
