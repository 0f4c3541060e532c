//! `CloudError`: what was being done, to what, and what the service said; classified retryable
//! or permanent where it is made.

use std::fmt;
use std::time::Duration;

/// Which call failed and on what: `dli list_jobs`, `dli job_detail job 42`. Boxed inside
/// [`CloudError`] to keep the error small.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallContext {
    /// `dli`, `dlf`, `iam`, `obs`.
    pub service: &'static str,
    pub operation: &'static str,
    /// The job, task or object the call was about (may be empty).
    pub target: String,
    /// HTTP attempts made before giving up.
    pub attempts: u32,
}

impl fmt::Display for CallContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.service, self.operation)?;
        if !self.target.is_empty() {
            write!(f, " ({})", self.target)?;
        }
        if self.attempts > 1 {
            write!(f, " after {} attempts", self.attempts)?;
        }
        Ok(())
    }
}

/// The kind of transport failure: all are retryable for idempotent requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportFailure {
    Timeout,
    Connect,
    /// The connection dropped or the body could not be read.
    Io,
}

impl fmt::Display for TransportFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransportFailure::Timeout => "timed out",
            TransportFailure::Connect => "could not connect",
            TransportFailure::Io => "connection failed",
        })
    }
}

/// One job's failure inside a batch call (run, stop, delete).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchFailure {
    pub job_id: i64,
    pub message: String,
}

/// Errors from the cloud client. `Display` never contains secrets: requests are never echoed,
/// only the service's own error code and message.
#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    /// The service answered with an error status.
    #[error(
        "{context}: HTTP {status}{}{}{}",
        error_code.as_deref().map(|c| format!(" {c}")).unwrap_or_default(),
        if error_msg.is_empty() { String::new() } else { format!(": {error_msg}") },
        request_id.as_deref().map(|r| format!(" (request id {r})")).unwrap_or_default()
    )]
    Service {
        context: Box<CallContext>,
        status: u16,
        error_code: Option<String>,
        error_msg: String,
        request_id: Option<String>,
        /// The `Retry-After` the service asked for, if any.
        retry_after: Option<Duration>,
    },
    /// The service answered 2xx but said `is_success: false`.
    #[error(
        "{context}: the service refused the request: {message}{}",
        request_id.as_deref().map(|r| format!(" (request id {r})")).unwrap_or_default()
    )]
    Rejected {
        context: Box<CallContext>,
        message: String,
        request_id: Option<String>,
    },
    /// Some jobs of a batch call failed; the others succeeded.
    #[error(
        "{context}: {} of {total} jobs failed: {}",
        failures.len(),
        failures.iter().map(|f| format!("job {}: {}", f.job_id, f.message)).collect::<Vec<_>>().join("; ")
    )]
    BatchFailed {
        context: Box<CallContext>,
        total: usize,
        failures: Vec<BatchFailure>,
    },
    /// No answer: timeout, refused connection, dropped connection.
    #[error("{context}: {failure} talking to {endpoint}")]
    Transport {
        context: Box<CallContext>,
        failure: TransportFailure,
        /// Scheme, host and port only.
        endpoint: String,
        #[source]
        source: reqwest::Error,
    },
    /// The response could not be understood.
    #[error(
        "{context}: unexpected response: {problem}{}",
        request_id.as_deref().map(|r| format!(" (request id {r})")).unwrap_or_default()
    )]
    Decode {
        context: Box<CallContext>,
        problem: String,
        request_id: Option<String>,
    },
    /// The credentials were refused recently; the client does not send more requests with them
    /// until the back-off ends, so our own retries never lock the access key.
    #[error(
        "{context}: not sent: the credentials were refused {refused_ago:?} ago ({reason}); fix the access key, secret key or password and restart, or wait {remaining:?}"
    )]
    AuthBackoff {
        context: Box<CallContext>,
        reason: String,
        refused_ago: Duration,
        remaining: Duration,
    },
    /// The client is misconfigured (bad endpoint, missing IAM endpoint, bad path).
    #[error("cloud client configuration: {problem}")]
    Config { problem: String },
    /// A DLF system task ended in FAILED.
    #[error("dlf system task {task_id} failed: {message}")]
    TaskFailed { task_id: String, message: String },
    /// A wait ran out of time.
    #[error(
        "dlf system task {task_id} still {status} after {waited:?}; check it in DataArts Studio"
    )]
    TaskTimeout {
        task_id: String,
        status: String,
        waited: Duration,
    },
    /// An object store call failed.
    #[error("obs {operation} {location}")]
    ObjectStore {
        operation: &'static str,
        location: String,
        #[source]
        source: object_store::Error,
    },
}

