use std::fmt;
use std::str::FromStr;

/// A DNS resource's address. Names compare case-insensitively; a trailing dot is ignored.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NamePattern {
    /// `db.corp.example`: that name only.
    Exact(String),
    /// `*.corp.example`: every name below `corp.example`, at any depth, not the suffix itself.
    AnyBelow(String),
    /// `?.corp.example`: names exactly one label below `corp.example`.
    OneBelow(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("`{0}` is not a DNS name: {1}")]
    Invalid(String, &'static str),
}

impl NamePattern {
    /// Whether `name` (as it came in a query) is covered.
    pub fn matches(&self, name: &str) -> bool {
        let name = normalize(name);
        match self {
            Self::Exact(exact) => name == *exact,
            Self::AnyBelow(suffix) => below(&name, suffix).is_some(),
            Self::OneBelow(suffix) => below(&name, suffix).is_some_and(|rest| !rest.contains('.')),
        }
    }

    /// Orders overlapping patterns: an exact name beats `?`, which beats `*`; among wildcards
    /// the longer suffix wins.
    pub fn specificity(&self) -> (u8, usize) {
        match self {
            Self::Exact(name) => (2, name.len()),
            Self::OneBelow(suffix) => (1, suffix.len()),
            Self::AnyBelow(suffix) => (0, suffix.len()),
        }
    }
}

/// The labels of `name` in front of `.suffix`, if `name` is below `suffix`.
fn below<'a>(name: &'a str, suffix: &str) -> Option<&'a str> {
    let rest = name.strip_suffix(suffix)?.strip_suffix('.')?;
    (!rest.is_empty()).then_some(rest)
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl FromStr for NamePattern {
    type Err = PatternError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = |why| PatternError::Invalid(text.to_owned(), why);
        let normalized = normalize(text);
        let (make, name): (fn(String) -> Self, &str) =
            if let Some(suffix) = normalized.strip_prefix("*.") {
                (Self::AnyBelow, suffix)
            } else if let Some(suffix) = normalized.strip_prefix("?.") {
                (Self::OneBelow, suffix)
            } else {
                (Self::Exact, &normalized)
            };
        if name.is_empty() {
            return Err(invalid("it is empty"));
        }
        if name.len() > 253 {
            return Err(invalid("it is longer than 253 characters"));
        }
        for label in name.split('.') {
            if label.is_empty() || label.len() > 63 {
                return Err(invalid("every label needs 1 to 63 characters"));
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(invalid("labels may hold letters, digits, `-` and `_` only"));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(invalid("a label cannot start or end with `-`"));
            }
        }
        Ok(make(name.to_owned()))
    }
}

impl fmt::Display for NamePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(name) => f.write_str(name),
            Self::AnyBelow(suffix) => write!(f, "*.{suffix}"),
            Self::OneBelow(suffix) => write!(f, "?.{suffix}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str) -> NamePattern {
        text.parse().unwrap()
    }

    #[test]
    fn exact_names_match_case_insensitively_with_or_without_the_root_dot() {
        let db = pattern("DB.corp.example");
        assert!(db.matches("db.corp.example"));
        assert!(db.matches("db.CORP.example."));
        assert!(!db.matches("x.db.corp.example"));
        assert!(!db.matches("corp.example"));
    }

    #[test]
    fn star_matches_any_depth_below_but_not_the_suffix_itself() {
        let any = pattern("*.corp.example");
        assert!(any.matches("a.corp.example"));
        assert!(any.matches("a.b.c.corp.example"));
        assert!(!any.matches("corp.example"));
        assert!(!any.matches("evilcorp.example"));
        assert!(!any.matches("corp.example.evil"));
    }

    #[test]
    fn question_mark_matches_exactly_one_label_below() {
        let one = pattern("?.corp.example");
        assert!(one.matches("a.corp.example"));
        assert!(!one.matches("a.b.corp.example"));
        assert!(!one.matches("corp.example"));
    }

    #[test]
    fn malformed_patterns_are_rejected_with_a_reason() {
        for bad in [
            "",
            "*.",
            "a..b",
            "-a.example",
            "a b.example",
            "*.*.example",
            &"a".repeat(64),
        ] {
            assert!(bad.parse::<NamePattern>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn more_specific_patterns_rank_higher() {
        let exact = pattern("db.corp.example").specificity();
        let one = pattern("?.corp.example").specificity();
        let any_long = pattern("*.eu.corp.example").specificity();
        let any = pattern("*.corp.example").specificity();
        assert!(exact > one && one > any_long && any_long > any);
    }

    #[test]
    fn displays_as_written() {
        assert_eq!(pattern("*.Corp.Example.").to_string(), "*.corp.example");
    }
}
