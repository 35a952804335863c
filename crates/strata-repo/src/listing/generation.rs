//! The listing's **generation object**, `listing/generation`: a small sealed object that
//! every writer of a summary, a listing object, a pin or a verification record replaces
//! with a new random token once its change is written.
//!
//! It lets a long-running reader (a server) reuse the listing it last reconciled: one GET
//! of this object tells whether anything changed since, instead of the LISTs of a
//! reconcile. It never makes a listing wrong, only stale for a bounded time: summaries
//! stay the truth, and a reader reconciles again when the token changed, when the object
//! is missing or does not decode (then it says so), when the object was written too
//! recently for every write before it to have landed ([`Generation::settled`]), and in any
//! case after a maximum age (a writer that does not bump: an older strata, a tool, anyone
//! writing into the bucket). Writers replace it without reading it (no read-modify-write:
//! two concurrent bumps both change the token), so it needs no lock. docs/format.md
//! ("Listing generation") has the bytes.

use crate::format::{decode_object, ObjectKind};
use crate::layout;
use crate::{RepoError, RepoResult, Repository};
use serde::{Deserialize, Serialize};

/// One generation: a random token and when its writer wrote it (its clock).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generation {
    /// 16 random hex digits: a new one at every bump.
    pub token: String,
    /// Unix milliseconds of the writer's clock when it wrote the object.
    pub written_ms: u64,
}

impl Generation {
    /// A new generation, written now.
    pub fn new() -> Generation {
        let mut token = [0u8; 8];
        getrandom::getrandom(&mut token).expect("the OS random source is available");
        Generation {
            token: hex::encode(token),
            written_ms: now_ms(),
        }
    }

    /// Whether the object was written at least `settle_ms` before `now_ms`: then the
    /// writes its writer made before it have landed too (a store may show writes seconds
    /// late, and in any order), and a reconcile done now sees them.
    pub fn settled(&self, now_ms: u64, settle_ms: u64) -> bool {
        now_ms >= self.written_ms.saturating_add(settle_ms)
    }

    fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a generation serializes")
    }

    /// Decodes and checks a payload: a token of 16 hex digits.
    pub fn decode(plain: &[u8]) -> Result<Generation, BadGeneration> {
        let generation: Generation = serde_json::from_slice(plain)?;
        let ok =
            generation.token.len() == 16 && generation.token.bytes().all(|b| b.is_ascii_hexdigit());
        if !ok {
            return Err(BadGeneration::Token);
        }
        Ok(generation)
    }
}

/// Why a generation object's payload is refused.
#[derive(Debug, thiserror::Error)]
pub enum BadGeneration {
    /// Not a generation's JSON.
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    /// Its token is not one a writer makes.
    #[error("its token is not 16 hex digits")]
    Token,
}

impl Default for Generation {
    fn default() -> Self {
        Generation::new()
    }
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// What a read of the generation object found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GenerationRead {
    /// A generation that decodes and authenticates.
    Current(Generation),
    /// No object (no listing write since the repository was made, or it was deleted).
    Missing,
    /// An object that does not decode or authenticate (damaged, forged, sealed under
    /// another key): the reason.
    Damaged(String),
}

impl Repository {
    /// Reads the generation object (one GET; never cached by the store's cache, see
    /// `layout::cacheable`). A store failure other than "not found" is an error.
    pub async fn listing_generation(&self) -> RepoResult<GenerationRead> {
        let key = layout::LISTING_GENERATION;
        let bytes = match self.store().get(key).await {
            Ok(bytes) => bytes,
            Err(e) if e.is_not_found() => return Ok(GenerationRead::Missing),
            Err(e) => return Err(e.into()),
        };
        // Whatever does not decode (damaged, forged, of an unknown version) is only a
        // reason to reconcile, never an error of the listing.
        let plain = match decode_object(self.cipher(), ObjectKind::Listing, &bytes, key) {
            Ok(plain) => plain,
            Err(err) => return Ok(GenerationRead::Damaged(err.to_string())),
        };
        Ok(match Generation::decode(&plain) {
            Ok(generation) => GenerationRead::Current(generation),
            Err(why) => GenerationRead::Damaged(RepoError::corrupted(key, why).to_string()),
        })
    }

    /// Replaces the generation object with a new generation: call it after a change of
    /// summaries, listing objects, pins or verification records is written.
    pub async fn bump_listing_generation(&self) -> RepoResult<Generation> {
        let key = layout::LISTING_GENERATION;
        let generation = Generation::new();
        let bytes = self.seal_object(ObjectKind::Listing, key, &generation.encode())?;
        self.store().put(key, bytes.into()).await?;
        Ok(generation)
    }

    /// [`Repository::bump_listing_generation`], a failure being a warning: a reader that
    /// keeps a listing then serves it until its maximum age, as for a writer that never
    /// bumps.
    pub async fn bump_listing_generation_or_warn(&self) {
        if let Err(e) = self.bump_listing_generation().await {
            eprintln!(
                "strata: warning: the listing generation was not replaced ({e}); servers may show the previous listing for up to a minute"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_decode_back_and_settle_after_their_delay() {
        let a = Generation::new();
        let b = Generation::new();
        assert_ne!(a.token, b.token, "every bump is a new token");
        assert_eq!(Generation::decode(&a.encode()).unwrap(), a);
        for bad in [
            &b"{}"[..],
            br#"{"token":"xyz","written_ms":1}"#,
            br#"{"token":"0123456789abcdeg","written_ms":1}"#,
            b"not json",
        ] {
            assert!(Generation::decode(bad).is_err(), "{bad:?}");
        }
        let g = Generation {
            token: "0123456789abcdef".into(),
            written_ms: 10_000,
        };
        assert!(!g.settled(14_999, 5_000));
        assert!(g.settled(15_000, 5_000));
        // A writer's clock ahead of the reader's: not settled until the reader catches up.
        assert!(!g.settled(0, 5_000));
    }
}
