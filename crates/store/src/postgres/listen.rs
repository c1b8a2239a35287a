//! The log's size as every node commits: `LISTEN` on a connection of its own (one notification
//! per committed batch), with the size read again after each (re)connection so that batches
//! committed while no connection listened are not missed.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Config, NoTls};

use super::append::LOG_CHANNEL;
use crate::LogSizes;

/// How the listening connection names itself in `pg_stat_activity`.
pub const LISTENER_NAME: &str = "twinledger-listen";

/// Longest pause between two connection attempts.
const RECONNECT_MAX: Duration = Duration::from_secs(2);

/// Sizes as they are announced, for as long as the stream is read.
pub(super) fn log_sizes(config: &Config) -> LogSizes {
    let mut config = config.clone();
    config.application_name(LISTENER_NAME);
    let config = Arc::new(config);
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(listen(config, tx));
    Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|size| (size, rx))
    }))
}

async fn listen(config: Arc<Config>, sizes: mpsc::Sender<u64>) {
    let mut backoff = Duration::from_millis(100);
    while !sizes.is_closed() {
        match listen_once(&config, &sizes).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(target: "twinledger::store", error = %e, "lost the connection that listens for other nodes' writes; reconnecting");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(RECONNECT_MAX);
    }
}

/// Listens until the connection ends (`Err`, why) or nobody reads the sizes any more (`Ok`).
async fn listen_once(config: &Config, sizes: &mpsc::Sender<u64>) -> Result<(), String> {
    let (client, mut connection) = config.connect(NoTls).await.map_err(|e| e.to_string())?;
    let (notified, mut notifications) = mpsc::unbounded_channel();
    // The connection is driven here, where its notifications come out; the client's queries
    // go through it too.
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if let Ok(size) = n.payload().parse::<u64>() {
                        let _ = notified.send(size);
                    }
                }
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    });
    let listened = async {
        client
            .batch_execute(&format!("LISTEN {LOG_CHANNEL}"))
            .await?;
        let size: i64 = client
            .query_one("SELECT size FROM log_head", &[])
            .await?
            .get(0);
        Ok::<_, tokio_postgres::Error>(size)
    };
    let size = match listened.await {
        Ok(size) => size,
        Err(e) => {
            driver.abort();
            return Err(e.to_string());
        }
    };
    if sizes.send(size.max(0) as u64).await.is_err() {
        driver.abort();
        return Ok(());
    }
    while let Some(size) = notifications.recv().await {
        if sizes.send(size).await.is_err() {
            driver.abort();
            return Ok(());
        }
    }
    match driver.await {
        Ok(Err(e)) => Err(e.to_string()),
        _ => Err("the server closed the connection".into()),
    }
}
