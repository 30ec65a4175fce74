//! Certificates made at test time (rcgen) in a scratch folder, and a TLS client that
//! trusts one of them: what the TLS tests of fronts and the master need.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use centrum_client::ClientOptions;
use centrum_config::TlsConfig;

/// A self-signed certificate for `localhost` and 127.0.0.1, its PEM files in a
/// folder of their own (removed on drop).
#[derive(Debug)]
pub struct TestCert {
    pub dir: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The certificate now in the files, PEM.
    pub pem: String,
}

impl TestCert {
    pub fn new(name: &str) -> TestCert {
        let dir =
            std::env::temp_dir().join(format!("centrum-test-cert-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("cert folder");
        let mut made = TestCert {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            dir,
            pem: String::new(),
        };
        made.renew();
        made
    }

    /// Writes a new certificate (a new key, serial and subject) over the files.
    pub fn renew(&mut self) {
        let made = rcgen::generate_simple_self_signed(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ])
        .expect("a certificate");
        self.pem = made.cert.pem();
        // Written aside and renamed over: a reader sees the old file or the new one.
        let write = |path: &PathBuf, text: &str| {
            let aside = path.with_extension("new");
            std::fs::write(&aside, text).expect("write cert");
            std::fs::rename(&aside, path).expect("rename cert");
        };
        write(&self.cert, &self.pem);
        write(&self.key, &made.signing_key.serialize_pem());
    }

    /// The config's `tls` for these files.
    pub fn config(&self) -> TlsConfig {
        TlsConfig {
            cert: self.cert.clone(),
            key: self.key.clone(),
        }
    }

    /// Client options trusting this certificate.
    pub fn options(&self) -> ClientOptions {
        ClientOptions {
            tls_root_pem: Some(self.pem.clone()),
            ..ClientOptions::default()
        }
    }

    /// The certificate now in the files, DER.
    pub fn der(&self) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(self.pem.as_bytes()).expect("our own PEM")
    }
}

impl Drop for TestCert {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A TLS connection to `addr` (as 127.0.0.1) trusting only `root`.
///
/// # Errors
/// The connect's or the handshake's.
pub async fn connect(
    addr: SocketAddr,
    root: &CertificateDer<'static>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let mut roots = RootCertStore::empty();
    roots
        .add(root.clone())
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(std::io::Error::other)?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::IpAddress(addr.ip().into());
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}