/// Error codes meaning "the thing does not exist".
pub const NOT_FOUND_CODES: &[&str] = &[
    "DLI.16001",
    "DLI.12004",
    "DLI.0002",
    "DLI.0023",
    "DLF.0100",
    "DLF.0810",
];
/// Error codes meaning "the credentials were refused". `APIG.0301` is the signature/token
/// failure that locks an AK after five attempts. Not `APIG.0302` (HTTP 403, the caller may not
/// use the project in the path): the credentials are good, so it is a permanent error of that
/// call, and holding the key back would also stop the targets that use it for other projects.
const AUTH_CODES: &[&str] = &[
    "APIG.0301",
    "APIG.0303",
    "APIG.0305",
    "APIG.0307",
    "DLI.0013",
    "DLI.0014",
    "DLI.0015",
];

/// The call context of the variants that belong to one call, bound as `$context` (by reference
/// or by mutable reference, as `$error` is) and handed to `$found`.
macro_rules! call_context {
    ($error:expr, $context:ident => $found:expr) => {
        match $error {
            CloudError::Service { $context, .. }
            | CloudError::Rejected { $context, .. }
            | CloudError::BatchFailed { $context, .. }
            | CloudError::Transport { $context, .. }
            | CloudError::AuthBackoff { $context, .. }
            | CloudError::Decode { $context, .. } => Some($found),
            _ => None,
        }
    };
}

impl CloudError {
    /// Worth trying again later: 429, 5xx, timeouts and connection failures. Authentication
    /// failures never are, so a bad key is not locked out by our own retries.
    pub fn is_retryable(&self) -> bool {
        match self {
            CloudError::Service { status, .. } => {
                !self.is_auth_failure() && (*status == 429 || *status >= 500)
            }
            CloudError::Transport { .. } => true,
            CloudError::ObjectStore { source, .. } => !matches!(
                source,
                object_store::Error::NotFound { .. }
                    | object_store::Error::InvalidPath { .. }
                    | object_store::Error::PermissionDenied { .. }
                    | object_store::Error::Unauthenticated { .. }
                    | object_store::Error::AlreadyExists { .. }
                    | object_store::Error::NotSupported { .. }
            ),
            CloudError::TaskTimeout { .. } => true,
            _ => false,
        }
    }

    /// The job (or object, or task) does not exist.
    pub fn is_not_found(&self) -> bool {
        match self {
            CloudError::Service {
                status, error_code, ..
            } => match error_code {
                Some(code) => NOT_FOUND_CODES.contains(&code.as_str()),
                None => *status == 404,
            },
            CloudError::ObjectStore { source, .. } => {
                matches!(source, object_store::Error::NotFound { .. })
            }
            _ => false,
        }
    }

    /// The credentials were refused (bad AK/SK signature, expired or invalid token).
    pub fn is_auth_failure(&self) -> bool {
        match self {
            CloudError::Service {
                status, error_code, ..
            } => {
                *status == 401
                    || error_code
                        .as_deref()
                        .is_some_and(|code| AUTH_CODES.contains(&code))
            }
            CloudError::AuthBackoff { .. } => true,
            CloudError::ObjectStore { source, .. } => matches!(
                source,
                object_store::Error::Unauthenticated { .. }
                    | object_store::Error::PermissionDenied { .. }
            ),
            _ => false,
        }
    }

    /// The service's error code, when it sent one.
    pub fn error_code(&self) -> Option<&str> {
        match self {
            CloudError::Service { error_code, .. } => error_code.as_deref(),
            _ => None,
        }
    }

    /// The HTTP status, when there was a response.
    pub fn status(&self) -> Option<u16> {
        match self {
            CloudError::Service { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The `X-Request-Id` of the failing response, for support tickets.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            CloudError::Service { request_id, .. }
            | CloudError::Rejected { request_id, .. }
            | CloudError::Decode { request_id, .. } => request_id.as_deref(),
            _ => None,
        }
    }

    /// How long the service asked us to wait, when it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            CloudError::Service { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Which call failed, when the error belongs to one.
    pub fn context(&self) -> Option<&CallContext> {
        call_context!(self, context => context.as_ref())
    }

    pub(crate) fn context_mut(&mut self) -> Option<&mut CallContext> {
        call_context!(self, context => context.as_mut())
    }
}
