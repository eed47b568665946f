//! Lifetimes as admins write them: `7d 14d 1m 2m 3m 6m 1y` (a month is 30
//! days, a year 365) or whole seconds as a JSON integer.

use serde::{Deserialize, Deserializer, Serialize};

pub const DAY: i64 = 86_400;
pub const TOKEN_LIFETIME_MIN: i64 = 7 * DAY;
pub const TOKEN_LIFETIME_MAX: i64 = 365 * DAY;
pub const TOKEN_LIFETIME_DEFAULT: i64 = 30 * DAY;
pub const ACCESS_TOKEN_TTL_MIN: i64 = 60;
pub const ACCESS_TOKEN_TTL_MAX: i64 = crate::tokens::keys::MAX_ACCESS_TOKEN_TTL;
pub const ACCESS_TOKEN_TTL_DEFAULT: i64 = 3600;
/// The furthest a client's `expires_at` may lie ahead: 10 years.
pub const EXPIRY_MAX: i64 = 3650 * DAY;
/// What a request is told when a duration is not one (serde's own text for an
/// untagged enum names the enum, not the field's rules).
pub const DURATION_EXPECTED: &str =
    "a duration such as \"3m\" (months), one of 7d 14d 1m 2m 3m 6m 1y, or whole seconds";

/// A duration as given in a request, before it is checked.
/// `7d`, `14d`, `1m`, `2m`, `3m`, `6m`, `1y`, or whole seconds.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum DurationSpec {
    Seconds(i64),
    Named(String),
}

impl<'de> Deserialize<'de> for DurationSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = DurationSpec;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(DURATION_EXPECTED)
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<DurationSpec, E> {
                Ok(DurationSpec::Seconds(v))
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<DurationSpec, E> {
                i64::try_from(v)
                    .map(DurationSpec::Seconds)
                    .map_err(|_| E::custom(format!("{v} seconds is out of range")))
            }

            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<DurationSpec, E> {
                Err(E::custom(format!("{v} is not {DURATION_EXPECTED}")))
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<DurationSpec, E> {
                Ok(DurationSpec::Named(v.to_string()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl DurationSpec {
    pub fn seconds(&self) -> Result<i64, String> {
        match self {
            DurationSpec::Seconds(s) if *s > 0 => Ok(*s),
            DurationSpec::Seconds(s) => Err(format!("{s} is not a positive number of seconds")),
            DurationSpec::Named(name) => parse_named(name),
        }
    }
}

pub fn parse_named(name: &str) -> Result<i64, String> {
    match name {
        "7d" => Ok(7 * DAY),
        "14d" => Ok(14 * DAY),
        "1m" => Ok(30 * DAY),
        "2m" => Ok(60 * DAY),
        "3m" => Ok(90 * DAY),
        "6m" => Ok(180 * DAY),
        "1y" => Ok(365 * DAY),
        other => other.parse::<i64>().ok().filter(|s| *s > 0).ok_or_else(|| {
            format!("{other:?} is not a duration: use 7d, 14d, 1m, 2m, 3m, 6m, 1y or whole seconds")
        }),
    }
}

/// `now` plus `seconds` for a client's expiry: positive and at most
/// `EXPIRY_MAX` ahead, so the sum cannot overflow.
pub fn expiry_after(now: i64, seconds: i64) -> Result<i64, String> {
    if seconds <= 0 {
        return Err(format!("{seconds} is not a positive number of seconds"));
    }
    if seconds > EXPIRY_MAX {
        return Err("must be at most 10 years (3650 days) ahead".into());
    }
    now.checked_add(seconds)
        .ok_or_else(|| "is out of range".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_durations_use_thirty_day_months_and_365_day_years() {
        assert_eq!(parse_named("1m").unwrap(), 2_592_000);
        assert_eq!(parse_named("1y").unwrap(), 31_536_000);
        assert_eq!(parse_named("3600").unwrap(), 3600);
        assert!(parse_named("5w").is_err());
        assert!(DurationSpec::Seconds(-5).seconds().is_err());
    }
}
