//! The DataArts Factory (DLF) job export layouts, as DataArts documents them:
//!
//! ```text
//! single export:  jobs/<name>.job   scripts/<script>.script   resources/<resource>.resource
//! batch export:   jobs/<name>/<name>.job   jobs/<name>/<script>.script   resources/<r>.resource
//! ```
//!
//! A `.job` file holds the CreateJob body, a `.script` file the CreateScript body, a
//! `.resource` file the CreateResource body, all JSON. Reading accepts both layouts in one
//! archive. Scripts inside `jobs/<name>/` belong to that job; top-level scripts and resources go
//! to the only job when there is one, otherwise to every job whose definition mentions their
//! name.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{BundleError, ZipLimits, check_entry_name, read_zip_entries, write_zip};

/// DataArts import resource types (GoSDK dgc `model_job_resource_info.go`): what a job import's
/// resource replacement may name.
pub const RESOURCE_TYPES: &[&str] = &[
    "DWS_CONNECTION",
    "DIS_STREAM",
    "CDM_CLUSTER",
    "MRS_CLUSTER",
    "MRS_HIVE_CONNECTION",
    "MRS_SPARK_CONNECTION",
    "GES_GRAPH",
    "ROMA_INSTANCE",
    "TICS_INSTANCE",
    "DRS_TASK",
];

/// One DLF job with the scripts and resources it depends on, by name.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DlfJobEntry {
    pub name: String,
    /// The `.job` document.
    pub job: Value,
    pub scripts: BTreeMap<String, Value>,
    pub resources: BTreeMap<String, Value>,
}

/// Writes the single-export layout (`jobs/<name>.job`, `scripts/`, `resources/`) for any number
/// of jobs. A script or resource shared by two jobs must be identical.
pub fn write_dlf_zip(jobs: &[DlfJobEntry]) -> Result<Vec<u8>, BundleError> {
    if jobs.is_empty() {
        return Err(BundleError::Empty { what: "DLF jobs" });
    }
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut scripts: BTreeMap<&str, &Value> = BTreeMap::new();
    let mut resources: BTreeMap<&str, &Value> = BTreeMap::new();
    for job in jobs {
        check_entry_name(&job.name)?;
        let path = format!("jobs/{}.job", job.name);
        if files.iter().any(|(known, _)| *known == path) {
            return Err(BundleError::DuplicateName {
                what: "DLF jobs",
                name: job.name.clone(),
            });
        }
        files.push((path, to_json_bytes(&job.job)?));
        collect_shared("scripts", &job.scripts, &mut scripts)?;
        collect_shared("resources", &job.resources, &mut resources)?;
    }
    for (name, script) in scripts {
        files.push((format!("scripts/{name}.script"), to_json_bytes(script)?));
    }
    for (name, resource) in resources {
        files.push((
            format!("resources/{name}.resource"),
            to_json_bytes(resource)?,
        ));
    }
    write_zip(&files)
}

/// Writes the batch-export layout (`jobs/<name>/<name>.job` with the job's scripts beside it).
pub fn write_dlf_batch_zip(jobs: &[DlfJobEntry]) -> Result<Vec<u8>, BundleError> {
    if jobs.is_empty() {
        return Err(BundleError::Empty { what: "DLF jobs" });
    }
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut resources: BTreeMap<&str, &Value> = BTreeMap::new();
    for job in jobs {
        check_entry_name(&job.name)?;
        let path = format!("jobs/{0}/{0}.job", job.name);
        if files.iter().any(|(known, _)| *known == path) {
            return Err(BundleError::DuplicateName {
                what: "DLF jobs",
                name: job.name.clone(),
            });
        }
        files.push((path, to_json_bytes(&job.job)?));
        for (script_name, script) in &job.scripts {
            check_entry_name(script_name)?;
            files.push((
                format!("jobs/{}/{script_name}.script", job.name),
                to_json_bytes(script)?,
            ));
        }
        collect_shared("resources", &job.resources, &mut resources)?;
    }
    for (name, resource) in resources {
        files.push((
            format!("resources/{name}.resource"),
            to_json_bytes(resource)?,
        ));
    }
    write_zip(&files)
}

/// Reads the jobs of a DLF export zip in either layout, safely (see [`ZipLimits`]).
pub fn read_dlf_zip(bytes: &[u8], limits: &ZipLimits) -> Result<Vec<DlfJobEntry>, BundleError> {
    let entries = read_zip_entries(bytes, limits)?;
    let mut jobs: Vec<DlfJobEntry> = Vec::new();
    // (owning job folder, name, document)
    let mut scripts: Vec<(Option<String>, String, Value)> = Vec::new();
    let mut resources: Vec<(String, Value)> = Vec::new();
    for entry in &entries {
        let segments: Vec<&str> = entry.path.split('/').collect();
        let file_name = segments.last().copied().unwrap_or_default();
        let Some((stem, extension)) = file_name.rsplit_once('.') else {
            continue;
        };
        let extension = extension.to_ascii_lowercase();
        let expected = match extension.as_str() {
            "job" => "a DLF job document",
            "script" => "a DLF script document",
            "resource" => "a DLF resource document",
            _ => continue,
        };
        let document: Value =
            serde_json::from_slice(&entry.bytes).map_err(|error| BundleError::InvalidDocument {
                entry: entry.path.clone(),
                expected,
                reason: error.to_string(),
            })?;
        if !document.is_object() {
            return Err(BundleError::InvalidDocument {
                entry: entry.path.clone(),
                expected,
                reason: "expected a JSON object".to_string(),
            });
        }
        let name = document
            .get("name")
            .and_then(Value::as_str)
            .filter(|name| !name.is_empty())
            .unwrap_or(stem)
            .to_string();
        check_entry_name(&name)?;
        match extension.as_str() {
            "job" => {
                if jobs.iter().any(|job| job.name == name) {
                    return Err(BundleError::DuplicateName {
                        what: "DLF jobs",
                        name,
                    });
                }
                jobs.push(DlfJobEntry {
                    name,
                    job: document,
                    ..DlfJobEntry::default()
                });
            }
            "script" => {
                // jobs/<job>/<script>.script belongs to <job>.
                let owner = match segments.as_slice() {
                    ["jobs", owner, _] => Some(owner.to_string()),
                    _ => None,
                };
                scripts.push((owner, name, document));
            }
            _ => resources.push((name, document)),
        }
    }
    if jobs.is_empty() {
        return Err(BundleError::Empty {
            what: "DLF job documents (jobs/<name>.job)",
        });
    }
    let single = jobs.len() == 1;
    for (owner, name, document) in scripts {
        for job in jobs.iter_mut() {
            let belongs = match &owner {
                Some(owner) => *owner == job.name,
                None => single || mentions(&job.job, &name),
            };
            if belongs {
                job.scripts.insert(name.clone(), document.clone());
            }
        }
    }
    for (name, document) in resources {
        for job in jobs.iter_mut() {
            if single || mentions(&job.job, &name) {
                job.resources.insert(name.clone(), document.clone());
            }
        }
    }
    Ok(jobs)
}

