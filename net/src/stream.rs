//! An accepted connection, plain TCP or TLS over it, as one stream type. The plain
//! variant costs one match per call and keeps TCP's own vectored writes. Writes to the
//! TLS variant may stay buffered until a flush: writers flush after each message batch.
//! A plain stream can be shared ([`ServerStream::share`]) so that another task may write
//! into the socket without waiting (the front's fan-out) while its owner reads.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::BytesMut;
use futures_util::FutureExt as _;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// What `ServerStream::read_some` makes room for when the buffer is full (or has none):
/// a client's message is usually a few dozen bytes.
const READ_RESERVE: usize = 512;

/// A server's side of one connection.
#[derive(Debug)]
pub enum ServerStream {
    Plain(TcpStream),
    /// Boxed: TLS state is tens of KB beside a TcpStream's few words.
    Tls(Box<TlsStream<TcpStream>>),
    /// Plain TCP whose socket other tasks hold too, for non-blocking writes
    /// (`TcpStream::try_write_vectored` takes `&self`). Whoever writes must keep the
    /// byte stream in order with the other writers.
    Shared(Arc<TcpStream>),
}

impl ServerStream {
    /// The TCP connection underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(tcp) => tcp,
            Self::Tls(tls) => tls.get_ref().0,
            Self::Shared(tcp) => tcp,
        }
    }

    /// A plain stream becomes shared, and the socket is returned for other writers;
    /// a TLS stream stays as it is (its writes go through its TLS state), with `None`.
    #[must_use]
    pub fn share(self) -> (Self, Option<Arc<TcpStream>>) {
        match self {
            Self::Plain(tcp) => {
                let tcp = Arc::new(tcp);
                (Self::Shared(tcp.clone()), Some(tcp))
            }
            Self::Shared(tcp) => (Self::Shared(tcp.clone()), Some(tcp)),
            tls @ Self::Tls(_) => (tls, None),
        }
    }

    /// Reads what has already arrived without waiting, as `TcpStream::try_read_buf`:
    /// `WouldBlock` when nothing has.
    ///
    /// # Errors
    /// `WouldBlock` when nothing is ready; the socket's (or TLS's) own errors.
    pub fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            Self::Plain(tcp) => tcp.try_read_buf(buf),
            Self::Shared(tcp) => tcp.try_read_buf(buf),
            // One poll: the TLS layer reads what the socket holds and decrypts it.
            Self::Tls(tls) => tls
                .read_buf(buf)
                .now_or_never()
                .unwrap_or_else(|| Err(io::ErrorKind::WouldBlock.into())),
        }
    }

    /// Reads what has arrived, waiting for something if nothing has; `Ok(0)` at the end
    /// of the stream. On plain TCP a read that does not fill the buffer took everything
    /// the socket held, so it also ends the socket's readiness: the next call waits for
    /// new bytes without first asking the kernel again (one `recv` per arrival instead
    /// of two; tokio's readiness tick keeps bytes that arrive meanwhile from being
    /// missed).
    ///
    /// # Errors
    /// The socket's (or TLS's) own errors.
    pub async fn read_some(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        let tcp: &TcpStream = match self {
            Self::Plain(tcp) => tcp,
            Self::Shared(tcp) => tcp,
            Self::Tls(tls) => return tls.read_buf(buf).await,
        };
        if buf.capacity() == buf.len() {
            buf.reserve(READ_RESERVE);
        }
        loop {
            tcp.readable().await?;
            let space = buf.capacity() - buf.len();
            let mut got = 0;
            let read = tcp.try_io(tokio::io::Interest::READABLE, || {
                got = tcp.try_read_buf(buf)?;
                if got > 0 && got < space {
                    // Drained: tokio clears the readiness it saw before this read.
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(got)
            });
            match read {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => return Ok(got),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }
}

impl AsyncRead for ServerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
            Self::Shared(tcp) => loop {
                ready!(tcp.poll_read_ready(cx))?;
                // `WouldBlock` clears the readiness, so the next poll waits for it.
                match tcp.try_read(buf.initialize_unfilled()) {
                    Ok(n) => {
                        buf.advance(n);
                        return Poll::Ready(Ok(()));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Poll::Ready(Err(e)),
                }
            },
        }
    }
}

impl AsyncWrite for ServerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
            Self::Shared(tcp) => poll_shared_write(tcp, cx, &[IoSlice::new(buf)]),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
            Self::Shared(tcp) => poll_shared_write(tcp, cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(tcp) => tcp.is_write_vectored(),
            Self::Tls(tls) => tls.is_write_vectored(),
            Self::Shared(_) => true,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
            Self::Shared(_) => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
            // The FIN goes now, whoever else still holds the socket.
            Self::Shared(tcp) => {
                Poll::Ready(socket2::SockRef::from(&**tcp).shutdown(std::net::Shutdown::Write))
            }
        }
    }
}

fn poll_shared_write(
    tcp: &TcpStream,
    cx: &mut Context<'_>,
    bufs: &[IoSlice<'_>],
) -> Poll<io::Result<usize>> {
    loop {
        ready!(tcp.poll_write_ready(cx))?;
        match tcp.try_write_vectored(bufs) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            written => return Poll::Ready(written),
        }
    }
}
