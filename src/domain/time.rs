//! Timestamps: always UTC, always rendered with microsecond precision so that the
//! text form sorts the same way as the instant (the stores rely on that).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Duration, OffsetDateTime, UtcOffset};

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

const CANONICAL: &[time::format_description::BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

impl Timestamp {
    pub fn from_datetime(at: OffsetDateTime) -> Self {
        let utc = at.to_offset(UtcOffset::UTC);
        // Truncate to microseconds so a value survives a round trip through its text form.
        let micros = utc.microsecond();
        Self(utc.replace_nanosecond(micros * 1_000).unwrap_or(utc))
    }

    pub fn from_unix_micros(micros: i64) -> Self {
        let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        Self(at)
    }

    pub fn unix_micros(&self) -> i64 {
        (self.0.unix_timestamp_nanos() / 1_000) as i64
    }

    /// Accepts any RFC 3339 timestamp, with any offset, and normalises it to UTC.
    pub fn parse(text: &str) -> Result<Self, String> {
        OffsetDateTime::parse(text, &Rfc3339)
            .map(Self::from_datetime)
            .map_err(|err| format!("`{text}` is not an RFC 3339 timestamp ({err})"))
    }

    pub fn datetime(&self) -> OffsetDateTime {
        self.0
    }

    pub fn plus_seconds(&self, seconds: i64) -> Self {
        Self(self.0 + Duration::seconds(seconds))
    }

    /// Whole seconds from `self` until `later` (negative when `later` is earlier).
    pub fn seconds_until(&self, later: &Timestamp) -> i64 {
        (later.0 - self.0).whole_seconds()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0.format(CANONICAL).map_err(|_| fmt::Error)?;
        f.write_str(&text)
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
    fn unix_micros_round_trip() {
        let at = Timestamp::parse("2026-11-21T10:00:00.000001Z").unwrap();
        assert_eq!(Timestamp::from_unix_micros(at.unix_micros()), at);
    }
}
