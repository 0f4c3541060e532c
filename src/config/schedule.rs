//! Five-field cron schedules (`minute hour day-of-month month day-of-week`) for change windows,
//! in the syntax Argo CD's sync windows use, matched in UTC or in an IANA time zone.
//!
//! In a zone the fields match the local wall clock, minute by minute of real time: on a
//! spring-forward day the skipped local times never occur (a window set to open at 02:30 in
//! Europe/Berlin does not open that day), and on a fall-back day the repeated hour occurs twice
//! (a window opening in it opens twice; its duration counts real time from each opening). A
//! window's `duration` is always elapsed time, so a 2-hour window across a change lasts 2 hours.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// Longest window duration that [`CronSchedule::window_active`] looks back over.
pub const MAX_WINDOW: Duration = Duration::from_secs(31 * 24 * 3600);

/// How far ahead [`CronSchedule::next_opening`] looks.
pub const LOOKAHEAD: Duration = Duration::from_secs(31 * 24 * 3600);

/// Parses an IANA time zone name (`Europe/Berlin`, `UTC`). The error names the value and says
/// what is expected.
pub fn parse_time_zone(name: &str) -> Result<Tz, String> {
    name.trim().parse::<Tz>().map_err(|_| {
        format!(
            "`{name}` is not an IANA time zone name; use a name such as `UTC`, `Europe/Berlin` or `Asia/Shanghai` (the tz database's Area/Location form)"
        )
    })
}

/// A parsed cron expression. Times are matched in its zone (UTC unless set).
#[derive(Clone, PartialEq, Eq)]
pub struct CronSchedule {
    text: String,
    zone: Tz,
    minutes: u64,
    hours: u64,
    days_of_month: u64,
    months: u64,
    days_of_week: u64,
    day_of_month_restricted: bool,
    day_of_week_restricted: bool,
}

impl fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CronSchedule({:?})", self.text)
    }
}

impl fmt::Display for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)?;
        if self.zone != Tz::UTC {
            write!(f, " {}", self.zone.name())?;
        }
        Ok(())
    }
}

const MONTH_NAMES: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAY_NAMES: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

