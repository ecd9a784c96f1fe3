//! Required-literal extraction from an expanded (Rust-dialect) regex.
//!
//! The analysis is deliberately conservative: it finds runs of literal
//! characters that every match must contain *contiguously*, following
//! single-alternative groups and repetitions with a minimum of at least one.
//! Anything it does not understand (classes, escapes other than escaped
//! punctuation and control characters, alternations) just breaks a run, and
//! case-insensitive or verbose flags abort the analysis entirely.

/// Minimum length (bytes) of a literal worth reporting.
const MIN_LEN: usize = 3;

#[derive(Debug)]
enum Node {
    Lit(char),
    /// Something that matches but is not a known literal (class, `.`, escape,
    /// assertion).
    Other,
    /// A group: list of alternatives.
    Group(Vec<Vec<Node>>),
    /// A repetition with its minimum count.
    Repeat(Box<Node>, u32),
}

struct Parser<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
}

/// Returned when the analysis must give up.
struct Abort;

impl Parser<'_> {
    fn alternatives(&mut self, depth: usize) -> Result<Vec<Vec<Node>>, Abort> {
        if depth > 512 {
            return Err(Abort);
        }
        let mut alts = vec![Vec::new()];
        while let Some(&c) = self.chars.peek() {
            match c {
                ')' => break,
                '|' => {
                    self.chars.next();
                    alts.push(Vec::new());
                }
                '*' | '+' | '?' | '{' => {
                    self.chars.next();
                    let min = match c {
                        '*' | '?' => 0,
                        '+' => 1,
                        _ => self.counted()?,
                    };
                    // Lazy / possessive suffix.
                    if self.chars.peek() == Some(&'?') {
                        self.chars.next();
                    }
                    let seq = alts.last_mut().ok_or(Abort)?;
                    let atom = seq.pop().unwrap_or(Node::Other);
                    seq.push(Node::Repeat(Box::new(atom), min));
                }
                _ => {
                    let node = self.atom(depth)?;
                    alts.last_mut().ok_or(Abort)?.push(node);
                }
            }
        }
        Ok(alts)
    }

    /// Parses the rest of `{n}`, `{n,}` or `{n,m}` and returns `n`.
    fn counted(&mut self) -> Result<u32, Abort> {
        let mut min: u32 = 0;
        let mut seen_comma = false;
        for c in self.chars.by_ref() {
            match c {
                '}' => return Ok(min),
                ',' => seen_comma = true,
                '0'..='9' if !seen_comma => {
                    min = min
                        .saturating_mul(10)
                        .saturating_add(c.to_digit(10).unwrap_or(0));
                }
                '0'..='9' => {}
                _ => return Err(Abort),
            }
        }
        Err(Abort)
    }

    fn atom(&mut self, depth: usize) -> Result<Node, Abort> {
        let Some(c) = self.chars.next() else {
            return Err(Abort);
        };
        match c {
            '(' => {
                let mut folded = false;
                if self.chars.peek() == Some(&'?') {
                    self.chars.next();
                    // Flags up to ':' or ')'.
                    let mut negated = false;
                    loop {
                        match self.chars.next() {
                            Some(':') => break,
                            // `(?i)` folds the rest of the enclosing group: give up.
                            Some(')') if folded => return Err(Abort),
                            Some(')') => return Ok(Node::Other),
                            Some('-') => negated = true,
                            // `(?i:...)` folds only its own contents: it matches
                            // something, but no literal of it is required as written.
                            Some('i') if !negated => folded = true,
                            Some('x') if !negated => return Err(Abort),
                            Some('P' | '<') => {
                                // Named group (not produced by the expander,
                                // but harmless): skip the name.
                                for n in self.chars.by_ref() {
                                    if n == '>' {
                                        break;
                                    }
                                }
                                break;
                            }
                            Some(_) => {}
                            None => return Err(Abort),
                        }
                    }
                }
                let alts = self.alternatives(depth + 1)?;
                if self.chars.next() != Some(')') {
                    return Err(Abort);
                }
                if folded {
                    return Ok(Node::Other);
                }
                Ok(Node::Group(alts))
            }
            '[' => {
                self.skip_class()?;
                Ok(Node::Other)
            }
            '\\' => {
                let Some(e) = self.chars.next() else {
                    return Err(Abort);
                };
                match e {
                    'x' | 'p' | 'P' => {
                        if self.chars.peek() == Some(&'{') {
                            for n in self.chars.by_ref() {
                                if n == '}' {
                                    break;
                                }
                            }
                        } else {
                            let n = if e == 'x' { 2 } else { 1 };
                            for _ in 0..n {
                                self.chars.next();
                            }
                        }
                        Ok(Node::Other)
                    }
                    't' => Ok(Node::Lit('\t')),
                    'n' => Ok(Node::Lit('\n')),
                    'r' => Ok(Node::Lit('\r')),
                    _ if e.is_ascii_punctuation() => Ok(Node::Lit(e)),
                    _ => Ok(Node::Other),
                }
            }
            '.' | '^' | '$' => Ok(Node::Other),
            _ => Ok(Node::Lit(c)),
        }
    }

    /// Skips a (possibly nested) class; the opening `[` is consumed.
    fn skip_class(&mut self) -> Result<(), Abort> {
        let mut depth = 1usize;
        let mut first = true;
        while let Some(c) = self.chars.next() {
            match c {
                '\\' => {
                    self.chars.next();
                }
                '[' => depth += 1,
                ']' if first => {}
                ']' => {
                    depth -= 1;
                    if depth == 0 {
                        return Ok(());
                    }
                }
                '^' if first => continue,
                _ => {}
            }
            first = false;
        }
        Err(Abort)
    }
}

