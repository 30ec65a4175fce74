//! Server TLS for fronts, backs' link ports and the master: a PEM certificate chain and
//! key read into a rustls `ServerConfig` (ring provider) whose certificate is swapped
//! while serving, on SIGHUP or when either file changes; a failed reload keeps the
//! certificate in use. And the client side of links: the cluster's roots.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime};

use parking_lot::RwLock;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{Error as RustlsError, InconsistentKeys, ServerConfig};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tracing::{debug, error, info, warn};

use crate::Shutdown;

/// How often the certificate files are looked at for a change.
pub const RELOAD_POLL: Duration = Duration::from_secs(2);

/// A certificate or key file larger than this is not one (a chain of a few
/// certificates is a few KB).
const MAX_PEM_BYTES: u64 = 1 << 20;

/// Which of the two files a [`TlsError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsPart {
    Cert,
    Key,
}

/// Why a certificate and key could not be used; `reason` names the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct TlsError {
    pub part: TlsPart,
    pub reason: String,
}

impl TlsError {
    /// The config field at fault, for the node at `at` (`master`, `fronts[0]`):
    /// `fronts[0].tls.key`.
    pub fn field(&self, at: &str) -> String {
        let part = match self.part {
            TlsPart::Cert => "cert",
            TlsPart::Key => "key",
        };
        format!("{at}.tls.{part}")
    }
}

/// What TLS does on one server, for `/metrics`.
#[derive(Debug, Default)]
pub struct TlsCounters {
    /// Certificates reloaded (SIGHUP, or the files changed).
    pub reloads: AtomicU64,
    /// Reloads that failed and kept the certificate in use.
    pub reload_failures: AtomicU64,
    /// Connections whose TLS handshake failed or did not finish in time.
    pub handshake_failures: AtomicU64,
}

/// A server's TLS: cheap to clone, one certificate shared by every clone.
#[derive(Debug, Clone)]
pub struct ServerTls {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: Arc<CurrentCert>,
    config: Arc<ServerConfig>,
    counters: Arc<TlsCounters>,
    /// The files as they were when first read: the watch starts from there.
    loaded: Stamps,
}

/// The certificate handed to every new handshake; a reload swaps it.
#[derive(Debug)]
struct CurrentCert(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().clone())
    }
}

/// Size, modification time and inode of both files (`None` where one cannot be read):
/// a write in place or a rename over the file changes at least one.
type Stamps = [Option<(u64, SystemTime, u64)>; 2];

