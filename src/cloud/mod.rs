//! The Huawei Cloud client: signing, HTTP with retries, DLI, DLF and OBS. The only module that
//! knows the services' wire formats.
//!
//! Every service client shares one HTTP core (`http`): AK/SK signing or IAM tokens, a token
//! bucket per client, per-attempt timeouts, retries with full-jitter backoff that honour
//! `Retry-After`, no blind retry of creates, and a hold on all requests after the service refuses
//! our credentials (`APIG.0301`), so our own retries never lock an access key.
//!
//! # Design and invariants
//!
//! The only code that knows the DLI, DLF, IAM and OBS wire formats. Public entry points:
//! `DliClient`, `DlfClient`, `ObjectStore`, and `CloudClients`, which builds all three for one
//! target from its `ServiceEndpoints`.
//!
//! | file | what it holds |
//! |---|---|
//! | `signer.rs` | `SDK-HMAC-SHA256`: canonical request, sign, verify (shared with the emulator) |
//! | `http.rs` | `ServiceClient`, the core every service client shares (below) |
//! | `auth.rs` | the AK/SK or IAM-token authenticator, the token cache, the process-wide refusal registry |
//! | `clients.rs` | `CloudClients`: DLI + DLF + OBS options for one target from its `ServiceEndpoints` |
//! | `dli.rs` / `dli_wire.rs` | the typed DLI Flink calls, the queue list (`list_queues`) / wire JSON ⇄ `model::FlinkJobConfig` (pure) |
//! | `dlf.rs` | DataArts Factory: import + system-task polling (WARNING = done with warnings), list per job type (`list_every_job`), detail, export, schedule start/stop |
//! | `obs.rs` | `ObjectStore` over `object_store` (S3 for OBS, local for `file://`); `obs://` ⇄ `bucket/key`; `ObsAddressing` (virtual-hosted / path: docs/service-fidelity.md, "OBS addressing"); `pinned_hosts` (a DNS override for `name` and `*.name`) |
//! | `wire.rs` | tolerant decoders: bool/"true", number/"123", 13-digit ms, error bodies (object or array) |
//! | `error.rs` | `CloudError`: its variants and their retryable / not-found / auth classification |
//! | `iam.rs` | `project_ids_for_region`: IAM `GET /v3/projects?name={region}` (KeystoneListProjects) signed with AK/SK as the SDK's `BasicCredentials` signs its own project-id lookup (`credentials.py` `process_auth_params`: no `X-Project-Id`); used when a target omits `project_id` (`apply::target`, once per `TargetContext`, logged; a failure says how to find the id by hand) and by `doctor`'s fix |
//! | `options.rs`, `secret.rs`, `metrics.rs`, `ratelimit.rs` | options and endpoints, `Credentials` and `Secret`, request counters, the token bucket |
//!
//! What one call goes through (`ServiceClient::send`):
//! 1. The process-wide refusal hold: if these credentials were refused at this endpoint in the
//!    last 5 minutes, the call fails with `AuthBackoff` and sends nothing.
//! 2. The client's token bucket.
//! 3. URL building. Path segments and the query are percent-encoded with the signer's rules, so
//!    the wire and the signature agree.
//! 4. Authentication: sign with `SDK-HMAC-SHA256`, or add `X-Auth-Token` (IAM token, cached).
//! 5. Send, with a per-attempt timeout. The outcome is counted in `RequestMetrics`.
//! 6. Classification: 2xx is returned. Anything else becomes `CloudError::Service`, decoded from
//!    either error-body spelling and carrying `X-Request-Id` and `Retry-After`.
//! 7. Retry, only when the call is idempotent and the error is retryable (429, 5xx, timeout,
//!    connect, I/O). The delay is full-jitter exponential backoff, stretched to `Retry-After`.
//!
//! Invariants:
//! * A request with a body is never resent when it is marked non-idempotent: the two creates
//!   (`DliClient::create` lists by name first and adopts an existing job), and the order-sensitive
//!   calls run, stop and DLI import (`is_cover` resets a job to draft and detaches its savepoint).
//!   A first attempt of those delivered late would land after the resend and after the steps that
//!   followed; the executor observes the job instead. Delete, export, savepoint calls and DLF
//!   import (`sameNamePolicy`) converge on the same state when repeated, so they are retried like
//!   reads.
//! * An auth failure is never retried. A rejected IAM token is renewed once; a refused password is
//!   final.
//! * Retry budgets never multiply: the token request retries under the IAM client's policy, and
//!   when it still fails the calling client returns that error (with IAM's attempt count) instead
//!   of retrying it again.
//! * Nothing in `cloud` prints a secret. `Secret` redacts its `Debug`/`Display`, errors carry only
//!   the service's code and message, and transport errors drop the URL. The refusal registry keys
//!   on a truncated SHA-256 fingerprint of the secret, never on the secret itself.
//! * Wire → canonical conversion (`dli_wire::observed_from_detail`) rejects values it cannot read,
//!   such as an unknown `checkpoint_mode` or unparseable `runtime_config`, instead of guessing.
//!   A wrong guess would make the planner restart a job.
//! * Tags come from the job detail when it has them. Otherwise they come from the v3 tag API
//!   (`/v3/{project}/dli_flink_job/{id}/tags`); a 404 without a job error code there reads as
//!   "no tags". `list_all_job_tags` reads every job's tags in bulk (`resource-instances/filter`,
//!   see docs/service-fidelity.md, "DLI listing and tags"); an answer without a `resources` list (unless `total_count` is
//!   0), an entry without a numeric `resource_id` or a page that repeats ids is a decode error,
//!   never "no tags".
//! * DLI export/import paths are sent without a scheme (`bucket/dir`), savepoint import with
//!   `obs://`, and DLF paths with `obs://`. Callers may pass either form.
//! * OBS addressing (`ObsAddressing`) and OBS authorisation (`DliClient::authorize_obs_buckets`): docs/service-fidelity.md ("OBS addressing and authorisation"), with their sources.
//!
//! Tests: `tests/cloud/` scripts the exact HTTP exchanges (quirks, retries, signing vectors, OBS
//! over `s3s-fs`); `tests/obs_addressing.rs` makes real virtual-hosted requests on loopback
//! (`bucket.obs.test` pinned to 127.0.0.1) to an emulator that refuses path style; `tests/cloud_emulator/` runs the same clients against the in-process emulator
//! and checks the client's per-operation attempt counts (`RequestMetrics`) against the emulator's
//! (`/_emulator/v1/stats`), so a retry hidden on either side shows up as a mismatch.

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
mod tls;
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
