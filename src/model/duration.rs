//! Pacemaker's time values: operation intervals and timeouts, failure-timeout.
//!
//! Pacemaker Explained ("Specifying Time Values"): a number with an optional unit, seconds
//! when there is none; units ms/msec, us/usec, s/sec, m/min, h/hr; or an ISO 8601 duration
//! such as `PT1M30S`.

use std::time::Duration;

/// Why a time value does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty time value")]
    Empty,
    #[error("not an ISO 8601 duration: {0}")]
    NotIso8601(String),
    #[error("not a number with a unit (30s, 1m, 500ms): {0}")]
    NotANumber(String),
    #[error("unknown time unit {0:?} (ms, s, m, h)")]
    UnknownUnit(String),
}

/// Why a Go duration is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GoDurationError {
    #[error("{0:?} is not a duration (like 1h30m, -1.5h, 300ms)")]
    NotADuration(String),
    #[error("{0:?}: a duration over 292 years")]
    TooLong(String),
}

/// A Go duration (`1h30m`, `-1.5h`, `300ms`, as Docker's flags and Sprig take them) in
/// nanoseconds.
pub fn parse_go(s: &str) -> Result<i128, GoDurationError> {
    let bad = || GoDurationError::NotADuration(s.to_string());
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let number: f64 = rest[..n].parse().map_err(|_| bad())?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..u] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        total += number * unit;
        rest = &rest[u..];
    }
    if total > 9.2e18 {
        return Err(GoDurationError::TooLong(s.to_string()));
    }
    Ok(if neg { -(total as i128) } else { total as i128 })
}

/// Parses a Pacemaker time value. The error says what is wrong, for a field-path message.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(DurationError::Empty);
    }
    if let Some(rest) = t.strip_prefix('P').or_else(|| t.strip_prefix('p')) {
        return parse_iso8601(rest).ok_or_else(|| DurationError::NotIso8601(t.to_string()));
    }
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| DurationError::NotANumber(t.to_string()))?;
    let unit = unit.trim().to_ascii_lowercase();
    let d = match unit.as_str() {
        "" | "s" | "sec" => Duration::from_secs(n),
        "ms" | "msec" => Duration::from_millis(n),
        "us" | "usec" => Duration::from_micros(n),
        "m" | "min" => Duration::from_secs(n.saturating_mul(60)),
        "h" | "hr" => Duration::from_secs(n.saturating_mul(3600)),
        other => return Err(DurationError::UnknownUnit(other.to_string())),
    };
    Ok(d)
}

/// `[nD][T[nH][nM][nS]]` after the `P`; years, months and weeks are refused because their
/// length depends on a calendar date, which an interval has not.
fn parse_iso8601(rest: &str) -> Option<Duration> {
    let mut secs = 0u64;
    let mut in_time = false;
    let mut num = String::new();
    let mut any = false;
    for c in rest.chars() {
        match c {
            '0'..='9' => num.push(c),
            'T' | 't' if num.is_empty() && !in_time => in_time = true,
            _ => {
                let n: u64 = num.parse().ok()?;
                num.clear();
                let mult = match (in_time, c.to_ascii_uppercase()) {
                    (false, 'D') => 86_400,
                    (true, 'H') => 3600,
                    (true, 'M') => 60,
                    (true, 'S') => 1,
                    _ => return None,
                };
                secs = secs.checked_add(n.checked_mul(mult)?)?;
                any = true;
            }
        }
    }
    (num.is_empty() && any).then(|| Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_as_pacemaker_documents() {
        let s = Duration::from_secs;
        for (t, d) in [
            ("0", s(0)),
            ("10", s(10)),
            ("30s", s(30)),
            ("2min", s(120)),
            ("1h", s(3600)),
            ("500ms", Duration::from_millis(500)),
            ("PT1M30S", s(90)),
            ("P1DT1H", s(90_000)),
        ] {
            assert_eq!(parse(t), Ok(d), "{t}");
        }
    }

    #[test]
    fn refuses_garbage() {
        for t in ["", "abc", "10 parsecs", "-5", "P", "PT", "P1Y", "PT5"] {
            assert!(parse(t).is_err(), "{t} should be refused");
        }
    }
}
