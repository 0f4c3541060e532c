//! The job repository: how users declare jobs in git. Parses job files, fills `${variables}`,
//! applies an environment's overrides, validates everything in one pass and normalises to the
//! canonical [`model`](crate::model) types the planner compares. Pure: values in, values out;
//! the one exception is [`read_directory`], the edge that turns a directory into a snapshot.
//!
//! Layout: `yaml` (span-keeping parser), `fields` (the field table: types, ranges,
//! descriptions), `convert` (checking a value against the table), `resolve` (the pipeline),
//! `flink` and `dlf` (building each kind), `environment`, `files` (references, links,
//! variables), `digest`, `schema`, `render`, `validate` (the CLI report), `io` (the edge).

mod convert;
mod dependencies;
mod diagnostics;
mod digest;
mod dlf;
mod environment;
mod fields;
mod files;
mod flink;
mod io;
pub mod render;
mod resolve;
mod schema;
pub mod snapshot;
mod validate;
mod yaml;

pub use diagnostics::{Diagnostic, Diagnostics};
pub use digest::{digest_of, dlf_job_digest, flink_job_digest};
pub use environment::ENVIRONMENTS_DIR;
pub use io::{SpecIoError, content_revision, read_directory};
pub use resolve::{environments, is_job_file, resolve};
pub use schema::{environment_schema, schema};
pub use validate::{EnvironmentResult, ValidationReport, validate};
