//! Maintenance windows and freezes (README, "Maintenance windows"): when a cluster may change.
//! No I/O here: the instant and the time zones are arguments (`jiff` holds the IANA time zone
//! rules, so daylight-saving changes are the tz database's, never a table of ours).
//!
//! A cluster is **closed** while a `deny` window that matches it is open, or, when any
//! `allow` window matches it, while none of those is open. A recurring window opens on each
//! listed weekday at its local start time (a start that falls in a daylight-saving gap opens
//! at the first instant after it; one that falls twice opens the first time) and stays open
//! `duration_minutes` of elapsed time, so it may span midnight.

use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use poem_openapi::{Enum, Object};

use super::overlay::Selector;

/// Longest window: a week of minutes (longer is an absolute window's job).
pub const MAX_DURATION_MINUTES: u32 = 7 * 24 * 60;
/// How far ahead `next_change` looks for a change of state.
const HORIZON_DAYS: i64 = 400;

#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum WindowKind {
    /// The clusters must not change while it is open (a freeze).
    Deny,
    /// The clusters may change only while it (or another allow window) is open.
    Allow,
}

impl WindowKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WindowKind::Deny => "deny",
            WindowKind::Allow => "allow",
        }
    }

    pub fn parse(text: &str) -> Option<WindowKind> {
        match text {
            "deny" => Some(WindowKind::Deny),
            "allow" => Some(WindowKind::Allow),
            _ => None,
        }
    }
}

/// Every week on these days, from `start` (local time in `time_zone`) for `duration_minutes`.
#[derive(Object, Clone, Debug, PartialEq)]
#[oai(deny_unknown_fields)]
pub struct Recurrence {
    /// `mon` … `sun`.
    #[oai(validator(min_items = 1, max_items = 7))]
    pub days: Vec<String>,
    /// Local start, `HH:MM` (24-hour).
    #[oai(validator(pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"))]
    pub start: String,
    #[oai(validator(minimum(value = "1"), maximum(value = "10080")))]
    pub duration_minutes: u32,
    /// An IANA time zone (`Europe/Berlin`, `America/New_York`, `UTC`).
    #[oai(validator(max_length = 64))]
    pub time_zone: String,
}

/// Once, from `from` to `to` (RFC 3339 instants).
#[derive(Object, Clone, Debug, PartialEq)]
#[oai(deny_unknown_fields)]
pub struct Absolute {
    pub from: String,
    pub to: String,
}

/// A maintenance window or a freeze for every cluster the selector matches.
#[derive(Object, Clone, Debug, PartialEq)]
#[oai(deny_unknown_fields)]
pub struct Window {
    /// Window id (lowercase RFC 1123 label).
    #[oai(validator(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length = 63))]
    pub id: String,
    #[oai(default)]
    pub description: String,
    #[oai(default)]
    pub selector: Selector,
    pub kind: WindowKind,
    /// Either `recurrence` or `absolute`.
    #[oai(skip_serializing_if_is_none)]
    pub recurrence: Option<Recurrence>,
    #[oai(skip_serializing_if_is_none)]
    pub absolute: Option<Absolute>,
}

/// Partial update of a window: present fields replace, omitted ones are kept. Giving
/// `recurrence` drops `absolute` and the other way round (a window has one schedule).
#[derive(Object, Clone, Debug, Default)]
#[oai(deny_unknown_fields)]
pub struct WindowUpdate {
    /// Must equal the path id when present.
    pub id: Option<String>,
    pub description: Option<String>,
    pub selector: Option<Selector>,
    pub kind: Option<WindowKind>,
    pub recurrence: Option<Recurrence>,
    pub absolute: Option<Absolute>,
}

impl Window {
    pub fn apply(mut self, update: WindowUpdate) -> Self {
        let WindowUpdate {
            id: _,
            description,
            selector,
            kind,
            recurrence,
            absolute,
        } = update;
        if let Some(v) = description {
            self.description = v;
        }
        if let Some(v) = selector {
            self.selector = v;
        }
        if let Some(v) = kind {
            self.kind = v;
        }
        match (recurrence, absolute) {
            (Some(r), None) => {
                self.recurrence = Some(r);
                self.absolute = None;
            }
            (None, Some(a)) => {
                self.absolute = Some(a);
                self.recurrence = None;
            }
            (Some(r), Some(a)) => {
                // Kept both: validation names the mistake.
                self.recurrence = Some(r);
                self.absolute = Some(a);
            }
            (None, None) => {}
        }
        self
    }
}

