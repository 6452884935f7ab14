//! Timestamps: always UTC, always rendered with microsecond precision so that the
//! text form sorts the same way as the instant (the stores rely on that).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::format_description::well_known::Rfc3339;
use time::macros::datetime;
use time::{Date, Duration, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

/// The canonical text form, `0` marking each digit.
const CANONICAL_TEMPLATE: &[u8; 27] = b"0000-00-00T00:00:00.000000Z";

impl Timestamp {
    /// Years a timestamp may have: the canonical text form has four digits.
    const YEARS: std::ops::RangeInclusive<i32> = 1..=9999;

    /// Normalises to UTC and microseconds. Only for instants known to be in range
    /// (the clock); text from outside goes through `parse`, which checks.
    pub fn from_datetime(at: OffsetDateTime) -> Self {
        Self::checked(at).unwrap_or(Self(OffsetDateTime::UNIX_EPOCH))
    }

    /// `None` for instants outside years 1 to 9999 in UTC, which could not be
    /// stored and read back.
    fn checked(at: OffsetDateTime) -> Option<Self> {
        let utc = at.checked_to_offset(UtcOffset::UTC)?;
        if !Self::YEARS.contains(&utc.year()) {
            return None;
        }
        // Truncate to microseconds so a value survives a round trip through its text form.
        let micros = utc.microsecond();
        Some(Self(utc.replace_nanosecond(micros * 1_000).unwrap_or(utc)))
    }

    /// Clamped to the supported range, like [`Timestamp::plus_seconds`].
    pub fn from_unix_micros(micros: i64) -> Self {
        let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000)
            .ok()
            .and_then(Self::checked);
        match at {
            Some(at) => at,
            None if micros < 0 => Self::MIN,
            None => Self::MAX,
        }
    }

    pub fn unix_micros(&self) -> i64 {
        (self.0.unix_timestamp_nanos() / 1_000) as i64
    }

    /// Accepts any RFC 3339 timestamp, with any offset, and normalises it to UTC.
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(at) = Self::parse_canonical(text) {
            return Ok(at);
        }
        let at = OffsetDateTime::parse(text, &Rfc3339)
            .map_err(|err| format!("`{text}` is not an RFC 3339 timestamp ({err})"))?;
        Self::checked(at).ok_or_else(|| format!("`{text}` is outside the years 0001 to 9999 (UTC)"))
    }

    /// Reads the canonical form, which is what every stored row holds, without
    /// the general RFC 3339 parser. `None` leaves anything else (other offsets,
    /// precisions, a leap second, year 0) to that parser and its error messages.
    fn parse_canonical(text: &str) -> Option<Self> {
        let bytes = text.as_bytes();
        let matches_template = bytes.len() == CANONICAL_TEMPLATE.len()
            && bytes
                .iter()
                .zip(CANONICAL_TEMPLATE)
                .all(|(&byte, &expected)| match expected {
                    b'0' => byte.is_ascii_digit(),
                    _ => byte == expected,
                });
        if !matches_template {
            return None;
        }
        let number = |range: std::ops::Range<usize>| {
            bytes[range]
                .iter()
                .fold(0u32, |value, digit| value * 10 + u32::from(digit - b'0'))
        };
        // Every field has at most six digits, so the narrowing casts are exact.
        let month = Month::try_from(number(5..7) as u8).ok()?;
        let date =
            Date::from_calendar_date(number(0..4) as i32, month, number(8..10) as u8).ok()?;
        let time = Time::from_hms_micro(
            number(11..13) as u8,
            number(14..16) as u8,
            number(17..19) as u8,
            number(20..26),
        )
        .ok()?;
        Self::checked(PrimitiveDateTime::new(date, time).assume_utc())
    }

    /// The canonical text form. It is written for every stored row and every
    /// hashed event, so it is put together digit by digit rather than by
    /// interpreting a format description each time.
    fn canonical_text(&self) -> [u8; 27] {
        let (date, time) = (self.0.date(), self.0.time());
        let mut text = *CANONICAL_TEMPLATE;
        // Years are 1 to 9999 (see `checked`), so four digits hold them.
        let fields = [
            (0..4, date.year().unsigned_abs()),
            (5..7, u32::from(u8::from(date.month()))),
            (8..10, u32::from(date.day())),
            (11..13, u32::from(time.hour())),
            (14..16, u32::from(time.minute())),
            (17..19, u32::from(time.second())),
            (20..26, time.microsecond()),
        ];
        for (range, mut value) in fields {
            for digit in text[range].iter_mut().rev() {
                *digit = b'0' + (value % 10) as u8;
                value /= 10;
            }
        }
        text
    }

    pub fn datetime(&self) -> OffsetDateTime {
        self.0
    }

    /// The earliest and latest instants a timestamp can hold (years 1 to 9999).
    pub const MIN: Timestamp = Timestamp(datetime!(0001-01-01 00:00:00 UTC));
    pub const MAX: Timestamp = Timestamp(datetime!(9999-12-31 23:59:59.999999 UTC));

    /// Moves by `seconds`, saturating at the ends of the supported range.
    pub fn plus_seconds(&self, seconds: i64) -> Self {
        let moved = self
            .0
            .checked_add(Duration::seconds(seconds))
            .and_then(Self::checked);
        match moved {
            Some(moved) => moved,
            None if seconds < 0 => Self::MIN,
            None => Self::MAX,
        }
    }

    /// Whole seconds from `self` until `later` (negative when `later` is earlier).
    pub fn seconds_until(&self, later: &Timestamp) -> i64 {
        (later.0 - self.0).whole_seconds()
    }
}

