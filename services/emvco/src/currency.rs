//! The ISO 4217 currencies this codec knows the exponent of, and the field-54 amount format.
//!
//! Field 54 carries major units with the currency's exponent ("1000" is JPY 1000, "12.50" is
//! USD 12.50). Conversion to and from integer minor units is exact integer arithmetic: no floats.

use crate::error::{snippet, Error};
use serde::Serialize;

/// One ISO 4217 currency: numeric code (field 53), alphabetic code and minor-unit exponent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CurrencyInfo {
    pub numeric: &'static str,
    pub alpha: &'static str,
    pub exponent: u8,
}

const fn currency(numeric: &'static str, alpha: &'static str, exponent: u8) -> CurrencyInfo {
    CurrencyInfo {
        numeric,
        alpha,
        exponent,
    }
}

/// The currencies of the markets whose QR schemes build on EMVCo, and the majors. Exponents are
/// ISO 4217's (VND and KRW have none although they once had subunits; BHD and KWD have three).
pub const CURRENCIES: &[CurrencyInfo] = &[
    currency("036", "AUD", 2),
    currency("048", "BHD", 3),
    currency("156", "CNY", 2),
    currency("344", "HKD", 2),
    currency("356", "INR", 2),
    currency("360", "IDR", 2),
    currency("392", "JPY", 0),
    currency("410", "KRW", 0),
    currency("414", "KWD", 3),
    currency("458", "MYR", 2),
    currency("608", "PHP", 2),
    currency("702", "SGD", 2),
    currency("704", "VND", 0),
    currency("756", "CHF", 2),
    currency("764", "THB", 2),
    currency("826", "GBP", 2),
    currency("840", "USD", 2),
    currency("978", "EUR", 2),
];

impl CurrencyInfo {
    /// The currency whose numeric code is `numeric` ("392"), if this table has it.
    pub fn by_numeric(numeric: &str) -> Option<&'static CurrencyInfo> {
        CURRENCIES.iter().find(|c| c.numeric == numeric)
    }

    /// The currency whose alphabetic code is `alpha` ("JPY"), if this table has it.
    pub fn by_alpha(alpha: &str) -> Option<&'static CurrencyInfo> {
        CURRENCIES.iter().find(|c| c.alpha == alpha)
    }
}

/// Field 54's largest length, in characters.
pub const MAX_AMOUNT_CHARS: usize = 13;

/// The largest exponent the amount helpers accept. ISO 4217 has none above 4 (CLF, UYW).
pub const MAX_EXPONENT: u8 = 4;

/// Field 54's text for `minor_units` of a currency with `exponent`: "1000" for JPY 1000,
/// "12.50" for USD 1250 minor units. A decimal point only when the exponent is above zero,
/// always followed by exactly `exponent` digits; no sign, no exponent notation.
pub fn format_amount(minor_units: i64, exponent: u8) -> Result<String, Error> {
    if minor_units <= 0 {
        return Err(Error::AmountNotPositive { minor_units });
    }
    let exponent = checked_exponent(exponent)?;
    let scale = 10i64.pow(u32::from(exponent));
    let major = minor_units / scale;
    let fraction = minor_units % scale;
    let text = if exponent == 0 {
        major.to_string()
    } else {
        format!("{major}.{fraction:0width$}", width = usize::from(exponent))
    };
    if text.len() > MAX_AMOUNT_CHARS {
        return Err(Error::AmountTooLong {
            minor_units,
            max: MAX_AMOUNT_CHARS,
        });
    }
    Ok(text)
}

/// Checks field 54's syntax: 1 to 13 characters, digits with at most one '.', digits on both
/// sides of it. Returns the integer digits and the fraction digits (possibly empty).
pub fn amount_parts(text: &str) -> Result<(&str, &str), Error> {
    let bad = |reason| Error::BadAmount {
        found: snippet(text),
        reason,
    };
    if text.is_empty() {
        return Err(bad("it is empty"));
    }
    if text.chars().count() > MAX_AMOUNT_CHARS {
        return Err(bad("it is longer than 13 characters"));
    }
    let (integer, fraction) = match text.split_once('.') {
        Some((integer, fraction)) => {
            if fraction.is_empty() {
                return Err(bad("a decimal point must be followed by digits"));
            }
            (integer, fraction)
        }
        None => (text, ""),
    };
    if integer.is_empty() {
        return Err(bad("a decimal point must be preceded by digits"));
    }
    if !integer.bytes().all(|b| b.is_ascii_digit()) || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad(
            "only digits and one decimal point '.' are allowed (no sign, no exponent)",
        ));
    }
    Ok((integer, fraction))
}

/// The minor units field 54's `text` stands for in a currency with `exponent`. Fewer decimals
/// than the exponent are accepted ("12.5" is 1250 cents); more are refused, as is zero.
pub fn parse_amount(text: &str, currency: &CurrencyInfo) -> Result<i64, Error> {
    let (integer, fraction) = amount_parts(text)?;
    let exponent = checked_exponent(currency.exponent)?;
    if fraction.len() > usize::from(exponent) {
        return Err(Error::TooManyDecimals {
            found: snippet(text),
            currency: currency.alpha,
            exponent,
        });
    }
    // At most 13 digits in all, so none of this can overflow an i64 (which holds 18).
    let mut minor_units: i64 = 0;
    for digit in integer.bytes().chain(fraction.bytes()) {
        minor_units = minor_units * 10 + i64::from(digit - b'0');
    }
    for _ in fraction.len()..usize::from(exponent) {
        minor_units *= 10;
    }
    if minor_units == 0 {
        return Err(Error::AmountNotPositive { minor_units });
    }
    Ok(minor_units)
}

