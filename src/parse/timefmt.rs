//! Timestamps found in log lines.
//!
//! [`parse_timestamp`] recognises the date layouts that CrowdSec's `ParseDate`
//! enricher accepts (plus a few common extras) with a hand-written byte-level
//! scanner: no regex, no allocation, never a panic, whatever the input.
//!
//! Accepted layouts (Go reference-time notation; leading and trailing ASCII
//! whitespace is ignored, a run of spaces matches any run of spaces, month and
//! weekday names are English and case-insensitive, full names accepted too):
//!
//! | layout | typical source |
//! |---|---|
//! | `2006-01-02T15:04:05Z07:00`, with `.999999999`, `Z`, `-0700`, `-07` | RFC 3339, rsyslog, journalctl `short-iso` |
//! | `2006-01-02T15:04:05` (no zone) | many JSON logs |
//! | `2006-01-02 15:04:05`, `2006-01-02 15:04`, `2006-01-02` | mysql, CrowdSec layouts |
//! | `2006-01-02 15:04:05,000` / `.000` | python / java logging |
//! | `2006-01-02 15:04:05.999999999 -0700 MST` | Go `time.Time.String()` |
//! | `2006/01/02 15:04:05`, `2006/01/02 15:04`, `2006/01/02` | nginx error log |
//! | `02/Jan/2006:15:04:05 -0700` | nginx / apache access log (CLF) |
//! | `01/02/2006 15:04:05` | US month-first dates |
//! | `02-Jan-2006 15:04:05` | tomcat, bind |
//! | `Jan  2 15:04:05`, `Jan 2 15:04:05`, with `.000000` | syslog (year-less) |
//! | `Jan 2 2006 15:04:05`, `Jan 2 15:04:05 2006` | syslog variants with a year |
//! | `Jan 2, 2006 3:04:05 PM` | java `DateFormat` |
//! | `Mon Jan  2 15:04:05 2006`, with `.000000`, with `MST`/`-0700` before the year | ctime, apache error log |
//! | `Mon, 02 Jan 2006 15:04:05 -0700` | RFC 1123 / RFC 2822 |
//! | `1136214245`, `1136214245.123` | unix epoch seconds |
//!
//! A fractional second may follow the seconds in every layout with seconds,
//! introduced by `.` or `,` (as Go's `time.Parse` allows); digits past the
//! ninth are ignored. Zone abbreviations other than `UTC`/`GMT`/`Z` are only
//! accepted (and ignored) right after a numeric offset.
//!
//! # Year-less dates
//!
//! Syslog dates carry no year. With [`TimeContext::year_rollback`] `false`
//! (CrowdSec's behaviour) they get the year of [`TimeContext::now`] in UTC,
//! even when that puts them in the future. With `year_rollback` `true`
//! (fail2ban's behaviour) a date that would land more than one day after
//! `now` is moved to the previous year, so `Dec 31` read on January 1st means
//! last December. `Feb 29` in a non-leap year becomes `Mar 1`, as Go's
//! `time.AddDate` normalises it.
//!
//! # Zones
//!
//! A date written without an offset is read as wall-clock time at
//! [`TimeContext::default_offset`] (UTC by default, like Go's `time.Parse`).
//! [`parse_timestamp_with_offset`] also returns the offset that applies, so
//! [`format_rfc3339`] can reproduce CrowdSec's `MarshaledTime` /
//! `Meta.timestamp` text (`2023-10-17T05:57:49+11:00`).
//!
//! The module also holds Go-compatible duration helpers,
//! [`parse_go_duration`] and [`format_go_duration`].

use std::fmt::Write as _;
use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::Offset;

/// What a timestamp is read relative to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeContext {
    /// The current instant: supplies the year of year-less dates.
    pub now: Timestamp,
    /// Offset of wall-clock dates written without a zone (UTC by default).
    pub default_offset: Offset,
    /// `false`: year-less dates get `now`'s year (CrowdSec). `true`: a
    /// year-less date more than a day after `now` gets the previous year
    /// (fail2ban). See the [module documentation](self).
    pub year_rollback: bool,
}

impl TimeContext {
    /// A CrowdSec-like context: UTC default offset, no year rollback.
    pub fn new(now: Timestamp) -> Self {
        Self {
            now,
            default_offset: Offset::UTC,
            year_rollback: false,
        }
    }

    /// The same context with year rollback switched on (fail2ban semantics).
    #[must_use]
    pub fn with_year_rollback(mut self, on: bool) -> Self {
        self.year_rollback = on;
        self
    }

    /// The same context with another offset for zone-less dates.
    #[must_use]
    pub fn with_default_offset(mut self, offset: Offset) -> Self {
        self.default_offset = offset;
        self
    }
}

impl Default for TimeContext {
    /// [`TimeContext::new`] at the current system time.
    fn default() -> Self {
        Self::new(Timestamp::now())
    }
}

/// Parses a timestamp in one of the [supported layouts](self).
///
/// Returns `None` when the text is not a date in a known layout or names an
/// impossible date (`Feb 30`, hour 24, ...).
pub fn parse_timestamp(s: &str, ctx: &TimeContext) -> Option<Timestamp> {
    parse_timestamp_with_offset(s, ctx).map(|(ts, _)| ts)
}

/// Parses a timestamp like [`parse_timestamp`] and also returns the offset
/// written in the text, or `ctx.default_offset` when it has none (epoch
/// numbers included).
pub fn parse_timestamp_with_offset(s: &str, ctx: &TimeContext) -> Option<(Timestamp, Offset)> {
    let fields = scan(s.as_bytes().trim_ascii())?;
    resolve(&fields, ctx)
}

