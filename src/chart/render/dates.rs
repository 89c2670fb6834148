//! Sprig's date functions (`now`, `date`, `dateInZone`, `htmlDate`, `htmlDateInZone`,
//! `toDate`, `mustToDate`, `dateModify`, `mustDateModify`, `ago`, `unixEpoch`, `duration`,
//! `durationRound`), with Go's reference-time layouts (`2006-01-02T15:04:05Z07:00`).
//!
//! Templates have no time type: a time is a string in RFC 3339 with nanoseconds, as Go's
//! `time.RFC3339Nano` prints it (`now` gives one, and so does `toDate`), and every function
//! taking a time also takes a number of seconds since the Unix epoch. Only UTC is known
//! (reading the host's zone database would reach outside the chart): `Local` is UTC, and
//! any other zone is refused with the reason.

use super::funcs::{err, text};
use super::*;

/// A UTC instant: seconds since the Unix epoch and nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Instant {
    secs: i64,
    nanos: u32,
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// A civil date and time of day: what a layout formats, and what a date's text names.
#[derive(Debug, Clone, Copy)]
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    min: u32,
    sec: u32,
    nanos: u32,
}

impl Civil {
    /// Go's zero time, 0001-01-01 00:00:00: what a date's text leaves unsaid.
    const ZERO: Civil = Civil {
        year: 1,
        month: 1,
        day: 1,
        hour: 0,
        min: 0,
        sec: 0,
        nanos: 0,
    };
}

/// The broken-down parts of an instant (UTC).
struct Parts {
    c: Civil,
    weekday: usize,
    yday: u32,
}

impl Instant {
    fn parts(self) -> Parts {
        let days = self.secs.div_euclid(86_400);
        let rem = self.secs.rem_euclid(86_400) as u32;
        let (year, month, day) = crate::civil(days);
        Parts {
            c: Civil {
                year,
                month,
                day,
                hour: rem / 3600,
                min: rem / 60 % 60,
                sec: rem % 60,
                nanos: self.nanos,
            },
            weekday: (days + 4).rem_euclid(7) as usize,
            yday: (days - crate::days_from_civil(year, 1, 1) + 1) as u32,
        }
    }

    fn plus_nanos(self, d: i128) -> Instant {
        let total = i128::from(self.secs) * 1_000_000_000 + i128::from(self.nanos) + d;
        Instant {
            secs: total.div_euclid(1_000_000_000) as i64,
            nanos: total.rem_euclid(1_000_000_000) as u32,
        }
    }

    fn now() -> Instant {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Instant {
            secs: d.as_secs() as i64,
            nanos: d.subsec_nanos(),
        }
    }

    /// Go's zero time, what Sprig's `toDate` gives for what it cannot parse.
    fn zero() -> Instant {
        Instant {
            secs: crate::days_from_civil(1, 1, 1) * 86_400,
            nanos: 0,
        }
    }
}

/// One piece of a Go layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Text(char),
    LongMonth,
    Month,
    NumMonth,
    ZeroMonth,
    LongWeekday,
    Weekday,
    Day,
    UnderDay,
    ZeroDay,
    YearDay,
    Hour,
    Hour12,
    ZeroHour12,
    Minute,
    ZeroMinute,
    Second,
    ZeroSecond,
    LongYear,
    Year,
    PM,
    Pm,
    ZoneName,
    /// Numeric zone: whether `Z` stands for UTC, and the text for +00 (`-07:00` → `+00:00`).
    Zone {
        z: bool,
        zero: &'static str,
    },
    /// Fractional seconds: the separator, the digits, whether trailing zeros go (`9`s).
    Fraction {
        sep: char,
        digits: usize,
        trim: bool,
    },
}

