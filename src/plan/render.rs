//! The plan for people: a Terraform-like text with field diffs, steps and savepoints.

use std::fmt::Write;

use similar::TextDiff;

use super::flink::describe_source;
use super::{ActionClass, JobAction, Plan, SavepointSource, Step};
use crate::model::{FieldDiff, JobKind};

/// How far the ids are shortened in headings (the JSON keeps them whole).
const SHORT_ID_LENGTH: usize = 12;

pub(super) fn render_text(plan: &Plan) -> String {
    let mut out = String::new();
    let short_id: String = plan.id.chars().take(SHORT_ID_LENGTH).collect();
    let settling: Vec<String> = plan
        .actions
        .iter()
        .filter_map(|action| {
            let status = action.settling.as_deref()?;
            Some(format!("{} ({status})", action.name))
        })
        .collect();
    if plan.is_empty() && settling.is_empty() {
        let _ = writeln!(out, "Plan {short_id}: no changes. The live jobs match git.");
    } else if plan.is_empty() {
        let _ = writeln!(
            out,
            "Plan {short_id}: no changes to make, but not settled yet: waiting for {} to reach what git wants.",
            settling.join(", ")
        );
    } else {
        let _ = writeln!(
            out,
            "Plan {short_id}: dli-gitops will perform these actions."
        );
        for action in plan.changes() {
            out.push('\n');
            render_action(&mut out, action);
        }
        let order = plan.order();
        if !order.is_empty() {
            // `depends_on`: the groups run one after the other; the jobs of a group together.
            out.push_str("\nOrder (depends_on):\n");
            for (number, group) in order.iter().enumerate() {
                let _ = writeln!(out, "  {}. {}", number + 1, group.join(", "));
            }
        }
    }
    if !plan.warnings.is_empty() {
        out.push_str("\nWarnings:\n");
        for warning in &plan.warnings {
            let _ = writeln!(out, "  ! {warning}");
        }
    }
    let summary = plan.summary();
    let _ = write!(
        out,
        "\nPlan: {} to create, {} to update, {} to upgrade, {} to restore, {} to start, {} to stop, {} to prune",
        summary.create,
        summary.update,
        summary.upgrade,
        summary.restore,
        summary.start,
        summary.stop,
        summary.prune
    );
    if summary.waiting > 0 {
        let _ = write!(out, "; {} waiting for a job to settle", summary.waiting);
    }
    if summary.held > 0 {
        let _ = write!(out, "; {} on hold", summary.held);
    }
    out.push_str(".\n");
    out
}

fn render_action(out: &mut String, action: &JobAction) {
    let _ = write!(
        out,
        "{} {} {} {}",
        action.class.symbol(),
        action.class.as_str(),
        action.kind,
        action.name
    );
    if let Some(id) = action.live_id {
        let _ = write!(out, " (id {id})");
    }
    if action.is_waiting() {
        out.push_str(" [waiting]");
    }
    if action.is_held() {
        out.push_str(" [on hold]");
    }
    out.push('\n');
    let _ = writeln!(out, "    reason: {}", action.reason);
    if let Some(effect) = action.state_effect {
        let _ = writeln!(out, "    state: {}", effect.as_str());
    }
    if let Some(why) = &action.on_hold {
        let _ = writeln!(out, "    on hold: {why}");
    }
    if !action.after.is_empty() {
        let _ = writeln!(out, "    after: {}", action.after.join(", "));
    }
    if let Some(drift) = &action.drift {
        let _ = writeln!(
            out,
            "    drift: {} ({})",
            drift.fields.join(", "),
            drift.mode.as_str()
        );
    }
    if !action.ignored.is_empty() {
        let _ = writeln!(
            out,
            "    ignored (ignore_differences): {}",
            action.ignored.join(", ")
        );
    }
    for diff in &action.diffs {
        render_diff(out, action.class, diff);
    }
    if let Some(line) = savepoint_line(action).filter(|_| action.kind != JobKind::Dlf) {
        let _ = writeln!(out, "    savepoint: {line}");
    }
    if !action.steps.is_empty() {
        out.push_str("    steps:\n");
        for (number, step) in action.steps.iter().enumerate() {
            let text = match (action.kind, step) {
                (JobKind::Dlf, Step::Stop { .. }) => "stop the job's schedule".to_string(),
                (JobKind::Dlf, Step::Start { .. }) => "start the job's schedule".to_string(),
                _ => describe_step(step),
            };
            let _ = writeln!(out, "      {}. {}", number + 1, text);
        }
    }
}