/// Parses a duration such as `90s`, `30m`, `2h`, `1d`, `1h30m`, or a bare number
/// of seconds, into seconds. `None` for anything else, including overflow.
pub fn parse_duration(text: &str) -> Option<i64> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok();
    }
    let mut total: i64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let value: i64 = rest[..digits].parse().ok()?;
        let factor = match rest[digits..].chars().next()? {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            _ => return None,
        };
        total = total.checked_add(value.checked_mul(factor)?)?;
        rest = &rest[digits + 1..];
    }
    (!text.is_empty()).then_some(total)
}

/// A compact span of time: `45s`, `12m`, `3h`, `2d`; negative values get a `-`.
pub fn human_duration(seconds: i64) -> String {
    let sign = if seconds < 0 { "-" } else { "" };
    let s = seconds.unsigned_abs();
    let text = match s {
        0..=59 => format!("{s}s"),
        60..=3_599 => format!("{}m", s / 60),
        3_600..=86_399 => format!("{}h", s / 3_600),
        _ => format!("{}d", s / 86_400),
    };
    format!("{sign}{text}")
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.canonical_text();
        f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Timestamp::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_trip_roughly() {
        assert_eq!(human_duration(45), "45s");
        assert_eq!(human_duration(125), "2m");
        assert_eq!(human_duration(-7200), "-2h");
        assert_eq!(human_duration(200_000), "2d");
    }

    #[test]
    fn durations_parse_with_units_compounds_and_bare_seconds() {
        assert_eq!(parse_duration("30m"), Some(1800));
        assert_eq!(parse_duration("2h"), Some(7200));
        assert_eq!(parse_duration("1h30m"), Some(5400));
        assert_eq!(parse_duration(" 15 "), Some(15));
        assert_eq!(parse_duration("1d2s"), Some(86_402));
        for bad in ["1w", "m", "", "5m3", "-5m", "1.5h", "99999999999999999999d"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn canonical_text_round_trips_and_sorts() {
        let early = Timestamp::parse("2026-01-02T03:04:05.123456789+02:00").unwrap();
        assert_eq!(early.to_string(), "2026-01-02T01:04:05.123456Z");
        assert_eq!(Timestamp::parse(&early.to_string()).unwrap(), early);
        let later = early.plus_seconds(90);
        assert!(early.to_string() < later.to_string());
        assert_eq!(early.seconds_until(&later), 90);
    }

    #[test]
    fn rejects_text_that_is_not_rfc3339() {
        assert!(Timestamp::parse("yesterday").is_err());
        assert!(Timestamp::parse("2026-13-01T00:00:00Z").is_err());
    }

    #[test]
    fn instants_that_cannot_be_stored_are_refused_not_panicked_on() {
        for text in [
            "0000-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-01:00",
            "0000-06-01T00:00:00Z",
        ] {
            let err = Timestamp::parse(text).unwrap_err();
            assert!(err.contains("0001 to 9999"), "{text}: {err}");
        }
        let edge = Timestamp::parse("9999-12-31T23:59:59Z").unwrap();
        assert_eq!(Timestamp::parse(&edge.to_string()).unwrap(), edge);
        assert_eq!(
            edge.plus_seconds(10),
            Timestamp::MAX,
            "saturates instead of overflowing"
        );
        let now = Timestamp::parse("2026-11-21T12:00:00Z").unwrap();
        assert_eq!(now.plus_seconds(i64::MAX), Timestamp::MAX);
        assert_eq!(now.plus_seconds(-800_000 * 86_400), Timestamp::MIN);
        assert_eq!(now.plus_seconds(i64::MIN), Timestamp::MIN);
        assert_eq!(
            Timestamp::parse(&Timestamp::MAX.to_string()).unwrap(),
            Timestamp::MAX
        );
        assert_eq!(Timestamp::from_unix_micros(i64::MAX), Timestamp::MAX);
        assert_eq!(Timestamp::from_unix_micros(i64::MIN), Timestamp::MIN);
        assert_eq!(
            Timestamp::parse(&Timestamp::MIN.to_string()).unwrap(),
            Timestamp::MIN
        );
    }

    #[test]
    fn the_hand_written_form_matches_the_general_formatter_and_parser() {
        let general = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
        );
        // Spread over the whole range, plus its ends: a fixed pseudo-random walk.
        let (first, last) = (Timestamp::MIN.unix_micros(), Timestamp::MAX.unix_micros());
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut samples = vec![Timestamp::MIN, Timestamp::MAX];
        for _ in 0..20_000 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            let offset = (state >> 1) % (last - first) as u64;
            samples.push(Timestamp::from_unix_micros(first + offset as i64));
        }
        for at in samples {
            let text = at.to_string();
            assert_eq!(text, at.0.format(general).unwrap());
            assert_eq!(Timestamp::parse_canonical(&text), Some(at), "{text}");
            let general_parse = OffsetDateTime::parse(&text, &Rfc3339).unwrap();
            assert_eq!(at.0, general_parse);
        }
    }

    #[test]
    fn text_near_the_canonical_form_is_left_to_the_general_parser() {
        for text in [
            "2026-02-30T00:00:00.000000Z",
            "2026-00-01T00:00:00.000000Z",
            "2026-01-01T24:00:00.000000Z",
            "2026-01-01T00:60:00.000000Z",
            "2016-12-31T23:59:60.000000Z",
            "0000-01-01T00:00:00.000000Z",
            "2026-01-01t00:00:00.000000Z",
            "2026-01-01T00:00:00.000000z",
            "2026-01-01T00:00:00.00000aZ",
            "2026-01-01T00:00:00.0000000Z",
            "+026-01-01T00:00:00.000000Z",
        ] {
            assert_eq!(Timestamp::parse_canonical(text), None, "{text}");
        }
        // The general parser still reads what it can, and refuses the rest.
        assert!(Timestamp::parse("2026-02-30T00:00:00.000000Z").is_err());
        assert!(Timestamp::parse("0000-01-01T00:00:00.000000Z").is_err());
        assert_eq!(
            Timestamp::parse("2026-01-01t00:00:00.000000z").unwrap(),
            Timestamp::parse("2026-01-01T00:00:00Z").unwrap()
        );
    }

    #[test]
    fn unix_micros_round_trip() {
        let at = Timestamp::parse("2026-11-21T10:00:00.000001Z").unwrap();
        assert_eq!(Timestamp::from_unix_micros(at.unix_micros()), at);
    }
}