/// Go's layout tokens, longest first where one is the start of another, and the chunk each
/// stands for.
const TOKENS: &[(&str, Chunk)] = &[
    ("January", Chunk::LongMonth),
    ("Jan", Chunk::Month),
    ("Monday", Chunk::LongWeekday),
    ("Mon", Chunk::Weekday),
    ("MST", Chunk::ZoneName),
    ("2006", Chunk::LongYear),
    ("002", Chunk::YearDay),
    ("01", Chunk::ZeroMonth),
    ("02", Chunk::ZeroDay),
    ("03", Chunk::ZeroHour12),
    ("04", Chunk::ZeroMinute),
    ("05", Chunk::ZeroSecond),
    ("06", Chunk::Year),
    ("15", Chunk::Hour),
    ("_2", Chunk::UnderDay),
    ("PM", Chunk::PM),
    ("pm", Chunk::Pm),
    (
        "Z07:00:00",
        Chunk::Zone {
            z: true,
            zero: "+00:00:00",
        },
    ),
    (
        "Z070000",
        Chunk::Zone {
            z: true,
            zero: "+000000",
        },
    ),
    (
        "Z07:00",
        Chunk::Zone {
            z: true,
            zero: "+00:00",
        },
    ),
    (
        "Z0700",
        Chunk::Zone {
            z: true,
            zero: "+0000",
        },
    ),
    (
        "Z07",
        Chunk::Zone {
            z: true,
            zero: "+00",
        },
    ),
    (
        "-07:00:00",
        Chunk::Zone {
            z: false,
            zero: "+00:00:00",
        },
    ),
    (
        "-070000",
        Chunk::Zone {
            z: false,
            zero: "+000000",
        },
    ),
    (
        "-07:00",
        Chunk::Zone {
            z: false,
            zero: "+00:00",
        },
    ),
    (
        "-0700",
        Chunk::Zone {
            z: false,
            zero: "+0000",
        },
    ),
    (
        "-07",
        Chunk::Zone {
            z: false,
            zero: "+00",
        },
    ),
    ("1", Chunk::NumMonth),
    ("2", Chunk::Day),
    ("3", Chunk::Hour12),
    ("4", Chunk::Minute),
    ("5", Chunk::Second),
];

/// Splits a Go layout into chunks, as Go's `nextStdChunk` does.
fn chunks(layout: &str) -> Vec<Chunk> {
    let chars: Vec<char> = layout.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    'next: while i < chars.len() {
        // Fractional seconds: . or , then 0s or 9s, not followed by a digit.
        if matches!(chars[i], '.' | ',')
            && let Some(&d) = chars.get(i + 1)
            && (d == '0' || d == '9')
        {
            let run = chars[i + 1..].iter().take_while(|&&c| c == d).count();
            if !chars.get(i + 1 + run).is_some_and(|c| c.is_ascii_digit()) {
                out.push(Chunk::Fraction {
                    sep: chars[i],
                    digits: run,
                    trim: d == '9',
                });
                i += 1 + run;
                continue;
            }
        }
        let rest: String = chars[i..].iter().take(9).collect();
        for (token, chunk) in TOKENS {
            if rest.starts_with(token) {
                out.push(*chunk);
                i += token.chars().count();
                continue 'next;
            }
        }
        out.push(Chunk::Text(chars[i]));
        i += 1;
    }
    out
}