fn checked_exponent(exponent: u8) -> Result<u8, Error> {
    if exponent > MAX_EXPONENT {
        return Err(Error::BadAmount {
            found: format!("exponent {exponent}"),
            reason: "the currency exponent must be at most 4",
        });
    }
    Ok(exponent)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(alpha: &str) -> &'static CurrencyInfo {
        CurrencyInfo::by_alpha(alpha).expect("in the table")
    }

    #[test]
    fn the_table_maps_numeric_codes_to_alpha_codes_and_exponents() {
        for (numeric, alpha, exponent) in [
            ("392", "JPY", 0),
            ("840", "USD", 2),
            ("978", "EUR", 2),
            ("826", "GBP", 2),
            ("702", "SGD", 2),
            ("764", "THB", 2),
            ("356", "INR", 2),
            ("360", "IDR", 2),
            ("458", "MYR", 2),
            ("608", "PHP", 2),
            ("704", "VND", 0),
            ("410", "KRW", 0),
            ("156", "CNY", 2),
            ("344", "HKD", 2),
            ("036", "AUD", 2),
            ("756", "CHF", 2),
            ("048", "BHD", 3),
            ("414", "KWD", 3),
        ] {
            let by_numeric = CurrencyInfo::by_numeric(numeric).expect("known numeric code");
            assert_eq!((by_numeric.alpha, by_numeric.exponent), (alpha, exponent));
            assert_eq!(CurrencyInfo::by_alpha(alpha), Some(by_numeric));
        }
        assert_eq!(CurrencyInfo::by_numeric("999"), None);
    }

    #[test]
    fn amounts_format_in_major_units_with_the_currency_exponent() {
        assert_eq!(format_amount(1000, 0).expect("JPY"), "1000");
        assert_eq!(format_amount(1250, 2).expect("USD"), "12.50");
        assert_eq!(format_amount(5, 2).expect("USD"), "0.05");
        assert_eq!(format_amount(1, 3).expect("BHD"), "0.001");
        assert_eq!(format_amount(12_345, 3).expect("KWD"), "12.345");
        assert_eq!(
            format_amount(9_999_999_999_999, 0).expect("13 digits"),
            "9999999999999"
        );
    }

    #[test]
    fn amounts_that_do_not_fit_or_are_not_positive_are_refused() {
        assert!(matches!(
            format_amount(10_000_000_000_000, 0),
            Err(Error::AmountTooLong { .. })
        ));
        assert!(matches!(
            format_amount(1_000_000_000_000, 2),
            Err(Error::AmountTooLong { .. })
        ));
        assert_eq!(
            format_amount(0, 2),
            Err(Error::AmountNotPositive { minor_units: 0 })
        );
        assert!(format_amount(-1, 2).is_err());
        assert!(format_amount(i64::MAX, 0).is_err());
        assert!(format_amount(1, 5).is_err());
    }

    #[test]
    fn field_54_text_parses_to_exact_minor_units() {
        assert_eq!(parse_amount("1000", info("JPY")), Ok(1000));
        assert_eq!(parse_amount("12.50", info("USD")), Ok(1250));
        assert_eq!(parse_amount("12.5", info("USD")), Ok(1250));
        assert_eq!(parse_amount("12", info("USD")), Ok(1200));
        assert_eq!(parse_amount("0.001", info("BHD")), Ok(1));
        assert_eq!(
            parse_amount("9999999999999", info("VND")),
            Ok(9_999_999_999_999)
        );
        assert_eq!(parse_amount("0.10", info("EUR")), Ok(10));
    }

    #[test]
    fn field_54_text_with_anything_but_digits_and_one_point_is_refused() {
        for bad in [
            "",
            "+10",
            "-10",
            "1e3",
            "1E3",
            "1,00",
            "1.2.3",
            ".5",
            "5.",
            " 5",
            "5 ",
            "١٢",
            "12.5€",
            "12345678901234",
        ] {
            assert!(
                matches!(parse_amount(bad, info("USD")), Err(Error::BadAmount { .. })),
                "{bad:?} must be refused"
            );
        }
    }

    #[test]
    fn more_decimals_than_the_currency_has_are_refused() {
        assert!(matches!(
            parse_amount("1000.5", info("JPY")),
            Err(Error::TooManyDecimals { exponent: 0, .. })
        ));
        assert!(matches!(
            parse_amount("12.505", info("USD")),
            Err(Error::TooManyDecimals { exponent: 2, .. })
        ));
        assert!(matches!(
            parse_amount("1.0000", info("KWD")),
            Err(Error::TooManyDecimals { exponent: 3, .. })
        ));
    }

    #[test]
    fn a_zero_amount_is_refused() {
        assert_eq!(
            parse_amount("0.00", info("USD")),
            Err(Error::AmountNotPositive { minor_units: 0 })
        );
    }

    #[test]
    fn formatting_then_parsing_gives_back_the_minor_units() {
        for currency in CURRENCIES {
            for minor_units in [1, 7, 10, 99, 100, 101, 123_456, 999_999_999] {
                let text = format_amount(minor_units, currency.exponent).expect("fits");
                assert_eq!(parse_amount(&text, currency), Ok(minor_units), "{text}");
            }
        }
    }
}
