//! Integration tests of the state journal through its public API and the `journal` CLI:
//! recovery from damage, compaction, the lock, a full disk, and SIGKILL crashes of a child
//! process (the child is this test binary re-run with an environment variable).

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier, mpsc};
use std::time::Duration;

use dli_gitops::journal::{
    Backup, Effects, Intent, Journal, JournalError, JournalOptions, JournalState, Observed,
    Outcome, Promotion, Record, RecordBody, RecordFilter, RecordedError, RevisionApplied, verify,
};
use proptest::prelude::*;
use rand::Rng;
use serde_json::{Map, json};

const CHILD_DIR_ENV: &str = "DLI_GITOPS_JOURNAL_TEST_CHILD_DIR";
const CHILD_FSIZE_ENV: &str = "DLI_GITOPS_JOURNAL_TEST_CHILD_FSIZE";

fn intent(action_id: &str, job: &str) -> RecordBody {
    RecordBody::Intent(Intent {
        action_id: action_id.into(),
        job: job.into(),
        action: "upgrade".into(),
        plan_id: Some("plan-1".into()),
        detail: json!({"savepoint_dir": format!("obs://ckpt/{job}/")}),
        extra: Map::new(),
    })
}

fn outcome(action_id: &str, job: &str, ok: bool) -> RecordBody {
    RecordBody::Outcome(Outcome {
        action_id: action_id.into(),
        job: job.into(),
        ok,
        error: (!ok).then(|| RecordedError {
            code: Some("DLI.0005".into()),
            message: "queue busy".into(),
            request_id: Some("req-1".into()),
            extra: Map::new(),
        }),
        effects: Effects {
            live_id: ok.then(|| "4711".to_string()),
            savepoint_path: ok.then(|| format!("obs://ckpt/{job}/sp-1")),
            spec_digest: Some("digest-1".into()),
            managed: Some(true),
            ..Effects::default()
        },
        plan_id: None,
        extra: Map::new(),
    })
}

fn options() -> JournalOptions {
    JournalOptions {
        compact_after_records: u64::MAX,
        compact_after_bytes: u64::MAX,
        ..JournalOptions::default()
    }
}

fn open(dir: &Path) -> Journal {
    Journal::open(dir, options()).expect("open the journal").0
}

fn all_records(dir: &Path) -> Vec<Record> {
    dli_gitops::journal::read_records(dir, &RecordFilter::default()).expect("read records")
}

fn fold(records: &[Record]) -> JournalState {
    let mut state = JournalState::default();
    for record in records {
        state.apply(record);
    }
    state
}

fn journal_path(dir: &Path) -> PathBuf {
    dir.join(dli_gitops::journal::JOURNAL_FILE)
}

fn child_options() -> JournalOptions {
    JournalOptions {
        // Small, so kills also land inside compactions.
        compact_after_records: 40,
        archive_segments_kept: 100_000,
        ..JournalOptions::default()
    }
}

/// The child's work: 4 threads append intents and outcomes, acknowledging each on stdout.
/// Without the environment variable it runs a bounded round in-process and checks it.
#[test]
fn crash_writer_child() {
    let Some(state_dir) = std::env::var_os(CHILD_DIR_ENV).map(PathBuf::from) else {
        let dir = tempfile::tempdir().unwrap();
        let acknowledged = write_until(dir.path(), child_options(), Some(120), |_| {});
        assert_eq!(acknowledged, 120);
        let (journal, report) = Journal::open(dir.path(), child_options()).unwrap();
        assert_eq!(report.last_seq, 120);
        assert_eq!(journal.state(), fold(&all_records(dir.path())));
        return;
    };
    let mut options = child_options();
    if let Some(limit) = std::env::var_os(CHILD_FSIZE_ENV) {
        let limit: u64 = limit.to_str().unwrap().parse().unwrap();
        options.compact_after_records = u64::MAX;
        options.compact_after_bytes = u64::MAX;
        // SAFETY: plain libc calls on this process's own limits and signal disposition,
        // made before any journal file is open.
        unsafe {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let rlimit = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &rlimit), 0);
        }
    }
    write_until(&state_dir, options, None, |line| println!("{line}"));
}