/// Formats an instant (UTC) with a Go layout.
fn format(t: Instant, layout: &str) -> String {
    let Parts {
        c: p,
        weekday,
        yday,
    } = t.parts();
    let mut s = String::new();
    let h12 = if p.hour.is_multiple_of(12) {
        12
    } else {
        p.hour % 12
    };
    for c in chunks(layout) {
        match c {
            Chunk::Text(ch) => s.push(ch),
            Chunk::LongMonth => s.push_str(MONTHS[p.month as usize - 1]),
            Chunk::Month => s.push_str(&MONTHS[p.month as usize - 1][..3]),
            Chunk::NumMonth => s.push_str(&p.month.to_string()),
            Chunk::ZeroMonth => s.push_str(&format!("{:02}", p.month)),
            Chunk::LongWeekday => s.push_str(DAYS[weekday]),
            Chunk::Weekday => s.push_str(&DAYS[weekday][..3]),
            Chunk::Day => s.push_str(&p.day.to_string()),
            Chunk::UnderDay => s.push_str(&format!("{:>2}", p.day)),
            Chunk::ZeroDay => s.push_str(&format!("{:02}", p.day)),
            Chunk::YearDay => s.push_str(&format!("{:03}", yday)),
            Chunk::Hour => s.push_str(&format!("{:02}", p.hour)),
            Chunk::Hour12 => s.push_str(&h12.to_string()),
            Chunk::ZeroHour12 => s.push_str(&format!("{h12:02}")),
            Chunk::Minute => s.push_str(&p.min.to_string()),
            Chunk::ZeroMinute => s.push_str(&format!("{:02}", p.min)),
            Chunk::Second => s.push_str(&p.sec.to_string()),
            Chunk::ZeroSecond => s.push_str(&format!("{:02}", p.sec)),
            Chunk::LongYear => s.push_str(&format!("{:04}", p.year)),
            Chunk::Year => s.push_str(&format!("{:02}", p.year.rem_euclid(100))),
            Chunk::PM => s.push_str(if p.hour >= 12 { "PM" } else { "AM" }),
            Chunk::Pm => s.push_str(if p.hour >= 12 { "pm" } else { "am" }),
            Chunk::ZoneName => s.push_str("UTC"),
            Chunk::Zone { z, zero } => s.push_str(if z { "Z" } else { zero }),
            Chunk::Fraction { sep, digits, trim } => {
                let all = format!("{:09}", p.nanos);
                let mut f: String = all.chars().take(digits.min(9)).collect();
                if trim {
                    f = f.trim_end_matches('0').to_string();
                }
                if !f.is_empty() || !trim {
                    s.push(sep);
                    s.push_str(&f);
                }
            }
        }
    }
    s
}

const RFC3339_NANO: &str = "2006-01-02T15:04:05.999999999Z07:00";

/// Why a date does not parse with a Go layout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum DateError {
    #[error("{value:?} does not match the layout {layout:?}")]
    NoMatch { value: String, layout: String },
    #[error("time zone {0:?}: only UTC is known (berth reads no zone database)")]
    Zone(String),
    #[error("{value:?}: extra text after the layout {layout:?}")]
    Extra { value: String, layout: String },
    #[error("{0:?}: a date or time out of range")]
    OutOfRange(String),
}

/// Parses `value` with a Go layout (what Sprig's `toDate` does).
fn parse(layout: &str, value: &str) -> Result<Instant, DateError> {
    let mut r = Reader {
        v: value.chars().collect(),
        i: 0,
        value,
        layout,
    };
    let mut f = Fields::default();
    for c in chunks(layout) {
        r.chunk(c, &mut f)?;
    }
    if r.i != r.v.len() {
        return Err(DateError::Extra {
            value: value.to_string(),
            layout: layout.to_string(),
        });
    }
    f.instant(&r)
}

/// What a date's text gave, field by field (Go's zero time where it gave nothing).
struct Fields {
    c: Civil,
    /// PM (true) or AM, when the layout has it.
    pm: Option<bool>,
    /// The zone's offset east of UTC, in seconds.
    offset: i64,
}

impl Default for Fields {
    fn default() -> Self {
        Fields {
            c: Civil::ZERO,
            pm: None,
            offset: 0,
        }
    }
}