impl CronSchedule {
    /// Parses a five-field expression or one of `@hourly`, `@daily`, `@weekly`, `@monthly`,
    /// `@yearly`. The error says which field is wrong and why.
    pub fn parse(text: &str) -> Result<CronSchedule, String> {
        let expanded = match text.trim() {
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            "@yearly" | "@annually" => "0 0 1 1 *",
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "a cron schedule has 5 fields (minute hour day-of-month month day-of-week), \
                 `{text}` has {}",
                fields.len()
            ));
        }
        let minutes = parse_field(fields[0], "minute", 0, 59, &[])?;
        let hours = parse_field(fields[1], "hour", 0, 23, &[])?;
        let days_of_month = parse_field(fields[2], "day-of-month", 1, 31, &[])?;
        let months = parse_field(fields[3], "month", 1, 12, &MONTH_NAMES)?;
        let mut days_of_week = parse_field(fields[4], "day-of-week", 0, 7, &DAY_NAMES)?;
        // 7 is Sunday as well as 0.
        if days_of_week & (1 << 7) != 0 {
            days_of_week = (days_of_week & !(1 << 7)) | 1;
        }
        Ok(CronSchedule {
            text: text.trim().to_string(),
            zone: Tz::UTC,
            minutes,
            hours,
            days_of_month,
            months,
            days_of_week,
            day_of_month_restricted: fields[2] != "*",
            day_of_week_restricted: fields[4] != "*",
        })
    }

    /// [`CronSchedule::parse`], matched in the named IANA zone (`None`: UTC).
    pub fn parse_in(text: &str, time_zone: Option<&str>) -> Result<CronSchedule, String> {
        let schedule = CronSchedule::parse(text)?;
        match time_zone {
            Some(name) => Ok(schedule.in_zone(parse_time_zone(name)?)),
            None => Ok(schedule),
        }
    }

    /// The same schedule matched in `zone`.
    pub fn in_zone(mut self, zone: Tz) -> CronSchedule {
        self.zone = zone;
        self
    }

    /// The zone the fields are matched in.
    pub fn zone(&self) -> Tz {
        self.zone
    }

    /// Whether the schedule fires in the minute containing `time` (read on the zone's clock).
    pub fn matches(&self, time: DateTime<Utc>) -> bool {
        let local = self.zone.from_utc_datetime(&time.naive_utc());
        let bit = |set: u64, value: u32| set & (1u64 << value) != 0;
        if !bit(self.minutes, local.minute())
            || !bit(self.hours, local.hour())
            || !bit(self.months, local.month())
        {
            return false;
        }
        let day_of_month = bit(self.days_of_month, local.day());
        let day_of_week = bit(self.days_of_week, local.weekday().num_days_from_sunday());
        // Classic cron: when both day fields are restricted, either may match.
        match (self.day_of_month_restricted, self.day_of_week_restricted) {
            (true, true) => day_of_month || day_of_week,
            _ => day_of_month && day_of_week,
        }
    }

    /// Whether a window that opens at each firing and lasts `duration` is open at `now`.
    /// `duration` is capped at [`MAX_WINDOW`].
    pub fn window_active(&self, now: DateTime<Utc>, duration: Duration) -> bool {
        self.window_closes(now, duration).is_some()
    }

    /// When the window open at `now` closes (the latest end of the openings that cover `now`),
    /// or `None` when it is not open. `duration` is capped at [`MAX_WINDOW`].
    pub fn window_closes(&self, now: DateTime<Utc>, duration: Duration) -> Option<DateTime<Utc>> {
        let duration = duration.min(MAX_WINDOW);
        let minutes = duration.as_secs().div_ceil(60);
        let start_of_minute = minute_floor(now);
        let length = chrono::Duration::from_std(duration).unwrap_or_default();
        // The most recent opening that still covers `now` closes last.
        (0..minutes.max(1))
            .map(|back| start_of_minute - chrono::Duration::minutes(back as i64))
            .find(|candidate| self.matches(*candidate) && now < *candidate + length)
            .map(|candidate| candidate + length)
    }

    /// The first firing at or after `after` (minute precision), looking at most `horizon`
    /// ahead (capped at [`LOOKAHEAD`]).
    pub fn next_opening(&self, after: DateTime<Utc>, horizon: Duration) -> Option<DateTime<Utc>> {
        let mut candidate = minute_floor(after);
        if candidate < after {
            candidate += chrono::Duration::minutes(1);
        }
        let minutes = horizon.min(LOOKAHEAD).as_secs() / 60;
        (0..=minutes)
            .map(|ahead| candidate + chrono::Duration::minutes(ahead as i64))
            .find(|time| self.matches(*time))
    }
}

fn minute_floor(time: DateTime<Utc>) -> DateTime<Utc> {
    time.with_second(0)
        .and_then(|t| t.with_nanosecond(0))
        .unwrap_or(time)
}

fn parse_field(text: &str, name: &str, min: u32, max: u32, names: &[&str]) -> Result<u64, String> {
    let mut set = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                    format!("{name} field `{text}`: step `{step}` is not a positive number")
                })?;
                (range, step)
            }
            None => (part, 1),
        };
        let (low, high) = if range == "*" {
            (min, max)
        } else if let Some((low, high)) = range.split_once('-') {
            (
                value(low, name, min, max, names)?,
                value(high, name, min, max, names)?,
            )
        } else {
            let single = value(range, name, min, max, names)?;
            // `5/15` means from 5 to the end in steps of 15.
            (single, if part.contains('/') { max } else { single })
        };
        if low > high {
            return Err(format!(
                "{name} field `{text}`: range {low}-{high} is backwards"
            ));
        }
        let mut current = low;
        while current <= high {
            set |= 1u64 << current;
            current += step;
        }
    }
    Ok(set)
}

