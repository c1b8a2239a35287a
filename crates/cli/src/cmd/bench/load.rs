//! The load generator of `twinledger bench`: keep-alive HTTP/1.1 connections driven by hyper's
//! connection API, one per writer, and the requests it sends.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Result, bail};

/// What one request of a load run returned.
pub(super) struct Sample {
    /// When it was sent, or when it was due if it was paced.
    pub sent: Instant,
    pub done: Instant,
    /// What the answer reported (a log index), or the request number for paced runs.
    pub index: Option<u64>,
}

/// One request of a load run.
pub(super) struct Request {
    /// POST with this JSON body, or GET when `None`.
    pub body: Option<String>,
    /// Path and query.
    pub path: String,
    /// Not before this moment (paced runs).
    pub due: Option<Instant>,
}

impl Request {
    pub fn post(path: String, body: String) -> Self {
        Self {
            body: Some(body),
            path,
            due: None,
        }
    }

    pub fn get(path: String) -> Self {
        Self {
            body: None,
            path,
            due: None,
        }
    }
}

/// One keep-alive HTTP/1.1 connection, driven by hyper's connection API directly: the load
/// generator shares the machine's cores with the service, so it must cost as little as it can.
struct Connection {
    sender: hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>,
    host: String,
}

impl Connection {
    async fn open(base: &str) -> Result<Self> {
        let host = base.trim_start_matches("http://").to_owned();
        let stream = tokio::net::TcpStream::connect(&host).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(Self { sender, host })
    }

    async fn send(&mut self, req: &Request) -> Result<bytes::Bytes> {
        use http_body_util::BodyExt;
        let builder = hyper::Request::builder()
            .uri(&req.path)
            .header(hyper::header::HOST, &self.host);
        let request = match &req.body {
            Some(body) => builder
                .method(hyper::Method::POST)
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .body(http_body_util::Full::new(bytes::Bytes::from(body.clone())))?,
            None => builder.body(http_body_util::Full::default())?,
        };
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        // 202: stored, but not as far on the chain as `?wait=` asked in time. A measurement of
        // waiting for the chain counts that as the miss it is.
        if !status.is_success() || status == hyper::StatusCode::ACCEPTED {
            bail!("{} {status}: {}", req.path, String::from_utf8_lossy(&body));
        }
        Ok(body)
    }
}

/// The body of record `i`: a plausible sensor reading.
pub(super) fn reading(i: u64) -> String {
    format!(
        r#"{{"temperature_c":{}.{},"pressure_kpa":{},"running":{},"seq":{i}}}"#,
        20 + i % 15,
        i % 10,
        100 + i % 7,
        !i.is_multiple_of(11)
    )
}

/// The twin record `i` belongs to: about ten versions per twin.
pub(super) fn twin_of(i: u64, twins: u64) -> String {
    format!("bench-{:06}", i % twins.max(1))
}

/// `POST /v1/twins/{twin}/states{query}` of record `i`.
pub(super) fn record_request(i: u64, twins: u64, query: &str) -> Request {
    Request::post(
        format!("/v1/twins/{}/states{query}", twin_of(i, twins)),
        reading(i),
    )
}

#[derive(serde::Deserialize)]
struct Written {
    index: u64,
}

/// The log index a write answer reports.
pub(super) fn written_index(_: u64, body: &[u8]) -> Result<Option<u64>> {
    Ok(Some(serde_json::from_slice::<Written>(body)?.index))
}

/// Ignores the answer (beyond its 2xx status).
pub(super) fn ignore(_: u64, _: &[u8]) -> Result<Option<u64>> {
    Ok(None)
}

/// Drives `total` requests `make(i)` over `writers` concurrent keep-alive connections, each
/// sending its next request as soon as the last was answered (or when it is due); `read(i,
/// body)` checks an answer and returns what the sample keeps.
pub(super) async fn drive(
    base: &str,
    writers: usize,
    total: u64,
    make: impl Fn(u64) -> Request + Send + Sync + 'static,
    read: impl Fn(u64, &[u8]) -> Result<Option<u64>> + Send + Sync + 'static,
) -> Result<Vec<Sample>> {
    drive_over(&[base.to_owned()], writers, total, make, read).await
}

/// [`drive`] with the connections spread evenly over several services (nodes of one ledger).
pub(super) async fn drive_over(
    bases: &[String],
    writers: usize,
    total: u64,
    make: impl Fn(u64) -> Request + Send + Sync + 'static,
    read: impl Fn(u64, &[u8]) -> Result<Option<u64>> + Send + Sync + 'static,
) -> Result<Vec<Sample>> {
    let next = Arc::new(AtomicU64::new(0));
    let (make, read) = (Arc::new(make), Arc::new(read));
    let mut tasks = Vec::with_capacity(writers);
    for w in 0..writers {
        let (next, make, read) = (next.clone(), make.clone(), read.clone());
        let mut conn = Connection::open(&bases[w % bases.len().max(1)]).await?;
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(samples);
                }
                let req = make(i);
                let sent = match req.due {
                    Some(due) => {
                        tokio::time::sleep_until(due.into()).await;
                        due
                    }
                    None => Instant::now(),
                };
                let body = conn.send(&req).await?;
                let done = Instant::now();
                samples.push(Sample {
                    sent,
                    done,
                    index: read(i, &body)?,
                });
            }
        }));
    }
    let mut all = Vec::with_capacity(total as usize);
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(all)
}