fn collect(seq: &[Node], runs: &mut Vec<String>, cur: &mut String) {
    for node in seq {
        match node {
            Node::Lit(c) => cur.push(*c),
            Node::Other => flush(runs, cur),
            Node::Group(alts) if alts.len() == 1 => collect(&alts[0], runs, cur),
            Node::Group(_) => flush(runs, cur),
            Node::Repeat(inner, min) => {
                flush(runs, cur);
                if *min >= 1 {
                    let mut inner_cur = String::new();
                    collect(std::slice::from_ref(inner.as_ref()), runs, &mut inner_cur);
                    flush(runs, &mut inner_cur);
                }
            }
        }
    }
}

fn flush(runs: &mut Vec<String>, cur: &mut String) {
    if !cur.is_empty() {
        runs.push(std::mem::take(cur));
    }
}

/// Every run of literal characters that every match of `regex` must contain
/// contiguously, in pattern order; empty when the analysis gives up.
pub(crate) fn required_runs(regex: &str) -> Vec<String> {
    match required_runs_by_branch(regex).as_slice() {
        [only] => only.clone(),
        _ => Vec::new(),
    }
}

/// For a pattern that is an alternation at the top (`a|b`, or one group `(?:a|b)`
/// spanning it all), the runs each branch requires ([`required_runs`] of the branch): a
/// match contains all the runs of at least one branch. One entry for any other pattern;
/// none when the analysis gives up.
pub(crate) fn required_runs_by_branch(regex: &str) -> Vec<Vec<String>> {
    let mut parser = Parser {
        chars: regex.chars().peekable(),
    };
    let Ok(alts) = parser.alternatives(0) else {
        return Vec::new();
    };
    if parser.chars.next().is_some() {
        return Vec::new();
    }
    // Groups spanning the whole pattern (grok wraps each expansion in one) are looked
    // through to the alternation they may hold.
    let mut branches: &[Vec<Node>] = &alts;
    while let [only] = branches
        && let [Node::Group(inner)] = only.as_slice()
    {
        branches = inner;
    }
    branches
        .iter()
        .map(|seq| {
            let mut runs = Vec::new();
            let mut cur = String::new();
            collect(seq, &mut runs, &mut cur);
            flush(&mut runs, &mut cur);
            runs
        })
        .collect()
}

/// Returns the longest literal (at least [`MIN_LEN`] bytes) that every match
/// of `regex` must contain, if the analysis finds one.
pub(crate) fn required_literal(regex: &str) -> Option<String> {
    required_runs(regex)
        .into_iter()
        .filter(|r| r.len() >= MIN_LEN)
        .max_by_key(String::len)
}

#[cfg(test)]
mod tests {
    use super::{required_literal, required_runs, required_runs_by_branch};

    #[test]
    fn runs() {
        assert_eq!(
            required_runs(r"Connection (closed|reset) by \[preauth\](?:x)+ ab?c"),
            ["Connection ", " by [preauth]", "x", " a", "c"]
        );
        assert!(required_runs(r"a|b").is_empty());
        assert_eq!(
            required_runs_by_branch(r"(?:Did not x(y)|Connection closed by (z) port [0-9]+$)"),
            [vec!["Did not xy"], vec!["Connection closed by z port "]]
        );
        assert_eq!(
            required_runs_by_branch(r"ab|c(d|e)"),
            [vec!["ab"], vec!["c"]]
        );
        assert_eq!(required_runs_by_branch(r"ab(?:c|d)"), [vec!["ab"]]);
        assert_eq!(
            required_runs_by_branch(r"(?:((?:ab|c)))"),
            [vec!["ab"], vec!["c"]]
        );
        assert!(required_runs_by_branch(r"(?i)ab|c").is_empty());
        assert!(required_runs(r"(?i)abc").is_empty());
    }

    #[test]
    fn literals() {
        assert_eq!(
            required_literal(r"Failed (?:\w+) for ").as_deref(),
            Some("Failed ")
        );
        assert_eq!(
            required_literal(r"ab(?:cdef)gh").as_deref(),
            Some("abcdefgh")
        );
        assert_eq!(required_literal(r"abcd?ef").as_deref(), Some("abc"));
        assert_eq!(required_literal(r"x(?:abcd)+y").as_deref(), Some("abcd"));
        assert_eq!(required_literal(r"x(?:abcd)*y"), None);
        assert_eq!(required_literal(r"abc|def"), None);
        assert_eq!(required_literal(r"(?i)abcdef"), None);
        assert_eq!(required_literal(r"(?:xy(?i)abcdef)"), None);
        assert_eq!(required_literal(r"(?x:abc def)"), None);
        // A folded group breaks the run; the literal before it still counts.
        assert_eq!(
            required_literal(r"error: PAM: (?i:authentication (?:failure|error)) for").as_deref(),
            Some("error: PAM: ")
        );
        assert_eq!(required_literal(r"ab(?i:cdefgh)ij"), None);
        assert_eq!(
            required_literal(r"abcd(?-i:efg)h").as_deref(),
            Some("abcdefgh")
        );
        assert_eq!(
            required_literal(r"(?-u:\b)hello\.world[a-z]").as_deref(),
            Some("hello.world")
        );
        assert_eq!(
            required_literal(r"port [0-9]{1,5} \[preauth\]").as_deref(),
            Some(" [preauth]")
        );
        assert_eq!(required_literal(r"(?:"), None);
    }
}
