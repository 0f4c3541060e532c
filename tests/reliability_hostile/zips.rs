//! Hostile zips against the emulator's import endpoint: refused, and nothing changes.

use super::*;

const STAGING_BUCKET: &str = "dli-gitops-staging";

fn emulator_client(handle: &EmulatorHandle) -> DliClient {
    let credentials = Credentials::AkSk {
        access_key: DEV_ACCESS_KEY.into(),
        secret_key: Secret::new(DEV_SECRET_KEY),
        security_token: None,
    };
    let options = ClientOptions {
        requests_per_second: 0.0,
        retry: RetryPolicy {
            max_attempts: 2,
            base_backoff: Duration::from_millis(2),
            max_backoff: Duration::from_millis(5),
            max_retry_after: Duration::from_secs(1),
        },
        ..ClientOptions::default()
    };
    DliClient::new(
        Url::parse(&handle.dli_url()).expect("emulator url"),
        DEV_PROJECT_ID,
        credentials,
        options,
    )
    .expect("client")
}

fn put_object(handle: &EmulatorHandle, key: &str, bytes: &[u8]) {
    let path = handle.data_dir().join("obs").join(STAGING_BUCKET).join(key);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("object directory");
    std::fs::write(path, bytes).expect("write object");
}

fn sql_config() -> FlinkJobConfig {
    let mut config = FlinkJobConfig::defaults_for(JobKind::FlinkSql);
    config.queue_name = Some("q1".into());
    config.sql_body = Some("SELECT 1;".into());
    config
}

/// The entries of a genuine export (made once per test run by `export_entries`), to which a
/// case adds its hostile entries: the emulator, like DLI, imports only what it exported.
static GENUINE_EXPORT: std::sync::OnceLock<Vec<(String, Vec<u8>)>> = std::sync::OnceLock::new();

/// Exports a job named "smuggled" from the emulator, keeps its zip's entries and deletes the
/// job again, so that an import of those entries alone would create it.
async fn export_entries(client: &DliClient, handle: &EmulatorHandle) {
    let job_id = client
        .create_sql_job("smuggled", &sql_config())
        .await
        .expect("create the job to export");
    let zips = client
        .export_jobs(&format!("obs://{STAGING_BUCKET}/genuine/"), Some(&[job_id]))
        .await
        .expect("export");
    let bytes = std::fs::read(handle.data_dir().join("obs").join(&zips[0])).expect("read export");
    client
        .delete_job(job_id)
        .await
        .expect("delete the exported job");
    let entries = bundle::read_zip_entries(&bytes, &ZipLimits::default())
        .expect("read back")
        .into_iter()
        .map(|entry| (entry.path, entry.bytes))
        .collect();
    let _ = GENUINE_EXPORT.set(entries);
}

/// The entries of a valid (genuinely exported) bundle.
fn valid_entries(_names: &[&str]) -> Vec<(String, Vec<u8>)> {
    GENUINE_EXPORT
        .get()
        .expect("export_entries ran first")
        .clone()
}

fn build_zip(entries: &[HostileEntry]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for entry in entries {
        match entry {
            HostileEntry::File(name, bytes, packing) => {
                let method = match packing {
                    Packing::Stored => zip::CompressionMethod::Stored,
                    Packing::Deflated => zip::CompressionMethod::Deflated,
                };
                let options = zip::write::SimpleFileOptions::default()
                    .compression_method(method)
                    .large_file(bytes.len() > u32::MAX as usize);
                writer
                    .start_file(name.as_str(), options)
                    .expect("start entry");
                writer.write_all(bytes).expect("write entry");
            }
            HostileEntry::Symlink(name, target) => {
                writer
                    .add_symlink(
                        name.as_str(),
                        target.as_str(),
                        zip::write::SimpleFileOptions::default(),
                    )
                    .expect("symlink entry");
            }
        }
    }
    writer.finish().expect("finish zip").into_inner()
}

/// A valid bundle for `names` plus `extra` entries.
fn bundle_with(names: &[&str], extra: Vec<HostileEntry>) -> Vec<u8> {
    let mut entries: Vec<HostileEntry> = valid_entries(names)
        .into_iter()
        .map(|(path, bytes)| HostileEntry::File(path, bytes, Packing::Deflated))
        .collect();
    entries.extend(extra);
    build_zip(&entries)
}

