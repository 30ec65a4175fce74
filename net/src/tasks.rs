//! What back and front share about their own tasks: waiting for all of them after a
//! shutdown signal, and draining a link's bounded queue into its framed sink.

use std::fmt::Display;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Sink, SinkExt};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::error;

use crate::Shutdown;

/// Waits until every task has ended or `shutdown` is signalled; then gives the tasks at
/// most 5 s to finish. The first task error signals shutdown and is returned.
///
/// # Errors
/// The first error any task returned.
pub async fn wait_tasks<E: Display + Send + 'static>(
    tasks: &mut JoinSet<Result<(), E>>,
    shutdown: &Shutdown,
) -> Result<(), E> {
    let mut result = Ok(());
    loop {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                None => break,
                Some(Ok(Err(e))) => {
                    error!(error = %e, "stopping");
                    shutdown.cancel();
                    if result.is_ok() {
                        result = Err(e);
                    }
                }
                // A panicked task is a bug; the process stops rather than limp on without it.
                Some(Err(e)) if e.is_panic() => {
                    error!(error = %e, "a task panicked; stopping");
                    shutdown.cancel();
                }
                Some(_) => {}
            },
            _ = shutdown.cancelled() => {
                let drain = async { while tasks.join_next().await.is_some() {} };
                if tokio::time::timeout(Duration::from_secs(5), drain).await.is_err() {
                    error!("tasks did not stop within 5 s; abandoning them");
                }
                break;
            }
        }
    }
    result
}

/// Writes every frame queued on `rx` to `sink` until the queue closes. Whatever is
/// queued at once goes in one flush (one write); with a `linger`, the writer sleeps
/// that long after the first frame of a write and then takes everything queued
/// meanwhile, without waking once per frame; without one, it lets the tasks that are
/// ready to run go first.
///
/// # Errors
/// The sink's error when the link breaks.
pub async fn write_queued<S>(
    sink: &mut S,
    rx: &mut mpsc::Receiver<Bytes>,
    linger: Duration,
) -> Result<(), S::Error>
where
    S: Sink<Bytes> + Unpin,
{
    while let Some(frame) = rx.recv().await {
        sink.feed(frame).await?;
        if linger.is_zero() {
            // Whatever else is ready to run goes first: the other channels of the
            // same tick add their frames to this write instead of each making one.
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(linger).await;
        }
        while let Ok(frame) = rx.try_recv() {
            sink.feed(frame).await?;
        }
        sink.flush().await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use super::*;

    /// Records how many frames each flush carried.
    #[derive(Default)]
    struct Recorder {
        fed: usize,
        flushes: Vec<usize>,
    }

    impl Sink<Bytes> for Recorder {
        type Error = std::convert::Infallible;
        fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
        fn start_send(mut self: Pin<&mut Self>, _: Bytes) -> Result<(), Self::Error> {
            self.fed += 1;
            Ok(())
        }
        fn poll_flush(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Result<(), Self::Error>> {
            if self.fed > 0 {
                let fed = std::mem::take(&mut self.fed);
                self.flushes.push(fed);
            }
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
    }

    /// Sends one frame every 2 ms, ten in all, through a writer with `linger`.
    async fn flushes_with(linger: Duration) -> Vec<usize> {
        let (tx, mut rx) = mpsc::channel(16);
        let writer = tokio::spawn(async move {
            let mut sink = Recorder::default();
            write_queued(&mut sink, &mut rx, linger)
                .await
                .expect("infallible");
            sink.flushes
        });
        for _ in 0..10 {
            tx.send(Bytes::from_static(b"input"))
                .await
                .expect("writer runs");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        drop(tx);
        writer.await.expect("writer ends")
    }

    #[tokio::test(start_paused = true)]
    async fn a_linger_gathers_frames_that_arrive_within_it_into_one_write() {
        // 5 ms gathers the frames sent at 0, 2 and 4 ms, then those at 6, 8 and 10, ...
        assert_eq!(
            flushes_with(Duration::from_millis(5)).await,
            vec![3, 3, 3, 1]
        );
        // Without one, every frame that finds the queue empty is written alone.
        assert_eq!(flushes_with(Duration::ZERO).await, vec![1; 10]);
    }
}
