//! Splitting bytes into lines, counting what is skipped: shared by the live sources and by
//! `replay` / `explain`.

/// Lines longer than this are skipped (counted), so one huge line cannot stall the engine.
pub const MAX_LINE: usize = 64 * 1024;

/// What was skipped while reading.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReadStats {
    /// Non-empty lines handed on.
    pub lines: u64,
    /// Lines that were not UTF-8.
    pub not_utf8: u64,
    /// Lines over [`MAX_LINE`].
    pub too_long: u64,
}

/// Calls `f` with every non-empty line of `bytes` (without `\n` / `\r\n`).
pub fn for_each_line(bytes: &[u8], stats: &mut ReadStats, mut f: impl FnMut(&str)) {
    let mut rest = bytes;
    while let Some(pos) = memchr::memchr(b'\n', rest) {
        hand_on(&rest[..pos], stats, &mut f);
        rest = &rest[pos + 1..];
    }
    hand_on(rest, stats, &mut f);
}

/// Hands on one line (no `\n` inside): without a trailing `\r`; empty lines are dropped,
/// over-long and non-UTF-8 ones counted and dropped.
fn hand_on(raw: &[u8], stats: &mut ReadStats, f: &mut impl FnMut(&str)) {
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    if raw.is_empty() {
        return;
    }
    if raw.len() > MAX_LINE {
        stats.too_long += 1;
        return;
    }
    match std::str::from_utf8(raw) {
        Ok(line) => {
            stats.lines += 1;
            f(line);
        }
        Err(_) => stats.not_utf8 += 1,
    }
}

/// Like [`for_each_line`], but streams from `reader` through a fixed buffer, so memory
/// stays bounded whatever the input size (a line over [`MAX_LINE`] is skipped without
/// being buffered whole). `consumed` is called with the bytes read so far, for progress.
pub fn for_each_line_in(
    reader: &mut impl std::io::Read,
    stats: &mut ReadStats,
    mut consumed: impl FnMut(u64),
    mut f: impl FnMut(&str),
) -> std::io::Result<()> {
    const CHUNK: usize = 256 * 1024;
    let mut buf: Vec<u8> = vec![0; CHUNK + MAX_LINE];
    // `buf[start..end]` holds bytes not yet handed on; `skipping`: inside an over-long line.
    let (mut start, mut end) = (0usize, 0usize);
    let mut skipping = false;
    let mut total = 0u64;
    loop {
        if start > 0 {
            buf.copy_within(start..end, 0);
            end -= start;
            start = 0;
        }
        let n = match reader.read(&mut buf[end..]) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        total += n as u64;
        end += n;
        let eof = n == 0;
        while let Some(pos) = memchr::memchr(b'\n', &buf[start..end]) {
            let line = &buf[start..start + pos];
            start += pos + 1;
            if std::mem::take(&mut skipping) {
                continue;
            }
            hand_on(line, stats, &mut f);
        }
        if eof {
            if !skipping && start < end {
                hand_on(&buf[start..end], stats, &mut f);
            }
            consumed(total);
            return Ok(());
        }
        if end - start > MAX_LINE {
            // No newline within MAX_LINE bytes: drop what is buffered, skip to the next one.
            if !skipping {
                stats.too_long += 1;
            }
            skipping = true;
            start = end;
        }
        consumed(total);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(input: &[u8]) -> (Vec<String>, ReadStats) {
        let mut stats = ReadStats::default();
        let mut out = Vec::new();
        let mut r = input;
        for_each_line_in(&mut r, &mut stats, |_| {}, |l| out.push(l.to_owned())).unwrap();
        (out, stats)
    }

    #[test]
    fn streaming_matches_whole_buffer() {
        let mut input = Vec::new();
        for i in 0..100_000 {
            input.extend_from_slice(format!("line {i}\r\n\n").as_bytes());
        }
        input.extend_from_slice(b"last without newline");
        let (lines, stats) = collect(&input);
        let mut expected = Vec::new();
        let mut st = ReadStats::default();
        for_each_line(&input, &mut st, |l| expected.push(l.to_owned()));
        assert_eq!(lines, expected);
        assert_eq!(stats.lines, st.lines);
    }

    #[test]
    fn lines_lose_their_ending_and_empty_ones_are_dropped() {
        let mut stats = ReadStats::default();
        let mut out = Vec::new();
        let input = b"a\r\n\nb c\r\r\n\r\n\xff\n\nlast";
        for_each_line(input, &mut stats, |l| out.push(l.to_owned()));
        assert_eq!(out, ["a", "b c\r", "last"]);
        assert_eq!((stats.lines, stats.not_utf8, stats.too_long), (3, 1, 0));
        let (streamed, _) = collect(input);
        assert_eq!(streamed, out);
    }

    #[test]
    fn streaming_skips_over_long_lines() {
        let mut input = b"a\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 3 * MAX_LINE));
        input.extend_from_slice(b"\nb\n\xff\xfe\nc");
        let (lines, stats) = collect(&input);
        assert_eq!(lines, ["a", "b", "c"]);
        assert_eq!(stats.too_long, 1);
        assert_eq!(stats.not_utf8, 1);
    }
}