fn write_until(
    state_dir: &Path,
    options: JournalOptions,
    limit: Option<u64>,
    report: impl Fn(String) + Send + Sync + Copy + 'static,
) -> u64 {
    let (journal, recovery) = Journal::open(state_dir, options).unwrap();
    report(format!("opened {}", recovery.last_seq));
    let handles: Vec<_> = (0..4)
        .map(|thread| {
            let journal = journal.clone();
            std::thread::spawn(move || {
                let mut acknowledged = 0u64;
                for index in 0.. {
                    if limit.is_some_and(|limit| acknowledged * 4 >= limit) {
                        break;
                    }
                    let action_id = format!("p{}-t{thread}-{index}", std::process::id());
                    let body = if index % 2 == 0 {
                        intent(&action_id, &format!("job-{thread}"))
                    } else {
                        outcome(&action_id, &format!("job-{thread}"), true)
                    };
                    match journal.append("dev", body) {
                        Ok(seq) => {
                            acknowledged += 1;
                            report(format!("ack {seq} {action_id}"));
                        }
                        Err(error) => {
                            let mut text = error.to_string();
                            let mut source = std::error::Error::source(&error);
                            while let Some(cause) = source {
                                text.push_str(&format!(": {cause}"));
                                source = cause.source();
                            }
                            report(format!("err {text}"));
                            break;
                        }
                    }
                }
                acknowledged
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|handle| handle.join().unwrap())
        .sum()
}

fn arbitrary_body() -> impl Strategy<Value = RecordBody> {
    let id = "[a-c][0-9]";
    let job = prop::sample::select(vec!["job-a", "job-b", "job-ü\n\"x\""]);
    prop_oneof![
        (id, job.clone()).prop_map(|(id, job)| intent(&id, job)),
        (id, job.clone(), any::<bool>()).prop_map(|(id, job, ok)| outcome(&id, job, ok)),
        (job.clone(), any::<Option<i64>>(), ".{0,20}").prop_map(|(job, update_time, status)| {
            RecordBody::Observed(Observed {
                job: job.into(),
                live_id: Some("1".into()),
                update_time,
                config: json!({"status": status}),
                status: Some(status),
                managed: None,
                extra: Map::new(),
            })
        }),
        (job, any::<bool>()).prop_map(|(job, deleted)| RecordBody::Outcome(Outcome {
            action_id: "d".into(),
            job: job.into(),
            ok: true,
            error: None,
            effects: Effects {
                deleted,
                backup_zips: vec!["obs://b/x.zip".into()],
                ..Effects::default()
            },
            plan_id: Some("p".into()),
            extra: Map::new(),
        })),
    ]
}

#[derive(Debug, Clone)]
enum Step {
    Append(String, Box<RecordBody>),
    Compact,
    Reopen,
}

fn arbitrary_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (prop::sample::select(vec!["dev", "prod"]), arbitrary_body())
            .prop_map(|(target, body)| Step::Append(target.to_string(), Box::new(body))),
        1 => Just(Step::Compact),
        1 => Just(Step::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Whatever mix of appends, compactions and reopens: the state equals a fold over every
    /// record appended, the history keeps every record, and verify passes.
    #[test]
    fn replay_and_compaction_preserve_state_and_history(steps in prop::collection::vec(arbitrary_step(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let options = JournalOptions { compact_after_records: 7, archive_segments_kept: 1000, ..options() };
        let (mut journal, _) = Journal::open(dir.path(), options.clone()).unwrap();
        let mut expected = JournalState::default();
        let mut appended = Vec::new();
        for step in steps {
            match step {
                Step::Append(target, body) => {
                    let seq = journal.append(&target, (*body).clone()).unwrap();
                    appended.push((seq, target, *body));
                }
                Step::Compact => { journal.compact().unwrap(); }
                Step::Reopen => {
                    drop(journal);
                    journal = Journal::open(dir.path(), options.clone()).unwrap().0;
                }
            }
        }
        let records = all_records(dir.path());
        prop_assert_eq!(records.len(), appended.len());
        for (record, (seq, target, body)) in records.iter().zip(&appended) {
            prop_assert_eq!(record.seq, *seq);
            prop_assert_eq!(&record.target, target);
            prop_assert_eq!(&record.body, body);
            expected.apply(record);
        }
        prop_assert_eq!(journal.state(), expected.clone());
        drop(journal);
        let (journal, _) = Journal::open(dir.path(), options).unwrap();
        prop_assert_eq!(journal.state(), expected);
        prop_assert!(verify(dir.path()).unwrap().is_ok());
    }
}

mod appends;
mod corruption_and_compaction;
mod crashes;
mod files_and_cli;
