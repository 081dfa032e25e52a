//! What a cluster's Flux reports (notification-controller events) and how a component's
//! convergence state follows from desired and reported state (README, "Flux reports back"). No I/O here.

use std::fmt;

/// `info` or `error`, as notification-controller sends it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Severity {
    Info,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Error => "error",
        }
    }

    pub fn parse(text: &str) -> Option<Severity> {
        match text {
            "info" => Some(Severity::Info),
            "error" => Some(Severity::Error),
            _ => None,
        }
    }
}

/// How a report was authenticated: a gate that trusts only the cluster itself needs to know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// The cluster's own scoped token (or, later, its client certificate).
    Cluster,
    /// The fleet read token or an unscoped named token: any cluster could have sent it.
    Fleet,
    /// The write token.
    Write,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Cluster => "cluster",
            Via::Fleet => "fleet",
            Via::Write => "write",
        }
    }

    pub fn parse(text: &str) -> Option<Via> {
        match text {
            "cluster" => Some(Via::Cluster),
            "fleet" => Some(Via::Fleet),
            "write" => Some(Via::Write),
            _ => None,
        }
    }
}

/// Whether an event settles a HelmRelease's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
        }
    }

    pub fn parse(text: &str) -> Option<Outcome> {
        match text {
            "success" => Some(Outcome::Success),
            "failure" => Some(Outcome::Failure),
            _ => None,
        }
    }
}

/// The kinds whose events speak for a component: its HelmRelease, and the sources the
/// release pulls its chart from (a source that cannot fetch the chart stops the release
/// before helm-controller has anything to report).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claimant {
    Release,
    Source,
}

impl Claimant {
    /// The object kinds stored with a settled outcome.
    pub const KINDS: [&'static str; 4] = [
        "HelmRelease",
        "OCIRepository",
        "HelmRepository",
        "HelmChart",
    ];

    pub fn of_kind(kind: &str) -> Option<Claimant> {
        match kind {
            "HelmRelease" => Some(Claimant::Release),
            "OCIRepository" | "HelmRepository" | "HelmChart" => Some(Claimant::Source),
            _ => None,
        }
    }
}

/// The outcome an event of a HelmRelease or a source decides, if any. Rollbacks and
/// uninstalls succeeded as operations, but for a component the inventory wants installed they
/// mean the release went backwards. A source settles on an error, and on a new or current
/// artifact. Other info events (`DependencyNotReady`, `PendingRelease`, …) decide nothing.
pub fn decisive(claimant: Claimant, severity: Severity, reason: &str) -> Option<Outcome> {
    match (claimant, severity, reason) {
        (_, Severity::Error, _) => Some(Outcome::Failure),
        (
            Claimant::Release,
            _,
            "InstallSucceeded" | "UpgradeSucceeded" | "TestSucceeded" | "DriftCorrected",
        ) => Some(Outcome::Success),
        (Claimant::Release, _, "RollbackSucceeded" | "UninstallSucceeded") => {
            Some(Outcome::Failure)
        }
        (Claimant::Source, _, "NewArtifact" | "ArtifactUpToDate" | "Succeeded") => {
            Some(Outcome::Success)
        }
        _ => None,
    }
}

/// What one object that speaks for a component reported, as convergence needs it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Claim<'a> {
    pub claimant: Claimant,
    pub reported: Reported<'a>,
    /// When its latest decisive event happened.
    pub settled_at: Option<i64>,
    /// When its latest event happened.
    pub event_at: i64,
}

