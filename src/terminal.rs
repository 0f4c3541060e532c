//! Text for a terminal: data from git or the service made safe to print.
//!
//! A job's SQL, a reason or a service message can carry escape sequences (`ESC [ ...`), other
//! control characters or Unicode bidi controls. Printed raw they can move the cursor, rewrite
//! earlier lines or reorder what a reviewer reads (a `- prune` hidden behind a SQL line). Every
//! human text rendering passes its output through [`escape`]: tab and newline stay, every other
//! control character and every bidi control becomes a visible `\u{..}` escape.
//!
//! The renderings that go through it: plan, apply and rollback reports, validate, export, `journal show`,
//! `status` and doctor (property-tested through the plan). Logs in text mode rely on
//! `tracing-subscriber`'s own escaping (ESC, BEL, BS, FF, DEL, C1), which does not cover CR or
//! bidi controls.

use std::borrow::Cow;

/// Whether a terminal would act on `c` instead of showing it.
/// A time for people: `2026-12-04 17:36:14 UTC (3 s ago)`. JSON keeps the full RFC 3339 time.
pub fn human_time(
    time: chrono::DateTime<chrono::Utc>,
    now: chrono::DateTime<chrono::Utc>,
) -> String {
    format!(
        "{} ({})",
        time.format("%Y-%m-%d %H:%M:%S UTC"),
        human_ago(now.signed_duration_since(time))
    )
}

/// How long ago, in one unit: `just now`, `3 s ago`, `5 min ago`, `2 h ago`, `4 d ago` (`in
/// 3 s` for a time ahead).
pub fn human_ago(elapsed: chrono::TimeDelta) -> String {
    let seconds = elapsed.num_seconds();
    let (ahead, seconds) = (seconds < 0, seconds.unsigned_abs());
    let amount = match seconds {
        0 => return "just now".to_string(),
        1..=119 => format!("{seconds} s"),
        120..=7199 => format!("{} min", seconds / 60),
        7200..=172_799 => format!("{} h", seconds / 3600),
        _ => format!("{} d", seconds / 86_400),
    };
    if ahead {
        format!("in {amount}")
    } else {
        format!("{amount} ago")
    }
}

pub fn is_unsafe(c: char) -> bool {
    match c {
        '\t' | '\n' => false,
        // C0 controls and DEL, C1 controls.
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' => true,
        // Bidi marks, embeddings, overrides and isolates; the Arabic letter mark.
        '\u{200e}' | '\u{200f}' | '\u{061c}' => true,
        '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => true,
        _ => false,
    }
}

/// `text` with every unsafe character as a visible `\u{XXXX}` escape; borrowed when clean.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if is_unsafe(c) {
            escaped.push_str(&format!("\\u{{{:04x}}}", c as u32));
        } else {
            escaped.push(c);
        }
    }
    Cow::Owned(escaped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_for_people() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-04T17:36:17Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let then = now - chrono::TimeDelta::seconds(3);
        assert_eq!(human_time(then, now), "2026-12-04 17:36:14 UTC (3 s ago)");
        assert_eq!(human_ago(chrono::TimeDelta::zero()), "just now");
        assert_eq!(human_ago(chrono::TimeDelta::minutes(5)), "5 min ago");
        assert_eq!(human_ago(chrono::TimeDelta::hours(3)), "3 h ago");
        assert_eq!(human_ago(chrono::TimeDelta::days(4)), "4 d ago");
        assert_eq!(human_ago(chrono::TimeDelta::seconds(-3)), "in 3 s");
    }
    use proptest::prelude::*;

    #[test]
    fn escape_sequences_and_bidi_controls_become_visible() {
        assert_eq!(escape("SELECT 1;\n\tok"), "SELECT 1;\n\tok");
        assert_eq!(escape("a\u{1b}[2Kb"), "a\\u{001b}[2Kb");
        assert_eq!(escape("x\u{202e}y\r"), "x\\u{202e}y\\u{000d}");
        assert!(matches!(escape("clean"), Cow::Borrowed(_)));
    }

    proptest! {
        #[test]
        fn nothing_unsafe_survives(text in "(\\PC|[\\x00-\\x1f\\x7f-\\x9f\\u{200e}\\u{200f}\\u{061c}\\u{202a}-\\u{202e}\\u{2066}-\\u{2069}]){0,64}") {
            let escaped = escape(&text);
            prop_assert!(!escaped.chars().any(is_unsafe), "{:?}", escaped);
        }
    }
}