fn to_json_bytes(value: &Value) -> Result<Vec<u8>, BundleError> {
    serde_json::to_vec_pretty(value).map_err(|error| BundleError::Write {
        reason: error.to_string(),
    })
}

fn collect_shared<'a>(
    what: &'static str,
    from: &'a BTreeMap<String, Value>,
    into: &mut BTreeMap<&'a str, &'a Value>,
) -> Result<(), BundleError> {
    for (name, document) in from {
        check_entry_name(name)?;
        match into.get(name.as_str()) {
            Some(known) if *known != document => {
                return Err(BundleError::DuplicateName {
                    what,
                    name: name.clone(),
                });
            }
            _ => {
                into.insert(name, document);
            }
        }
    }
    Ok(())
}

/// Whether any string inside `value` equals `name`.
fn mentions(value: &Value, name: &str) -> bool {
    match value {
        Value::String(text) => text == name,
        Value::Array(items) => items.iter().any(|item| mentions(item, name)),
        Value::Object(object) => object.values().any(|item| mentions(item, name)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(name: &str, script: &str) -> DlfJobEntry {
        DlfJobEntry {
            name: name.into(),
            job: json!({
                "name": name,
                "processType": "BATCH",
                "nodes": [{"name": "n1", "type": "DWSSQL",
                           "properties": [{"name": "scriptName", "value": script}]}],
                "schedule": {"type": "EXECUTE_ONCE"}
            }),
            scripts: BTreeMap::from([(
                script.to_string(),
                json!({"name": script, "type": "DWSSQL", "content": "select 1"}),
            )]),
            resources: BTreeMap::new(),
        }
    }

    #[test]
    fn single_layout_round_trips() {
        let mut one = job("nightly", "load_sql");
        one.resources
            .insert("udf".into(), json!({"name": "udf", "type": "jar"}));
        let bytes = write_dlf_zip(std::slice::from_ref(&one)).unwrap();
        let entries = read_zip_entries(&bytes, &ZipLimits::default()).unwrap();
        let paths: Vec<_> = entries.iter().map(|entry| entry.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "jobs/nightly.job",
                "scripts/load_sql.script",
                "resources/udf.resource"
            ]
        );
        assert_eq!(
            read_dlf_zip(&bytes, &ZipLimits::default()).unwrap(),
            vec![one]
        );
    }

    #[test]
    fn batch_layout_round_trips_and_assigns_scripts_by_folder() {
        let jobs = vec![job("a", "script_a"), job("b", "script_b")];
        let bytes = write_dlf_batch_zip(&jobs).unwrap();
        let entries = read_zip_entries(&bytes, &ZipLimits::default()).unwrap();
        assert!(entries.iter().any(|entry| entry.path == "jobs/a/a.job"));
        assert!(
            entries
                .iter()
                .any(|entry| entry.path == "jobs/b/script_b.script")
        );
        assert_eq!(read_dlf_zip(&bytes, &ZipLimits::default()).unwrap(), jobs);
    }

    #[test]
    fn shared_top_level_scripts_go_to_the_jobs_that_mention_them() {
        let jobs = vec![job("a", "script_a"), job("b", "script_b")];
        let bytes = write_dlf_zip(&jobs).unwrap();
        let read = read_dlf_zip(&bytes, &ZipLimits::default()).unwrap();
        assert_eq!(read, jobs);
    }

    #[test]
    fn conflicts_and_bad_documents_are_refused() {
        let mut other = job("b", "script_a");
        other.scripts.insert(
            "script_a".into(),
            json!({"name": "script_a", "content": "other"}),
        );
        assert!(matches!(
            write_dlf_zip(&[job("a", "script_a"), other]),
            Err(BundleError::DuplicateName {
                what: "scripts",
                ..
            })
        ));
        let bytes = write_zip(&[("jobs/x.job".into(), b"[1]".to_vec())]).unwrap();
        assert!(matches!(
            read_dlf_zip(&bytes, &ZipLimits::default()),
            Err(BundleError::InvalidDocument { .. })
        ));
        let bytes = write_zip(&[("scripts/x.script".into(), b"{}".to_vec())]).unwrap();
        assert!(matches!(
            read_dlf_zip(&bytes, &ZipLimits::default()),
            Err(BundleError::Empty { .. })
        ));
        assert!(matches!(
            write_dlf_zip(&[job("..", "s")]),
            Err(BundleError::InvalidName { .. })
        ));
    }
}