/// A component's state from every object that speaks for it, and which claim decided it.
///
/// - Every HelmRelease that claims the component counts (the one named as it, and any whose
///   event metadata names it): the worst of their states wins (`failed`, then `progressing`,
///   then `converged`; the latest on a tie), so a second release claiming the component can
///   never hide the failure of another.
/// - A source whose latest decisive event is a failure makes the component `failed` until a
///   release reports a success at the desired version after it (or the source recovers).
pub fn combine<'a>(
    enabled: bool,
    desired: &str,
    claims: impl Iterator<Item = Claim<'a>> + Clone,
) -> (State, Option<usize>) {
    if !enabled {
        return (State::Disabled, None);
    }
    let rank = |state: State| match state {
        State::Failed => 3,
        State::Progressing => 2,
        _ => 1,
    };
    // (index, state, event time) of the worst release so far.
    let mut worst: Option<(usize, State, i64)> = None;
    let mut converged_at: Option<i64> = None;
    for (i, claim) in claims.clone().enumerate() {
        if claim.claimant != Claimant::Release {
            continue;
        }
        let state = state(true, desired, &claim.reported);
        if state == State::Converged {
            converged_at = converged_at.max(claim.settled_at);
        }
        let better = worst
            .is_none_or(|(_, current, at)| (rank(state), claim.event_at) > (rank(current), at));
        if better {
            worst = Some((i, state, claim.event_at));
        }
    }
    if worst.is_none_or(|(_, state, _)| state != State::Failed) {
        let failing_source = claims
            .enumerate()
            .filter(|(_, c)| {
                c.claimant == Claimant::Source
                    && matches!(c.reported, Reported::Settled(s) if s.outcome == Outcome::Failure)
                    && c.settled_at > converged_at
            })
            .max_by_key(|(_, c)| c.settled_at);
        if let Some((i, _)) = failing_source {
            return (State::Failed, Some(i));
        }
    }
    match worst {
        Some((i, state, _)) => (state, Some(i)),
        None => (State::Unknown, None),
    }
}

/// A version as compared: no leading `v`, no `+build` suffix (OCI charts report
/// `<semver>+<digest prefix>`).
pub fn normalize_version(version: &str) -> &str {
    let version = version.trim();
    let version = version.strip_prefix('v').unwrap_or(version);
    version.split_once('+').map_or(version, |(core, _)| core)
}

pub fn versions_match(a: &str, b: &str) -> bool {
    normalize_version(a) == normalize_version(b)
}

/// Whether a reported chart version is what `desired` asks for: the same version, or any
/// version when the desired tag is `latest` (no pinning: Flux installs the newest chart).
pub fn satisfies(reported: &str, desired: &str) -> bool {
    desired.trim() == "latest" || versions_match(reported, desired)
}

/// A component's convergence state on one cluster (README, "Flux reports back").
#[derive(poem_openapi::Enum, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[oai(rename = "ConvergenceState", rename_all = "lowercase")]
pub enum State {
    /// The latest decisive report is a success at the desired version.
    Converged,
    /// The desired version changed after the last report, with no failure since.
    Progressing,
    /// The latest decisive report is a failure (its reason and message are kept).
    Failed,
    /// Nothing reported yet.
    Unknown,
    /// The input is `enabled: false`.
    Disabled,
    /// The cluster has not polled within `poll_stale_after`: what it reported may be old.
    Stale,
}

impl State {
    pub const ALL: [State; 6] = [
        State::Converged,
        State::Progressing,
        State::Failed,
        State::Unknown,
        State::Disabled,
        State::Stale,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Converged => "converged",
            State::Progressing => "progressing",
            State::Failed => "failed",
            State::Unknown => "unknown",
            State::Disabled => "disabled",
            State::Stale => "stale",
        }
    }

    pub fn parse(text: &str) -> Option<State> {
        State::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The latest decisive event of a component's HelmRelease, as stored.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settled<'a> {
    pub outcome: Outcome,
    /// The chart version the event names (metadata `revision`), if any.
    pub revision: Option<&'a str>,
    /// The `oci_tag` the inventory wanted for this cluster when the event was recorded.
    pub desired_then: Option<&'a str>,
}

/// What the cluster reported about the component's HelmRelease.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Reported<'a> {
    /// No event for it at all.
    Nothing,
    /// Events, none of them decisive.
    Undecided,
    Settled(Settled<'a>),
}

/// The state of an enabled or disabled component whose desired version is `desired`.
///
/// - the latest decisive event is a failure: `failed`, unless the desired version moved on
///   since (the failure was about a version no longer wanted): `progressing`;
/// - it is a success: `converged` when its revision is the desired version, else
///   `progressing` (the cluster has not applied the new version yet);
/// - only undecided events: `progressing`; nothing: `unknown`.
pub fn state(enabled: bool, desired: &str, reported: &Reported<'_>) -> State {
    if !enabled {
        return State::Disabled;
    }
    match reported {
        Reported::Nothing => State::Unknown,
        Reported::Undecided => State::Progressing,
        Reported::Settled(settled) => match settled.outcome {
            Outcome::Failure => match settled.desired_then {
                Some(then) if !versions_match(then, desired) => State::Progressing,
                _ => State::Failed,
            },
            Outcome::Success => match settled.revision {
                Some(revision) if satisfies(revision, desired) => State::Converged,
                _ => State::Progressing,
            },
        },
    }
}

/// Seconds since the Unix epoch of an RFC 3339 timestamp (`2026-08-20T10:15:42Z`,
/// fractions and offsets accepted); `None` if it is not one.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = bytes.get(range)?;
        part.iter().all(u8::is_ascii_digit).then(|| {
            part.iter()
                .fold(0i64, |n, digit| n * 10 + i64::from(digit - b'0'))
        })
    };
    let separators = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if separators.iter().any(|&(i, c)| bytes.get(i) != Some(&c))
        || !matches!(bytes.get(10), Some(b'T' | b't' | b' '))
    {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        _ => return None,
    };
    if day < 1 || day > days_in_month || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let end = fraction
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(fraction.len());
        if end == 0 {
            return None;
        }
        rest = &fraction[end..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first() {
                Some(b'+') => 1,
                Some(b'-') => -1,
                _ => return None,
            };
            let zone = rest.as_bytes();
            if zone.len() != 6 || zone[3] != b':' {
                return None;
            }
            let (hours, minutes) = (digits_of(&zone[1..3])?, digits_of(&zone[4..6])?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            sign * (hours * 3600 + minutes * 60)
        }
    };
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

