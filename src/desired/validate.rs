//! `dli-gitops validate`: resolve a repository for one environment, or for every environment
//! it defines, and report the problems as text or JSON.

use serde::Serialize;

use super::diagnostics::{Diagnostic, Diagnostics};
use super::resolve::{environments, resolve};
use super::snapshot::RepoSnapshot;

/// The result of validating one environment (`None`: the base files with no environment).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EnvironmentResult {
    pub environment: Option<String>,
    pub flink_jobs: usize,
    pub dlf_jobs: usize,
    pub diagnostics: Diagnostics,
}

/// The result of `validate`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValidationReport {
    pub revision: String,
    pub results: Vec<EnvironmentResult>,
}

/// Validates `environment`, or, when `None`, every environment under `environments/` (the base
/// files alone when there is none: a repository with environments uses variables the base
/// cannot fill).
pub fn validate(snapshot: &RepoSnapshot, environment: Option<&str>) -> ValidationReport {
    let targets: Vec<Option<String>> = match environment {
        Some(name) => vec![Some(name.to_string())],
        None => {
            let found = environments(snapshot);
            if found.is_empty() {
                vec![None]
            } else {
                found.into_iter().map(Some).collect()
            }
        }
    };
    let results = targets
        .into_iter()
        .map(
            |environment| match resolve(snapshot, environment.as_deref()) {
                Ok(desired) => EnvironmentResult {
                    environment,
                    flink_jobs: desired.flink.len(),
                    dlf_jobs: desired.dlf.len(),
                    diagnostics: Diagnostics::default(),
                },
                Err(diagnostics) => EnvironmentResult {
                    environment,
                    flink_jobs: 0,
                    dlf_jobs: 0,
                    diagnostics,
                },
            },
        )
        .collect();
    ValidationReport {
        revision: snapshot.revision.clone(),
        results,
    }
}

impl ValidationReport {
    pub fn is_clean(&self) -> bool {
        self.results
            .iter()
            .all(|result| result.diagnostics.is_empty())
    }

    /// Each distinct problem once, with the environments it occurs in, in file order.
    pub fn distinct_problems(&self) -> Vec<(&Diagnostic, Vec<&str>)> {
        let mut problems: Vec<(&Diagnostic, Vec<&str>)> = Vec::new();
        for result in &self.results {
            let name = result.environment.as_deref().unwrap_or("(none)");
            for diagnostic in result.diagnostics.iter() {
                match problems.iter_mut().find(|(seen, _)| *seen == diagnostic) {
                    Some((_, environments)) => environments.push(name),
                    None => problems.push((diagnostic, vec![name])),
                }
            }
        }
        problems.sort_by(|left, right| left.0.cmp(right.0));
        problems
    }

    /// Problems, then a summary line.
    pub fn render_text(&self) -> String {
        // Data from git or the service is escaped for the terminal (control, bidi).

        crate::terminal::escape(&self.render_text_unescaped()).into_owned()
    }

    fn render_text_unescaped(&self) -> String {
        let mut out = String::new();
        let all = self.results.len();
        for (diagnostic, environments) in self.distinct_problems() {
            out.push_str(&diagnostic.to_string());
            out.push('\n');
            if all > 1 && environments.len() < all {
                out.push_str(&format!(
                    "    only in environment {}\n",
                    environments.join(", ")
                ));
            }
        }
        out.push_str(&self.summary());
        out.push('\n');
        out
    }

    /// One line: what was checked and the verdict.
    pub fn summary(&self) -> String {
        let names: Vec<&str> = self
            .results
            .iter()
            .filter_map(|result| result.environment.as_deref())
            .collect();
        let scope = if names.is_empty() {
            "base files, no environment".to_string()
        } else if names.len() == 1 {
            format!("environment {}", names[0])
        } else {
            format!("environments {}", names.join(", "))
        };
        if self.is_clean() {
            let flink = self.results.iter().map(|r| r.flink_jobs).max().unwrap_or(0);
            let dlf = self.results.iter().map(|r| r.dlf_jobs).max().unwrap_or(0);
            format!(
                "ok: {flink} Flink {} and {dlf} DLF {} valid ({scope})",
                plural(flink, "job", "jobs"),
                plural(dlf, "job", "jobs"),
            )
        } else {
            let count = self.distinct_problems().len();
            format!(
                "{count} {} ({scope}); nothing was loaded",
                plural(count, "problem", "problems")
            )
        }
    }

    /// `{ok, revision, problems, results: [{environment, flink_jobs, dlf_jobs, diagnostics}]}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "ok": self.is_clean(),
            "revision": self.revision,
            "problems": self.distinct_problems().len(),
            "summary": self.summary(),
            "results": self.results,
        })
    }
}

fn plural<'a>(count: usize, one: &'a str, many: &'a str) -> &'a str {
    if count == 1 { one } else { many }
}
