//! The bracket-token string an Avalon reports in `STATS[0]["MM ID0"]`:
//! `Ver[Nano3s-...] TMax[72] TAvg[65] PS[0 0 27 5 0 3 138] WORKMODE[2] ADJ[1] SYSTEMSTATU[Work: In Work, Hash Board: 1]`.
//!
//! Parsed generically (name → its bracketed text); which token means what on which model is data
//! in [`super::models`], never a branch here.

use std::collections::BTreeMap;

/// The tokens of one `MM ID` string, by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tokens {
    by_name: BTreeMap<String, String>,
}

impl Tokens {
    /// Parses `text`; anything that is not `NAME[...]` is skipped, an unclosed bracket ends it.
    pub fn parse(text: &str) -> Self {
        let mut by_name = BTreeMap::new();
        let mut rest = text;
        while let Some(open) = rest.find('[') {
            // The name is the run of letters, digits and `_` just before the bracket.
            let before = &rest[..open];
            let start = before
                .char_indices()
                .rev()
                .take_while(|(_, c)| c.is_ascii_alphanumeric() || *c == '_')
                .last()
                .map_or(before.len(), |(i, _)| i);
            let name = &before[start..];
            let after = &rest[open + 1..];
            let Some(close) = after.find(']') else {
                break;
            };
            if !name.is_empty() {
                by_name
                    .entry(name.to_string())
                    .or_insert_with(|| after[..close].trim().to_string());
            }
            rest = &after[close + 1..];
        }
        Self { by_name }
    }

    /// The bracketed text of token `name`, trimmed.
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.by_name.get(name).map(String::as_str)
    }

    /// The whitespace-separated values of token `name` (empty if it is absent).
    pub fn values(&self, name: &str) -> Vec<&str> {
        self.raw(name)
            .map(|v| v.split_whitespace().collect())
            .unwrap_or_default()
    }

    /// Value `index` of token `name` as a finite number (a trailing `%` is allowed).
    pub fn number(&self, name: &str, index: usize) -> Option<f64> {
        let v = *self.values(name).get(index)?;
        v.trim_end_matches('%')
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite())
    }

    /// How many tokens it holds.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}
