//! How a run of an embedded job ends early: something to retry from the
//! last committed point, or something that stops the job.

use crate::exit::KartError;

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