impl ServerTls {
    /// Reads `cert` and `key` and makes the server config; `counters` is where its
    /// reloads and failed handshakes are counted.
    ///
    /// # Errors
    /// [`TlsError`] naming the file that is missing, unreadable, not PEM, holds no
    /// certificate or private key, or whose key does not match the certificate.
    pub fn load(cert: &Path, key: &Path, counters: Arc<TlsCounters>) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let loaded = stamps(cert, key);
        let current = Arc::new(CurrentCert(RwLock::new(Arc::new(certified_key(
            &provider, cert, key,
        )?))));
        let mut config = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError {
                part: TlsPart::Cert,
                reason: format!("no TLS version to serve: {e}"),
            })?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        // Both servers speak HTTP/1.1 only (a WebSocket upgrade is one).
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            inner: Arc::new(Inner {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
                provider,
                current,
                config: Arc::new(config),
                counters,
                loaded,
            }),
        })
    }

    /// Whether `cert` and `key` would load, for `centrum check` and a node's start.
    ///
    /// # Errors
    /// As [`ServerTls::load`].
    pub fn check(cert: &Path, key: &Path) -> Result<(), TlsError> {
        let provider = rustls::crypto::ring::default_provider();
        certified_key(&provider, cert, key).map(drop)
    }

    fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.inner.config.clone())
    }

    pub fn counters(&self) -> &Arc<TlsCounters> {
        &self.inner.counters
    }

    /// The TLS handshake on an accepted connection, by `deadline`. A failure is
    /// counted and logged at debug: scanners and plain-text clients fail it all day.
    pub async fn accept(
        &self,
        tcp: TcpStream,
        deadline: tokio::time::Instant,
    ) -> Option<TlsStream<TcpStream>> {
        let failed = |reason: &dyn std::fmt::Display| {
            self.inner.counters.handshake_failures.fetch_add(1, Relaxed);
            debug!(%reason, "tls handshake failed");
        };
        match tokio::time::timeout_at(deadline, self.acceptor().accept(tcp)).await {
            Ok(Ok(stream)) => Some(stream),
            Ok(Err(e)) => {
                failed(&e);
                None
            }
            Err(_) => {
                failed(&"not done before the handshake timeout");
                None
            }
        }
    }

    /// Reads the files again and, if they are good, serves the new certificate to
    /// every new connection (open ones keep theirs). A failure is counted and logged,
    /// and the certificate in use stays.
    ///
    /// # Errors
    /// As [`ServerTls::load`].
    pub fn reload(&self) -> Result<(), TlsError> {
        let inner = &self.inner;
        match certified_key(&inner.provider, &inner.cert, &inner.key) {
            Ok(key) => {
                *inner.current.0.write() = Arc::new(key);
                inner.counters.reloads.fetch_add(1, Relaxed);
                info!(cert = %inner.cert.display(), "tls certificate reloaded");
                Ok(())
            }
            Err(e) => {
                inner.counters.reload_failures.fetch_add(1, Relaxed);
                error!(error = %e, "tls certificate reload failed; serving the one loaded before");
                Err(e)
            }
        }
    }

    /// Reloads on SIGHUP, and when the files change (looked at every
    /// [`RELOAD_POLL`]), until `shutdown`. The SIGHUP handler is in place when this
    /// returns, before the future runs: a SIGHUP from then on reloads, it never ends
    /// the process. Must be called within a Tokio runtime.
    pub fn watch(self, shutdown: Shutdown) -> impl Future<Output = ()> + Send + 'static {
        self.watch_every(RELOAD_POLL, shutdown)
    }

    fn watch_every(
        self,
        period: Duration,
        shutdown: Shutdown,
    ) -> impl Future<Output = ()> + Send + 'static {
        let hangup = tokio::signal::unix::SignalKind::hangup();
        let hup = match tokio::signal::unix::signal(hangup) {
            Ok(signal) => Some(signal),
            Err(e) => {
                warn!(error = %e, "no SIGHUP handler; certificates reload when their files change");
                None
            }
        };
        self.watching(hup, period, shutdown)
    }

    async fn watching(
        self,
        mut hup: Option<tokio::signal::unix::Signal>,
        period: Duration,
        shutdown: Shutdown,
    ) {
        let mut watch = FileWatch::new(self.inner.loaded);
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let sighup = async {
                match hup.as_mut() {
                    Some(signal) => signal.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = sighup => {
                    info!("SIGHUP: reloading the tls certificate");
                    let now = self.stamps();
                    let _ = self.reload();
                    watch.reloaded(now);
                }
                _ = tick.tick() => {
                    let now = self.stamps();
                    if watch.changed(now) {
                        let _ = self.reload();
                    }
                }
            }
        }
    }

    fn stamps(&self) -> Stamps {
        stamps(&self.inner.cert, &self.inner.key)
    }
}

/// When a look at the files calls for a reload: they differ from what was last loaded
/// and are the same as at the look before, so that a cert written a moment before its
/// key is not read alone (and reported broken). A failed reload is not tried again
/// until the files change again: it is logged once.
#[derive(Debug)]
struct FileWatch {
    loaded: Stamps,
    seen: Stamps,
}

impl FileWatch {
    fn new(loaded: Stamps) -> Self {
        Self {
            loaded,
            seen: loaded,
        }
    }

    fn changed(&mut self, now: Stamps) -> bool {
        let settled = now == self.seen;
        self.seen = now;
        if settled && now != self.loaded {
            self.loaded = now;
            return true;
        }
        false
    }

    fn reloaded(&mut self, now: Stamps) {
        self.loaded = now;
        self.seen = now;
    }
}

