//! Exit codes that mean something, and the one-line failure every command ends with.
//!
//! | code | meaning |
//! |------|---------|
//! | 0    | done |
//! | 1    | failed (a component, a check, an unexpected error) |
//! | 2    | bad usage (clap's own code) |
//! | 3    | a prerequisite is missing and could not be installed |
//! | 4    | the state directory (`.paytool/`) is corrupt or belongs to something else |
//! | 5    | a port the platform needs is taken |
//! | 6    | a component did not become ready in time |
//! | 7    | the platform is not running (for commands that need it) |
//! | 8    | the ledger's invariants are violated (`paytool ledger verify`) |
//! | 9    | the platform refused the request (`paytool pay`: a problem answer, e.g. not found, conflict, expired, invalid) |
//! | 10   | the payment was declined for insufficient funds (`paytool pay`: 402) |
//! | 11   | the login was refused or the token was not accepted (`paytool pay`: 401/403) |
//! | 130  | interrupted (Ctrl-C) |

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Failed = 1,
    /// Bad usage found after parsing: a malformed amount, an unknown profile. clap exits 2 too.
    Usage = 2,
    Prerequisite = 3,
    StateDir = 4,
    PortTaken = 5,
    NotReady = 6,
    NotRunning = 7,
    Violation = 8,
    Refused = 9,
    Declined = 10,
    Unauthorized = 11,
    Interrupted = 130,
}

/// A failure with the exit code it maps to and one actionable line for the user.
#[derive(Debug)]
pub struct Failure {
    pub code: Code,
    pub message: String,
}

impl Failure {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// Shorthand for returning a [`Failure`] as an `anyhow::Error`.
pub fn fail(code: Code, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Failure::new(code, message))
}

/// The exit code for any error: a [`Failure`]'s own, otherwise 1.
pub fn code_of(error: &anyhow::Error) -> i32 {
    error
        .downcast_ref::<Failure>()
        .map_or(Code::Failed as i32, |failure| failure.code as i32)
}