fn weekday(text: &str) -> Option<Weekday> {
    Some(match text {
        "mon" => Weekday::Monday,
        "tue" => Weekday::Tuesday,
        "wed" => Weekday::Wednesday,
        "thu" => Weekday::Thursday,
        "fri" => Weekday::Friday,
        "sat" => Weekday::Saturday,
        "sun" => Weekday::Sunday,
        _ => return None,
    })
}

/// A window's schedule, checked and ready to evaluate.
#[derive(Clone, Debug)]
pub enum Schedule {
    Weekly {
        days: Vec<Weekday>,
        start: Time,
        duration: SignedDuration,
        zone: TimeZone,
    },
    Once {
        from: Timestamp,
        to: Timestamp,
    },
}

/// The problems of a window's schedule, or the schedule.
pub fn schedule(window: &Window) -> Result<Schedule, Vec<String>> {
    let mut problems = Vec::new();
    let found = match (&window.recurrence, &window.absolute) {
        (Some(_), Some(_)) | (None, None) => {
            problems.push("give exactly one of recurrence and absolute".to_owned());
            None
        }
        (Some(r), None) => {
            let mut days = Vec::new();
            for day in &r.days {
                match weekday(day) {
                    Some(d) if !days.contains(&d) => days.push(d),
                    Some(_) => problems.push(format!("recurrence.days: '{day}' is listed twice")),
                    None => problems.push(format!(
                        "recurrence.days: '{day}' is not one of mon, tue, wed, thu, fri, sat, sun"
                    )),
                }
            }
            let start = r.start.parse::<Time>().ok();
            if start.is_none() {
                problems.push(format!("recurrence.start: '{}' is not HH:MM", r.start));
            }
            if r.duration_minutes == 0 || r.duration_minutes > MAX_DURATION_MINUTES {
                problems.push(format!(
                    "recurrence.duration_minutes: 1 to {MAX_DURATION_MINUTES} (a week)"
                ));
            }
            let zone = TimeZone::get(&r.time_zone).ok();
            if zone.is_none() {
                problems.push(format!(
                    "recurrence.time_zone: '{}' is not an IANA time zone (Europe/Berlin, UTC, …)",
                    r.time_zone
                ));
            }
            match (start, zone) {
                (Some(start), Some(zone)) => Some(Schedule::Weekly {
                    days,
                    start,
                    duration: SignedDuration::from_mins(i64::from(r.duration_minutes)),
                    zone,
                }),
                _ => None,
            }
        }
        (None, Some(a)) => {
            let from = a.from.parse::<Timestamp>().ok();
            let to = a.to.parse::<Timestamp>().ok();
            for (field, value, parsed) in [("from", &a.from, from), ("to", &a.to, to)] {
                if parsed.is_none() {
                    problems.push(format!(
                        "absolute.{field}: '{value}' is not an RFC 3339 instant (2026-11-27T00:00:00Z)"
                    ));
                }
            }
            match (from, to) {
                (Some(from), Some(to)) if from < to => Some(Schedule::Once { from, to }),
                (Some(_), Some(_)) => {
                    problems.push("absolute: from must be before to".to_owned());
                    None
                }
                _ => None,
            }
        }
    };
    match found {
        Some(schedule) if problems.is_empty() => Ok(schedule),
        _ => Err(problems),
    }
}

