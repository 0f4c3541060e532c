//! Promotion between environments: the gate a revision passes from one target to the next
//! (`promote_from`), manual promotions, and carrying Flink state across accounts.
//!
//! * [`gate`] is pure: upstream health over time, change windows and history → a decision.
//! * The journal's `promotion` records are the only memory of promotions: the revision a
//!   downstream target follows is the revision of its latest successful promotion record.
//!
//! # Design and invariants
//!
//! Promotion between environments: which revision a `promote_from` target follows.
//!
//! | file | what it holds |
//! |---|---|
//! | `gate.rs` | pure: `PromotionPolicy` (parsed windows), `window_block`, `UpstreamTracker` (revision + Healthy-since, fed `UpstreamSample`s), `PromotionHistory` (from the journal's promotion entries), `evaluate` → `GateDecision`, `check_manual` |
//! | `pipeline.rs` | `Pipeline`: the daemon's stages, one tracker per upstream, `observe` (journals a failed revision once per stage), `evaluate` (journals auto promotions), `promote_manually`, counters, `view` for the status API; `followed_revision(state, target)` |
//! | `manual.rs` | `promote_command` / `promote_blocking` (CLI), `record_manual_promotion` (shared with the server's endpoint), `PromoteBody`, `promotion_record` |
//! | `carry.rs` | `carry_savepoint`: a savepoint from the upstream account's OBS into the downstream's staging prefix; `pending_carries` (the planner's pending-restore rule) |
//! | `restore.rs` | `carry_for_target`: before a pass, carry every pending `from_target` savepoint (paths go to `ApplyOptions::carried_savepoints`; `on_missing_savepoint: stateless` journals the restore as applied instead); `apply_target_restore`: the target's `restore.from_target` default on jobs without their own |
//! | `revision.rs` | `snapshot_at`: a source at the promoted revision (git mirrors keep older commits; a directory only has its current content); `check_promotable`: the revision exists and resolves for the target's environment |
//! | `endpoint.rs` | `PromotionEndpoint`: the bodies of `POST /api/v1/targets/{t}/promote` (200, 404 unknown target or revision, 409 refused or not validating, 400, 503, 500) and `GET /api/v1/pipeline`, without the HTTP framework |
//! | `hook.rs` | `PromotionHook`: the daemon's handle (promoted snapshot, `after_pass`, timer, listener, manual promotions); the samples it reads come from `status::sample_of(TargetStatus)` |
//!
//! Manual promotions are checked before anything is journaled (`check_requested_revision` →
//! `revision::check_promotable`): the revision (or, without one, the upstream's converged revision)
//! must be in the target's source (a git commit not yet in the mirror is fetched first) and resolve
//! for the target's environment. Otherwise `PromotionError::Unpromotable` (`RevisionCheckError`):
//! the API answers 404 (not in the source), 409 (does not validate, with every problem) or 503 (the
//! source could not be read), the CLI exits 1 with the same text, and nothing is journaled, so a
//! target never follows a revision it cannot read. The endpoint checks before it locks the
//! pipeline (the check may fetch). Automatic promotions are not re-checked: they promote the
//! revision the upstream converged on; one that does not resolve for the downstream environment is
//! a rejected revision there, like any other.
//!
//! The `apply` command carries promoted state (`pass::carry_for_target`) before it shows the plan: the
//! carry can journal a restore as applied (`on_missing_savepoint: stateless`), which changes the
//! plan, and `apply` executes only the plan it showed (`expected_plan_id`).
//!
//! Hooks in `apply` (marked "Promotion"): `ApplyOptions::carried_savepoints` wins over the upstream's
//! own path for a `FromTarget` import; `pass::desired_for` reads the promoted revision for a
//! `promote_from` target (an error until something is promoted); `pass::run_pass` carries
//! (`pass::carry_for_target` → `carry_pending`) before it applies; `TargetContext::shared_emulator`
//! lets the upstream target be built beside.
//!
//! Hooks in `daemon`/`server` (marked "Promotion"): `hook.rs`'s `PromotionHook` is built in
//! `wiring::target_parts` over the daemon's journal and passed as `DaemonParts::promotion`. The worker
//! of a `promote_from` target swaps the source's head snapshot for `promoted_snapshot` before it
//! validates; after every pass of every target it hands `status::sample_of(status)` to `after_pass`;
//! `serve` installs the listener (a promotion fires the target's trigger and counts
//! `dli_gitops_promotions_total`) and a 5 s timer (`run_timer`). The apply adapter carries state
//! before an executing pass. The server adds `POST /api/v1/targets/{t}/promote`
//! (`promote_manually`), `GET /api/v1/pipeline` and the page section (`html::render_pipeline`).
//! A health sample counts as `Failed` only when a failing job carries a service error code (a
//! permanent error); other failures hold the gate without marking the revision.
//!
//! The journal is the only memory of promotions. Records (`kind: promotion`, `target` = the target
//! promoted to): `{from, to, revision, by, rule, ok, message}`. `by` is `auto`, `cli:<user>` or
//! `api:<name>` (API callers are prefixed, so none can pose as `auto`). `ok: true` is a promotion;
//! the target follows the revision of its latest `ok: true` record (`followed_revision`).
//! `ok: false` with `rule: upstream-failed` marks a revision Degraded or failed upstream — it is
//! never promoted there, automatically or by hand; other `ok: false` records are refused manual
//! requests (failed revision, closed window), kept for the audit trail.
//!
//! Gate order (`evaluate`): an upstream revision exists → not promoted here before (automatic
//! promotion happens at most once per revision, so a manual rollback sticks) → not marked failed →
//! upstream converged and Healthy on it (else Degraded/failed holds as failed) → for `after`
//! without a break → no open deny window, and inside an allow window if any exist → `auto`.
//! Manual promotions skip the timer and `auto`, not the failure mark or windows.
//!
//! Invariants:
//! * `gate.rs` does no I/O and reads no clock: `now` is a parameter, so every rule is unit-tested
//!   at chosen instants (cron windows included).
//! * The Healthy-since clock is in memory only. A restart restarts it: promotions can be delayed
//!   by a restart, never hastened. Failure marks are journaled, so they survive restarts.
//! * `promote` never writes a journal another process holds: it takes the state-directory lock or,
//!   when a daemon holds it, goes through the daemon's API.
//! * A carried savepoint lives at a path derived from its source (`carried-savepoints/<from>/<job>/
//!   <sha256(source)[..16]>/`); `_metadata` is copied last and its presence means the copy is complete,
//!   so a repeated carry copies nothing while the copy still matches the source (keys, sizes,
//!   `_metadata`, compared before reuse). The service names stop savepoint directories to the
//!   second, so a directory carried before can later hold a newer savepoint: that one is carried
//!   under the next name (`<digest>-1/`, ...), and a carried copy is never overwritten. Objects are
//!   copied whole through memory, one at a time.
//!
//! Why a promoted job is created from git and not carried as its genuine export. A promotion could
//! export the upstream job, copy the zip to the downstream account's OBS, import it there, update
//! the fields that differ per environment, import the savepoint and run. It is not built that way:
//! * the export is opaque (its layout is published nowhere), so the per-environment fields inside
//!   it (queue, OBS buckets and paths, SMN topic, anything an environment's variables or overrides
//!   change) can only be corrected by an update after the import: every field is written from git
//!   anyway, and between the import and the update the downstream job holds the upstream's values;
//! * the promoted revision of git already is the definition the downstream target must run, with
//!   its own variables and overrides applied, validated before anything is touched; the create and
//!   update calls write exactly that, with documented bodies;
//! * a cross-account import needs the downstream DLI to read a zip written by another account
//!   (an OBS grant or a copy), and an import of a job whose name exists resets it to draft and
//!   detaches its savepoint: more calls and more windows for state loss than one update;
//! * what a promotion must carry that git cannot is the state, and that is the savepoint, carried
//!   as above and imported with `import-savepoint` like every other stateful start.
//!
//! So promotion = the promoted revision of git through create/update + the carried savepoint.

