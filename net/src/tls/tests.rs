use std::time::Duration;

use rustls::RootCertStore;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio_rustls::TlsConnector;

use super::*;
use crate::ServerStream;

/// Every network await here is bounded by this.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A scratch folder with a fresh self-signed certificate for `localhost` in it.
struct Certs {
    dir: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Certs {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("centrum-tls-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let certs = Self {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            dir,
        };
        certs.renew();
        certs
    }

    /// Writes a new certificate and key over the files; returns the certificate.
    fn renew(&self) -> rcgen::Certificate {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        std::fs::write(&self.cert, made.cert.pem()).unwrap();
        std::fs::write(&self.key, made.signing_key.serialize_pem()).unwrap();
        made.cert
    }

    fn load(&self) -> Result<ServerTls, TlsError> {
        ServerTls::load(&self.cert, &self.key, Arc::default())
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A TLS client trusting only `root`; returns the certificate the server presented.
async fn handshake(
    addr: std::net::SocketAddr,
    root: &CertificateDer<'static>,
) -> std::io::Result<CertificateDer<'static>> {
    let mut roots = RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?;
    // The server echoes one byte: data goes both ways through the stream type.
    tls.write_all(b"x").await?;
    let mut byte = [0];
    tls.read_exact(&mut byte).await?;
    assert_eq!(&byte, b"x");
    let presented = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    Ok(presented)
}

/// Serves TLS handshakes on 127.0.0.1:0, echoing one byte on each connection.
async fn serve(tls: ServerTls) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let tls = tls.clone();
            tokio::spawn(async move {
                let deadline = tokio::time::Instant::now() + TIMEOUT;
                let Some(stream) = tls.accept(tcp, deadline).await else {
                    return;
                };
                let mut stream = ServerStream::Tls(Box::new(stream));
                let mut byte = [0];
                if stream.read_exact(&mut byte).await.is_ok() {
                    let _ = stream.write_all(&byte).await;
                    let _ = stream.flush().await;
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn serves_the_certificate_and_a_reload_swaps_it_for_new_connections() {
    let certs = Certs::new("reload");
    let first = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(&certs.cert, first.cert.pem()).unwrap();
    std::fs::write(&certs.key, first.signing_key.serialize_pem()).unwrap();
    let tls = certs.load().expect("load");
    let addr = serve(tls.clone()).await;
    let seen = tokio::time::timeout(TIMEOUT, handshake(addr, first.cert.der()))
        .await
        .unwrap()
        .expect("handshake");
    assert_eq!(&seen, first.cert.der());

    let second = certs.renew();
    tls.reload().expect("reload");
    assert_eq!(tls.counters().reloads.load(Relaxed), 1);
    let seen = tokio::time::timeout(TIMEOUT, handshake(addr, second.der()))
        .await
        .unwrap()
        .expect("handshake after reload");
    assert_eq!(&seen, second.der());
    // A client that trusts only the old certificate no longer gets through.
    let old = tokio::time::timeout(TIMEOUT, handshake(addr, first.cert.der()))
        .await
        .unwrap();
    assert!(old.is_err(), "{old:?}");
}

#[tokio::test]
async fn a_bad_reload_keeps_the_certificate_in_use() {
    let certs = Certs::new("bad-reload");
    let tls = certs.load().expect("load");
    let good = std::fs::read(&certs.cert).unwrap();
    let der = CertificateDer::from_pem_slice(&good).unwrap();
    std::fs::write(&certs.key, "-----BEGIN PRIVATE KEY-----\nnot base64!\n").unwrap();
    let err = tls.reload().unwrap_err();
    assert_eq!(err.part, TlsPart::Key);
    assert_eq!(tls.counters().reload_failures.load(Relaxed), 1);
    assert_eq!(tls.counters().reloads.load(Relaxed), 0);
    let addr = serve(tls.clone()).await;
    let seen = tokio::time::timeout(TIMEOUT, handshake(addr, &der))
        .await
        .unwrap()
        .expect("the old certificate still serves");
    assert_eq!(seen, der);
}

#[tokio::test]
async fn a_plain_client_fails_the_handshake_and_is_counted() {
    let certs = Certs::new("plain");
    let tls = certs.load().expect("load");
    let addr = serve(tls.clone()).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    // The server answers with an alert, at most, and closes.
    let _ = tokio::time::timeout(TIMEOUT, tcp.read_to_end(&mut answer))
        .await
        .expect("the server closes");
    assert!(!answer.starts_with(b"HTTP"), "{answer:?}");
    for _ in 0..100 {
        if tls.counters().handshake_failures.load(Relaxed) == 1 {
            return;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the failed handshake was not counted");
}

#[tokio::test(start_paused = true)]
async fn a_silent_client_is_cut_at_the_deadline() {
    let certs = Certs::new("silent");
    let tls = certs.load().expect("load");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let _client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (tcp, _) = listener.accept().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    assert!(tls.accept(tcp, deadline).await.is_none());
    assert_eq!(tls.counters().handshake_failures.load(Relaxed), 1);
}

#[test]
fn errors_name_the_file_and_what_is_wrong() {
    let certs = Certs::new("errors");
    let (cert, key) = (&certs.cert, &certs.key);
    let check = |c: &Path, k: &Path| ServerTls::check(c, k).unwrap_err();
    ServerTls::check(cert, key).expect("a good pair");

    let missing = certs.dir.join("missing.pem");
    let err = check(&missing, key);
    assert_eq!(err.part, TlsPart::Cert);
    assert!(
        err.reason
            .starts_with(&format!("cannot read {}: ", missing.display())),
        "{err}"
    );

    // The key where the certificate should be, and the certificate for the key.
    let err = check(key, key);
    assert_eq!(
        err,
        TlsError {
            part: TlsPart::Cert,
            reason: format!(
                "no certificate in {} (expected PEM \"CERTIFICATE\")",
                key.display()
            ),
        }
    );
    let err = check(cert, cert);
    assert_eq!(
        err,
        TlsError {
            part: TlsPart::Key,
            reason: format!(
                "no private key in {} (expected PEM \"PRIVATE KEY\")",
                cert.display()
            ),
        }
    );

    let other = certs.dir.join("other.key");
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(&other, made.signing_key.serialize_pem()).unwrap();
    let err = check(cert, &other);
    assert_eq!(err.part, TlsPart::Key);
    assert!(
        err.reason.contains("is not the key of the certificate"),
        "{err}"
    );

    let broken = certs.dir.join("broken.pem");
    std::fs::write(&broken, "-----BEGIN CERTIFICATE-----\nAAAA\n").unwrap();
    let err = check(&broken, key);
    assert_eq!(err.part, TlsPart::Cert);
    assert!(err.reason.starts_with("bad PEM in "), "{err}");

    let garbage = certs.dir.join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let err = check(&garbage, key);
    assert_eq!(err.part, TlsPart::Cert);
    assert!(
        err.reason.starts_with("not a usable certificate in "),
        "{err}"
    );

    let huge = certs.dir.join("huge.pem");
    std::fs::write(&huge, vec![b'x'; (MAX_PEM_BYTES + 1) as usize]).unwrap();
    let err = check(&huge, key);
    assert!(err.reason.contains("is over"), "{err}");
}

#[test]
fn a_change_is_reloaded_once_it_has_settled() {
    let at = |secs| Some((100, SystemTime::UNIX_EPOCH + Duration::from_secs(secs), 7));
    let mut watch = FileWatch::new([at(1), at(1)]);
    assert!(!watch.changed([at(1), at(1)]), "nothing changed");
    assert!(
        !watch.changed([at(2), at(1)]),
        "the cert alone, just written"
    );
    assert!(!watch.changed([at(2), at(2)]), "the key too, just written");
    assert!(watch.changed([at(2), at(2)]), "both settled");
    assert!(!watch.changed([at(2), at(2)]), "loaded: not again");
    assert!(!watch.changed([None, at(2)]), "the cert is being replaced");
    assert!(
        watch.changed([None, at(2)]),
        "gone for good: the reload says so, once"
    );
    assert!(!watch.changed([None, at(2)]));
    watch.reloaded([at(3), at(3)]);
    assert!(!watch.changed([at(3), at(3)]), "SIGHUP reloaded these");
}

#[tokio::test]
async fn a_changed_file_is_reloaded_by_the_watch() {
    let certs = Certs::new("watch");
    let tls = certs.load().expect("load");
    let shutdown = Shutdown::new();
    let watch = tokio::spawn(
        tls.clone()
            .watch_every(Duration::from_millis(20), shutdown.clone()),
    );
    let second = certs.renew();
    let addr = serve(tls.clone()).await;
    let reloaded = async {
        while tls.counters().reloads.load(Relaxed) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(TIMEOUT, reloaded)
        .await
        .expect("the watch reloads the new files");
    let seen = tokio::time::timeout(TIMEOUT, handshake(addr, second.der()))
        .await
        .unwrap()
        .expect("handshake");
    assert_eq!(&seen, second.der());
    assert_eq!(tls.counters().reload_failures.load(Relaxed), 0);
    shutdown.cancel();
    tokio::time::timeout(TIMEOUT, watch)
        .await
        .expect("the watch stops")
        .unwrap();
}