fn digits_of(part: &[u8]) -> Option<i64> {
    part.iter()
        .all(u8::is_ascii_digit)
        .then(|| part.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')))
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// `2026-08-20T10:15:42Z` for Unix seconds.
pub fn format_timestamp(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let time = seconds.rem_euclid(86_400);
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        time / 3600,
        time % 3600 / 60,
        time % 60
    )
}

/// The first `max` bytes of `text`, cut at a character boundary.
pub fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settled<'a>(
        outcome: Outcome,
        revision: Option<&'a str>,
        desired_then: Option<&'a str>,
    ) -> Reported<'a> {
        Reported::Settled(Settled {
            outcome,
            revision,
            desired_then,
        })
    }

    #[test]
    fn versions_compare_without_v_and_build_suffix() {
        assert!(versions_match("v1.16.0", "1.16.0"));
        assert!(versions_match("1.16.0+a1b2c3d4e5f6", "v1.16.0"));
        assert!(!versions_match("v1.16.0", "v1.16.1"));
        assert!(satisfies("6.7.1", "latest"), "unpinned: any version");
        assert!(!satisfies("6.7.1", "6.7.2"));
        assert_eq!(normalize_version("v2.0.0-rc.1+meta"), "2.0.0-rc.1");
    }

    #[test]
    fn decisive_events() {
        use Claimant::*;
        use Severity::*;
        assert_eq!(
            decisive(Release, Info, "UpgradeSucceeded"),
            Some(Outcome::Success)
        );
        assert_eq!(
            decisive(Release, Info, "InstallSucceeded"),
            Some(Outcome::Success)
        );
        assert_eq!(
            decisive(Release, Info, "DriftCorrected"),
            Some(Outcome::Success)
        );
        assert_eq!(
            decisive(Release, Error, "UpgradeFailed"),
            Some(Outcome::Failure)
        );
        assert_eq!(
            decisive(Release, Error, "AnythingAtAll"),
            Some(Outcome::Failure)
        );
        assert_eq!(
            decisive(Release, Info, "RollbackSucceeded"),
            Some(Outcome::Failure)
        );
        assert_eq!(
            decisive(Release, Info, "UninstallSucceeded"),
            Some(Outcome::Failure)
        );
        assert_eq!(decisive(Release, Info, "DependencyNotReady"), None);
        assert_eq!(decisive(Release, Info, "ReconciliationSucceeded"), None);
        assert_eq!(
            decisive(Source, Error, "OCIPullFailed"),
            Some(Outcome::Failure)
        );
        assert_eq!(
            decisive(Source, Info, "NewArtifact"),
            Some(Outcome::Success)
        );
        assert_eq!(decisive(Source, Info, "UpgradeSucceeded"), None);
    }

    fn claim(claimant: Claimant, outcome: Outcome, revision: &str, at: i64) -> Claim<'_> {
        Claim {
            claimant,
            reported: Reported::Settled(Settled {
                outcome,
                revision: Some(revision),
                desired_then: None,
            }),
            settled_at: Some(at),
            event_at: at,
        }
    }

    #[test]
    fn every_release_claiming_a_component_counts_and_the_worst_wins() {
        use Claimant::*;
        let failing = claim(Release, Outcome::Failure, "1.2.0", 10);
        let other = claim(Release, Outcome::Success, "1.2.0", 20);
        assert_eq!(
            combine(true, "1.2.0", [failing, other].into_iter()),
            (State::Failed, Some(0))
        );
        assert_eq!(
            combine(true, "1.2.0", [other, failing].into_iter()),
            (State::Failed, Some(1))
        );
        assert_eq!(
            combine(true, "1.2.0", [other].into_iter()),
            (State::Converged, Some(0))
        );
        let old = claim(Release, Outcome::Success, "1.1.0", 30);
        assert_eq!(
            combine(true, "1.2.0", [other, old].into_iter()),
            (State::Progressing, Some(1))
        );
        assert_eq!(
            combine(true, "1.2.0", [].into_iter()),
            (State::Unknown, None)
        );
        assert_eq!(
            combine(false, "1.2.0", [failing].into_iter()),
            (State::Disabled, None)
        );
    }

    #[test]
    fn a_failing_source_fails_the_component_until_a_later_success() {
        use Claimant::*;
        let pull_failed = claim(Source, Outcome::Failure, "", 20);
        assert_eq!(
            combine(true, "1.2.0", [pull_failed].into_iter()),
            (State::Failed, Some(0))
        );
        let before = claim(Release, Outcome::Success, "1.2.0", 10);
        assert_eq!(
            combine(true, "1.2.0", [before, pull_failed].into_iter()),
            (State::Failed, Some(1)),
            "the chart cannot be pulled since the release succeeded"
        );
        let after = claim(Release, Outcome::Success, "1.2.0", 30);
        assert_eq!(
            combine(true, "1.2.0", [after, pull_failed].into_iter()),
            (State::Converged, Some(0))
        );
        let recovered = claim(Source, Outcome::Success, "", 25);
        assert_eq!(
            combine(true, "1.2.0", [before, recovered].into_iter()),
            (State::Converged, Some(0))
        );
    }

    #[test]
    fn states() {
        let ok = settled(
            Outcome::Success,
            Some("v1.16.0+abcdefabcdef"),
            Some("v1.16.0"),
        );
        assert_eq!(state(true, "v1.16.0", &ok), State::Converged);
        // The desired version moved on after the cluster reported the old one.
        assert_eq!(state(true, "v1.17.0", &ok), State::Progressing);
        let failed = settled(Outcome::Failure, Some("v1.16.0"), Some("v1.16.0"));
        assert_eq!(state(true, "v1.16.0", &failed), State::Failed);
        assert_eq!(state(true, "v1.17.0", &failed), State::Progressing);
        // A rollback names the old chart: still a failure of the version wanted then.
        let rolled_back = settled(Outcome::Failure, Some("v1.15.0"), Some("v1.16.0"));
        assert_eq!(state(true, "v1.16.0", &rolled_back), State::Failed);
        assert_eq!(state(true, "v1.16.0", &Reported::Nothing), State::Unknown);
        assert_eq!(
            state(true, "v1.16.0", &Reported::Undecided),
            State::Progressing
        );
        assert_eq!(state(false, "v1.16.0", &ok), State::Disabled);
        assert_eq!(State::parse("failed"), Some(State::Failed));
        assert_eq!(State::parse("nope"), None);
    }

    #[test]
    fn timestamps_round_trip() {
        assert_eq!(parse_timestamp("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_timestamp("2026-08-20T10:15:42Z"), Some(1_787_220_942));
        assert_eq!(
            parse_timestamp("2026-08-20T12:15:42.123456+02:00"),
            Some(1_787_220_942)
        );
        assert_eq!(parse_timestamp("2024-02-29T00:00:00Z"), Some(1_709_164_800));
        for bad in [
            "",
            "2026-08-20",
            "2026-08-20T10:15:42",
            "2026-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-08-20T24:00:00Z",
            "2026-08-20T10:15:42.Z",
            "2026-08-20T10:15:42+0200",
            "２026-08-20T10:15:42Z",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
        for seconds in [0, 1_787_220_942, 1_709_164_800, 4_102_444_799] {
            assert_eq!(parse_timestamp(&format_timestamp(seconds)), Some(seconds));
        }
        assert_eq!(format_timestamp(1_787_220_942), "2026-08-20T10:15:42Z");
    }

    #[test]
    fn truncates_at_a_character_boundary() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("aé", 2), "a");
        assert_eq!(truncate("aé", 3), "aé");
    }
}