impl Fields {
    /// The instant the fields name, checked as Go checks them.
    fn instant(mut self, r: &Reader) -> Result<Instant, DateError> {
        if let Some(pm) = self.pm {
            if self.c.hour > 12 {
                return Err(r.bad());
            }
            self.c.hour = self.c.hour % 12 + if pm { 12 } else { 0 };
        }
        let Civil {
            year,
            month,
            day,
            hour,
            min,
            sec,
            nanos,
        } = self.c;
        let max_day =
            crate::days_from_civil(if month == 12 { year + 1 } else { year }, month % 12 + 1, 1)
                - crate::days_from_civil(year, month, 1);
        if !(1..=12).contains(&month)
            || day < 1
            || i64::from(day) > max_day
            || hour > 23
            || min > 59
            || sec > 59
        {
            return Err(DateError::OutOfRange(r.value.to_string()));
        }
        let secs = crate::days_from_civil(year, month, day) * 86_400
            + i64::from(hour) * 3600
            + i64::from(min) * 60
            + i64::from(sec)
            - self.offset;
        Ok(Instant { secs, nanos })
    }
}

/// A date's text, read chunk by chunk of its layout.
struct Reader<'a> {
    v: Vec<char>,
    /// The next character to read.
    i: usize,
    value: &'a str,
    layout: &'a str,
}

