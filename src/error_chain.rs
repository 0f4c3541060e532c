//! One line for an error and its causes, for the places that hand a single line to a person
//! (the CLI, the status page, the journal, logs).
//!
//! In the lowest layer so that every module may use it. Errors keep their cause as a typed
//! `#[source]`; this walks `source()` and joins the texts with `: `. A cause whose text the line
//! already holds (an error whose own message quotes its cause) is not repeated.

/// `error: cause: cause's cause`, each cause once.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::error_chain;

    #[derive(Debug, thiserror::Error)]
    enum Inner {
        #[error("disk full")]
        Full,
    }

    #[derive(Debug, thiserror::Error)]
    enum Middle {
        #[error("cannot write /state/journal.jsonl")]
        Write(#[source] Inner),
        #[error("cannot write /state/journal.jsonl: {0}")]
        Quoting(#[source] Inner),
    }

    #[derive(Debug, thiserror::Error)]
    #[error("journal of target `prod`")]
    struct Outer(#[source] Middle);

    #[test]
    fn joins_every_cause_in_order() {
        let error = Outer(Middle::Write(Inner::Full));
        assert_eq!(
            error_chain(&error),
            "journal of target `prod`: cannot write /state/journal.jsonl: disk full"
        );
        assert_eq!(error_chain(&Inner::Full), "disk full");
    }

    #[test]
    fn a_cause_the_message_already_quotes_is_not_repeated() {
        let error = Outer(Middle::Quoting(Inner::Full));
        assert_eq!(
            error_chain(&error),
            "journal of target `prod`: cannot write /state/journal.jsonl: disk full"
        );
    }
}