/// Every hostile zip (each also carrying a valid job, "smuggled-N"), for the DLI import and for
/// the DLF import, is refused with a client error; nothing is imported, not even the valid job beside the hostile entry; the existing
/// job is untouched; no file appears outside the emulator's data directory; the service keeps
/// serving.
#[tokio::test]
async fn hostile_zips_are_refused_by_the_import_endpoint_and_change_nothing() {
    let temp = tempfile::tempdir().expect("temp dir");
    let data_dir = temp.path().join("data");
    let handle = Emulator::start(EmulatorConfig::for_tests(data_dir.clone()))
        .await
        .expect("emulator starts");
    let client = emulator_client(&handle);

    export_entries(&client, &handle).await;
    let keeper_id = client
        .create_sql_job("keeper", &sql_config())
        .await
        .expect("create the keeper");
    let before = client
        .list_jobs(&ListJobsQuery::default())
        .await
        .expect("list");
    let keeper_before = client.job_detail(keeper_id).await.expect("keeper detail");

    let zeros = |bytes: usize| vec![0u8; bytes];
    let limits = ZipLimits::default();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "path traversal",
            bundle_with(
                &["smuggled-1"],
                vec![file(
                    "jobs/../../../../evil-traversal.json",
                    b"{}".to_vec(),
                    Packing::Stored,
                )],
            ),
        ),
        (
            "backslash traversal",
            bundle_with(
                &["smuggled-2"],
                vec![file(
                    "jobs\\..\\..\\evil-backslash.json",
                    b"{}".to_vec(),
                    Packing::Stored,
                )],
            ),
        ),
        (
            "absolute path",
            bundle_with(
                &["smuggled-3"],
                vec![file(
                    "/tmp/evil-absolute.json",
                    b"{}".to_vec(),
                    Packing::Stored,
                )],
            ),
        ),
        (
            "drive letter",
            bundle_with(
                &["smuggled-4"],
                vec![file("C:/evil-drive.json", b"{}".to_vec(), Packing::Stored)],
            ),
        ),
        (
            "symlink entry",
            bundle_with(
                &["smuggled-5"],
                vec![HostileEntry::Symlink(
                    "jobs/link.json".into(),
                    "/etc/passwd".into(),
                )],
            ),
        ),
        (
            "zip bomb by ratio (4 MiB of zeros, deflated)",
            bundle_with(
                &["smuggled-6"],
                vec![file("jobs/bomb.json", zeros(4 << 20), Packing::Deflated)],
            ),
        ),
        (
            "zip bomb by size (one entry over the per-entry limit)",
            bundle_with(
                &["smuggled-7"],
                vec![file(
                    "jobs/big.json",
                    // Low-entropy text, below the ratio limit, above the entry limit.
                    (0..limits.max_entry_bytes + 4096)
                        .map(|i| {
                            b"0123456789abcdef"[((i * 7919) % 16) as usize] ^ ((i >> 12) as u8 & 1)
                        })
                        .collect(),
                    Packing::Deflated,
                )],
            ),
        ),
        (
            "thousands of entries",
            bundle_with(
                &["smuggled-8"],
                (0..limits.max_entries + 500)
                    .map(|index| {
                        file(
                            &format!("extra/{index}.txt"),
                            b"x".to_vec(),
                            Packing::Stored,
                        )
                    })
                    .collect(),
            ),
        ),
        (
            "duplicate entry (the same path spelled `./` and with `\\`)",
            bundle_with(
                &["smuggled-9"],
                valid_entries(&["smuggled-9"])
                    .into_iter()
                    .flat_map(|(path, bytes)| {
                        let mut spellings =
                            vec![file(&format!("./{path}"), bytes.clone(), Packing::Stored)];
                        if path.contains('/') {
                            spellings.push(file(&path.replace('/', "\\"), bytes, Packing::Stored));
                        }
                        spellings
                    })
                    .collect(),
            ),
        ),
        ("truncated archive", {
            let whole = bundle_with(&["smuggled-10"], vec![]);
            whole[..whole.len() / 2].to_vec()
        }),
        (
            "not a zip at all",
            b"PK\x03\x04 this is not really a zip".to_vec(),
        ),
        ("empty object", Vec::new()),
    ];

    let mut failures = Vec::new();
    for (index, (name, bytes)) in cases.iter().enumerate() {
        let key = format!("hostile/case-{index}.zip");
        put_object(&handle, &key, bytes);
        match client
            .import_jobs(&format!("{STAGING_BUCKET}/{key}"), true)
            .await
        {
            Ok(mapping) => failures.push(format!("{name}: imported {mapping:?}")),
            Err(error) => {
                let status = error.status();
                if !status.is_some_and(|status| (400..500).contains(&status)) {
                    failures.push(format!("{name}: not a client error: {error}"));
                }
                if error.is_retryable() {
                    failures.push(format!("{name}: refused as retryable: {error}"));
                }
            }
        }
    }

    // A folder import where one zip is fine and the next is hostile: all or nothing.
    put_object(
        &handle,
        "folder/a-good.zip",
        &bundle_with(&["smuggled-11"], vec![]),
    );
    put_object(&handle, "folder/b-bad.zip", &cases[0].1);
    if let Ok(mapping) = client
        .import_jobs(&format!("{STAGING_BUCKET}/folder"), true)
        .await
    {
        failures.push(format!("folder with one hostile zip: imported {mapping:?}"));
    }

    // The same attacks on a DataArts Factory bundle, through the DLF import.
    let dlf = dli_gitops::cloud::DlfClient::new(
        Url::parse(&handle.dlf_url()).expect("dlf url"),
        DEV_PROJECT_ID,
        Credentials::AkSk {
            access_key: DEV_ACCESS_KEY.into(),
            secret_key: Secret::new(DEV_SECRET_KEY),
            security_token: None,
        },
        ClientOptions {
            requests_per_second: 0.0,
            ..ClientOptions::default()
        },
        None,
    )
    .expect("dlf client");
    let dlf_valid: Vec<HostileEntry> = {
        let job = dli_gitops::bundle::DlfJobEntry {
            name: "smuggled-dlf".into(),
            job: serde_json::json!({"name": "smuggled-dlf", "processType": "BATCH", "nodes": []}),
            scripts: Default::default(),
            resources: Default::default(),
        };
        let zip = bundle::write_dlf_zip(&[job]).expect("dlf bundle");
        bundle::read_zip_entries(&zip, &ZipLimits::default())
            .expect("read back")
            .into_iter()
            .map(|entry| file(&entry.path, entry.bytes, Packing::Deflated))
            .collect()
    };
    let dlf_cases: Vec<(&str, Vec<HostileEntry>)> = vec![
        (
            "dlf path traversal",
            vec![file(
                "jobs/../../evil-dlf.job",
                b"{}".to_vec(),
                Packing::Stored,
            )],
        ),
        (
            "dlf absolute path",
            vec![file(
                "/tmp/evil-dlf-absolute.job",
                b"{}".to_vec(),
                Packing::Stored,
            )],
        ),
        (
            "dlf symlink",
            vec![HostileEntry::Symlink(
                "scripts/evil.script".into(),
                "/etc/shadow".into(),
            )],
        ),
        (
            "dlf ratio bomb",
            vec![file(
                "scripts/bomb.script",
                zeros(4 << 20),
                Packing::Deflated,
            )],
        ),
        (
            "dlf thousands of entries",
            (0..limits.max_entries + 10)
                .map(|index| {
                    file(
                        &format!("resources/{index}.res"),
                        b"x".to_vec(),
                        Packing::Stored,
                    )
                })
                .collect(),
        ),
    ];
    for (index, (name, extra)) in dlf_cases.into_iter().enumerate() {
        let mut entries: Vec<HostileEntry> = dlf_valid
            .iter()
            .map(|entry| match entry {
                HostileEntry::File(path, bytes, packing) => {
                    HostileEntry::File(path.clone(), bytes.clone(), *packing)
                }
                HostileEntry::Symlink(path, target) => {
                    HostileEntry::Symlink(path.clone(), target.clone())
                }
            })
            .collect();
        entries.extend(extra);
        let key = format!("hostile/dlf-{index}.zip");
        put_object(&handle, &key, &build_zip(&entries));
        let request = dli_gitops::cloud::DlfImportRequest {
            path: format!("obs://{STAGING_BUCKET}/{key}"),
            same_name_policy: "OVERWRITE".into(),
            jobs_params: Vec::new(),
            settings: Default::default(),
        };
        match dlf.import_jobs(&request).await {
            Ok(task) => {
                // Accepted for processing: the task itself must fail and import nothing.
                if let Ok(done) = dlf.wait_system_task(&task, Duration::from_secs(30)).await {
                    failures.push(format!("{name}: import task {task} ended {done:?}"));
                }
            }
            Err(error) => {
                if !error
                    .status()
                    .is_some_and(|status| (400..500).contains(&status))
                    || error.is_retryable()
                {
                    failures.push(format!("{name}: not a permanent client error: {error}"));
                }
            }
        }
    }
    let dlf_jobs = dlf
        .list_jobs(&dli_gitops::cloud::DlfListJobsQuery::default())
        .await
        .expect("dlf list");
    if !dlf_jobs.is_empty() {
        failures.push(format!("DLF jobs were imported: {dlf_jobs:?}"));
    }

    let after = client
        .list_jobs(&ListJobsQuery::default())
        .await
        .expect("the emulator still serves");
    let names = |jobs: &[dli_gitops::cloud::ListedFlinkJob]| {
        jobs.iter().map(|job| job.name.clone()).collect::<Vec<_>>()
    };
    if names(&after) != names(&before) {
        failures.push(format!(
            "jobs changed: before {:?}, after {:?}",
            names(&before),
            names(&after)
        ));
    }
    let keeper_after = client.job_detail(keeper_id).await.expect("keeper detail");
    if keeper_after != keeper_before {
        failures.push("the existing job changed".to_string());
    }
    let mut escaped = Vec::new();
    find_files_named_evil(temp.path(), &mut escaped);
    if !escaped.is_empty() {
        failures.push(format!("files written by hostile entries: {escaped:?}"));
    }
    for path in ["/tmp/evil-absolute.json", "/evil-traversal.json"] {
        if std::path::Path::new(path).exists() {
            failures.push(format!("{path} exists"));
        }
    }
    handle.shutdown().await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn find_files_named_evil(directory: &std::path::Path, found: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(directory) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            find_files_named_evil(&path, found);
        } else if entry.file_name().to_string_lossy().starts_with("evil") {
            found.push(path);
        }
    }
}
