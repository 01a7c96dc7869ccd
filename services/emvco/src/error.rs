//! The one error type of the codec: every way a payload or a request can be wrong.

use crate::id::Id;

/// Why a payload was refused or could not be built. Each message says what was found and, where
/// it helps, what was expected. Values quoted from the input are cut to [`SNIPPET_MAX_CHARS`] so
/// that an error about a hostile payload stays one readable line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("the payload is empty")]
    Empty,
    #[error("the payload has {chars} characters, more than the {max} EMVCo allows")]
    TooLong { chars: usize, max: usize },
    #[error("the data object at character {offset} is cut short: an id and a length need 4 characters, {available} remain")]
    TruncatedHeader { offset: usize, available: usize },
    #[error("the id at character {offset} must be two digits, found '{found}'")]
    BadId { offset: usize, found: String },
    #[error(
        "the length of data object {id} at character {offset} must be two digits, found '{found}'"
    )]
    BadLength {
        id: Id,
        offset: usize,
        found: String,
    },
    #[error("data object {id} at character {offset} declares {declared} characters but only {available} remain")]
    TruncatedValue {
        id: Id,
        offset: usize,
        declared: usize,
        available: usize,
    },
    #[error("data object {id} must not be empty (length 00)")]
    EmptyValue { id: Id },
    #[error("data object {id} contains a control character")]
    ControlCharacter { id: Id },
    #[error("in template {id}: {source}")]
    InTemplate {
        id: Id,
        #[source]
        source: Box<Error>,
    },
    #[error("the CRC (data object 63) is missing")]
    CrcMissing,
    #[error("the CRC (data object 63) must be the last data object, but it is followed by more")]
    CrcNotLast,
    #[error("the CRC (data object 63) must be 4 characters long, its length is {length}")]
    CrcBadLength { length: usize },
    #[error("the CRC must be 4 upper-case hexadecimal digits, found '{found}'")]
    CrcBadFormat { found: String },
    #[error("the CRC does not match: computed {expected:04X}, the payload says {found:04X}")]
    CrcMismatch { expected: u16, found: u16 },
    #[error("the payload format indicator (data object 00) must come first")]
    FormatIndicatorNotFirst,
    #[error("the payload format indicator must be \"01\", found '{found}'")]
    BadFormatIndicator { found: String },
    #[error("the point of initiation method must be \"11\" (static) or \"12\" (dynamic), found '{found}'")]
    BadInitiation { found: String },
    #[error("data object {id} appears more than once")]
    Duplicate { id: Id },
    #[error("the mandatory {name} (data object {id}) is missing")]
    MissingField { id: Id, name: &'static str },
    #[error("no merchant account information (data objects 02 to 51) is present")]
    MissingMerchantAccount,
    #[error(
        "merchant account information template {id} has no globally unique identifier (sub-id 00)"
    )]
    MissingGloballyUniqueId { id: Id },
    #[error("the merchant category code must be 4 digits, found '{found}'")]
    BadMcc { found: String },
    #[error(
        "the transaction currency must be an ISO 4217 numeric code of 3 digits, found '{found}'"
    )]
    BadCurrency { found: String },
    #[error("currency '{found}' is not one this codec knows the exponent of")]
    UnknownCurrency { found: String },
    #[error("the country code must be 2 upper-case letters (ISO 3166-1 alpha-2), found '{found}'")]
    BadCountry { found: String },
    #[error("the transaction amount '{found}' is malformed: {reason}")]
    BadAmount { found: String, reason: &'static str },
    #[error(
        "the transaction amount '{found}' has more decimals than {currency} allows ({exponent})"
    )]
    TooManyDecimals {
        found: String,
        currency: &'static str,
        exponent: u8,
    },
    #[error("the transaction amount must be greater than zero, got {minor_units} minor units")]
    AmountNotPositive { minor_units: i64 },
    #[error(
        "the transaction amount of {minor_units} minor units needs more than {max} characters"
    )]
    AmountTooLong { minor_units: i64, max: usize },
    #[error("the {field} must be 1 to {max} characters, found {chars}")]
    BadTextLength {
        field: &'static str,
        max: usize,
        chars: usize,
    },
    #[error("the {field} must be printable ASCII, found '{found}'")]
    NotPrintableAscii { field: &'static str, found: String },
}

/// How much of an offending input value an error message repeats, in characters.
pub const SNIPPET_MAX_CHARS: usize = 32;

/// The start of `value`, short enough for an error message.
pub(crate) fn snippet(value: &str) -> String {
    let mut chars = value.chars();
    let head: String = chars.by_ref().take(SNIPPET_MAX_CHARS).collect();
    if chars.next().is_some() {
        format!("{head}…")
    } else {
        head
    }
}
