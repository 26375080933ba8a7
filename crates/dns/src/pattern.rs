use std::fmt;
use std::str::FromStr;

use ember_protocol::portal::dns_pattern_matches;

/// A DNS resource's address: `db.corp.example` (that name), `*.corp.example` (every name below,
/// at any depth, not the suffix itself), `?` for exactly one label anywhere
/// (`?.corp.example`, `db.?.corp.example`). Names compare case-insensitively; a trailing dot is
/// ignored. Matching is the portal's own rule (`ember_protocol::portal::dns_pattern_matches`),
/// so the client answers exactly the names the portal grants.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NamePattern(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("`{0}` is not a DNS name: {1}")]
    Invalid(String, &'static str),
}

impl NamePattern {
    /// Whether `name` (as it came in a query) is covered.
    pub fn matches(&self, name: &str) -> bool {
        dns_pattern_matches(&self.0, name)
    }

    /// Orders overlapping patterns: an exact name beats one with `?`, which beats `*`; then the
    /// more fixed labels, the more specific.
    pub fn specificity(&self) -> (u8, usize) {
        let labels = self.0.split('.');
        let fixed = labels.clone().filter(|l| *l != "*" && *l != "?").count();
        let kind = if self.0.starts_with("*.") {
            0
        } else if labels.into_iter().any(|l| l == "?") {
            1
        } else {
            2
        };
        (kind, fixed)
    }
}

impl FromStr for NamePattern {
    type Err = PatternError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = |why| PatternError::Invalid(text.to_owned(), why);
        let normalized = text.trim_end_matches('.').to_ascii_lowercase();
        if normalized.is_empty() {
            return Err(invalid("it is empty"));
        }
        if normalized.len() > 253 {
            return Err(invalid("it is longer than 253 characters"));
        }
        let labels: Vec<&str> = normalized.split('.').collect();
        if labels.len() < 2 && labels.iter().any(|l| *l == "*" || *l == "?") {
            return Err(invalid("a wildcard needs a suffix"));
        }
        for (index, label) in labels.iter().enumerate() {
            match *label {
                "*" if index == 0 => continue,
                "*" => return Err(invalid("`*` may only stand first")),
                "?" => continue,
                _ => {}
            }
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
        Ok(Self(normalized))
    }
}

impl fmt::Display for NamePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
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
    fn question_mark_matches_exactly_one_label_anywhere() {
        let one = pattern("?.corp.example");
        assert!(one.matches("a.corp.example"));
        assert!(!one.matches("a.b.corp.example"));
        assert!(!one.matches("corp.example"));
        assert!(pattern("db.?.corp.example").matches("db.eu.corp.example"));
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
