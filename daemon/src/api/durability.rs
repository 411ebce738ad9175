//! `Prefer: durability=replicated`: a write that is answered only once its change is in the
//! replica, for clients that cannot accept the usual one-second window.
//!
//! The wait rides the replica's normal cadence (group commit): every waiting request is
//! released by the same upload, rather than each forcing one of its own. Without a replica
//! configured there is nothing to wait for, and the answer says so by leaving out
//! `Preference-Applied`.

use std::time::Duration;

use rocket::fairing::{Fairing, Info, Kind};
use rocket::http::{Header, Method, Status};
use rocket::response::Responder;
use rocket::{Request, Response};

use super::AppState;
use super::error::ApiError;

const PREFERENCE: &str = "durability=replicated";

pub struct Durability;

#[rocket::async_trait]
impl Fairing for Durability {
    fn info(&self) -> Info {
        Info {
            name: "wait for replication on request",
            kind: Kind::Response,
        }
    }

    async fn on_response<'r>(&self, request: &'r Request<'_>, response: &mut Response<'r>) {
        let is_write = !matches!(
            request.method(),
            Method::Get | Method::Head | Method::Options
        );
        if !is_write || !response.status().class().is_success() || !prefers_replicated(request) {
            return;
        }
        let Some(state) = request.rocket().state::<AppState>() else {
            return;
        };
        let Some(replica) = state.replicator.durability_replica() else {
            return;
        };

        // The head now covers this request's commit (and maybe later ones: waiting for them
        // too costs at most the same upload).
        let seq = state.store.change_head();
        let timeout = Duration::from_millis(state.config.replication.s3.wait_timeout_ms);
        if replica.wait_for(seq, timeout).await {
            response.set_header(Header::new("Preference-Applied", PREFERENCE));
            return;
        }

        let error = ApiError::new(
            Status::GatewayTimeout,
            "replication_timeout",
            format!(
                "the change is committed on this host but the {} replica did not confirm it \
                 within {} ms; it will be shipped when the replica is reachable",
                replica.name,
                timeout.as_millis()
            ),
        );
        if let Ok(answer) = error.respond_to(request) {
            response.merge(answer);
        }
    }
}

/// Whether the request's `Prefer` headers (RFC 7240) ask for `durability=replicated`.
fn prefers_replicated(request: &Request<'_>) -> bool {
    request.headers().get("Prefer").any(|value| {
        value
            .split(',')
            .any(|preference| preference.trim().eq_ignore_ascii_case(PREFERENCE))
    })
}
