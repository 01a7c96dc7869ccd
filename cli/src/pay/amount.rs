//! Amounts as people type them (`1200`, `1200 JPY`, `12.50 USD`, `USD 12.50`) parsed exactly into
//! integer minor units with the currency's ISO 4217 exponent, never through a float; and minor
//! units printed back the same way.

use crate::support::exit::{fail, Code};
use emvco::CurrencyInfo;
use serde::Serialize;

/// Money as the APIs carry it: `{"value": <minor units>, "currency": "<ISO 4217>"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Money {
    pub value: i64,
    pub currency: &'static str,
}

impl std::fmt::Display for Money {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&display(self.value, self.currency))
    }
}

/// An amount whose syntax has been checked but whose currency may still be the profile's:
/// "12.50" means cents in USD and is refused in JPY, which only the profile can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmountText {
    number: String,
    currency: Option<&'static CurrencyInfo>,
    original: String,
}

/// Checks an amount's syntax and its currency, if it names one. `extra` is a currency given as
/// a separate word on the command line (`pay topup --as alice 1200 JPY`).
pub fn parse(text: &str, extra: Option<&str>) -> anyhow::Result<AmountText> {
    let original = match extra {
        Some(currency) => format!("{text} {currency}"),
        None => text.to_string(),
    };
    let words: Vec<&str> = original.split_whitespace().collect();
    let (number, currency) = match words.as_slice() {
        [one] => split_glued(one),
        [a, b] if is_number_like(a) => (*a, Some(*b)),
        [a, b] => (*b, Some(*a)),
        _ => {
            return Err(bad(
                &original,
                "write a number and at most one currency code",
            ))
        }
    };
    let (integer, fraction) =
        emvco::amount_parts(number).map_err(|error| bad(&original, &reason(&error)))?;
    if integer.bytes().chain(fraction.bytes()).all(|b| b == b'0') {
        return Err(bad(&original, "it must be more than zero"));
    }
    let currency = currency.map(currency_info).transpose()?;
    let amount = AmountText {
        number: number.to_string(),
        currency,
        original,
    };
    // With the currency known, the exponent check can be made now, before anything is sent.
    if let Some(info) = currency {
        amount.in_currency(info.alpha)?;
    }
    Ok(amount)
}

impl AmountText {
    /// The exact minor units, in the amount's own currency or else in `default_currency`.
    pub fn in_currency(&self, default_currency: &str) -> anyhow::Result<Money> {
        let info = match self.currency {
            Some(info) => info,
            None => currency_info(default_currency)?,
        };
        let value = emvco::parse_amount(&self.number, info)
            .map_err(|error| bad(&self.original, &reason(&error)))?;
        Ok(Money {
            value,
            currency: info.alpha,
        })
    }
}

/// The table entry for an ISO 4217 code, any case; a one-line usage error for others.
pub fn currency_info(code: &str) -> anyhow::Result<&'static CurrencyInfo> {
    CurrencyInfo::by_alpha(&code.to_ascii_uppercase()).ok_or_else(|| {
        let known: Vec<&str> = emvco::CURRENCIES.iter().map(|c| c.alpha).collect();
        fail(
            Code::Usage,
            format!("unknown currency '{code}': use one of {}", known.join(", ")),
        )
    })
}

/// `12.50USD` → ("12.50", Some("USD")); `1200` → ("1200", None).
fn split_glued(word: &str) -> (&str, Option<&str>) {
    let split = word
        .char_indices()
        .find(|(_, c)| c.is_ascii_alphabetic())
        .map(|(i, _)| i);
    match split {
        // Only a trailing three-letter code is a currency: `1e3` is a malformed number.
        Some(i)
            if i > 0
                && word[i..].len() == 3
                && word[i..].chars().all(|c| c.is_ascii_alphabetic()) =>
        {
            (&word[..i], Some(&word[i..]))
        }
        _ => (word, None),
    }
}

fn is_number_like(word: &str) -> bool {
    word.chars()
        .next()
        .is_some_and(|c| !c.is_ascii_alphabetic())
}

/// The codec's reason, without repeating the amount the message quotes already.
fn reason(error: &emvco::Error) -> String {
    match error {
        emvco::Error::BadAmount { reason, .. } => (*reason).to_string(),
        emvco::Error::TooManyDecimals {
            currency,
            exponent: 0,
            ..
        } => format!("{currency} has no decimals"),
        emvco::Error::TooManyDecimals {
            currency, exponent, ..
        } => format!("{currency} has {exponent} decimals"),
        emvco::Error::AmountNotPositive { .. } => "it must be more than zero".to_string(),
        other => other.to_string(),
    }
}

