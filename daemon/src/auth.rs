//! API keys: their secrets, scopes, and the decision whether a presented key is accepted.
//!
//! A secret is 32 random bytes, shown once at creation and stored only as its SHA-256. A fast
//! hash is enough here (unlike for passwords): the secret has 256 bits of entropy, so there
//! is nothing to brute-force, and hashing stays off the hot path's budget.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::store::keys::KeyRecord;

/// Every secret starts with this, so a leaked key is easy to recognise in a scanner.
const SECRET_PREFIX: &str = "nxc_";
/// Characters of the secret kept in the clear to tell keys apart in listings.
const SHOWN_PREFIX_LEN: usize = 12;

/// What a key may do; each scope includes the ones below it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Read,
    Write,
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }

    pub fn allows(self, needed: Scope) -> bool {
        self >= needed
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown scope `{0}` (expected read, write or admin)")]
pub struct UnknownScope(String);

impl FromStr for Scope {
    type Err = UnknownScope;

    fn from_str(text: &str) -> Result<Scope, UnknownScope> {
        match text {
            "read" => Ok(Scope::Read),
            "write" => Ok(Scope::Write),
            "admin" => Ok(Scope::Admin),
            other => Err(UnknownScope(other.to_string())),
        }
    }
}

/// Which projects a key may see. Keys are made for all projects unless created for a list.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProjectAccess {
    #[default]
    All,
    /// Only these project ids.
    Only(Vec<String>),
}

impl ProjectAccess {
    pub fn allows(&self, project_id: &str) -> bool {
        match self {
            ProjectAccess::All => true,
            ProjectAccess::Only(ids) => ids.iter().any(|id| id == project_id),
        }
    }

    /// The project ids as a JSON array, `None` for all projects: how the store keeps them.
    pub fn to_json(&self) -> Option<String> {
        match self {
            ProjectAccess::All => None,
            ProjectAccess::Only(ids) => Some(serde_json::json!(ids).to_string()),
        }
    }

    pub fn from_json(json: Option<&str>) -> Result<ProjectAccess, serde_json::Error> {
        match json {
            None => Ok(ProjectAccess::All),
            Some(json) => serde_json::from_str(json).map(ProjectAccess::Only),
        }
    }
}

/// A newly generated secret, with what is stored of it.
pub struct NewSecret {
    pub secret: String,
    pub hash: [u8; 32],
    pub prefix: String,
}

pub fn generate_secret() -> Result<NewSecret, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;

    let secret = format!("{SECRET_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    Ok(NewSecret {
        hash: hash_secret(&secret),
        prefix: secret[..SHOWN_PREFIX_LEN].to_string(),
        secret,
    })
}

pub fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Why a request's credentials were refused. Each maps to 401, except `Forbidden` and
/// `LimitedToProjects` (403).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("this route needs an API key: send `Authorization: Bearer <key>`")]
    Missing,
    #[error("the Authorization header must be `Bearer <key>`")]
    Malformed,
    #[error("the API key is not valid")]
    Unknown,
    #[error("the API key was revoked")]
    Revoked,
    #[error("the API key expired")]
    Expired,
    #[error("this route needs a key with scope `{needed}`; this key has `{has}`")]
    Forbidden { needed: Scope, has: Scope },
    #[error("this key is limited to some projects, so it cannot create one")]
    LimitedToProjects,
}

/// Accepts `record` (the stored key matching the presented secret, if any) for a route that
/// needs `needed`, at time `now` (formatted as the store formats times).
pub fn authorize(
    record: Option<KeyRecord>,
    needed: Scope,
    now: &str,
) -> Result<KeyRecord, AuthError> {
    let record = record.ok_or(AuthError::Unknown)?;

    if record.revoked_at.is_some() {
        return Err(AuthError::Revoked);
    }
    if record
        .expires_at
        .as_deref()
        .is_some_and(|expires_at| expires_at <= now)
    {
        return Err(AuthError::Expired);
    }
    if !record.scope.allows(needed) {
        return Err(AuthError::Forbidden {
            needed,
            has: record.scope,
        });
    }
    Ok(record)
}

/// Extracts the secret from an `Authorization` header value.
pub fn bearer_secret(header: &str) -> Result<&str, AuthError> {
    let (scheme, secret) = header.trim().split_once(' ').ok_or(AuthError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Malformed);
    }
    let secret = secret.trim();
    if secret.is_empty() {
        return Err(AuthError::Malformed);
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(scope: Scope) -> KeyRecord {
        KeyRecord {
            name: "ci".into(),
            scope,
            prefix: "nxc_abcdefgh".into(),
            created_at: "2026-01-01T00:00:00.000Z".into(),
            last_used_at: None,
            expires_at: None,
            revoked_at: None,
            projects: ProjectAccess::All,
        }
    }

    #[test]
    fn secrets_are_unique_and_hash_to_what_is_stored() {
        let (a, b) = (generate_secret().unwrap(), generate_secret().unwrap());
        assert_ne!(a.secret, b.secret);
        assert!(a.secret.starts_with(SECRET_PREFIX) && a.secret.len() == 4 + 43);
        assert_eq!(hash_secret(&a.secret), a.hash);
        assert!(a.secret.starts_with(&a.prefix));
    }

    #[test]
    fn scopes_nest() {
        let now = "2026-06-01T00:00:00.000Z";
        assert!(authorize(Some(record(Scope::Admin)), Scope::Write, now).is_ok());
        assert_eq!(
            authorize(Some(record(Scope::Read)), Scope::Write, now).unwrap_err(),
            AuthError::Forbidden {
                needed: Scope::Write,
                has: Scope::Read
            }
        );
    }

    #[test]
    fn expired_and_revoked_keys_are_refused() {
        let now = "2026-06-01T00:00:00.000Z";
        let mut expired = record(Scope::Admin);
        expired.expires_at = Some("2026-05-31T23:59:59.999Z".into());
        assert_eq!(
            authorize(Some(expired), Scope::Read, now).unwrap_err(),
            AuthError::Expired
        );

        let mut revoked = record(Scope::Admin);
        revoked.revoked_at = Some("2026-05-01T00:00:00.000Z".into());
        assert_eq!(
            authorize(Some(revoked), Scope::Read, now).unwrap_err(),
            AuthError::Revoked
        );
        assert_eq!(
            authorize(None, Scope::Read, now).unwrap_err(),
            AuthError::Unknown
        );
    }

    #[test]
    fn bearer_header_parsing() {
        assert_eq!(bearer_secret("Bearer nxc_x").unwrap(), "nxc_x");
        assert_eq!(bearer_secret("bearer  nxc_x ").unwrap(), "nxc_x");
        assert_eq!(
            bearer_secret("Basic abc").unwrap_err(),
            AuthError::Malformed
        );
        assert_eq!(bearer_secret("Bearer ").unwrap_err(), AuthError::Malformed);
    }
}
