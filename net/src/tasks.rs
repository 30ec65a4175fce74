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

/// Writes every frame queued on `rx` to `sink`, coalescing whatever is queued at once
/// into one flush (one write), until the queue closes.
///
/// # Errors
/// The sink's error when the link breaks.
pub async fn write_queued<S>(sink: &mut S, rx: &mut mpsc::Receiver<Bytes>) -> Result<(), S::Error>
where
    S: Sink<Bytes> + Unpin,
{
    while let Some(frame) = rx.recv().await {
        sink.feed(frame).await?;
        while let Ok(frame) = rx.try_recv() {
            sink.feed(frame).await?;
        }
        sink.flush().await?;
    }
    Ok(())
}
