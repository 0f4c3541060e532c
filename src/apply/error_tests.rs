//! `ApplyError` keeps its causes typed: the message reads as it always did, `source()` reaches
//! the cause, and the one-line chain says each cause once.

use std::error::Error;

use super::ApplyError;
use crate::error_chain::error_chain;

fn io(text: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::BrokenPipe, text.to_string())
}

#[test]
fn a_failed_step_reads_as_before_and_keeps_its_io_error() {
    let error = ApplyError::Failed {
        doing: "writing the output",
        source: Box::new(io("pipe closed")),
    };
    assert_eq!(error.to_string(), "writing the output: pipe closed");
    let cause = error.source().expect("the cause is kept");
    assert_eq!(
        cause.downcast_ref::<std::io::Error>().map(|e| e.kind()),
        Some(std::io::ErrorKind::BrokenPipe)
    );
    assert_eq!(error_chain(&error), "writing the output: pipe closed");
}

#[test]
fn a_target_setup_error_says_what_was_done_the_cause_and_what_to_do() {
    let error = ApplyError::TargetSetup {
        target: "prod".into(),
        doing: "granting DLI access to the OBS buckets b (authorize_obs) failed".into(),
        source: Box::new(io("denied")),
        advice: "check that the buckets exist".into(),
    };
    assert_eq!(
        error.to_string(),
        "target `prod`: granting DLI access to the OBS buckets b (authorize_obs) failed: denied; check that the buckets exist"
    );
    let bare = ApplyError::TargetSetup {
        target: "prod".into(),
        doing: String::new(),
        source: Box::new(io("bad endpoint")),
        advice: String::new(),
    };
    assert_eq!(bare.to_string(), "target `prod`: bad endpoint");
    assert!(bare.source().is_some());
}

#[test]
fn a_repository_error_no_longer_loses_the_cause_of_its_cause() {
    let error = ApplyError::RepositoryRead {
        target: "dev".into(),
        source: Box::new(crate::source::SourceError::Io {
            path: "/repo/jobs".into(),
            action: "reading the directory",
            source: io("permission denied"),
        }),
    };
    // The message is the one the string variant carried ...
    assert_eq!(
        error.to_string(),
        "reading the job repository for target `dev`: reading the directory: /repo/jobs"
    );
    // ... and the io error below it is reachable now, so the chain tells the whole story.
    assert_eq!(
        error_chain(&error),
        "reading the job repository for target `dev`: reading the directory: /repo/jobs: permission denied"
    );
}

#[test]
fn a_promoted_revision_or_carry_error_quotes_its_whole_chain_once() {
    let cause = crate::source::SourceError::Io {
        path: "/mirror".into(),
        action: "opening",
        source: io("gone"),
    };
    let error = ApplyError::PromotedRevision {
        target: "prod".into(),
        source: Box::new(cause),
    };
    let expected = "reading the job repository for target `prod`: opening: /mirror: gone";
    assert_eq!(error.to_string(), expected);
    assert_eq!(error_chain(&error), expected);
    let carry = ApplyError::Carry {
        source: Box::new(crate::source::SourceError::Io {
            path: "/mirror".into(),
            action: "opening",
            source: io("gone"),
        }),
    };
    assert_eq!(carry.to_string(), "opening: /mirror: gone");
    assert_eq!(error_chain(&carry), "opening: /mirror: gone");
}
