//! A JSON-RPC proxy on loopback that misbehaves the way public RPC providers do: it delays
//! answers, refuses with 429 and 503, drops connections before and after passing a request on,
//! serves stale blocks, or goes down altogether. Tests put it in front of a real node.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use serde_json::Value;

/// How often each fault happens, as a probability per request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Answered 50 to 400 ms late.
    pub delay: f64,
    /// Refused with 429 Too Many Requests.
    pub rate_limited: f64,
    /// Refused with 503 Service Unavailable.
    pub unavailable: f64,
    /// The connection is closed before the request reaches the node.
    pub dropped_before: f64,
    /// The connection is closed after the node answered (a send may have happened).
    pub dropped_after: f64,
    /// A stale view: the block number a block or two behind, a receipt not there yet, the
    /// account's transaction count one lower.
    pub stale: f64,
    /// Every connection is closed at once.
    pub down: bool,
}

/// How many times each fault was injected, and how many requests passed untouched.
#[derive(Debug, Default)]
#[allow(missing_docs)]
pub struct Injected {
    pub delayed: AtomicU64,
    pub rate_limited: AtomicU64,
    pub unavailable: AtomicU64,
    pub dropped_before: AtomicU64,
    pub dropped_after: AtomicU64,
    pub stale: AtomicU64,
    pub refused_down: AtomicU64,
    pub passed: AtomicU64,
}

impl Injected {
    /// The counts, by name.
    pub fn counts(&self) -> Vec<(&'static str, u64)> {
        let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
        vec![
            ("delayed", c(&self.delayed)),
            ("rate_limited", c(&self.rate_limited)),
            ("unavailable", c(&self.unavailable)),
            ("dropped_before", c(&self.dropped_before)),
            ("dropped_after", c(&self.dropped_after)),
            ("stale", c(&self.stale)),
            ("refused_down", c(&self.refused_down)),
            ("passed", c(&self.passed)),
        ]
    }
}

struct Shared {
    upstream: String,
    faults: Mutex<Faults>,
    rng: Mutex<u64>,
    injected: Injected,
    client: reqwest::Client,
}

impl Shared {
    /// xorshift64*: reproducible from the seed, no dependency.
    fn roll(&self) -> f64 {
        let Ok(mut s) = self.rng.lock() else {
            return 1.0;
        };
        *s ^= *s >> 12;
        *s ^= *s << 25;
        *s ^= *s >> 27;
        (s.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn faults(&self) -> Faults {
        self.faults.lock().map(|f| *f).unwrap_or_default()
    }
}

/// The proxy; stopped when dropped.
pub struct FlakyRpc {
    url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl FlakyRpc {
    /// Starts a proxy on a free loopback port in front of `upstream`, with no faults yet.
    pub async fn start(upstream: &str, seed: u64) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let shared = Arc::new(Shared {
            upstream: upstream.to_owned(),
            faults: Mutex::new(Faults::default()),
            rng: Mutex::new(seed | 1),
            injected: Injected::default(),
            client: reqwest::Client::new(),
        });
        let s = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                if s.faults().down {
                    s.injected.refused_down.fetch_add(1, Ordering::Relaxed);
                    drop(stream);
                    continue;
                }
                let s = s.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| handle(s.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { url, shared, task }
    }

    /// Its URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sets the faults from now on.
    pub fn set(&self, faults: Faults) {
        if let Ok(mut f) = self.shared.faults.lock() {
            *f = faults;
        }
    }

    /// What was injected so far.
    pub fn injected(&self) -> &Injected {
        &self.shared.injected
    }
}

impl Drop for FlakyRpc {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Closes the connection without an answer (hyper drops it when the service fails).
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by the flaky proxy")
    }
}

impl std::error::Error for Dropped {}

async fn handle(
    s: Arc<Shared>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Dropped> {
    let faults = s.faults();
    let body = req
        .into_body()
        .collect()
        .await
        .map_err(|_| Dropped)?
        .to_bytes();
    let status = |code: StatusCode, text: &'static str| {
        let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
        *r.status_mut() = code;
        Ok(r)
    };
    if s.roll() < faults.delay {
        s.injected.delayed.fetch_add(1, Ordering::Relaxed);
        let ms = 50 + (s.roll() * 350.0) as u64;
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if s.roll() < faults.rate_limited {
        s.injected.rate_limited.fetch_add(1, Ordering::Relaxed);
        return status(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
    }
    if s.roll() < faults.unavailable {
        s.injected.unavailable.fetch_add(1, Ordering::Relaxed);
        return status(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable");
    }
    if s.roll() < faults.dropped_before {
        s.injected.dropped_before.fetch_add(1, Ordering::Relaxed);
        return Err(Dropped);
    }
    let answer = s
        .client
        .post(&s.upstream)
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .map_err(|_| Dropped)?
        .bytes()
        .await
        .map_err(|_| Dropped)?;
    if s.roll() < faults.dropped_after {
        s.injected.dropped_after.fetch_add(1, Ordering::Relaxed);
        return Err(Dropped);
    }
    let answer = if s.roll() < faults.stale {
        match stale(&body, &answer) {
            Some(changed) => {
                s.injected.stale.fetch_add(1, Ordering::Relaxed);
                changed
            }
            None => answer,
        }
    } else {
        answer
    };
    s.injected.passed.fetch_add(1, Ordering::Relaxed);
    let mut r = Response::new(Full::new(answer));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok::<_, Dropped>(r)
}

/// The answer a node a block or two behind would give, for the calls where that differs.
fn stale(request: &[u8], answer: &[u8]) -> Option<Bytes> {
    let req: Value = serde_json::from_slice(request).ok()?;
    let mut ans: Value = serde_json::from_slice(answer).ok()?;
    let quantity = |v: &Value| u64::from_str_radix(v.as_str()?.trim_start_matches("0x"), 16).ok();
    match req["method"].as_str()? {
        "eth_blockNumber" => {
            let n = quantity(&ans["result"])?;
            ans["result"] = Value::from(format!("0x{:x}", n.saturating_sub(2)));
        }
        "eth_getTransactionReceipt" => ans["result"] = Value::Null,
        "eth_getTransactionCount" => {
            let n = quantity(&ans["result"])?.checked_sub(1)?;
            ans["result"] = Value::from(format!("0x{n:x}"));
        }
        _ => return None,
    }
    serde_json::to_vec(&ans).ok().map(Bytes::from)
}
