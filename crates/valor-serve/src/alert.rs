//! `--alert-webhook URL`: each fairness breach as it starts and ends,
//! POSTed as JSON from a thread of its own (a slow or failing receiver
//! never holds up a request; alerts that find the queue full are counted
//! and dropped). The URL may carry a token, so it is never logged.

use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::time::Duration;

use crate::error::{Error, Result};

/// Alerts that may wait for the webhook.
const QUEUE: usize = 256;

/// The webhook's sender.
#[derive(Debug)]
pub struct Alerter {
    tx: SyncSender<String>,
}

impl Alerter {
    /// Starts the sending thread for `url` (`http://…`, or `https://…` with
    /// the `tls` feature).
    pub fn start(url: &str) -> Result<Self> {
        let https = url.starts_with("https://");
        if !(url.starts_with("http://") || https) {
            return Err(Error::Config {
                flag: "--alert-webhook",
                message: "must be an http:// or https:// URL".into(),
            });
        }
        if https && !cfg!(feature = "tls") {
            return Err(Error::Config {
                flag: "--alert-webhook",
                message: "https:// needs a valor built with the cargo feature `tls`".into(),
            });
        }
        let (tx, rx) = sync_channel::<String>(QUEUE);
        let url = url.to_string();
        std::thread::Builder::new()
            .name("valor-alerts".into())
            .spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .timeout_global(Some(Duration::from_secs(10)))
                    .build()
                    .into();
                while let Ok(body) = rx.recv() {
                    let sent = agent
                        .post(&url)
                        .content_type("application/json")
                        .send(body.as_str());
                    match sent {
                        Ok(_) => metrics::counter!(crate::metrics::ALERTS, "result" => "sent")
                            .increment(1),
                        Err(e) => {
                            metrics::counter!(crate::metrics::ALERTS, "result" => "failed")
                                .increment(1);
                            tracing::warn!("alert webhook: {e}");
                        }
                    }
                }
            })?;
        Ok(Self { tx })
    }

    /// Queues one alert without waiting.
    pub fn send(&self, alert: &serde_json::Value) {
        match self.tx.try_send(alert.to_string()) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                metrics::counter!(crate::metrics::ALERTS, "result" => "dropped").increment(1);
            }
        }
    }
}