/// Renders `ts` at `offset` the way Go's `time.Time.MarshalText` does
/// (RFC 3339 with nanoseconds, trailing zeros of the fraction removed, no
/// fraction at all when it is zero, `Z` for a zero offset):
/// `2023-10-17T05:57:49+11:00`, `2025-11-06T11:32:42.868451Z`.
///
/// This is the text CrowdSec stores in `Enriched.MarshaledTime` and
/// `Meta.timestamp`. Seconds of an offset are dropped, as Go does.
pub fn format_rfc3339(ts: Timestamp, offset: Offset) -> String {
    let mut secs = ts.as_second();
    let mut nanos = i64::from(ts.subsec_nanosecond());
    if nanos < 0 {
        secs -= 1;
        nanos += 1_000_000_000;
    }
    let off = offset.seconds();
    let local = secs.saturating_add(i64::from(off));
    let days = local.div_euclid(86_400);
    let sod = local.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    // Digits are pushed by hand: this runs for every parsed line, and `write!` through
    // `core::fmt` cost more than the rest of the parse of an sshd line's time.
    let mut out = String::with_capacity(35);
    if !(0..=9999).contains(&y) {
        // Out of RFC 3339's range: Go prints such years as they are.
        let _ = write!(out, "{y:04}");
    } else {
        push_digits(&mut out, y as u64, 4);
    }
    out.push('-');
    push_digits(&mut out, u64::from(m), 2);
    out.push('-');
    push_digits(&mut out, u64::from(d), 2);
    out.push('T');
    push_digits(&mut out, (sod / 3600) as u64, 2);
    out.push(':');
    push_digits(&mut out, ((sod / 60) % 60) as u64, 2);
    out.push(':');
    push_digits(&mut out, (sod % 60) as u64, 2);
    if nanos > 0 {
        let mut n = nanos as u64;
        let mut width = 9;
        while n.is_multiple_of(10) {
            n /= 10;
            width -= 1;
        }
        out.push('.');
        push_digits(&mut out, n, width);
    }
    if off == 0 {
        out.push('Z');
    } else {
        out.push(if off < 0 { '-' } else { '+' });
        let a = u64::from(off.unsigned_abs());
        push_digits(&mut out, a / 3600, 2);
        out.push(':');
        push_digits(&mut out, (a / 60) % 60, 2);
    }
    out
}

/// Pushes `v` in decimal, zero-padded to `width` digits (`v` must fit in them).
fn push_digits(out: &mut String, v: u64, width: u32) {
    for i in (0..width).rev() {
        let digit = (v / 10u64.pow(i)) % 10;
        out.push(char::from(b'0' + digit as u8));
    }
}

// ---------------------------------------------------------------------------
// Scanning

/// Date and time fields read from the text, not yet validated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Fields {
    year: Option<i32>,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    nanos: u32,
    /// Offset east of UTC in seconds, when written.
    offset: Option<i32>,
    /// Already an absolute instant (epoch input): fields above unused.
    epoch: Option<(i64, u32)>,
}

/// A byte cursor; every method leaves the position alone on failure.
struct Cur<'a> {
    b: &'a [u8],
    i: usize,
}

/// English month names, lowercase (also used by the syslog header scanner).
pub(crate) const MONTHS: [&[u8]; 12] = [
    b"january",
    b"february",
    b"march",
    b"april",
    b"may",
    b"june",
    b"july",
    b"august",
    b"september",
    b"october",
    b"november",
    b"december",
];

/// The month (1–12) whose three-letter English abbreviation `abbr` is, in any case: one
/// decision tree on the letters instead of a walk over the twelve names (every syslog
/// line's header has one, read twice: by the envelope and by the time).
pub(crate) fn month_of_abbreviation(abbr: [u8; 3]) -> Option<u32> {
    // `| 0x20` lowercases ASCII letters; the only bytes it maps onto a lowercase letter
    // are that letter and its capital.
    Some(match abbr.map(|c| c | 0x20) {
        [b'j', b'a', b'n'] => 1,
        [b'f', b'e', b'b'] => 2,
        [b'm', b'a', b'r'] => 3,
        [b'a', b'p', b'r'] => 4,
        [b'm', b'a', b'y'] => 5,
        [b'j', b'u', b'n'] => 6,
        [b'j', b'u', b'l'] => 7,
        [b'a', b'u', b'g'] => 8,
        [b's', b'e', b'p'] => 9,
        [b'o', b'c', b't'] => 10,
        [b'n', b'o', b'v'] => 11,
        [b'd', b'e', b'c'] => 12,
        _ => return None,
    })
}

const WEEKDAYS: [&[u8]; 7] = [
    b"monday",
    b"tuesday",
    b"wednesday",
    b"thursday",
    b"friday",
    b"saturday",
    b"sunday",
];