fn value(text: &str, name: &str, min: u32, max: u32, names: &[&str]) -> Result<u32, String> {
    let lower = text.to_ascii_lowercase();
    if let Some(index) = names.iter().position(|candidate| *candidate == lower) {
        // Month names start at 1, day names at 0.
        return Ok(index as u32 + min);
    }
    match text.parse::<u32>() {
        Ok(number) if (min..=max).contains(&number) => Ok(number),
        Ok(number) => Err(format!("{name} value {number} is outside {min}-{max}")),
        Err(_) => Err(format!("{name} value `{text}` is not a number or a name")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).single().unwrap()
    }

    #[test]
    fn parses_and_matches() {
        let weekday_nights = CronSchedule::parse("0 22 * * mon-fri").unwrap();
        // 2026-11-23 is a Monday.
        assert!(weekday_nights.matches(at(2026, 11, 23, 22, 0)));
        assert!(!weekday_nights.matches(at(2026, 11, 22, 22, 0)));
        assert!(!weekday_nights.matches(at(2026, 11, 23, 22, 1)));
        let every_quarter = CronSchedule::parse("*/15 * * * *").unwrap();
        assert!(every_quarter.matches(at(2026, 1, 1, 3, 45)));
        assert!(!every_quarter.matches(at(2026, 1, 1, 3, 46)));
        let sunday = CronSchedule::parse("0 0 * * 7").unwrap();
        assert!(sunday.matches(at(2026, 11, 22, 0, 0)));
    }

    #[test]
    fn windows_last_their_duration() {
        let nightly = CronSchedule::parse("0 22 * * *").unwrap();
        let two_hours = Duration::from_secs(7200);
        assert!(nightly.window_active(at(2026, 11, 23, 23, 59), two_hours));
        assert!(nightly.window_active(at(2026, 11, 23, 22, 0), two_hours));
        assert!(!nightly.window_active(at(2026, 11, 24, 0, 0), two_hours));
        assert!(!nightly.window_active(at(2026, 11, 23, 21, 59), two_hours));
    }

    #[test]
    fn refuses_bad_expressions() {
        for bad in [
            "* * * *",
            "61 * * * *",
            "* * * * funday",
            "*/0 * * * *",
            "5-1 * * * *",
        ] {
            assert!(CronSchedule::parse(bad).is_err(), "{bad} should not parse");
        }
        assert!(CronSchedule::parse("@daily").is_ok());
        assert!(CronSchedule::parse_in("@daily", Some("Mars/Olympus")).is_err());
    }

    #[test]
    fn zones_read_the_local_clock_across_daylight_saving_changes() {
        // Europe/Berlin moves from UTC+1 to UTC+2 at 2026-03-29 01:00 UTC.
        let three_local = CronSchedule::parse_in("0 3 * * *", Some("Europe/Berlin")).unwrap();
        assert!(three_local.matches(at(2026, 3, 28, 2, 0)));
        assert!(three_local.matches(at(2026, 3, 29, 1, 0)));
        assert_eq!(
            three_local.next_opening(at(2026, 3, 28, 2, 1), LOOKAHEAD),
            Some(at(2026, 3, 29, 1, 0))
        );
        // 02:30 local does not exist on that day.
        let skipped = CronSchedule::parse_in("30 2 * * *", Some("Europe/Berlin")).unwrap();
        assert_eq!(
            skipped.next_opening(at(2026, 3, 28, 2, 0), LOOKAHEAD),
            Some(at(2026, 3, 30, 0, 30))
        );
        assert_eq!(
            three_local.window_closes(at(2026, 3, 29, 1, 30), Duration::from_secs(3600)),
            Some(at(2026, 3, 29, 2, 0))
        );
        assert_eq!(three_local.to_string(), "0 3 * * * Europe/Berlin");
    }
}
