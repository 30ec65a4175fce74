//! What the fuzz targets share: the decode-then-re-encode check every message decoder
//! gets, and an in-memory byte stream for the length-prefixed framing.

use std::fmt::Debug;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use centrum_protocol::{DecodeError, decode, encode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The message limit the targets decode with: below libFuzzer's default `-max_len` of
/// 4096, so that the too-large path is taken too.
pub const LIMIT: usize = 2048;

/// Decodes `data` as a `T`. What decodes must re-encode to bytes that decode to the same
/// value and encode to the same bytes again; what does not decode must say why.
/// Returns the value, when there was one.
pub fn round_trip<T>(data: &[u8]) -> Option<T>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    match decode::<T>(data, LIMIT) {
        Ok(msg) => {
            let bytes = encode(&msg);
            let again: T = match decode(&bytes, usize::MAX) {
                Ok(again) => again,
                Err(e) => panic!("{msg:?} re-encodes to bytes that do not decode: {e}"),
            };
            assert_eq!(encode(&again), bytes, "{msg:?} encodes differently twice");
            // NaN is unequal to itself: such a value is checked by its bytes alone.
            if !format!("{msg:?}").contains("NaN") {
                assert_eq!(again, msg);
            }
            Some(msg)
        }
        Err(DecodeError::TooLarge { size, limit }) => {
            assert!(size == data.len() && size > limit && limit == LIMIT);
            None
        }
        Err(DecodeError::Trailing(n)) => {
            assert!(n > 0 && n < data.len());
            None
        }
        Err(DecodeError::Malformed(_)) => None,
    }
}

/// A byte stream that hands out `data` in chunks of the given sizes (cycled), as a
/// socket does, and swallows what is written to it.
#[derive(Debug)]
pub struct Chunked<'a> {
    data: &'a [u8],
    chunks: &'a [u8],
    next: usize,
}

impl<'a> Chunked<'a> {
    /// `chunks`: each read returns at most `1 + chunks[i]` bytes; empty means no cap.
    pub fn new(data: &'a [u8], chunks: &'a [u8]) -> Self {
        Self {
            data,
            chunks,
            next: 0,
        }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.data.len()
    }
}

impl AsyncRead for Chunked<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let cap = match self.chunks {
            [] => usize::MAX,
            chunks => 1 + usize::from(chunks[self.next % chunks.len()]),
        };
        self.next += 1;
        let n = self.data.len().min(cap).min(buf.remaining());
        let (now, rest) = self.data.split_at(n);
        buf.put_slice(now);
        self.data = rest;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Chunked<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