impl<'a> Cur<'a> {
    fn new(b: &'a [u8]) -> Self {
        Cur { b, i: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn done(&self) -> bool {
        self.i >= self.b.len()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// Eats a run of spaces (and tabs); returns how many.
    fn spaces(&mut self) -> usize {
        let start = self.i;
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
        self.i - start
    }

    /// Reads between `min` and `max` decimal digits (stops after `max`).
    fn num(&mut self, min: usize, max: usize) -> Option<u32> {
        let start = self.i;
        let mut v: u32 = 0;
        while self.i - start < max {
            match self.peek() {
                Some(c @ b'0'..=b'9') => {
                    v = v * 10 + u32::from(c - b'0');
                    self.i += 1;
                }
                _ => break,
            }
        }
        if self.i - start < min {
            self.i = start;
            return None;
        }
        Some(v)
    }

    /// Number of digits starting at the cursor.
    fn digit_run(&self) -> usize {
        self.b[self.i.min(self.b.len())..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count()
    }

    /// An optional fraction of second (`.123` or `,123`) in nanoseconds.
    fn frac(&mut self) -> u32 {
        if !matches!(self.peek(), Some(b'.' | b',')) {
            return 0;
        }
        if !matches!(self.b.get(self.i + 1), Some(b'0'..=b'9')) {
            return 0;
        }
        self.i += 1;
        let mut v: u32 = 0;
        let mut n = 0;
        while let Some(c @ b'0'..=b'9') = self.peek() {
            if n < 9 {
                v = v * 10 + u32::from(c - b'0');
                n += 1;
            }
            self.i += 1;
        }
        while n < 9 {
            v *= 10;
            n += 1;
        }
        v
    }

    /// A run of ASCII letters, lowercase-compared against `names`; accepts the
    /// three-letter abbreviation or the full name. Returns the 1-based index.
    fn name(&mut self, names: &[&[u8]]) -> Option<u32> {
        let start = self.i;
        while matches!(self.peek(), Some(c) if c.is_ascii_alphabetic()) {
            self.i += 1;
        }
        let word = &self.b[start..self.i];
        // The common case, an abbreviation: one lowercased triple against each name's
        // first three letters (names are lowercase).
        if let [a, b, c] = word {
            let abbr = [
                a.to_ascii_lowercase(),
                b.to_ascii_lowercase(),
                c.to_ascii_lowercase(),
            ];
            if let Some(k) = names.iter().position(|n| n.get(..3) == Some(&abbr[..])) {
                return u32::try_from(k + 1).ok();
            }
            self.i = start;
            return None;
        }
        // Longer: the full name, in any case.
        for (k, full) in names.iter().enumerate() {
            // "Sept" is a common extra abbreviation.
            let sept = k == 8 && word.eq_ignore_ascii_case(b"sept");
            if full.eq_ignore_ascii_case(word) || sept {
                return u32::try_from(k + 1).ok();
            }
        }
        self.i = start;
        None
    }

    fn month(&mut self) -> Option<u32> {
        // The common case, an abbreviation followed by a non-letter.
        if let Some(&[a, b, c]) = self.b.get(self.i..self.i + 3)
            && !matches!(self.b.get(self.i + 3), Some(d) if d.is_ascii_alphabetic())
        {
            let m = month_of_abbreviation([a, b, c])?;
            self.i += 3;
            return Some(m);
        }
        self.name(&MONTHS)
    }

    fn weekday(&mut self) -> bool {
        self.name(&WEEKDAYS).is_some()
    }

    /// Exact ASCII word, case-insensitive, not followed by a letter.
    fn word(&mut self, w: &[u8]) -> bool {
        let end = self.i + w.len();
        match self.b.get(self.i..end) {
            Some(s) if s.eq_ignore_ascii_case(w) => {
                if matches!(self.b.get(end), Some(c) if c.is_ascii_alphabetic()) {
                    return false;
                }
                self.i = end;
                true
            }
            _ => false,
        }
    }

    /// `15:04[:05[.999]]` into `f`.
    fn time(&mut self, f: &mut Fields) -> Option<()> {
        let start = self.i;
        let r = (|| {
            f.hour = self.num(1, 2)?;
            if !self.eat(b':') {
                return None;
            }
            f.minute = self.num(2, 2)?;
            if self.peek() == Some(b':') && matches!(self.b.get(self.i + 1), Some(b'0'..=b'9')) {
                self.i += 1;
                f.second = self.num(2, 2)?;
                f.nanos = self.frac();
            }
            Some(())
        })();
        if r.is_none() {
            self.i = start;
        }
        r
    }

    /// Optional zone, possibly after spaces: `Z`, `±hh`, `±hhmm`, `±hh:mm`
    /// (then an optional ignored abbreviation such as ` MST`), `UTC`, `GMT`.
    /// Leaves the cursor alone when there is none.
    fn zone(&mut self) -> Option<i32> {
        let start = self.i;
        self.spaces();
        match self.peek() {
            Some(b'Z' | b'z') if !matches!(self.b.get(self.i + 1), Some(c) if c.is_ascii_alphabetic()) =>
            {
                self.i += 1;
                return Some(0);
            }
            Some(s @ (b'+' | b'-')) => {
                self.i += 1;
                if let Some(h) = self.num(2, 2) {
                    let colon = self.eat(b':');
                    let m = if colon || self.digit_run() >= 2 {
                        self.num(2, 2)
                    } else {
                        Some(0)
                    };
                    if let Some(m) = m
                        && h <= 25
                        && m <= 59
                    {
                        let after = self.i;
                        // Ignored abbreviation: "-0700 MST".
                        if self.spaces() > 0 {
                            let a = self.i;
                            while matches!(self.peek(), Some(c) if c.is_ascii_alphabetic()) {
                                self.i += 1;
                            }
                            if self.i == a {
                                self.i = after;
                            }
                        }
                        let v = i32::try_from(h * 3600 + m * 60).ok()?;
                        return Some(if s == b'-' { -v } else { v });
                    }
                }
            }
            _ => {
                if self.word(b"UTC") || self.word(b"GMT") {
                    return Some(0);
                }
            }
        }
        self.i = start;
        None
    }
}

/// Dispatches on the shape of the first bytes.
fn scan(b: &[u8]) -> Option<Fields> {
    let first = *b.first()?;
    let mut c = Cur::new(b);
    let f = if first.is_ascii_digit() {
        let n = c.digit_run();
        match (n, b.get(n).copied()) {
            (4, Some(b'-' | b'/')) => iso_like(&mut c)?,
            (1 | 2, Some(b'/')) => match b.get(n + 1) {
                Some(x) if x.is_ascii_alphabetic() => clf(&mut c)?,
                _ => us_date(&mut c)?,
            },
            (1 | 2, Some(b'-')) => dash_month(&mut c)?,
            (_, None | Some(b'.')) => epoch(&mut c)?,
            _ => return None,
        }
    } else if first.is_ascii_alphabetic() {
        if c.month().is_some() {
            c.i = 0;
            month_first(&mut c)?
        } else if c.weekday() {
            after_weekday(&mut c)?
        } else {
            return None;
        }
    } else {
        return None;
    };
    c.spaces();
    c.done().then_some(f)
}

/// `2006-01-02[(T| )15:04[:05[.9]]][zone]`, also with `/` separators.
fn iso_like(c: &mut Cur) -> Option<Fields> {
    let mut f = Fields {
        year: Some(i32::try_from(c.num(4, 4)?).ok()?),
        ..Fields::default()
    };
    let sep = c.peek()?;
    c.i += 1;
    f.month = c.num(1, 2)?;
    if !c.eat(sep) {
        return None;
    }
    f.day = c.num(1, 2)?;
    if c.done() {
        return Some(f);
    }
    if !(c.eat(b'T') || c.eat(b't')) && c.spaces() == 0 {
        return None;
    }
    c.time(&mut f)?;
    f.offset = c.zone();
    Some(f)
}

/// `02/Jan/2006:15:04:05 -0700`.
fn clf(c: &mut Cur) -> Option<Fields> {
    let mut f = Fields {
        day: c.num(1, 2)?,
        ..Fields::default()
    };
    if !c.eat(b'/') {
        return None;
    }
    f.month = c.month()?;
    if !c.eat(b'/') {
        return None;
    }
    f.year = Some(i32::try_from(c.num(4, 4)?).ok()?);
    if !c.eat(b':') {
        return None;
    }
    c.time(&mut f)?;
    f.offset = c.zone();
    Some(f)
}

/// `01/02/2006 15:04:05`.
fn us_date(c: &mut Cur) -> Option<Fields> {
    let mut f = Fields {
        month: c.num(1, 2)?,
        ..Fields::default()
    };
    if !c.eat(b'/') {
        return None;
    }
    f.day = c.num(1, 2)?;
    if !c.eat(b'/') {
        return None;
    }
    f.year = Some(i32::try_from(c.num(4, 4)?).ok()?);
    if c.done() {
        return Some(f);
    }
    if c.spaces() == 0 {
        return None;
    }
    c.time(&mut f)?;
    f.offset = c.zone();
    Some(f)
}

/// `02-Jan-2006 15:04:05`.
fn dash_month(c: &mut Cur) -> Option<Fields> {
    let mut f = Fields {
        day: c.num(1, 2)?,
        ..Fields::default()
    };
    if !c.eat(b'-') {
        return None;
    }
    f.month = c.month()?;
    if !c.eat(b'-') {
        return None;
    }
    f.year = Some(i32::try_from(c.num(4, 4)?).ok()?);
    if c.done() {
        return Some(f);
    }
    if c.spaces() == 0 {
        return None;
    }
    c.time(&mut f)?;
    f.offset = c.zone();
    Some(f)
}

/// `1136214245[.123]`.
fn epoch(c: &mut Cur) -> Option<Fields> {
    let n = c.digit_run();
    if n == 0 || n > 18 {
        return None;
    }
    let mut secs: i64 = 0;
    for _ in 0..n {
        let d = c.peek()?;
        secs = secs * 10 + i64::from(d - b'0');
        c.i += 1;
    }
    let nanos = c.frac();
    Some(Fields {
        epoch: Some((secs, nanos)),
        ..Fields::default()
    })
}

/// Dates starting with a month name: syslog `Jan  2 15:04:05[.9]`, plus
/// `Jan 2 2006 15:04:05`, `Jan 2 15:04:05 2006`, `Jan 2, 2006 3:04:05 PM`.
fn month_first(c: &mut Cur) -> Option<Fields> {
    let mut f = Fields {
        month: c.month()?,
        ..Fields::default()
    };
    if c.spaces() == 0 {
        return None;
    }
    f.day = c.num(1, 2)?;
    if c.eat(b',') {
        c.spaces();
        f.year = Some(i32::try_from(c.num(4, 4)?).ok()?);
        if c.spaces() == 0 {
            return None;
        }
        c.time(&mut f)?;
        let save = c.i;
        c.spaces();
        if c.word(b"AM") || c.word(b"PM") {
            let pm =
                c.b.get(c.i - 2)
                    .is_some_and(|x| x.eq_ignore_ascii_case(&b'P'));
            if !(1..=12).contains(&f.hour) {
                return None;
            }
            f.hour = f.hour % 12 + if pm { 12 } else { 0 };
        } else {
            c.i = save;
        }
        f.offset = c.zone();
        return Some(f);
    }
    if c.spaces() == 0 {
        return None;
    }
    if c.digit_run() == 4 && c.b.get(c.i + 4) != Some(&b':') {
        f.year = Some(i32::try_from(c.num(4, 4)?).ok()?);
        if c.spaces() == 0 {
            return None;
        }
        c.time(&mut f)?;
        f.offset = c.zone();
        return Some(f);
    }
    c.time(&mut f)?;
    f.offset = c.zone();
    let save = c.i;
    if c.spaces() > 0
        && c.digit_run() == 4
        && let Some(y) = c.num(4, 4)
    {
        f.year = Some(i32::try_from(y).ok()?);
    } else {
        c.i = save;
    }
    Some(f)
}

/// After a weekday name: ctime `Mon Jan  2 15:04:05[.9] [zone ]2006` or
/// RFC 1123 `Mon, 02 Jan 2006 15:04:05 -0700`.
fn after_weekday(c: &mut Cur) -> Option<Fields> {
    let mut f = Fields::default();
    if c.eat(b',') {
        c.spaces();
        f.day = c.num(1, 2)?;
        if c.spaces() == 0 {
            return None;
        }
        f.month = c.month()?;
        if c.spaces() == 0 {
            return None;
        }
        f.year = Some(i32::try_from(c.num(4, 4)?).ok()?);
        if c.spaces() == 0 {
            return None;
        }
        c.time(&mut f)?;
        f.offset = c.zone();
        return Some(f);
    }
    if c.spaces() == 0 {
        return None;
    }
    f.month = c.month()?;
    if c.spaces() == 0 {
        return None;
    }
    f.day = c.num(1, 2)?;
    if c.spaces() == 0 {
        return None;
    }
    c.time(&mut f)?;
    f.offset = c.zone();
    if c.spaces() == 0 {
        return None;
    }
    f.year = Some(i32::try_from(c.num(4, 4)?).ok()?);
    Some(f)
}

// ---------------------------------------------------------------------------
// Calendar arithmetic

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    // d is in 1..=31 and m in 1..=12 by construction.
    (y, m as u32, d as u32)
}

fn build(y: i64, f: &Fields, offset: i32) -> Option<Timestamp> {
    let (mut m, mut d) = (f.month, f.day);
    if d > days_in_month(y, m) {
        if m == 2 && d == 29 {
            // Go: year 0 is leap, AddDate then normalises to March 1st.
            (m, d) = (3, 1);
        } else {
            return None;
        }
    }
    let secs = days_from_civil(y, m, d) * 86_400
        + i64::from(f.hour * 3600 + f.minute * 60 + f.second)
        - i64::from(offset);
    Timestamp::new(secs, i32::try_from(f.nanos).ok()?).ok()
}

fn resolve(f: &Fields, ctx: &TimeContext) -> Option<(Timestamp, Offset)> {
    if let Some((secs, nanos)) = f.epoch {
        let ts = Timestamp::new(secs, i32::try_from(nanos).ok()?).ok()?;
        return Some((ts, ctx.default_offset));
    }
    if !(1..=12).contains(&f.month)
        || f.day == 0
        || f.day > 31
        || f.hour > 23
        || f.minute > 59
        || f.second > 59
    {
        return None;
    }
    let (offset_secs, offset) = match f.offset {
        Some(s) => (s, Offset::from_seconds(s).ok()?),
        None => (ctx.default_offset.seconds(), ctx.default_offset),
    };
    let ts = match f.year {
        Some(y) => {
            if f.day > days_in_month(i64::from(y), f.month) {
                return None;
            }
            build(i64::from(y), f, offset_secs)?
        }
        None => {
            let (now_year, _, _) = civil_from_days(ctx.now.as_second().div_euclid(86_400));
            let ts = build(now_year, f, offset_secs)?;
            if ctx.year_rollback && ts.as_second() > ctx.now.as_second().saturating_add(86_400) {
                build(now_year - 1, f, offset_secs)?
            } else {
                ts
            }
        }
    };
    Some((ts, offset))
}

// ---------------------------------------------------------------------------
// Go durations

const NS: u128 = 1;
const US: u128 = 1_000;
const MS: u128 = 1_000_000;
const SEC: u128 = 1_000_000_000;
const MIN: u128 = 60 * SEC;
const HOUR: u128 = 60 * MIN;
const DAY: u128 = 24 * HOUR;
/// Go's `time.Duration` is an `int64` of nanoseconds.
const GO_MAX: u128 = i64::MAX as u128;

/// Parses a Go duration string (`time.ParseDuration` syntax) into a
/// [`Duration`]: `"10s"`, `"1m30s"`, `"4h"`, `"500ms"`, `"1.5h"`, `"2us"`,
/// `"2µs"`, `"0"`. Also accepts a `d` (24 h) unit, as CrowdSec's
/// `ParseDuration` does for `"7d"`; here `d` may also be combined with other
/// units (`"1d12h"`) or be fractional (`"1.5d"`), a superset of CrowdSec.
///
/// Returns `None` for an empty or malformed string, a negative duration, or a
/// value past Go's limit (`i64::MAX` nanoseconds, about 292 years).
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let b = s.as_bytes();
    let mut i = 0;
    match b.first() {
        Some(b'+') => i = 1,
        Some(b'-') => {
            // Only a negative zero fits in an unsigned duration.
            let d = parse_go_duration(s.get(1..)?)?;
            return d.is_zero().then_some(d);
        }
        _ => {}
    }
    if b.get(i..) == Some(b"0") {
        return Some(Duration::ZERO);
    }
    if i >= b.len() {
        return None;
    }
    let mut total: u128 = 0;
    while i < b.len() {
        // Integer part.
        let int_start = i;
        let mut int: u128 = 0;
        while let Some(c @ b'0'..=b'9') = b.get(i).copied() {
            int = int * 10 + u128::from(c - b'0');
            if int > GO_MAX {
                return None;
            }
            i += 1;
        }
        let had_int = i > int_start;
        // Fraction.
        let mut frac: u128 = 0;
        let mut scale: u128 = 1;
        let mut had_frac = false;
        if b.get(i) == Some(&b'.') {
            i += 1;
            while let Some(c @ b'0'..=b'9') = b.get(i).copied() {
                had_frac = true;
                if scale < 1_000_000_000_000_000_000 {
                    frac = frac * 10 + u128::from(c - b'0');
                    scale *= 10;
                }
                i += 1;
            }
        }
        if !had_int && !had_frac {
            return None;
        }
        // Unit: everything up to the next digit or dot.
        let u_start = i;
        while i < b.len() && b[i] != b'.' && !b[i].is_ascii_digit() {
            i += 1;
        }
        let unit = match &b[u_start..i] {
            b"ns" => NS,
            b"us" | b"\xc2\xb5s" | b"\xce\xbcs" => US, // us, µs (U+00B5), μs (U+03BC)
            b"ms" => MS,
            b"s" => SEC,
            b"m" => MIN,
            b"h" => HOUR,
            b"d" => DAY,
            _ => return None,
        };
        let v = int.checked_mul(unit)? + frac * unit / scale;
        total = total.checked_add(v)?;
        if total > GO_MAX {
            return None;
        }
    }
    let secs = u64::try_from(total / SEC).ok()?;
    let nanos = u32::try_from(total % SEC).ok()?;
    Some(Duration::new(secs, nanos))
}

/// Renders a duration exactly like Go's `time.Duration.String()`:
/// `"4h0m0s"`, `"1m30s"`, `"500ms"`, `"1.5µs"`, `"0s"`, `"3h59m59.123s"`.
///
/// Durations past Go's `int64` range are rendered with the same scheme
/// rather than wrapped.
pub fn format_go_duration(d: Duration) -> String {
    let u = d.as_nanos();
    let mut out = String::with_capacity(24);
    if u == 0 {
        out.push_str("0s");
        return out;
    }
    if u < SEC {
        let (div, unit) = if u < US {
            (NS, "ns")
        } else if u < MS {
            (US, "µs")
        } else {
            (MS, "ms")
        };
        let _ = write!(out, "{}", u / div);
        push_frac(&mut out, u % div, div);
        out.push_str(unit);
        return out;
    }
    let total_secs = u / SEC;
    let h = total_secs / 3600;
    let m = (total_secs / 60) % 60;
    let s = total_secs % 60;
    if h > 0 {
        let _ = write!(out, "{h}h{m}m");
    } else if m > 0 {
        let _ = write!(out, "{m}m");
    }
    let _ = write!(out, "{s}");
    push_frac(&mut out, u % SEC, SEC);
    out.push('s');
    out
}

/// Appends `.ddd` for `rem / div` without trailing zeros (nothing if zero).
fn push_frac(out: &mut String, rem: u128, div: u128) {
    if rem == 0 {
        return;
    }
    let width = match div {
        US => 3,
        MS => 6,
        _ => 9,
    };
    let mut digits = format!("{rem:0width$}");
    while digits.ends_with('0') {
        digits.pop();
    }
    out.push('.');
    out.push_str(&digits);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("test timestamp")
    }

    fn ctx2026() -> TimeContext {
        TimeContext::new(ts("2026-03-15T12:00:00Z"))
    }

    /// Parses and renders like CrowdSec's MarshaledTime.
    fn marshal(s: &str, ctx: &TimeContext) -> Option<String> {
        parse_timestamp_with_offset(s, ctx).map(|(t, o)| format_rfc3339(t, o))
    }

    #[test]
    fn rfc3339_variants() {
        let c = ctx2026();
        let cases = [
            ("2023-10-17T05:57:49+11:00", "2023-10-17T05:57:49+11:00"),
            (
                "2023-10-17T05:57:49.123456+11:00",
                "2023-10-17T05:57:49.123456+11:00",
            ),
            ("2023-10-17T05:57:49Z", "2023-10-17T05:57:49Z"),
            ("2023-10-17T05:57:49.5Z", "2023-10-17T05:57:49.5Z"),
            ("2023-10-17t05:57:49z", "2023-10-17T05:57:49Z"),
            ("2024-01-01T12:00:00+0000", "2024-01-01T12:00:00Z"),
            (
                "2024-01-01T12:00:00.123456+0100",
                "2024-01-01T12:00:00.123456+01:00",
            ),
            ("2024-01-01T12:00:00-07", "2024-01-01T12:00:00-07:00"),
            ("2025-11-05T20:47:03.000000+00:00", "2025-11-05T20:47:03Z"),
            (
                "2025-11-06T11:32:42.868451+00:00",
                "2025-11-06T11:32:42.868451Z",
            ),
            (
                "2023-11-14T00:20:42.738197+01:00",
                "2023-11-14T00:20:42.738197+01:00",
            ),
            ("2006-01-02T15:04:05", "2006-01-02T15:04:05Z"),
            ("2006-01-02T15:04", "2006-01-02T15:04:00Z"),
            ("  2006-01-02T15:04:05Z \n", "2006-01-02T15:04:05Z"),
        ];
        for (input, want) in cases {
            assert_eq!(marshal(input, &c).as_deref(), Some(want), "{input}");
        }
    }

    #[test]
    fn other_numeric_layouts() {
        let c = ctx2026();
        let cases = [
            ("29/Jul/2023:10:26:06 -0700", "2023-07-29T10:26:06-07:00"),
            ("10/Feb/2024:21:23:32 +0100", "2024-02-10T21:23:32+01:00"),
            ("08/Jun/2020:08:04:43 +0000", "2020-06-08T08:04:43Z"),
            ("01/Dec/2021:13:53:33 +0000", "2021-12-01T13:53:33Z"),
            ("08/Jun/2020:08:04:43", "2020-06-08T08:04:43Z"),
            ("2025/11/05 20:47:03", "2025-11-05T20:47:03Z"),
            ("2025/11/05 20:47", "2025-11-05T20:47:00Z"),
            ("2025/11/05", "2025-11-05T00:00:00Z"),
            ("2006-01-02 15:04:05", "2006-01-02T15:04:05Z"),
            ("2006-01-02 15:04", "2006-01-02T15:04:00Z"),
            ("2006-01-02", "2006-01-02T00:00:00Z"),
            ("2006-01-02 15:04:05,123", "2006-01-02T15:04:05.123Z"),
            (
                "2006-01-02 15:04:05.999999999 -0700 MST",
                "2006-01-02T15:04:05.999999999-07:00",
            ),
            ("2006-01-02 15:04:05 +0000 UTC", "2006-01-02T15:04:05Z"),
            ("2006-01-02 15:04:05 UTC", "2006-01-02T15:04:05Z"),
            ("01/02/2006 15:04:05", "2006-01-02T15:04:05Z"),
            ("02-Jan-2006 15:04:05.123", "2006-01-02T15:04:05.123Z"),
            ("1136214245", "2006-01-02T15:04:05Z"),
            ("1136214245.25", "2006-01-02T15:04:05.25Z"),
            ("0", "1970-01-01T00:00:00Z"),
        ];
        for (input, want) in cases {
            assert_eq!(marshal(input, &c).as_deref(), Some(want), "{input}");
        }
    }

    #[test]
    fn month_abbreviations_are_the_names_first_three_letters_in_any_case() {
        for a in 0x20..0x7f_u8 {
            for b in 0x20..0x7f_u8 {
                for c in [
                    b'n', b'N', b'b', b'r', b'y', b'l', b'g', b'p', b't', b'v', b'c', b'@',
                ] {
                    let abbr = [a, b, c];
                    let expected = MONTHS
                        .iter()
                        .position(|m| m[..3].eq_ignore_ascii_case(&abbr))
                        .map(|k| k as u32 + 1);
                    assert_eq!(month_of_abbreviation(abbr), expected, "{abbr:?}");
                }
            }
        }
        for (k, m) in MONTHS.iter().enumerate() {
            let upper = [m[0].to_ascii_uppercase(), m[1], m[2].to_ascii_uppercase()];
            assert_eq!(month_of_abbreviation(upper), Some(k as u32 + 1));
        }
    }

    #[test]
    fn named_month_layouts() {
        let c = ctx2026();
        let cases = [
            ("Jan  2 15:04:05", "2026-01-02T15:04:05Z"),
            ("Jan 2 15:04:05", "2026-01-02T15:04:05Z"),
            ("Jan 02 15:04:05", "2026-01-02T15:04:05Z"),
            ("jan 2 15:04:05.123456", "2026-01-02T15:04:05.123456Z"),
            ("Dec 31 23:59:59", "2026-12-31T23:59:59Z"),
            ("Sept 6 09:57:21", "2026-09-06T09:57:21Z"),
            ("September 6 09:57:21", "2026-09-06T09:57:21Z"),
            ("Jan 2 2006 15:04:05", "2006-01-02T15:04:05Z"),
            ("Jan 2 15:04:05 2006", "2006-01-02T15:04:05Z"),
            ("Jan 2, 2006 3:04:05 PM", "2006-01-02T15:04:05Z"),
            ("Jan 2, 2006 12:04:05 AM", "2006-01-02T00:04:05Z"),
            ("Jan 2, 2006 12:04:05 pm", "2006-01-02T12:04:05Z"),
            ("Mon Jan 02 15:04:05.000000 2006", "2006-01-02T15:04:05Z"),
            ("Mon Jan  2 15:04:05 2006", "2006-01-02T15:04:05Z"),
            (
                "Wed Jul 17 23:20:45.453232 2013",
                "2013-07-17T23:20:45.453232Z",
            ),
            ("Mon Jan  2 15:04:05 UTC 2006", "2006-01-02T15:04:05Z"),
            (
                "Mon Jan  2 15:04:05 -0700 2006",
                "2006-01-02T15:04:05-07:00",
            ),
            (
                "Mon, 02 Jan 2006 15:04:05 -0700",
                "2006-01-02T15:04:05-07:00",
            ),
            ("Mon, 02 Jan 2006 15:04:05 GMT", "2006-01-02T15:04:05Z"),
        ];
        for (input, want) in cases {
            assert_eq!(marshal(input, &c).as_deref(), Some(want), "{input}");
        }
    }

    #[test]
    fn rejects_garbage() {
        let c = ctx2026();
        let bad = [
            "",
            "   ",
            "-",
            "Feb 30 12:00:00",
            "Apr 31 12:00:00",
            "2023-02-29T00:00:00Z",
            "2023-13-01",
            "2023-00-01",
            "2023-01-01T24:00:00Z",
            "2023-01-01T23:60:00Z",
            "2023-01-01T23:59:60Z",
            "2023-01-01T10:00:00+26:00",
            "2023-01-01T10:00:00 garbage",
            "Foo 2 15:04:05",
            "Jan 2",
            "Jan 2 15:04:05 extra",
            "12/Foo/2023:10:00:00 +0000",
            "1.2.3.4",
            "{\"a\":1}",
            "99999999999999999999",
            "é",
            "2023-01-01T10:00:00+",
            "Mon Jan  2 15:04:05 CET 2006",
        ];
        for s in bad {
            assert_eq!(parse_timestamp(s, &c), None, "{s:?}");
        }
    }

    #[test]
    fn no_panic_on_any_prefix() {
        let c = ctx2026();
        let samples = [
            "2006-01-02 15:04:05.999999999 -0700 MST",
            "Mon, 02 Jan 2006 15:04:05 -0700",
            "Jan 2, 2006 3:04:05 PM",
            "29/Jul/2023:10:26:06 -0700",
            "1136214245.123456789123",
            "Wed Jul 17 23:20:45.453232 2013",
            "2023-10-17T05:57:49.123456+11:00",
            "Sept 6 09:57:21 2024",
        ];
        for s in samples {
            for end in 0..=s.len() {
                if let Some(p) = s.get(..end) {
                    let _ = parse_timestamp(p, &c);
                }
                if let Some(p) = s.get(end..) {
                    let _ = parse_timestamp(p, &c);
                }
            }
        }
        let huge = "9".repeat(100_000);
        assert_eq!(parse_timestamp(&huge, &c), None);
        let frac = format!("2006-01-02T15:04:05.{}Z", "1".repeat(10_000));
        assert!(parse_timestamp(&frac, &c).is_some());
    }

    #[test]
    fn default_offset_applies_to_zoneless_dates() {
        let off = Offset::from_hours(2).expect("offset");
        let c = ctx2026().with_default_offset(off);
        assert_eq!(
            marshal("2006-01-02 15:04:05", &c).as_deref(),
            Some("2006-01-02T15:04:05+02:00")
        );
        assert_eq!(
            parse_timestamp("2006-01-02 15:04:05", &c),
            Some(ts("2006-01-02T13:04:05Z"))
        );
        // A written offset wins.
        assert_eq!(
            marshal("2006-01-02T15:04:05Z", &c).as_deref(),
            Some("2006-01-02T15:04:05Z")
        );
    }

    #[test]
    fn year_less_crowdsec_keeps_current_year() {
        let c = TimeContext::new(ts("2026-01-01T00:30:00Z"));
        assert_eq!(
            marshal("Dec 31 23:59:00", &c).as_deref(),
            Some("2026-12-31T23:59:00Z")
        );
        // Feb 29 in a non-leap year: Go normalises to March 1st.
        assert_eq!(
            marshal("Feb 29 10:00:00", &c).as_deref(),
            Some("2026-03-01T10:00:00Z")
        );
        let leap = TimeContext::new(ts("2024-06-01T00:00:00Z"));
        assert_eq!(
            marshal("Feb 29 10:00:00", &leap).as_deref(),
            Some("2024-02-29T10:00:00Z")
        );
    }

    #[test]
    fn year_less_fail2ban_rolls_back() {
        // fail2ban's test clock: 2005-08-14 10:00:00 UTC.
        let c = TimeContext::new(ts("2005-08-14T10:00:00Z")).with_year_rollback(true);
        let cases = [
            ("Nov 28 09:16:05", "2004-11-28T09:16:05Z"),
            ("Sep 29 16:28:02", "2004-09-29T16:28:02Z"),
            ("Jun 21 16:47:48", "2005-06-21T16:47:48Z"),
            // Less than a day ahead: clock skew, kept in the current year.
            ("Aug 15 09:00:00", "2005-08-15T09:00:00Z"),
            ("Aug 15 10:00:01", "2004-08-15T10:00:01Z"),
        ];
        for (input, want) in cases {
            assert_eq!(marshal(input, &c).as_deref(), Some(want), "{input}");
        }
    }

    #[test]
    fn format_matches_go_marshal_text() {
        let utc = Offset::UTC;
        assert_eq!(
            format_rfc3339(ts("2023-10-17T05:57:49Z"), utc),
            "2023-10-17T05:57:49Z"
        );
        assert_eq!(
            format_rfc3339(ts("2023-10-17T05:57:49.120Z"), utc),
            "2023-10-17T05:57:49.12Z"
        );
        assert_eq!(
            format_rfc3339(ts("2023-10-17T05:57:49.000000001Z"), utc),
            "2023-10-17T05:57:49.000000001Z"
        );
        let plus = Offset::from_seconds(11 * 3600).expect("offset");
        assert_eq!(
            format_rfc3339(ts("2023-10-16T18:57:49Z"), plus),
            "2023-10-17T05:57:49+11:00"
        );
        let minus = Offset::from_seconds(-(9 * 3600 + 30 * 60)).expect("offset");
        assert_eq!(
            format_rfc3339(ts("2023-01-01T00:00:00Z"), minus),
            "2022-12-31T14:30:00-09:30"
        );
        assert_eq!(
            format_rfc3339(Timestamp::UNIX_EPOCH, utc),
            "1970-01-01T00:00:00Z"
        );
        assert_eq!(
            format_rfc3339(ts("1969-12-31T23:59:59.5Z"), utc),
            "1969-12-31T23:59:59.5Z"
        );
        // Extremes do not panic.
        let _ = format_rfc3339(Timestamp::MIN, Offset::MIN);
        let _ = format_rfc3339(Timestamp::MAX, Offset::MAX);
    }

    #[test]
    fn civil_roundtrip() {
        for days in (-800_000..800_000).step_by(97) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    /// `Evt.Enriched["MarshaledTime"]` / `Meta["timestamp"]` in the hub's
    /// parser.assert files, checked against the timestamp text the s00/s01
    /// parsers captured (`Parsed["timestamp"]` / `["timestamp8601"]`).
    #[test]
    fn hub_marshaled_time_asserts() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/corpora/crowdsec-hub/.tests"
        );
        let Ok(entries) = std::fs::read_dir(dir) else {
            eprintln!("hub corpus not found, skipping");
            return;
        };
        let ctx = ctx2026();
        let mut checked = 0;
        for entry in entries.flatten() {
            let Ok(text) = std::fs::read_to_string(entry.path().join("parser.assert")) else {
                continue;
            };
            // Map (event index) -> raw timestamp text, from any stage.
            let mut raw: std::collections::HashMap<String, String> = Default::default();
            for line in text.lines() {
                for key in [
                    "Parsed[\"timestamp\"] == \"",
                    "Parsed[\"timestamp8601\"] == \"",
                    "Parsed[\"time_local\"] == \"",
                ] {
                    if let Some((idx, val)) = assert_field(line, key) {
                        raw.entry(idx).or_insert(val);
                    }
                }
            }
            for line in text.lines() {
                if !line.contains("dateparse-enrich") {
                    continue;
                }
                let key = "Enriched[\"MarshaledTime\"] == \"";
                let suffix_key = "Enriched[\"MarshaledTime\"][4:] == \"";
                let (idx, want, suffix) = if let Some((i, v)) = assert_field(line, key) {
                    (i, v, false)
                } else if let Some((i, v)) = assert_field(line, suffix_key) {
                    (i, v, true)
                } else {
                    continue;
                };
                let Some(src) = raw.get(&idx) else { continue };
                let got = marshal(src, &ctx).unwrap_or_default();
                let got = if suffix {
                    got.get(4..).unwrap_or("").to_string()
                } else {
                    got
                };
                assert_eq!(got, want, "{:?} [{idx}] from {src:?}", entry.path());
                checked += 1;
            }
        }
        eprintln!("checked {checked} MarshaledTime asserts");
        assert!(
            checked >= 10,
            "only {checked} MarshaledTime asserts checked"
        );
    }

