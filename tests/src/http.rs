//! A plain HTTP/1.1 client over a raw socket (or TLS over it), enough to test what a
//! front answers to calls (every status, keep-alive) without an HTTP library between
//! the test and the bytes.

use std::net::SocketAddr;

use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::within;

/// A response: status, lowercase headers, body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// The `error` of a JSON error body.
    pub fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error in {:?}", self.json()))
            .to_owned()
    }
}

/// A connection's byte stream: TCP, or TLS over it.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug {}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug> Stream for S {}

/// A connection to one server, for one request or several (keep-alive).
#[derive(Debug)]
pub struct Connection {
    stream: Box<dyn Stream>,
    buf: Vec<u8>,
}

impl Connection {
    pub async fn open(addr: SocketAddr) -> Connection {
        let stream = within("http connect", TcpStream::connect(addr))
            .await
            .expect("connect");
        Connection {
            stream: Box::new(stream),
            buf: Vec::new(),
        }
    }

    /// An https connection trusting only `root`.
    pub async fn open_tls(addr: SocketAddr, root: &CertificateDer<'static>) -> Connection {
        let stream = within("https connect", crate::tls::connect(addr, root))
            .await
            .expect("tls connect");
        Connection {
            stream: Box::new(stream),
            buf: Vec::new(),
        }
    }

    /// Sends `head` (request line and headers, each line ending in CRLF, without the
    /// empty line) and `body`, with a Content-Length for the body.
    pub async fn send(&mut self, head: &str, body: &[u8]) {
        let request = format!("{head}Content-Length: {}\r\n\r\n", body.len());
        within("http send", async {
            self.stream.write_all(request.as_bytes()).await?;
            self.stream.write_all(body).await?;
            self.stream.flush().await
        })
        .await
        .expect("send");
    }

    /// Sends raw bytes as they are.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        within("http send", async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        })
        .await
        .expect("send");
    }

    /// Reads one response (its body by Content-Length).
    pub async fn response(&mut self) -> Response {
        within("http response", async {
            loop {
                if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                    let mut lines = head.split("\r\n");
                    let status: u16 = lines
                        .next()
                        .and_then(|l| l.split(' ').nth(1))
                        .and_then(|s| s.parse().ok())
                        .unwrap_or_else(|| panic!("not a status line: {head:?}"));
                    let headers: Vec<(String, String)> = lines
                        .filter_map(|l| l.split_once(':'))
                        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
                        .collect();
                    let length: usize = headers
                        .iter()
                        .find(|(n, _)| n == "content-length")
                        .and_then(|(_, v)| v.parse().ok())
                        .unwrap_or(0);
                    while self.buf.len() < end + 4 + length {
                        self.read_more().await;
                    }
                    let body = self.buf[end + 4..end + 4 + length].to_vec();
                    self.buf.drain(..end + 4 + length);
                    return Response {
                        status,
                        headers,
                        body,
                    };
                }
                self.read_more().await;
            }
        })
        .await
    }

    /// Whether the server closed the connection (reads to its end).
    pub async fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        within("http close", self.stream.read_to_end(&mut rest))
            .await
            .is_ok_and(|_| rest.is_empty())
    }

    async fn read_more(&mut self) {
        let mut chunk = [0; 4096];
        let n = self.stream.read(&mut chunk).await.expect("read");
        assert!(n > 0, "the server closed before a whole response");
        self.buf.extend_from_slice(&chunk[..n]);
    }
}

/// One request on a fresh connection, closed after.
pub async fn request(addr: SocketAddr, head: &str, body: &[u8]) -> Response {
    let mut conn = Connection::open(addr).await;
    conn.send(&format!("{head}Connection: close\r\n"), body)
        .await;
    conn.response().await
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