impl Reader<'_> {
    fn bad(&self) -> DateError {
        DateError::NoMatch {
            value: self.value.to_string(),
            layout: self.layout.to_string(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.v.get(self.i).copied()
    }

    /// Up to `max` digits (at least `min`) as a number.
    fn digits(&mut self, min: usize, max: usize) -> Result<u32, DateError> {
        let n = self.v[self.i..]
            .iter()
            .take(max)
            .take_while(|c| c.is_ascii_digit())
            .count();
        if n < min {
            return Err(self.bad());
        }
        let s: String = self.v[self.i..self.i + n].iter().collect();
        self.i += n;
        s.parse().map_err(|_| self.bad())
    }

    /// Which of `words` (cut to `len` characters) comes next, any case.
    fn word(&mut self, words: &[&str], len: Option<usize>) -> Result<usize, DateError> {
        for (k, w) in words.iter().enumerate() {
            let w: String = match len {
                Some(n) => w.chars().take(n).collect(),
                None => w.to_string(),
            };
            let here: String = self.v[self.i..].iter().take(w.chars().count()).collect();
            if here.eq_ignore_ascii_case(&w) {
                self.i += w.chars().count();
                return Ok(k);
            }
        }
        Err(self.bad())
    }

    /// `ch` comes next.
    fn expect(&mut self, ch: char) -> Result<(), DateError> {
        if self.peek() != Some(ch) {
            return Err(self.bad());
        }
        self.i += 1;
        Ok(())
    }

    /// A fraction's digits after its separator, as nanoseconds: 1 to 9 (`trim`) or `n`.
    fn fraction(&mut self, min: usize, max: usize) -> Result<u32, DateError> {
        let start = self.i;
        let f = self.digits(min, max)?;
        Ok(f * 10u32.pow((9 - (self.i - start)) as u32))
    }

    /// Reads one chunk of the layout into `f`.
    fn chunk(&mut self, c: Chunk, f: &mut Fields) -> Result<(), DateError> {
        match c {
            Chunk::Text(ch) => self.expect(ch)?,
            Chunk::LongMonth => f.c.month = self.word(&MONTHS, None)? as u32 + 1,
            Chunk::Month => f.c.month = self.word(&MONTHS, Some(3))? as u32 + 1,
            Chunk::NumMonth => f.c.month = self.digits(1, 2)?,
            Chunk::ZeroMonth => f.c.month = self.digits(2, 2)?,
            Chunk::LongWeekday => {
                self.word(&DAYS, None)?;
            }
            Chunk::Weekday => {
                self.word(&DAYS, Some(3))?;
            }
            Chunk::Day => f.c.day = self.digits(1, 2)?,
            Chunk::UnderDay => {
                if self.peek() == Some(' ') {
                    self.i += 1;
                }
                f.c.day = self.digits(1, 2)?;
            }
            Chunk::ZeroDay => f.c.day = self.digits(2, 2)?,
            Chunk::YearDay => {
                self.digits(3, 3)?;
            }
            Chunk::Hour | Chunk::ZeroHour12 => f.c.hour = self.digits(2, 2)?,
            Chunk::Hour12 => f.c.hour = self.digits(1, 2)?,
            Chunk::Minute => f.c.min = self.digits(1, 2)?,
            Chunk::ZeroMinute => f.c.min = self.digits(2, 2)?,
            Chunk::Second => f.c.sec = self.digits(1, 2)?,
            Chunk::ZeroSecond => self.zero_second(f)?,
            Chunk::LongYear => f.c.year = i64::from(self.digits(4, 4)?),
            Chunk::Year => {
                let y = i64::from(self.digits(2, 2)?);
                f.c.year = if y >= 69 { 1900 + y } else { 2000 + y };
            }
            Chunk::PM | Chunk::Pm => f.pm = Some(self.word(&["PM", "AM"], None)? == 0),
            Chunk::ZoneName => self.zone_name()?,
            Chunk::Zone { z, zero } => {
                if z && self.peek() == Some('Z') {
                    self.i += 1;
                } else {
                    f.offset = self.zone(zero)?;
                }
            }
            Chunk::Fraction {
                digits: n, trim, ..
            } => {
                if matches!(self.peek(), Some('.' | ',')) {
                    self.i += 1;
                    f.c.nanos = if trim {
                        self.fraction(1, 9)?
                    } else {
                        self.fraction(n, n.min(9))?
                    };
                } else if !trim {
                    return Err(self.bad());
                }
            }
        }
        Ok(())
    }

    /// Two-digit seconds, and the fraction Go accepts after them even when the layout has
    /// none.
    fn zero_second(&mut self, f: &mut Fields) -> Result<(), DateError> {
        f.c.sec = self.digits(2, 2)?;
        if matches!(self.peek(), Some('.' | ','))
            && self.v.get(self.i + 1).is_some_and(|c| c.is_ascii_digit())
        {
            self.i += 1;
            f.c.nanos = self.fraction(1, 9)?;
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.i += 1;
            }
        }
        Ok(())
    }

    /// A zone name: only UTC's (`UTC`, `GMT`, `Z`) are known here.
    fn zone_name(&mut self) -> Result<(), DateError> {
        let name: String = self.v[self.i..]
            .iter()
            .take_while(|c| c.is_ascii_alphabetic())
            .collect();
        if name != "UTC" && name != "GMT" && name != "Z" {
            return Err(DateError::Zone(name));
        }
        self.i += name.len();
        Ok(())
    }

    /// A numeric zone shaped like `zero` (`+00`, `+0000`, `+00:00`, `+00:00:00`): its
    /// offset east of UTC in seconds.
    fn zone(&mut self, zero: &str) -> Result<i64, DateError> {
        let sign = match self.peek() {
            Some('+') => 1,
            Some('-') => -1,
            _ => return Err(self.bad()),
        };
        self.i += 1;
        let h = i64::from(self.digits(2, 2)?);
        let (mut m, mut s) = (0, 0);
        if zero.len() > 3 {
            if zero.contains(':') {
                self.expect(':')?;
            }
            m = i64::from(self.digits(2, 2)?);
        }
        if zero.len() > 6 {
            if zero.contains(':') {
                self.expect(':')?;
            }
            s = i64::from(self.digits(2, 2)?);
        }
        Ok(sign * (h * 3600 + m * 60 + s))
    }
}

/// A time argument: a time string (RFC 3339, as `now` and `toDate` give) or seconds since
/// the Unix epoch.
fn time_arg(name: &str, v: &Value) -> Result<Instant, FuncError> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .map(|secs| Instant { secs, nanos: 0 })
            .ok_or_else(|| err(format!("{name}: {n} is not seconds since the epoch"))),
        Value::String(s) => match s.trim().parse::<i64>() {
            Ok(secs) => Ok(Instant { secs, nanos: 0 }),
            Err(_) => parse(RFC3339_NANO, s.trim()).map_err(|e| err(format!("{name}: {e}"))),
        },
        other => Err(err(format!("{name}: {other} is not a time"))),
    }
}

