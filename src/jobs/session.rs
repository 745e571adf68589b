//! How a run of an embedded job ends early: something to retry from the
//! last committed point, or something that stops the job.

use std::time::Duration;

use crate::exit::KartError;

/// How often a job copies its loop's counters into the shared status.
pub const STATUS_EVERY: Duration = Duration::from_millis(250);
/// Sessions that fail one after the other before a job gives up.
pub const MAX_CONSECUTIVE_FAILURES: u32 = 5;

pub enum SessionError {
    /// A step could not be completed (a connection lost, records not
    /// acknowledged): start over from what was committed.
    Retry(String),
    /// Nothing to retry: configuration, a corrupt log, a resource taken by
    /// someone else.
    Fatal(KartError),
}

impl From<KartError> for SessionError {
    fn from(error: KartError) -> Self {
        SessionError::Fatal(error)
    }
}

pub type SessionResult<T> = std::result::Result<T, SessionError>;
