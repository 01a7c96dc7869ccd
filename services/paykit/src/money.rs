//! Money: integer minor units and an ISO 4217 currency, never floats.
//!
//! On the wire: `{"value": 1200, "currency": "JPY"}`. `value` must be a JSON integer; a
//! fraction, a string or anything beyond i64 fails to parse, so `12.5` can never become 12.

use serde::{Deserialize, Serialize};
use std::fmt;

/// An ISO 4217 alphabetic code. Whether the platform settles in it is the ledger's question;
/// this type only guarantees the shape (three upper-case ASCII letters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

impl Currency {
    pub fn parse(code: &str) -> Result<Self, MoneyError> {
        let bytes = code.as_bytes();
        if bytes.len() != 3 || !bytes.iter().all(u8::is_ascii_uppercase) {
            return Err(MoneyError::BadCurrency(code.chars().take(16).collect()));
        }
        Ok(Self([bytes[0], bytes[1], bytes[2]]))
    }

    pub fn as_str(&self) -> &str {
        // Constructed only from ASCII upper-case letters.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = String::deserialize(deserializer)?;
        Currency::parse(&code).map_err(serde::de::Error::custom)
    }
}

/// An amount of money as it arrives: any i64, checked by [`Money::positive`] where an amount
/// must be spent or received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Money {
    pub value: i64,
    pub currency: Currency,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("'{0}' is not an ISO 4217 currency code (three upper-case letters)")]
    BadCurrency(String),
    #[error("the amount must be greater than zero, got {0}")]
    NotPositive(i64),
    #[error("the amount {value} {currency} is above the largest amount accepted ({max})")]
    TooLarge {
        value: i64,
        currency: Currency,
        max: i64,
    },
}

/// The largest amount one operation may move: 10^15 minor units. Far above any real payment,
/// far below i64::MAX, so that sums of many amounts cannot overflow a bigint balance.
pub const MAX_AMOUNT_MINOR: i64 = 1_000_000_000_000_000;

impl Money {
    pub fn new(value: i64, currency: Currency) -> Self {
        Self { value, currency }
    }

    /// The amount, if it is one that can be moved: positive and within [`MAX_AMOUNT_MINOR`].
    pub fn positive(self) -> Result<Self, MoneyError> {
        if self.value <= 0 {
            return Err(MoneyError::NotPositive(self.value));
        }
        if self.value > MAX_AMOUNT_MINOR {
            return Err(MoneyError::TooLarge {
                value: self.value,
                currency: self.currency,
                max: MAX_AMOUNT_MINOR,
            });
        }
        Ok(self)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} (minor units)", self.value, self.currency)
    }
}

/// `amount × basis_points / 10 000`, rounded half up, computed in i128 so it cannot overflow.
pub fn fee_for(amount: i64, basis_points: u32) -> i64 {
    let exact = i128::from(amount) * i128::from(basis_points);
    let fee = (exact + 5_000) / 10_000;
    i64::try_from(fee).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_parses_integer_minor_units_only() {
        let money: Money =
            serde_json::from_str(r#"{"value": 1200, "currency": "JPY"}"#).expect("parses");
        assert_eq!(
            money,
            Money::new(1200, Currency::parse("JPY").expect("code"))
        );
        for bad in [
            r#"{"value": 12.5, "currency": "JPY"}"#,
            r#"{"value": "1200", "currency": "JPY"}"#,
            r#"{"value": 1e3, "currency": "JPY"}"#,
            r#"{"value": 99999999999999999999, "currency": "JPY"}"#,
            r#"{"value": 1, "currency": "jpy"}"#,
            r#"{"value": 1, "currency": "YENN"}"#,
            r#"{"value": 1}"#,
            r#"{"value": 1, "currency": "JPY", "extra": true}"#,
        ] {
            assert!(
                serde_json::from_str::<Money>(bad).is_err(),
                "{bad} must not parse"
            );
        }
    }

    #[test]
    fn only_positive_bounded_amounts_can_move() {
        let jpy = Currency::parse("JPY").expect("code");
        assert!(Money::new(1, jpy).positive().is_ok());
        assert_eq!(
            Money::new(0, jpy).positive(),
            Err(MoneyError::NotPositive(0))
        );
        assert_eq!(
            Money::new(-5, jpy).positive(),
            Err(MoneyError::NotPositive(-5))
        );
        assert!(matches!(
            Money::new(MAX_AMOUNT_MINOR + 1, jpy).positive(),
            Err(MoneyError::TooLarge { .. })
        ));
    }

    #[test]
    fn fees_round_half_up_and_never_overflow() {
        assert_eq!(fee_for(1000, 250), 25);
        assert_eq!(fee_for(1, 5000), 1); // 0.5 rounds up
        assert_eq!(fee_for(1, 4999), 0);
        assert_eq!(fee_for(MAX_AMOUNT_MINOR, 10_000), MAX_AMOUNT_MINOR);
    }
}