fn zone(name: &str, v: &Value) -> Result<(), FuncError> {
    match text(v).as_str() {
        "" | "UTC" | "Local" | "Etc/UTC" | "GMT" => Ok(()),
        z => Err(err(format!(
            "{name}: time zone {z:?}: only UTC is known (berth reads no zone database)"
        ))),
    }
}

fn timestamp(t: Instant) -> Value {
    Value::String(format(t, RFC3339_NANO))
}

fn args_n<'a>(name: &str, args: &'a [Value], n: usize) -> Result<&'a [Value], FuncError> {
    if args.len() == n {
        Ok(args)
    } else {
        Err(FuncError::ExactlyXArgs(name.into(), n))
    }
}

use crate::model::duration::parse_go as parse_duration;

/// Go's `Duration.String()`: `1h2m3.5s`, `1.5ms`, `0s`.
fn format_duration(nanos: i128) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    let frac = |value: u128, unit: u128| -> String {
        let whole = value / unit;
        let rest = value % unit;
        if rest == 0 {
            whole.to_string()
        } else {
            let width = unit.ilog10() as usize;
            let f = format!("{rest:0width$}");
            format!("{whole}.{}", f.trim_end_matches('0'))
        }
    };
    if n < 1_000 {
        return format!("{sign}{n}ns");
    }
    if n < 1_000_000 {
        return format!("{sign}{}µs", frac(n, 1_000));
    }
    if n < 1_000_000_000 {
        return format!("{sign}{}ms", frac(n, 1_000_000));
    }
    let secs = n / 1_000_000_000;
    let sub = n % 1_000_000_000;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let s = frac(s * 1_000_000_000 + sub, 1_000_000_000);
    match (h, m) {
        (0, 0) => format!("{sign}{s}s"),
        (0, m) => format!("{sign}{m}m{s}s"),
        (h, m) => format!("{sign}{h}h{m}m{s}s"),
    }
}

/// Seconds as a number, or a Go duration string, in nanoseconds (Sprig's `duration` and
/// `durationRound` take either).
fn duration_arg(name: &str, v: &Value) -> Result<i128, FuncError> {
    let t = text(v);
    match t.trim().parse::<i64>() {
        Ok(secs) => Ok(i128::from(secs) * 1_000_000_000),
        Err(_) => parse_duration(t.trim()).map_err(|e| err(format!("{name}: {e}"))),
    }
}

pub(super) fn funcs() -> Vec<(&'static str, Func)> {
    vec![
        ("now", now as Func),
        ("date", date),
        ("dateInZone", date_in_zone),
        ("htmlDate", html_date),
        ("htmlDateInZone", html_date_in_zone),
        ("toDate", to_date),
        ("mustToDate", must_to_date),
        ("dateModify", date_modify),
        ("mustDateModify", must_date_modify),
        ("ago", ago),
        ("unixEpoch", unix_epoch),
        ("duration", duration),
        ("durationRound", duration_round),
    ]
}

fn now(args: &[Value]) -> Result<Value, FuncError> {
    args_n("now", args, 0)?;
    Ok(timestamp(Instant::now()))
}

fn date(args: &[Value]) -> Result<Value, FuncError> {
    let a = args_n("date", args, 2)?;
    Ok(Value::String(format(
        time_arg("date", &a[1])?,
        &text(&a[0]),
    )))
}

fn date_in_zone(args: &[Value]) -> Result<Value, FuncError> {
    let a = args_n("dateInZone", args, 3)?;
    zone("dateInZone", &a[2])?;
    Ok(Value::String(format(
        time_arg("dateInZone", &a[1])?,
        &text(&a[0]),
    )))
}

fn html_date(args: &[Value]) -> Result<Value, FuncError> {
    let a = args_n("htmlDate", args, 1)?;
    Ok(Value::String(format(
        time_arg("htmlDate", &a[0])?,
        "2006-01-02",
    )))
}

