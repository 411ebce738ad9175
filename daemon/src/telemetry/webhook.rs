//! Alert messages to a Slack-compatible incoming webhook.
//!
//! The [`Outbox`] decides what to send: at most one message per alert per interval, the
//! changes in between coalesced into the latest state (and dropped when that is the state
//! last sent), so a flapping alert cannot flood a channel. A [`Courier`] thread sends them,
//! retrying with exponential backoff, so a slow or failing webhook never holds up the
//! evaluation of alerts or the API.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

use super::alerts::{AlertName, AlertState, Transition};

/// The longest pause between two tries of one message.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Which transitions are due to be sent, per alert.
#[derive(Default)]
pub struct Outbox {
    lanes: BTreeMap<AlertName, Lane>,
}

#[derive(Default)]
struct Lane {
    /// When the last message was sent (Unix seconds) and the state it announced.
    last_sent: Option<(u64, AlertState)>,
    pending: Option<Transition>,
}

impl Outbox {
    /// Queues `transition`, replacing an unsent one of the same alert.
    pub fn offer(&mut self, transition: Transition) {
        let lane = self.lanes.entry(transition.name).or_default();
        lane.pending = Some(transition);
    }

    /// Takes the transitions that may be sent at `now` (Unix seconds).
    pub fn due(&mut self, now: u64, min_interval: Duration) -> Vec<Transition> {
        let mut due = Vec::new();
        for lane in self.lanes.values_mut() {
            let Some(pending) = &lane.pending else {
                continue;
            };
            match lane.last_sent {
                // Flapped back to what the channel last heard: nothing to say.
                Some((_, state)) if state == pending.state => lane.pending = None,
                Some((at, _)) if now < at + min_interval.as_secs() => {}
                _ => {
                    let pending = lane.pending.take().expect("checked above");
                    lane.last_sent = Some((now, pending.state));
                    due.push(pending);
                }
            }
        }
        due
    }
}

/// A message on its way.
struct Delivery {
    url: String,
    attempts: u32,
    payload: Value,
}

/// The thread that sends messages; dropping the handle ends it once its queue is empty.
pub struct Courier {
    queue: mpsc::Sender<Delivery>,
}

impl Courier {
    pub fn start() -> Courier {
        let (queue, deliveries) = mpsc::channel::<Delivery>();
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(REQUEST_TIMEOUT))
            .http_status_as_error(false)
            .build()
            .new_agent();
        let spawned = std::thread::Builder::new()
            .name("alert-webhook".into())
            .spawn(move || {
                for delivery in deliveries {
                    deliver(&agent, &delivery);
                }
            });
        if let Err(error) = spawned {
            tracing::error!(%error, "no alert webhook thread; alerts are only logged");
        }
        Courier { queue }
    }

    pub fn send(&self, url: &str, attempts: u32, transition: &Transition, host: &str) {
        let delivery = Delivery {
            url: url.to_string(),
            attempts,
            payload: slack_payload(transition, host),
        };
        if self.queue.send(delivery).is_err() {
            tracing::warn!(
                alert = transition.name.as_str(),
                "the alert webhook thread is gone"
            );
        }
    }
}

fn deliver(agent: &ureq::Agent, delivery: &Delivery) {
    let body = delivery.payload.to_string();
    let mut backoff = FIRST_BACKOFF;
    for attempt in 1..=delivery.attempts {
        let outcome = agent
            .post(&delivery.url)
            .header("Content-Type", "application/json")
            .send(body.as_bytes());
        let failure = match outcome {
            Ok(response) if response.status().is_success() => return,
            Ok(response) => format!("the webhook answered {}", response.status()),
            Err(error) => error.to_string(),
        };

        if attempt == delivery.attempts {
            tracing::error!(attempt, %failure, "the alert webhook failed; message dropped");
            return;
        }
        tracing::warn!(attempt, %failure, retry_in_ms = backoff.as_millis() as u64,
            "the alert webhook failed; retrying");
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// A message in Slack's incoming-webhook format (plain `text` plus one coloured attachment),
/// which Mattermost, Rocket.Chat and most chat tools accept too.
fn slack_payload(transition: &Transition, host: &str) -> Value {
    let (emoji, color) = match transition.state {
        AlertState::Firing => (":rotating_light:", "danger"),
        AlertState::Resolved | AlertState::Ok => (":white_check_mark:", "good"),
    };
    let value = transition
        .value
        .map_or_else(|| "no data".to_string(), |value| format!("{value:.4}"));
    json!({
        "text": format!("{emoji} [{host}] {}", transition.message()),
        "attachments": [{
            "color": color,
            "title": format!("{} {}", transition.name.as_str(), state_word(transition.state)),
            "fields": [
                { "title": "value", "value": value, "short": true },
                { "title": "threshold", "value": transition.threshold.to_string(), "short": true },
                { "title": "host", "value": host, "short": true },
            ],
            "ts": transition.at.unix_timestamp(),
        }],
    })
}

fn state_word(state: AlertState) -> &'static str {
    match state {
        AlertState::Firing => "firing",
        AlertState::Resolved => "resolved",
        AlertState::Ok => "ok",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::OffsetDateTime;

    const INTERVAL: Duration = Duration::from_secs(300);

    fn transition(state: AlertState, at: u64) -> Transition {
        Transition {
            name: AlertName::ErrorRate,
            state,
            value: Some(0.5),
            threshold: 0.001,
            at: OffsetDateTime::from_unix_timestamp(at as i64).unwrap(),
        }
    }

    #[test]
    fn one_message_per_interval_with_changes_coalesced() {
        let mut outbox = Outbox::default();
        outbox.offer(transition(AlertState::Firing, 0));
        assert_eq!(outbox.due(0, INTERVAL).len(), 1);

        // Resolves and fires again within the interval: the channel already knows it fires.
        outbox.offer(transition(AlertState::Resolved, 10));
        assert!(outbox.due(10, INTERVAL).is_empty());
        outbox.offer(transition(AlertState::Firing, 20));
        assert!(outbox.due(20, INTERVAL).is_empty());
        assert!(outbox.due(400, INTERVAL).is_empty());

        // Resolves for good: held until the interval has passed, then sent once.
        outbox.offer(transition(AlertState::Resolved, 100));
        assert!(outbox.due(299, INTERVAL).is_empty());
        let due = outbox.due(300, INTERVAL);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].state, AlertState::Resolved);
        assert!(outbox.due(1000, INTERVAL).is_empty());
    }

    #[test]
    fn the_payload_is_slack_shaped() {
        let payload = slack_payload(&transition(AlertState::Firing, 60), "gpu-host-1");
        let text = payload["text"].as_str().unwrap();
        assert!(text.contains("[gpu-host-1] error_rate is firing"), "{text}");
        assert_eq!(payload["attachments"][0]["color"], "danger");
        assert_eq!(payload["attachments"][0]["ts"], 60);
    }
}