fn render_diff(out: &mut String, class: ActionClass, diff: &FieldDiff) {
    let creating = class == ActionClass::Create;
    let live_text = multiline_text(&diff.live);
    let desired_text = multiline_text(&diff.desired);
    if live_text.is_some() || desired_text.is_some() {
        let _ = writeln!(out, "    {}:", diff.field);
        let old = live_text.unwrap_or_else(|| single_line_as_text(&diff.live));
        let new = desired_text.unwrap_or_else(|| single_line_as_text(&diff.desired));
        let unified = TextDiff::from_lines(old.as_str(), new.as_str())
            .unified_diff()
            .context_radius(3)
            .to_string();
        for line in unified.lines() {
            let _ = writeln!(out, "      {line}");
        }
        return;
    }
    if creating {
        let _ = writeln!(out, "    {} = {}", diff.field, value_text(&diff.desired));
    } else {
        let _ = writeln!(
            out,
            "    {}: {} → {}",
            diff.field,
            value_text(&diff.live),
            value_text(&diff.desired)
        );
    }
}

/// Long text (SQL bodies, DLF definitions) is shown as a line diff rather than inline.
fn multiline_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(text) if text.contains('\n') => Some(with_final_newline(text)),
        serde_json::Value::Object(map) if !map.is_empty() && map.values().any(is_structured) => {
            serde_json::to_string_pretty(value)
                .ok()
                .map(|text| with_final_newline(&text))
        }
        _ => None,
    }
}

fn is_structured(value: &serde_json::Value) -> bool {
    matches!(
        value,
        serde_json::Value::Object(_) | serde_json::Value::Array(_)
    )
}

/// The other side of a line diff when it is short: nothing when unset.
fn single_line_as_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(text) => with_final_newline(text),
        other => with_final_newline(&serde_json::to_string_pretty(other).unwrap_or_default()),
    }
}

fn with_final_newline(text: &str) -> String {
    if text.is_empty() || text.ends_with('\n') {
        text.to_string()
    } else {
        format!("{text}\n")
    }
}

fn value_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => "(unset)".to_string(),
        other => other.to_string(),
    }
}

fn savepoint_line(action: &JobAction) -> Option<String> {
    let imported = action.steps.iter().find_map(|step| match step {
        Step::ImportSavepoint { source } => Some(source),
        _ => None,
    });
    let starts = action
        .steps
        .iter()
        .any(|step| matches!(step, Step::Start { .. }));
    match (&action.resume_from, imported, starts) {
        (Some(source), _, true) => Some(format!("resumes from {}", describe_source(source))),
        (None, _, true) => Some("none, the job starts from empty state".to_string()),
        (_, Some(source), false) => Some(format!(
            "imports {}; the job stays stopped",
            describe_source(source)
        )),
        _ => None,
    }
}

fn describe_step(step: &Step) -> String {
    match step {
        Step::WaitSteady => "wait until the live job settles, then end this pass".to_string(),
        Step::Backup => "export the live job to the backup prefix".to_string(),
        Step::Stop {
            trigger_savepoint: true,
        } => "stop with a savepoint".to_string(),
        Step::Stop {
            trigger_savepoint: false,
        } => "stop without a savepoint".to_string(),
        Step::CreateJob => "create the job".to_string(),
        Step::UpdateJob => "update the job".to_string(),
        Step::UpdateTags { set, remove } => {
            let mut parts = Vec::new();
            if !set.is_empty() {
                let pairs: Vec<String> = set
                    .iter()
                    .map(|(key, value)| format!("{key}={value}"))
                    .collect();
                parts.push(format!("set {}", pairs.join(", ")));
            }
            if !remove.is_empty() {
                parts.push(format!("remove {}", remove.join(", ")));
            }
            format!("tags: {}", parts.join("; "))
        }
        Step::ImportSavepoint { source } => format!(
            "import {}",
            match source {
                SavepointSource::FromStop => "the savepoint taken at stop".to_string(),
                other => describe_source(other),
            }
        ),
        Step::Start {
            resume_savepoint: true,
        } => "start, resuming from the savepoint".to_string(),
        Step::Start {
            resume_savepoint: false,
        } => "start from empty state".to_string(),
        Step::Delete => "delete the live job".to_string(),
        Step::DlfImport => {
            "import the DLF bundle (sameNamePolicy OVERWRITE) and wait for its task".to_string()
        }
    }
}
