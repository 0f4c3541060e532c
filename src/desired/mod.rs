//! The job repository: how users declare jobs in git. Parses job files, fills `${variables}`,
//! applies an environment's overrides, validates everything in one pass and normalises to the
//! canonical [`model`](crate::model) types the planner compares. Pure: values in, values out;
//! the one exception is [`read_directory`], the edge that turns a directory into a snapshot.
//!
//! Layout: `yaml` (span-keeping parser), `fields` (the field table: types, ranges,
//! descriptions), `convert` (checking a value against the table), `resolve` (the pipeline),
//! `flink` and `dlf` (building each kind), `environment`, `files` (references, links,
//! variables), `digest`, `schema`, `render`, `validate` (the CLI report), `io` (the edge).
//!
//! # Design and invariants
//!
//! The job repository, from a `RepoSnapshot` (path → bytes / symlink / oversized) to
//! `model::DesiredJobs` for one environment. Pure; `io.rs` (`read_directory`) is its only edge.
//!
//! | file | what it is for |
//! |---|---|
//! | `mod.rs` | public API: `resolve`, `validate`, `schema`, `environment_schema`, `read_directory`, `render::*`, digests |
//! | `yaml.rs` | YAML → node tree with a line/column on every node (events from `saphyr-parser`); refuses anchors, aliases, custom tags, nesting > 64, duplicate keys |
//! | `fields.rs`, `convert.rs` | the field table: every job-file field with its kinds, type, range and description (validation, the JSON Schema and rendering all read it); checking one value against it |
//! | `resolve.rs` | the pipeline: environment → job files → documents → `${variables}` → duplicates → overrides → typed fields → jobs |
//! | `flink.rs`, `dlf.rs` | building each kind: defaults, SQL files, `.job`/`.script` files, cross-field checks, managed-by tag |
//! | `environment.rs` | `environments/<env>.yaml`: variables, overrides, DLF import settings |
//! | `dependencies.rs` | `depends_on` (names → keys, unknown/ambiguous/self/cycles), `drift`, `ignore_differences` → `model::JobPolicy` |
//! | `files.rs` | references relative to the YAML file, `..`/absolute/symlink escapes, `${}` substitution and `$${` escapes |
//! | `digest.rs` | canonical JSON (keys sorted by hand, not by serde_json's feature-dependent map) → SHA-256 |
//! | `schema.rs`, `render.rs`, `validate.rs` | JSON Schema; files for `export`; the `validate` report (text and JSON) |
//!
//! Invariants:
//! * Each document's positioned node tree is dropped as soon as its job is built (after duplicates,
//!   overrides and cross-document policies, which need them all), so trees and jobs are never all in
//!   memory together.
//! * All-or-nothing: `resolve` returns every problem or a complete `DesiredJobs`, never part of one.
//!   After a field fails its check, the rest of the job is still checked, but cross-field rules
//!   that depend on it are not (one bad value, one message).
//! * `desired` never touches the file system except in `io.rs`; symlinks are recorded there, never followed,
//!   and resolved inside the snapshot only while they stay in it. A symlinked directory is recorded as a
//!   link, so job files under it are not seen (link the files, not the directory).
//! * Diagnostics are sorted by file, line, column and de-duplicated, so output is stable across runs.
//! * A resolved `FlinkJobConfig` has every service default written out and carries `managed-by: dli-gitops`;
//!   `render` omits both, and render → resolve is the identity (property-tested).
//! * Variables are filled in values, never in keys, `kind` or `name`. Override values are checked
//!   against the job they apply to and their problems point at the environment file.
//!
//! Choices of ours (not API limits): names use `[A-Za-z0-9_-]` (DLF also `.`), starting with a letter
//! or digit; upper bounds on `manager_cu_number`, `tm_cus`, `tm_slot_num`, `resume_max_num`, map and
//! list sizes; Flink SQL and Jar jobs share one name space; overrides of map fields merge key by key;
//! a repository with environments is validated per environment, never as bare base files.

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