fn html_date_in_zone(args: &[Value]) -> Result<Value, FuncError> {
    let a = args_n("htmlDateInZone", args, 2)?;
    zone("htmlDateInZone", &a[1])?;
    Ok(Value::String(format(
        time_arg("htmlDateInZone", &a[0])?,
        "2006-01-02",
    )))
}

fn must_to_date(args: &[Value]) -> Result<Value, FuncError> {
    let a = args_n("mustToDate", args, 2)?;
    parse(&text(&a[0]), &text(&a[1]))
        .map(timestamp)
        .map_err(|e| err(format!("mustToDate: {e}")))
}

/// As Sprig: what does not parse is Go's zero time.
fn to_date(args: &[Value]) -> Result<Value, FuncError> {
    let a = args_n("toDate", args, 2)?;
    Ok(timestamp(
        parse(&text(&a[0]), &text(&a[1])).unwrap_or_else(|_| Instant::zero()),
    ))
}

fn must_date_modify(args: &[Value]) -> Result<Value, FuncError> {
    let a = args_n("mustDateModify", args, 2)?;
    let d = parse_duration(&text(&a[0])).map_err(|e| err(format!("mustDateModify: {e}")))?;
    Ok(timestamp(time_arg("mustDateModify", &a[1])?.plus_nanos(d)))
}

/// As Sprig: a duration that does not parse leaves the time as it is.
fn date_modify(args: &[Value]) -> Result<Value, FuncError> {
    let a = args_n("dateModify", args, 2)?;
    let t = time_arg("dateModify", &a[1])?;
    Ok(timestamp(match parse_duration(&text(&a[0])) {
        Ok(d) => t.plus_nanos(d),
        Err(_) => t,
    }))
}

fn ago(args: &[Value]) -> Result<Value, FuncError> {
    let a = args_n("ago", args, 1)?;
    let t = time_arg("ago", &a[0])?;
    let secs = Instant::now().secs - t.secs;
    Ok(Value::String(format_duration(
        i128::from(secs) * 1_000_000_000,
    )))
}

fn unix_epoch(args: &[Value]) -> Result<Value, FuncError> {
    let a = args_n("unixEpoch", args, 1)?;
    Ok(Value::String(
        time_arg("unixEpoch", &a[0])?.secs.to_string(),
    ))
}

fn duration(args: &[Value]) -> Result<Value, FuncError> {
    let a = args_n("duration", args, 1)?;
    Ok(Value::String(format_duration(duration_arg(
        "duration", &a[0],
    )?)))
}