/// Unix seconds as a timestamp (clamped into jiff's range).
fn instant(seconds: i64) -> Timestamp {
    Timestamp::from_second(seconds).unwrap_or(if seconds < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

impl Schedule {
    /// The occurrences `[open, close)` that start on local dates `first..=last` (Weekly), or
    /// the one range (Once), in Unix seconds.
    fn occurrences(&self, first: Date, last: Date) -> Vec<(i64, i64)> {
        match self {
            Schedule::Once { from, to } => vec![(from.as_second(), to.as_second())],
            Schedule::Weekly {
                days,
                start,
                duration,
                zone,
            } => {
                let mut found = Vec::new();
                let mut date = first;
                while date <= last {
                    if days.contains(&date.weekday())
                        && let Ok(open) = date.to_datetime(*start).to_zoned(zone.clone())
                    {
                        let open = open.timestamp();
                        if let Ok(close) = open.checked_add(*duration) {
                            found.push((open.as_second(), close.as_second()));
                        }
                    }
                    match date.tomorrow() {
                        Ok(next) => date = next,
                        Err(_) => break,
                    }
                }
                found
            }
        }
    }

    /// The local dates an occurrence open at any time in `[from, to]` can start on.
    fn dates(&self, from: i64, to: i64) -> Option<(Date, Date)> {
        let Schedule::Weekly { zone, .. } = self else {
            return None;
        };
        let first = instant(from).to_zoned(zone.clone()).date();
        let last = instant(to).to_zoned(zone.clone()).date();
        // A week-long occurrence that started 8 local days earlier may still be open.
        let first = first
            .checked_sub(jiff::Span::new().days(8))
            .unwrap_or(first);
        Some((first, last))
    }

    /// Whether the window is open at `at` (Unix seconds).
    pub fn is_open(&self, at: i64) -> bool {
        let (first, last) = self.dates(at, at).unwrap_or((Date::MIN, Date::MIN));
        self.occurrences(first, last)
            .iter()
            .any(|(open, close)| *open <= at && at < *close)
    }

    /// Every instant in `(from, to]` at which the window opens or closes.
    fn boundaries(&self, from: i64, to: i64) -> Vec<i64> {
        let (first, last) = self.dates(from, to).unwrap_or((Date::MIN, Date::MIN));
        self.occurrences(first, last)
            .into_iter()
            .flat_map(|(open, close)| [open, close])
            .filter(|t| *t > from && *t <= to)
            .collect()
    }
}

/// The windows that apply to one cluster, with their schedules.
pub struct Applying<'a> {
    pub window: &'a Window,
    pub schedule: Schedule,
}

/// Whether a cluster is open (may change) at `at`, given the windows that match it.
pub fn is_open(windows: &[Applying<'_>], at: i64) -> bool {
    let deny_open = windows
        .iter()
        .any(|w| w.window.kind == WindowKind::Deny && w.schedule.is_open(at));
    if deny_open {
        return false;
    }
    let mut allows = windows
        .iter()
        .filter(|w| w.window.kind == WindowKind::Allow)
        .peekable();
    allows.peek().is_none() || allows.any(|w| w.schedule.is_open(at))
}

/// The first instant after `at` at which the cluster's state (open or closed) changes, within
/// about a year; `None` if it does not.
pub fn next_change(windows: &[Applying<'_>], at: i64) -> Option<i64> {
    let now = is_open(windows, at);
    // Weekly windows repeat: look a few weeks at a time.
    let step = 35 * 86_400;
    let mut from = at;
    while from < at + HORIZON_DAYS * 86_400 {
        let to = from + step;
        let mut candidates: Vec<i64> = windows
            .iter()
            .flat_map(|w| w.schedule.boundaries(from, to))
            .collect();
        candidates.sort_unstable();
        candidates.dedup();
        if let Some(change) = candidates.into_iter().find(|t| is_open(windows, *t) != now) {
            return Some(change);
        }
        from = to;
    }
    None
}

/// The windows that matched a closed cluster: the open deny windows, or (when none of its
/// allow windows is open) its allow windows.
pub fn closing<'a>(windows: &[Applying<'a>], at: i64) -> Vec<&'a str> {
    let deny: Vec<&str> = windows
        .iter()
        .filter(|w| w.window.kind == WindowKind::Deny && w.schedule.is_open(at))
        .map(|w| w.window.id.as_str())
        .collect();
    if !deny.is_empty() {
        return deny;
    }
    let allows: Vec<&Applying<'_>> = windows
        .iter()
        .filter(|w| w.window.kind == WindowKind::Allow)
        .collect();
    if allows.is_empty() || allows.iter().any(|w| w.schedule.is_open(at)) {
        return Vec::new();
    }
    allows.iter().map(|w| w.window.id.as_str()).collect()
}

