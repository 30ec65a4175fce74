//! `restart`: asks the master of a running `up` to restart one node now
//! (`POST /nodes/{id}/restart` with the config's admin token), a failed one included.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use centrum_config::Config;

use crate::cli::say;

/// The most of the master's answer that is read; it is a line of JSON.
const MAX_ANSWER_BYTES: u64 = 64 * 1024;

pub(crate) async fn restart(config: &Config, node: &str) -> Result<()> {
    if config.front(node).is_none() && config.back(node).is_none() {
        let ids: Vec<&str> = (config.fronts.iter().map(|f| f.id.as_str()))
            .chain(config.backs.iter().map(|b| b.id.as_str()))
            .collect();
        bail!(
            "no node {node:?} in the config (it has: {})",
            ids.join(", ")
        );
    }
    // From any machine: a wildcard `http` is dialed at the master's host.
    let master = config.master.http_address();
    let mut request = format!(
        "POST /nodes/{node}/restart HTTP/1.1\r\nHost: {master}\r\nContent-Length: 0\r\n\
         Connection: close\r\n"
    );
    if let Some(token) = &config.master.admin_token {
        request.push_str(&format!("Authorization: Bearer {}\r\n", token.expose()));
    }
    request.push_str("\r\n");
    // The master answers once the new process runs: after at most twice the stop grace
    // (SIGTERM, then SIGKILL) for a node that was running.
    let limit = config.supervision.stop_grace() * 2 + Duration::from_secs(10);
    let answer = tokio::time::timeout(limit, async {
        let mut stream = TcpStream::connect(master.as_str())
            .await
            .with_context(|| format!("cannot reach the master at {master}; is `up` running?"))?;
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        stream
            .take(MAX_ANSWER_BYTES)
            .read_to_end(&mut answer)
            .await?;
        anyhow::Ok(answer)
    })
    .await
    .with_context(|| format!("the master at {master} did not answer within {limit:?}"))??;
    let (status, body) =
        parse(&answer).with_context(|| format!("the master at {master} did not answer in HTTP"))?;
    let json: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    if status == 200 {
        let pid = json.get("pid").and_then(serde_json::Value::as_u64);
        match pid {
            Some(pid) => say(format_args!("{node} restarted: pid {pid}"))?,
            None => say(format_args!("{node} restarted"))?,
        }
        return Ok(());
    }
    let reason = json
        .get("error")
        .and_then(serde_json::Value::as_str)
        .unwrap_or(body.trim());
    bail!("the master did not restart {node} (HTTP {status}): {reason}")
}

/// The status code and body of an HTTP/1.1 answer read to its end.
fn parse(answer: &[u8]) -> Option<(u16, &str)> {
    let text = std::str::from_utf8(answer).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_by_status_and_body() {
        let ok = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n{\"pid\":7}";
        assert_eq!(parse(ok), Some((200, "{\"pid\":7}")));
        assert_eq!(parse(b"HTTP/1.1 401 Unauthorized\r\n\r\n"), Some((401, "")));
        assert_eq!(parse(b"garbage"), None);
        assert_eq!(parse(b"HTTP/1.1 abc\r\n\r\n"), None);
    }
}
