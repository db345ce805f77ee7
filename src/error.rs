//! Diagnostics: every user-facing error names the place it comes from.

use std::fmt;

/// Where a problem is: a spec file position, a command-line override, or nowhere in particular.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    File {
        file: String,
        line: usize,
        col: usize,
    },
    Override(String),
    None,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::File { file, line, col } => write!(f, "{file}:{line}:{col}"),
            Location::Override(o) => write!(f, "{o}"),
            Location::None => Ok(()),
        }
    }
}

/// One problem, printed on one line as `place: message`.
#[derive(Clone, Debug)]
pub struct Diagnostic {
    pub location: Location,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Location::None => write!(f, "error: {}", self.message),
            loc => write!(f, "{loc}: error: {}", self.message),
        }
    }
}

/// All problems found in one pass, so the user fixes a file in one go rather than one error at a time.
#[derive(Clone, Debug, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, location: Location, message: impl Into<String>) {
        self.0.push(Diagnostic {
            location,
            message: message.into(),
        });
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// File positions in reading order; overrides and unlocated problems keep their order after them.
    pub fn sort(&mut self) {
        self.0.sort_by_key(|d| match &d.location {
            Location::File { line, col, .. } => (0, *line, *col),
            Location::Override(_) => (1, 0, 0),
            Location::None => (2, 0, 0),
        });
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        if self.0.len() > 1 {
            write!(f, "\n{} errors", self.0.len())?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// The closest candidate to a misspelt name, if it is close enough to be a plausible typo.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(d, c)| *d <= 3.max(c.len() / 3) && *d < c.len().max(word.len()))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Appends "did you mean `x`?" to serde's "unknown field/variant `a`, expected one of `b`, `c`" messages.
pub fn with_suggestion(message: &str) -> String {
    let Some(word) = backticked(message).first().cloned() else {
        return message.to_string();
    };
    if !(message.starts_with("unknown field") || message.starts_with("unknown variant")) {
        return message.to_string();
    }
    let candidates = backticked(message);
    let rest: Vec<&str> = candidates.iter().skip(1).map(|s| s.as_str()).collect();
    match suggest(&word, rest.iter().copied()) {
        Some(s) => format!("{message}; did you mean `{s}`?"),
        None => message.to_string(),
    }
}

fn backticked(message: &str) -> Vec<String> {
    message
        .split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(suggest("denes", ["dense", "dropout"]), Some("dense"));
        assert_eq!(
            suggest("num_head", ["num_heads", "key_dim"]),
            Some("num_heads")
        );
        assert_eq!(suggest("zzzzzzzz", ["dense", "dropout"]), None);
    }

    #[test]
    fn appends_did_you_mean_to_serde_messages() {
        let m = with_suggestion("unknown field `epocs`, expected one of `epochs`, `batch_size`");
        assert!(m.ends_with("did you mean `epochs`?"), "{m}");
        assert_eq!(
            with_suggestion("invalid type: string"),
            "invalid type: string"
        );
    }
}