/// One window as it applies to a cluster now.
#[derive(Object, Clone, Debug, PartialEq)]
pub struct WindowNow {
    pub id: String,
    pub kind: WindowKind,
    /// Whether the window itself is open (a deny window open closes the cluster; an allow
    /// window open lets it change).
    pub active: bool,
}

/// Whether a cluster may change now, and when that changes (`GET /clusters/{id}/windows`).
#[derive(Object, Clone, Debug, PartialEq)]
pub struct ClusterWindows {
    pub cluster_id: String,
    /// The cluster may change now (no deny window open, and an allow window open if any
    /// matches it).
    pub open: bool,
    /// When `open` changes next (Unix seconds); `null`: not within about a year.
    #[oai(nullable)]
    pub next_change: Option<i64>,
    /// `next_change` as an RFC 3339 instant (UTC).
    #[oai(nullable)]
    pub next_change_at: Option<String>,
    /// The windows that close it now.
    pub closed_by: Vec<String>,
    /// Every window whose selector matches the cluster.
    pub windows: Vec<WindowNow>,
}

/// Unix seconds as an RFC 3339 instant in UTC.
pub fn rfc3339(seconds: i64) -> String {
    instant(seconds).to_string()
}

/// The cluster's view of the windows that match it, at `at`.
pub fn cluster_windows(cluster_id: &str, windows: &[Applying<'_>], at: i64) -> ClusterWindows {
    let next_change = next_change(windows, at);
    ClusterWindows {
        cluster_id: cluster_id.to_owned(),
        open: is_open(windows, at),
        next_change,
        next_change_at: next_change.map(rfc3339),
        closed_by: closing(windows, at)
            .into_iter()
            .map(str::to_owned)
            .collect(),
        windows: windows
            .iter()
            .map(|w| WindowNow {
                id: w.window.id.clone(),
                kind: w.window.kind,
                active: w.schedule.is_open(at),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> i64 {
        text.parse::<Timestamp>().unwrap().as_second()
    }

    fn weekly(kind: WindowKind, days: &[&str], start: &str, minutes: u32, zone: &str) -> Window {
        Window {
            id: format!("{}-{start}", kind.as_str()),
            description: String::new(),
            selector: Selector::default(),
            kind,
            recurrence: Some(Recurrence {
                days: days.iter().map(|d| (*d).to_owned()).collect(),
                start: start.into(),
                duration_minutes: minutes,
                time_zone: zone.into(),
            }),
            absolute: None,
        }
    }

    fn applying(windows: &[Window]) -> Vec<Applying<'_>> {
        windows
            .iter()
            .map(|window| Applying {
                window,
                schedule: schedule(window).unwrap(),
            })
            .collect()
    }

    #[test]
    fn opening_hours_in_berlin_follow_summer_time() {
        // Stores open 08:00–20:00 local, every day.
        let all = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
        let w = [weekly(
            WindowKind::Deny,
            &all,
            "08:00",
            720,
            "Europe/Berlin",
        )];
        let w = applying(&w);
        // Winter (UTC+1): 08:00 local is 07:00Z.
        assert!(is_open(&w, at("2026-03-28T06:59:00Z")));
        assert!(!is_open(&w, at("2026-03-28T07:00:00Z")));
        // 29 March 2026, 02:00 → 03:00: summer (UTC+2), 08:00 local is 06:00Z.
        assert!(!is_open(&w, at("2026-03-29T06:00:00Z")));
        assert!(is_open(&w, at("2026-03-29T05:59:00Z")));
        assert_eq!(
            next_change(&w, at("2026-03-29T01:00:00Z")),
            Some(at("2026-03-29T06:00:00Z"))
        );
        // Back to winter on 25 October 2026.
        assert_eq!(
            next_change(&w, at("2026-10-25T01:00:00Z")),
            Some(at("2026-10-25T07:00:00Z"))
        );
    }

    #[test]
    fn a_start_in_the_gap_opens_after_it_and_new_york_moves_on_its_own_date() {
        // 02:30 does not exist in New York on 8 March 2026 (02:00 → 03:00 EDT).
        let w = [weekly(
            WindowKind::Allow,
            &["sun"],
            "02:30",
            60,
            "America/New_York",
        )];
        let w = applying(&w);
        // Opens at 03:30 EDT = 07:30Z, the first instant after the gap plus 30 minutes, as
        // the tz database's "compatible" rule says, and stays 60 minutes.
        assert_eq!(
            next_change(&w, at("2026-03-08T05:00:00Z")),
            Some(at("2026-03-08T07:30:00Z"))
        );
        assert!(is_open(&w, at("2026-03-08T08:00:00Z")));
        assert!(!is_open(&w, at("2026-03-08T08:30:00Z")));
        // The week before, in EST: 02:30 is 07:30Z too; the week after (EDT) it is 06:30Z.
        assert!(is_open(&w, at("2026-03-01T07:45:00Z")));
        assert!(is_open(&w, at("2026-03-15T06:45:00Z")));
        assert!(!is_open(&w, at("2026-03-15T07:45:00Z")));
    }

    #[test]
    fn a_window_spans_midnight() {
        // Fridays 22:00 for 4 hours, UTC: open until Saturday 02:00.
        let w = [weekly(WindowKind::Allow, &["fri"], "22:00", 240, "UTC")];
        let w = applying(&w);
        // 2026-12-04 is a Friday.
        assert!(!is_open(&w, at("2026-12-04T21:59:00Z")));
        assert!(is_open(&w, at("2026-12-04T23:30:00Z")));
        assert!(is_open(&w, at("2026-12-05T01:59:00Z")));
        assert!(!is_open(&w, at("2026-12-05T02:00:00Z")));
        assert_eq!(
            next_change(&w, at("2026-12-05T03:00:00Z")),
            Some(at("2026-12-11T22:00:00Z"))
        );
    }

    #[test]
    fn deny_wins_over_allow_and_allow_closes_outside_its_hours() {
        let nights = weekly(
            WindowKind::Allow,
            &["mon", "tue", "wed", "thu", "fri"],
            "01:00",
            180,
            "UTC",
        );
        let freeze = Window {
            id: "freeze".into(),
            description: String::new(),
            selector: Selector::default(),
            kind: WindowKind::Deny,
            recurrence: None,
            absolute: Some(Absolute {
                from: "2026-11-27T00:00:00Z".into(),
                to: "2026-11-30T23:59:59Z".into(),
            }),
        };
        let both = [nights, freeze];
        let w = applying(&both);
        // Wednesday 25 November 02:00: allowed.
        assert!(is_open(&w, at("2026-11-25T02:00:00Z")));
        // Wednesday noon: outside the allow window.
        assert!(!is_open(&w, at("2026-11-25T12:00:00Z")));
        assert_eq!(closing(&w, at("2026-11-25T12:00:00Z")), vec!["allow-01:00"]);
        // Friday 27 November 02:00: inside the allow window, but frozen.
        assert!(!is_open(&w, at("2026-11-27T02:00:00Z")));
        assert_eq!(closing(&w, at("2026-11-27T02:00:00Z")), vec!["freeze"]);
        // After the freeze the next opening is Tuesday 1 December 01:00 (Monday's ends 04:00
        // on 30 November, inside the freeze).
        assert_eq!(
            next_change(&w, at("2026-11-27T02:00:00Z")),
            Some(at("2026-12-01T01:00:00Z"))
        );
    }

    #[test]
    fn schedules_are_checked() {
        let mut w = weekly(
            WindowKind::Deny,
            &["mon", "fun"],
            "08:00",
            0,
            "Mars/Olympus",
        );
        let problems = schedule(&w).unwrap_err().join("; ");
        for words in ["'fun'", "duration_minutes", "Mars/Olympus"] {
            assert!(problems.contains(words), "{problems}");
        }
        w.absolute = Some(Absolute {
            from: "x".into(),
            to: "y".into(),
        });
        assert!(schedule(&w).unwrap_err()[0].contains("exactly one"));
    }
}