/// Sprig's rounding to the largest whole unit: `2h`, `3d`, `1mo`, `2y`.
fn duration_round(args: &[Value]) -> Result<Value, FuncError> {
    let a = args_n("durationRound", args, 1)?;
    let d = duration_arg("durationRound", &a[0])?.unsigned_abs() / 1_000_000_000;
    let (minute, hour, day) = (60, 3600, 86_400);
    let (month, year) = (30 * day, 365 * day);
    let out = match d {
        d if d > year => format!("{}y", d / year),
        d if d > month => format!("{}mo", d / month),
        d if d > day => format!("{}d", d / day),
        d if d > hour => format!("{}h", d / hour),
        d if d > minute => format!("{}m", d / minute),
        d if d > 0 => format!("{d}s"),
        _ => "0s".into(),
    };
    Ok(Value::String(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Instant {
        parse(RFC3339_NANO, s).unwrap()
    }

    #[test]
    fn go_layouts_format_as_go_does() {
        let t = at("2026-03-05T07:04:09.120Z");
        assert_eq!(format(t, "2006-01-02"), "2026-03-05");
        assert_eq!(format(t, RFC3339_NANO), "2026-03-05T07:04:09.12Z");
        assert_eq!(
            format(t, "Mon Jan _2 15:04:05 MST 2006"),
            "Thu Mar  5 07:04:09 UTC 2026"
        );
        assert_eq!(
            format(t, "Monday, January 2, 2006 3:04PM"),
            "Thursday, March 5, 2026 7:04AM"
        );
        assert_eq!(
            format(t, "06/1/2 03:4:5.000 -0700 pm"),
            "26/3/5 07:4:9.120 +0000 am"
        );
        assert_eq!(format(t, "002 .999999"), "064 .12");
        assert_eq!(
            format(Instant { secs: 0, nanos: 0 }, "2006-01-02 15:04"),
            "1970-01-01 00:00"
        );
        assert_eq!(
            format(Instant::zero(), RFC3339_NANO),
            "0001-01-01T00:00:00Z"
        );
    }

    #[test]
    fn layouts_parse_back_with_offsets() {
        assert_eq!(at("2026-03-05T07:04:09Z").secs, 1_772_694_249);
        assert_eq!(
            parse(RFC3339_NANO, "2026-03-05T09:04:09+02:00").unwrap(),
            at("2026-03-05T07:04:09Z")
        );
        assert_eq!(
            parse("2006-01-02", "2024-02-29").unwrap().secs,
            1_709_164_800
        );
        assert!(parse("2006-01-02", "2023-02-29").is_err());
        assert!(parse("2006-01-02", "2023-02-2x").is_err());
        assert_eq!(
            parse("Jan 2, 2006 at 3:04pm (MST)", "Feb 3, 2013 at 7:54pm (UTC)").unwrap(),
            at("2013-02-03T19:54:00Z")
        );
        assert_eq!(parse("MST", "CET"), Err(DateError::Zone("CET".into())));
    }

    #[test]
    fn durations_as_go_prints_them() {
        assert_eq!(parse_duration("1h30m").unwrap(), 5_400_000_000_000);
        assert_eq!(parse_duration("-1.5h").unwrap(), -5_400_000_000_000);
        assert!(parse_duration("1x").is_err() && parse_duration("").is_err());
        assert_eq!(format_duration(3_723_500_000_000), "1h2m3.5s");
        assert_eq!(format_duration(1_500_000), "1.5ms");
        assert_eq!(format_duration(0), "0s");
        assert_eq!(format_duration(-90_000_000_000), "-1m30s");
        let round = |v: &str| {
            duration_round(&[Value::String(v.into())])
                .unwrap()
                .to_string()
        };
        assert_eq!(round("7200"), "2h");
        assert_eq!(round("3h10m"), "3h");
        assert_eq!(round("800h"), "1mo");
        let d = |v: i64| duration(&[Value::from(v)]).unwrap().to_string();
        assert_eq!(d(95), "1m35s");
    }

    #[test]
    fn date_functions_take_times_and_epoch_seconds() {
        let s = |v: &str| Value::String(v.into());
        let out = date(&[s("2006-01-02"), Value::from(86_400i64)]).unwrap();
        assert_eq!(out.to_string(), "1970-01-02");
        let t = to_date(&[s("2006-01-02"), s("2026-11-30")]).unwrap();
        assert_eq!(t.to_string(), "2026-11-30T00:00:00Z");
        let later = date_modify(&[s("-1.5h"), t.clone()]).unwrap();
        assert_eq!(later.to_string(), "2026-11-29T22:30:00Z");
        assert_eq!(
            unix_epoch(std::slice::from_ref(&t)).unwrap().to_string(),
            "1795996800"
        );
        assert_eq!(
            to_date(&[s("2006"), s("x")]).unwrap().to_string(),
            "0001-01-01T00:00:00Z"
        );
        assert!(must_to_date(&[s("2006"), s("x")]).is_err());
        assert!(
            date_in_zone(&[s("2006"), t.clone(), s("Europe/Paris")])
                .unwrap_err()
                .to_string()
                .contains("only UTC")
        );
        assert_eq!(
            html_date_in_zone(&[t, s("UTC")]).unwrap().to_string(),
            "2026-11-30"
        );
    }
}
