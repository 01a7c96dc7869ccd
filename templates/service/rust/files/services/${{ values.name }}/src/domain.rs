//! Values that parse: a handler only ever holds a valid one.

/// The most characters an item's name may have (the column's CHECK says the same).
pub const ITEM_NAME_MAX_CHARS: usize = 200;

/// An item's name: trimmed, 1 to [`ITEM_NAME_MAX_CHARS`] characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemName(String);

impl ItemName {
    pub fn parse(text: &str) -> Result<Self, String> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err("name must not be empty".into());
        }
        if trimmed.chars().count() > ITEM_NAME_MAX_CHARS {
            return Err(format!(
                "name must be at most {ITEM_NAME_MAX_CHARS} characters"
            ));
        }
        if trimmed.chars().any(char::is_control) {
            return Err("name must not contain control characters".into());
        }
        Ok(Self(trimmed.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How many items a page holds: 1 to [`PAGE_LIMIT_MAX`], [`PAGE_LIMIT_DEFAULT`] when not asked.
pub const PAGE_LIMIT_DEFAULT: u32 = 20;
pub const PAGE_LIMIT_MAX: u32 = 100;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_trimmed_and_kept() {
        assert_eq!(
            ItemName::parse("  tea  ").map(|n| n.as_str().to_string()),
            Ok("tea".into())
        );
    }

    #[test]
    fn an_empty_a_too_long_or_a_control_character_name_is_refused() {
        assert!(ItemName::parse("   ").is_err());
        assert!(ItemName::parse(&"x".repeat(ITEM_NAME_MAX_CHARS + 1)).is_err());
        assert!(ItemName::parse("a\u{7}b").is_err());
        assert!(ItemName::parse(&"x".repeat(ITEM_NAME_MAX_CHARS)).is_ok());
    }
}