    /// Extracts `(index, value)` from `...][IDX].Evt.<key>VALUE"`.
    fn assert_field(line: &str, key: &str) -> Option<(String, String)> {
        let at = line.find(key)?;
        let before = line.get(..at)?;
        let idx_end = before.rfind("].Evt.")?;
        let idx_start = before.get(..idx_end)?.rfind('[')? + 1;
        let idx = before.get(idx_start..idx_end)?.to_string();
        let rest = line.get(at + key.len()..)?;
        let val = rest.strip_suffix('"')?;
        Some((idx, val.replace("\\\"", "\"")))
    }

    #[test]
    fn go_duration_parse() {
        let ok = [
            ("0", 0),
            ("+0", 0),
            ("-0", 0),
            ("0s", 0),
            ("10s", 10 * SEC),
            ("1m30s", 90 * SEC),
            ("4h", 4 * HOUR),
            ("500ms", 500 * MS),
            ("1.5h", 90 * MIN),
            (".5s", 500 * MS),
            ("1.s", SEC),
            ("2us", 2 * US),
            ("2µs", 2 * US),
            ("2μs", 2 * US),
            ("7ns", 7),
            ("3h59m59.123s", 3 * HOUR + 59 * MIN + 59 * SEC + 123 * MS),
            ("7d", 7 * DAY),
            ("1d12h", DAY + 12 * HOUR),
            ("1.5d", DAY + 12 * HOUR),
            ("1h1h", 2 * HOUR),
            ("2562047h47m16.854775807s", GO_MAX),
            ("0.000000001s", 1),
            ("0.0000000019s", 1),
        ];
        for (s, want) in ok {
            let got = parse_go_duration(s).map(|d| d.as_nanos());
            assert_eq!(got, Some(want), "{s}");
        }
        let bad = [
            "",
            "s",
            "10",
            "1x",
            ".s",
            "1.2.3s",
            "-1s",
            "+",
            "-",
            "1h-1m",
            "1 h",
            " 1h",
            "1hh",
            "2562047h47m16.854775808s",
            "9999999999999999999999h",
            "1e3s",
            "ms5",
        ];
        for s in bad {
            assert_eq!(parse_go_duration(s), None, "{s:?}");
        }
    }

    #[test]
    fn go_duration_format() {
        let cases = [
            (0, "0s"),
            (1, "1ns"),
            (999, "999ns"),
            (1_100, "1.1µs"),
            (500 * MS, "500ms"),
            (1_234_567, "1.234567ms"),
            (SEC, "1s"),
            (10 * SEC, "10s"),
            (90 * SEC, "1m30s"),
            (4 * HOUR, "4h0m0s"),
            (HOUR + 1, "1h0m0.000000001s"),
            (3 * HOUR + 59 * MIN + 59 * SEC + 123 * MS, "3h59m59.123s"),
            (DAY, "24h0m0s"),
            (GO_MAX, "2562047h47m16.854775807s"),
            (60 * SEC, "1m0s"),
            (1500 * MS, "1.5s"),
        ];
        for (n, want) in cases {
            let d = Duration::new(
                u64::try_from(n / SEC).expect("secs"),
                u32::try_from(n % SEC).expect("nanos"),
            );
            assert_eq!(format_go_duration(d), want, "{n}");
            // And it parses back.
            assert_eq!(parse_go_duration(want), Some(d), "{want}");
        }
        // Beyond Go's range: still rendered, no panic.
        assert!(format_go_duration(Duration::MAX).ends_with('s'));
    }
}
