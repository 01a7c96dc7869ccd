//! The TLV layer: two-digit id, two-digit length, value of that many characters.
//!
//! Lengths count characters (Unicode scalar values), as EMVCo does, not bytes: the spec's own
//! example carries "最佳运输" with length 04. Working in characters also means no slice ever
//! falls inside a multi-byte character, so no input can make the parser panic.

use crate::error::{snippet, Error};
use crate::id::Id;
use serde::Serialize;

/// One data object exactly as it appears in the payload. Kept for every object, known or not,
/// so that ids this codec does not interpret survive a decode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DataObject {
    pub id: Id,
    pub value: String,
}

/// The largest value one data object can carry: its length has two digits.
pub const MAX_VALUE_CHARS: usize = 99;

/// Splits `input` into data objects, checking only the TLV syntax: two-digit ids and lengths,
/// non-empty values that are all there, no control characters. Templates are not opened.
pub fn parse_objects(input: &str) -> Result<Vec<DataObject>, Error> {
    let mut objects = Vec::new();
    let mut rest = input;
    // Where `rest` starts, in characters from the start of `input`, for error messages.
    let mut offset = 0usize;
    while !rest.is_empty() {
        let bytes = rest.as_bytes();
        if bytes.len() < 4 {
            return Err(Error::TruncatedHeader {
                offset,
                available: rest.chars().count(),
            });
        }
        // Two decimal digits are at most 99, so `Id::new` takes every value `two_digits` gives.
        let id = match two_digits(bytes[0], bytes[1]).and_then(Id::new) {
            Some(id) => id,
            None => {
                return Err(Error::BadId {
                    offset,
                    found: snippet(&rest.chars().take(2).collect::<String>()),
                })
            }
        };
        let length = match two_digits(bytes[2], bytes[3]) {
            Some(n) => usize::from(n),
            None => {
                return Err(Error::BadLength {
                    id,
                    offset,
                    found: snippet(&rest.chars().skip(2).take(2).collect::<String>()),
                })
            }
        };
        if length == 0 {
            return Err(Error::EmptyValue { id });
        }
        // The four header bytes are ASCII digits, so byte 4 starts a character.
        let after_header = &rest[4..];
        let value_end = match after_header.char_indices().nth(length) {
            Some((end, _)) => end,
            None => {
                let available = after_header.chars().count();
                if available != length {
                    return Err(Error::TruncatedValue {
                        id,
                        offset,
                        declared: length,
                        available,
                    });
                }
                after_header.len()
            }
        };
        let value = &after_header[..value_end];
        if value.chars().any(char::is_control) {
            return Err(Error::ControlCharacter { id });
        }
        objects.push(DataObject {
            id,
            value: value.to_owned(),
        });
        rest = &after_header[value_end..];
        offset += 4 + length;
    }
    Ok(objects)
}

/// Appends one data object to `out`. The caller has checked the value's length.
pub(crate) fn write_object(out: &mut String, id: Id, value: &str) {
    let length = value.chars().count();
    debug_assert!((1..=MAX_VALUE_CHARS).contains(&length));
    out.push_str(&format!("{id}{length:02}"));
    out.push_str(value);
}

fn two_digits(tens: u8, units: u8) -> Option<u8> {
    if tens.is_ascii_digit() && units.is_ascii_digit() {
        Some((tens - b'0') * 10 + (units - b'0'))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_split_on_declared_lengths() {
        let objects = parse_objects("000201010211").expect("valid TLVs");
        assert_eq!(
            objects,
            vec![
                DataObject {
                    id: Id::of(0),
                    value: "01".into()
                },
                DataObject {
                    id: Id::of(1),
                    value: "11".into()
                },
            ]
        );
    }

    #[test]
    fn lengths_count_characters_not_bytes() {
        let objects = parse_objects("0104最佳运输0202北京").expect("valid TLVs");
        assert_eq!(objects[0].value, "最佳运输");
        assert_eq!(objects[1].value, "北京");
    }

    #[test]
    fn a_multibyte_character_where_a_digit_belongs_is_a_bad_id_not_a_panic() {
        assert!(matches!(parse_objects("é0201"), Err(Error::BadId { .. })));
        assert!(matches!(
            parse_objects("00é201"),
            Err(Error::BadLength { .. })
        ));
        assert!(matches!(
            parse_objects("0003é"),
            Err(Error::TruncatedValue { .. })
        ));
    }

    #[test]
    fn ids_print_as_two_digits() {
        assert_eq!(Id::of(5).to_string(), "05");
        assert_eq!(Id::new(100), None);
    }
}
