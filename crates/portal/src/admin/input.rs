//! Administrators' input, parsed once into typed values (by the CLI's arguments and by the API's
//! JSON bodies alike): an operation never sees an unchecked string.

use std::fmt;

use ember_protocol::portal::Filter;
use serde::Deserialize;

use crate::model;

/// A lower-case email address.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Email(String);

impl Email {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Email {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let email = text.trim().to_ascii_lowercase();
        let Some((local, domain)) = email.split_once('@') else {
            return Err(format!("`{email}` is not an email address"));
        };
        if local.is_empty()
            || domain.is_empty()
            || email.len() > 254
            || email.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(format!("`{email}` is not an email address"));
        }
        Ok(Self(email))
    }
}

impl std::str::FromStr for Email {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        Self::try_from(text.to_owned())
    }
}

/// A display name: 1 to 200 characters, trimmed, without control characters.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Name(String);

impl Name {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Name {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let name = text.trim();
        let chars = name.chars().count();
        if chars == 0 || chars > 200 {
            return Err("a name has 1 to 200 characters".into());
        }
        if name.chars().any(char::is_control) {
            return Err("a name has no control characters".into());
        }
        Ok(Self(name.to_owned()))
    }
}

impl std::str::FromStr for Name {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        Self::try_from(text.to_owned())
    }
}

/// A password to hash; never printed.
#[derive(Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct Password(String);

impl Password {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(…)")
    }
}

impl TryFrom<String> for Password {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        if text.is_empty() || text.len() > 1024 {
            return Err("a password has 1 to 1024 bytes".into());
        }
        Ok(Self(text))
    }
}

/// A resource address as typed (`10.0.0.0/24`, `*.corp.example`, `internet`), validated.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Address(String);

impl Address {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Address {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        model::parse_address(&text).map_err(|e| e.to_string())?;
        Ok(Self(text.trim().to_owned()))
    }
}

impl std::str::FromStr for Address {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        Self::try_from(text.to_owned())
    }
}

/// A protocol filter as typed: `tcp`, `udp/53`, `tcp/8000-8100`, `icmp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct FilterSpec(pub Filter);

impl TryFrom<String> for FilterSpec {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        model::parse_filter(&text)
            .map(Self)
            .map_err(|e| e.to_string())
    }
}

impl std::str::FromStr for FilterSpec {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        Self::try_from(text.to_owned())
    }
}

/// An optional description: at most 1000 characters; empty means none.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Description(Option<String>);

impl Description {
    pub fn none() -> Self {
        Self(None)
    }

    pub fn into_inner(self) -> Option<String> {
        self.0
    }
}

impl TryFrom<String> for Description {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let text = text.trim();
        if text.chars().count() > 1000 {
            return Err("a description has at most 1000 characters".into());
        }
        Ok(Self((!text.is_empty()).then(|| text.to_owned())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_that_would_corrupt_the_model_is_refused_at_the_edge() {
        assert!(Email::try_from("ada".to_owned()).is_err());
        assert!(Email::try_from("@acme.example".to_owned()).is_err());
        assert!(Email::try_from("a da@acme.example".to_owned()).is_err());
        assert_eq!(
            Email::try_from(" Ada@Acme.Example ".to_owned())
                .unwrap()
                .as_str(),
            "ada@acme.example"
        );
        assert!(Name::try_from("  ".to_owned()).is_err());
        assert!(Name::try_from("a\nb".to_owned()).is_err());
        assert!(Name::try_from("x".repeat(201)).is_err());
        assert!(Address::try_from("10.0.0.0/99".to_owned()).is_err());
        assert!(FilterSpec::try_from("icmp/8".to_owned()).is_err());
        assert!(Password::try_from(String::new()).is_err());
        assert_eq!(
            format!("{:?}", Password::try_from("secret".to_owned()).unwrap()),
            "Password(…)"
        );
    }
}
