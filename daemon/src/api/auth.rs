//! Request guards that authenticate an API key, check its scope, and count the request
//! against its rate limits (per client address, then per key and route class).
//!
//! A handler states what it needs by the guard it takes: [`ReadKey`], [`WriteKey`] or
//! [`AdminKey`]. Recording when a key was last used would turn every read into a write, so it
//! is written at most once a minute per key, off the request's path.

use rocket::request::{FromRequest, Outcome};
use rocket::{Request, State};

use super::AppState;
use super::edge::{RateLimitState, client_address};
use super::error::{ApiError, GuardError};
use super::request::KeyName;
use super::request::route_class;
use crate::auth::{self, AuthError, ProjectAccess, Scope};
use crate::store::{self, keys};

/// How stale `last_used_at` may get before a request refreshes it.
const TOUCH_INTERVAL: time::Duration = time::Duration::minutes(1);

/// The authenticated key: its name (for logs and authorship), scope, and the projects it may
/// see.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub scope: Scope,
    pub projects: ProjectAccess,
}

pub(super) async fn authenticate(request: &Request<'_>, needed: Scope) -> Result<Caller, ApiError> {
    let state = request
        .guard::<&State<AppState>>()
        .await
        .success_or_else(|| ApiError::internal("application state is not managed"))?;
    let limits = &state.rate_limits;

    // The address first: a flood of missing or wrong keys never reaches the database.
    if let Some(address) = client_address(request, &limits.trusted_proxies()) {
        limits.check_address(address)?;
    }
    let header = request
        .headers()
        .get_one("Authorization")
        .ok_or(AuthError::Missing)?;
    let secret_hash = auth::hash_secret(auth::bearer_secret(header)?);
    let (method, path) = (request.method(), request.uri().path());
    let allowance = match route_class(method, path.as_str()) {
        Some(class) => Some(limits.check_key(&secret_hash, class)?),
        None if super::assets::is_upload(method, path.as_str()) => {
            Some(limits.check_upload(&secret_hash)?)
        }
        None => None,
    };
    if let Some(allowance) = allowance {
        request.local_cache(|| RateLimitState(allowance));
    }

    let record = state
        .store
        .read(move |connection| keys::by_secret_hash(connection, &secret_hash))
        .await?;

    let now = time::OffsetDateTime::now_utc();
    let record = auth::authorize(record, needed, &store::format_time(now))?;
    request.local_cache(|| KeyName(Some(record.name.clone())));

    let stale_before = store::format_time(now - TOUCH_INTERVAL);
    if record
        .last_used_at
        .as_deref()
        .is_none_or(|used| used < stale_before.as_str())
    {
        touch_in_background(
            state.store.clone(),
            record.name.clone(),
            store::format_time(now),
        );
    }
    Ok(Caller {
        name: record.name,
        scope: record.scope,
        projects: record.projects,
    })
}

fn touch_in_background(store: store::Store, name: String, at: String) {
    tokio::spawn(async move {
        if let Err(error) = store.write(move |tx| keys::touch(tx, &name, &at)).await {
            tracing::warn!(%error, "could not record when an API key was last used");
        }
    });
}

macro_rules! scope_guard {
    ($(#[$doc:meta])* $guard:ident, $scope:expr) => {
        $(#[$doc])*
        pub struct $guard(pub Caller);

        #[rocket::async_trait]
        impl<'r> FromRequest<'r> for $guard {
            type Error = ();

            async fn from_request(request: &'r Request<'_>) -> Outcome<Self, ()> {
                match authenticate(request, $scope).await {
                    Ok(caller) => Outcome::Success($guard(caller)),
                    Err(error) => Outcome::Error((GuardError::stash(request, error), ())),
                }
            }
        }
    };
}

scope_guard!(
    /// A key that may read.
    ReadKey,
    Scope::Read
);
scope_guard!(
    /// A key that may create, change and delete.
    WriteKey,
    Scope::Write
);
scope_guard!(
    /// A key that may administer the appliance.
    AdminKey,
    Scope::Admin
);