pub mod gate;

pub use gate::{
    BY_AUTO, BadRevision, ChangeWindow, GateDecision, GateInputs, HoldReason, ManualAccepted,
    ManualRefusal, ManualRequest, PolicyError, PromotionHistory, PromotionPolicy, RULE_MANUAL,
    RULE_UPSTREAM_FAILED, UpstreamCondition, UpstreamSample, UpstreamTracker, WindowBlock,
    check_manual, evaluate, looks_like_revision, window_block,
};
pub mod manual;

pub use manual::{
    PromoteBody, PromoteOptions, PromoteReport, PromotionError, check_requested_revision,
    pipeline_target, promote_blocking, promote_command, promotion_record, record_manual_promotion,
};
pub mod carry;

pub use carry::{
    CarriedSavepoint, CarryEnds, CarryError, PendingCarry, carry_savepoint, pending_carries,
};
pub mod pipeline;

pub use pipeline::{
    GateView, Pipeline, PipelineView, PromotionCounters, PromotionEvent, Stage, StageView,
    followed_revision,
};
pub mod endpoint;

pub use endpoint::PromotionEndpoint;
pub mod restore;

pub use restore::{CarryTarget, RestoreError, apply_target_restore, carry_pending};
pub mod revision;

pub use revision::{PromotedRevisionError, RevisionCheckError, check_promotable, snapshot_at};

/// An error and its sources, `: `-joined, for callers that hand a single line to a person
/// (the crate's one chain printer, [`crate::error_chain::error_chain`]).
pub use crate::error_chain::error_chain as error_text;
pub mod hook;

pub use hook::{DEFAULT_TICK, HookError, PromotionHook, PromotionListener};
