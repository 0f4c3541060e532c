//! The Huawei Cloud client: signing, HTTP with retries, DLI, DLF and OBS. The only module that
//! knows the services' wire formats.
//!
//! Every service client shares one HTTP core (`http`): AK/SK signing or IAM tokens, a token
//! bucket per client, per-attempt timeouts, retries with full-jitter backoff that honour
//! `Retry-After`, no blind retry of creates, and a hold on all requests after the service refuses
//! our credentials (`APIG.0301`), so our own retries never lock an access key.

mod auth;
mod clients;
pub mod dlf;
pub mod dli;
pub mod dli_wire;
pub mod error;
mod http;
pub mod iam;
pub mod metrics;
pub mod obs;
pub mod options;
pub mod ratelimit;
pub mod secret;
pub mod signer;
pub mod wire;

pub use clients::CloudClients;
pub use dlf::{
    DlfClient, DlfImportRequest, DlfJobSummary, DlfListJobsQuery, SystemSubtask, SystemTask,
    SystemTaskStatus,
};
pub use dli::DliQueue;
pub use dli::{
    DliClient, JobMapping, JobTagListing, ListJobsQuery, ListedConfig, ListedFlinkJob, ListedJobs,
};
pub use error::{BatchFailure, CallContext, CloudError, TransportFailure};
/// The signed HTTP core, for the notification sinks (SMN).
pub(crate) use http::{Call, ServiceClient};
pub use http::{Exchange, ExchangeObserver, observe_exchanges};
pub use metrics::{RequestCount, RequestMetrics};
pub use obs::{ObjectStore, ObsAddressing, ObsLocation, ObsOptions};
pub use options::{ClientOptions, RetryPolicy, ServiceEndpoints, parse_endpoint};
pub use secret::{Credentials, Secret};