fn stamps(cert: &Path, key: &Path) -> Stamps {
    use std::os::unix::fs::MetadataExt as _;
    [cert, key].map(|path| {
        let meta = std::fs::metadata(path).ok()?;
        Some((meta.len(), meta.modified().ok()?, meta.ino()))
    })
}

/// The certificate chain in `cert` with the private key in `key`, checked to match.
fn certified_key(
    provider: &CryptoProvider,
    cert: &Path,
    key: &Path,
) -> Result<CertifiedKey, TlsError> {
    let cert_error = |reason: String| TlsError {
        part: TlsPart::Cert,
        reason,
    };
    let key_error = |reason: String| TlsError {
        part: TlsPart::Key,
        reason,
    };
    let (cert_path, key_path) = (cert.display(), key.display());
    let chain = read_certs(cert).map_err(cert_error)?;
    let pem_key = read_pem(key).map_err(key_error)?;
    let private = match PrivateKeyDer::from_pem_slice(&pem_key) {
        Ok(private) => private,
        Err(pem::Error::NoItemsFound) => {
            return Err(key_error(format!(
                "no private key in {key_path} (expected PEM \"PRIVATE KEY\")"
            )));
        }
        Err(e) => return Err(key_error(format!("bad PEM in {key_path}: {e}"))),
    };
    let signing = provider
        .key_provider
        .load_private_key(private)
        .map_err(|e| key_error(format!("unusable private key in {key_path}: {e}")))?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        // A key type whose public half rustls cannot derive: the handshake will tell.
        Ok(()) | Err(RustlsError::InconsistentKeys(InconsistentKeys::Unknown)) => Ok(certified),
        Err(RustlsError::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            Err(key_error(format!(
                "the private key in {key_path} is not the key of the certificate in {cert_path}"
            )))
        }
        Err(e) => Err(cert_error(format!(
            "not a usable certificate in {cert_path}: {e}"
        ))),
    }
}

/// The certificates in the PEM file at `path`: at least one.
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let shown = path.display();
    let pem = read_pem(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad PEM in {shown}: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "no certificate in {shown} (expected PEM \"CERTIFICATE\")"
        ));
    }
    Ok(certs)
}

/// The client side of links to backs that serve TLS: a back's certificate must chain
/// to one of the certificates in `ca` (PEM) and name the address the front dials.
///
/// # Errors
/// [`TlsError`] (its part: the certificate) when `ca` cannot be read or holds no
/// usable certificate.
pub fn link_connector(ca: &Path) -> Result<LinkTls, TlsError> {
    let error = |reason: String| TlsError {
        part: TlsPart::Cert,
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certs(ca).map_err(error)? {
        roots.add(cert).map_err(|e| {
            error(format!(
                "not a usable root certificate in {}: {e}",
                ca.display()
            ))
        })?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| error(format!("no TLS version to offer: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(LinkTls(TlsConnector::from(Arc::new(config))))
}

/// The client side of TLS links to backs (see [`link_connector`]); cheap to clone.
#[derive(Clone)]
pub struct LinkTls(TlsConnector);

impl LinkTls {
    /// The TLS handshake over `tcp` with the back dialed at `host` (an IP address or a
    /// DNS name), whose certificate must name it.
    ///
    /// # Errors
    /// The handshake's: an untrusted certificate, one for another host, a broken
    /// connection; `InvalidInput` for a host that is neither an IP nor a DNS name.
    pub async fn connect(
        &self,
        host: &str,
        tcp: TcpStream,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let name = rustls_pki_types::ServerName::try_from(host.to_owned()).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{host:?} cannot be checked against a certificate: {e}"),
            )
        })?;
        self.0.connect(name, tcp).await
    }
}

impl std::fmt::Debug for LinkTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkTls")
    }
}

/// A PEM file's bytes, at most [`MAX_PEM_BYTES`].
fn read_pem(path: &Path) -> Result<Vec<u8>, String> {
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(format!(
            "{} is over {MAX_PEM_BYTES} bytes: not a PEM certificate or key",
            path.display()
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests;