fn bad(text: &str, reason: &str) -> anyhow::Error {
    fail(
        Code::Usage,
        format!("bad amount '{text}': {reason}; write it like 1200, '1200 JPY' or '12.50 USD'"),
    )
}

/// `1250, "USD"` → `12.50 USD`; also zero and negative values, which lists show.
pub fn display(value: i64, currency: &str) -> String {
    let exponent = CurrencyInfo::by_alpha(currency).map_or(0, |c| u32::from(c.exponent));
    let sign = if value < 0 { "-" } else { "" };
    let magnitude = value.unsigned_abs();
    let scale = 10u64.pow(exponent);
    let major = magnitude / scale;
    if exponent == 0 {
        format!("{sign}{major} {currency}")
    } else {
        let fraction = magnitude % scale;
        format!(
            "{sign}{major}.{fraction:0width$} {currency}",
            width = exponent as usize
        )
    }
}

/// A money object from an API answer, printed; `?` when it is not one.
pub fn display_json(money: &serde_json::Value) -> String {
    match (money["value"].as_i64(), money["currency"].as_str()) {
        (Some(value), Some(currency)) => display(value, currency),
        _ => "?".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn money(text: &str, default: &str) -> Money {
        parse(text, None)
            .and_then(|a| a.in_currency(default))
            .unwrap_or_else(|e| panic!("{text}: {e:#}"))
    }

    #[test]
    fn amounts_parse_to_exact_minor_units_in_the_currency_they_name_or_the_profile_s() {
        assert_eq!(
            money("1200", "JPY"),
            Money {
                value: 1200,
                currency: "JPY"
            }
        );
        assert_eq!(money("1200 JPY", "USD").value, 1200);
        assert_eq!(
            money("12.50 USD", "JPY"),
            Money {
                value: 1250,
                currency: "USD"
            }
        );
        assert_eq!(money("12.5 usd", "JPY").value, 1250);
        assert_eq!(money("USD 12.50", "JPY").value, 1250);
        assert_eq!(money("12.50USD", "JPY").value, 1250);
        assert_eq!(money("0.001 BHD", "JPY").value, 1);
        assert_eq!(money("12", "USD").value, 1200);
        // 0.1 + 0.2 is where floats go wrong; integer arithmetic does not.
        assert_eq!(money("0.30 EUR", "JPY").value, 30);
        assert_eq!(money("9999999999999", "JPY").value, 9_999_999_999_999);
    }

    #[test]
    fn a_currency_given_as_a_separate_word_counts_like_one_in_the_text() {
        let amount = parse("12.50", Some("USD")).and_then(|a| a.in_currency("JPY"));
        assert_eq!(amount.expect("valid").value, 1250);
    }

    #[test]
    fn malformed_amounts_are_usage_errors_that_say_how_to_write_one() {
        for text in [
            "",
            "-5",
            "+5",
            "1e3",
            "1,200",
            "12.5.0",
            ".5",
            "5.",
            "0",
            "0.00 USD",
            "abc",
            "12 JPY USD",
            "١٢",
        ] {
            let error = parse(text, None)
                .and_then(|a| a.in_currency("USD"))
                .expect_err(text);
            assert_eq!(crate::support::exit::code_of(&error), 2, "{text}");
            assert!(error.to_string().contains("bad amount"), "{text}: {error}");
            assert!(!error.to_string().contains('\n'), "{text}: one line");
        }
    }

    #[test]
    fn more_decimals_than_the_currency_has_are_refused_before_anything_is_sent() {
        let error = parse("1200.5 JPY", None).expect_err("JPY has no decimals");
        assert_eq!(crate::support::exit::code_of(&error), 2);
        let later = parse("12.505", None)
            .expect("the syntax is fine")
            .in_currency("USD")
            .expect_err("USD has two decimals");
        assert_eq!(crate::support::exit::code_of(&later), 2);
    }

    #[test]
    fn an_unknown_currency_is_refused_with_the_known_ones() {
        let error = parse("12 XYZ", None).expect_err("unknown");
        assert_eq!(crate::support::exit::code_of(&error), 2);
        assert!(error.to_string().contains("JPY"));
    }

    #[test]
    fn minor_units_print_with_the_currency_exponent() {
        assert_eq!(display(1200, "JPY"), "1200 JPY");
        assert_eq!(display(1250, "USD"), "12.50 USD");
        assert_eq!(display(5, "USD"), "0.05 USD");
        assert_eq!(display(0, "USD"), "0.00 USD");
        assert_eq!(display(-300, "USD"), "-3.00 USD");
        assert_eq!(display(1, "KWD"), "0.001 KWD");
    }
}
