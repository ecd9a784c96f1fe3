//! Data lists: files of strings or regexes that rules reference by name
//! (`File('backdoors.txt')`, `RegexpInFile(x, 'bad_user_agents.regex.txt')`).

use std::collections::HashMap;
use std::sync::Arc;

/// How a data list's lines are interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataKind {
    /// One literal string per line.
    Strings,
    /// One regular expression per line (any match wins).
    Regexes,
}

/// One loaded data list.
#[derive(Debug)]
pub struct DataList {
    /// The name rules use (`backdoors.txt`).
    pub name: Arc<str>,
    /// How lines are interpreted.
    pub kind: DataKind,
    /// The lines, without comments (`#`) and blank lines.
    pub lines: Vec<String>,
    /// Shipped with garrison: a test builds its regexes, so an expression that uses it
    /// leaves them to the first value it tests (a syslog replay never builds the web
    /// lists') instead of building them when it is compiled.
    pub shipped: bool,
    /// For [`DataKind::Regexes`]: all lines compiled into one set, on first use, so unused
    /// lists cost nothing.
    regexes: std::sync::OnceLock<Result<regex::RegexSet, String>>,
}

impl DataList {
    /// Builds a list from file text and compiles its regexes now.
    pub fn from_text(name: &str, kind: DataKind, text: &str) -> Result<Self, String> {
        let list = Self::from_text_lazy(name, kind, text)?;
        if kind == DataKind::Regexes {
            list.regex_set()?;
        }
        Ok(list)
    }

    /// Builds a list from file text; regexes compile on first use. Lines starting with `#`
    /// and blank lines are skipped.
    pub fn from_text_lazy(name: &str, kind: DataKind, text: &str) -> Result<Self, String> {
        let lines: Vec<String> = text
            .lines()
            .map(|l| l.trim_end_matches('\r'))
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
            .collect();
        Ok(DataList {
            name: Arc::from(name),
            kind,
            lines,
            shipped: false,
            regexes: std::sync::OnceLock::new(),
        })
    }

    /// The list's set, built by the first caller. A shipped list is built on first use (a
    /// test builds each): should one fail all the same, that is logged once, and it matches
    /// nothing.
    fn built(&self) -> &Result<regex::RegexSet, String> {
        self.regexes.get_or_init(|| {
            let built = regex::RegexSetBuilder::new(&self.lines)
                .size_limit(64 << 20)
                .build()
                .map_err(|e| format!("data list {}: {e}", self.name));
            if let (Err(e), true) = (&built, self.shipped) {
                tracing::error!("{e}: the list matches nothing");
            }
            built
        })
    }

    /// The compiled regexes of a regex list (compiled on first call).
    pub fn regex_set(&self) -> Result<&regex::RegexSet, String> {
        if self.kind == DataKind::Strings {
            return Err(format!("data list {} is not a regex list", self.name));
        }
        self.built().as_ref().map_err(Clone::clone)
    }

    /// True when any regex of the list matches `s` (false for string lists and for a list
    /// whose regexes failed to compile, which `garrison check` reports for local lists).
    pub fn any_regex_matches(&self, s: &str) -> bool {
        self.kind == DataKind::Regexes && self.built().as_ref().is_ok_and(|set| set.is_match(s))
    }
}

/// An index into [`DataLists`], resolved at compile time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DataId(pub u32);

/// Every data list the enabled rules reference.
#[derive(Debug, Default)]
pub struct DataLists {
    /// Shared with the expressions that test values against a regex list
    /// (`RegexpInFile`), which build its set on first use.
    lists: Vec<Arc<DataList>>,
    by_name: HashMap<Arc<str>, DataId>,
}

impl DataLists {
    /// An empty set of lists.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a list; a list of the same name replaces the earlier one.
    pub fn insert(&mut self, list: DataList) -> DataId {
        if let Some(id) = self.by_name.get(&list.name) {
            self.lists[id.0 as usize] = Arc::new(list);
            return *id;
        }
        let id = DataId(self.lists.len() as u32);
        self.by_name.insert(list.name.clone(), id);
        self.lists.push(Arc::new(list));
        id
    }

    /// Looks a list up by name.
    pub fn id(&self, name: &str) -> Option<DataId> {
        self.by_name.get(name).copied()
    }

    /// The list behind an id.
    pub fn get(&self, id: DataId) -> &DataList {
        &self.lists[id.0 as usize]
    }

    /// The list behind an id, shared.
    pub fn shared(&self, id: DataId) -> Arc<DataList> {
        self.lists[id.0 as usize].clone()
    }

    /// All list names, for hints.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.lists.iter().map(|l| &*l.name)
    }
}
