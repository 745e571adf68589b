//! Errors and exit codes: one table for every command (design §2).
//!
//! | code | meaning |
//! |------|---------|
//! | 0    | ok |
//! | 1    | the request failed for a reason in the user's hands (bad input or configuration, not found, rejected, timed out waiting for a condition, refused destructive action) |
//! | 2    | infrastructure or unexpected error (unreachable, authentication failed, engine error, I/O) and usage errors |
//! | 130  | interrupted |

use std::fmt;

/// Why a command failed, which decides its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Fixable by the user: input, configuration, a condition not met.
    User,
    /// Something outside the request broke: a service, the network, I/O.
    Infra,
    /// Ctrl-C or SIGTERM.
    Interrupted,
}

impl Class {
    pub fn exit_code(self) -> i32 {
        match self {
            Class::User => 1,
            Class::Infra => 2,
            Class::Interrupted => 130,
        }
    }
}

/// A failure a person can act on: what failed, why, and what to do next.
#[derive(Debug, Clone)]
pub struct KartError {
    pub class: Class,
    /// Stable machine-readable code for `-o json` (`kafka-unreachable`, …).
    pub code: &'static str,
    pub message: String,
    pub hint: Option<String>,
}

pub type Result<T, E = KartError> = std::result::Result<T, E>;

impl KartError {
    pub fn user(code: &'static str, message: impl Into<String>) -> Self {
        Self { class: Class::User, code, message: message.into(), hint: None }
    }

    pub fn infra(code: &'static str, message: impl Into<String>) -> Self {
        Self { class: Class::Infra, code, message: message.into(), hint: None }
    }

    pub fn interrupted() -> Self {
        Self {
            class: Class::Interrupted,
            code: "interrupted",
            message: "interrupted".into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn exit_code(&self) -> i32 {
        self.class.exit_code()
    }
}

impl fmt::Display for KartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for KartError {}

/// Attach "what was being done" to lower-level errors, cargo-style.
pub trait Context<T> {
    fn infra_context(self, code: &'static str, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: fmt::Display> Context<T> for std::result::Result<T, E> {
    fn infra_context(self, code: &'static str, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| KartError::infra(code, format!("{}: {e}", what())))
    }
}
