//! Data object ids, on their own so that both the TLV layer and its errors can name them.

use serde::{Serialize, Serializer};
use std::fmt;

/// A data object id, 00 to 99. Shown and serialized as the two digits of the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(u8);

impl Id {
    pub const PAYLOAD_FORMAT_INDICATOR: Id = Id(0);
    pub const POINT_OF_INITIATION: Id = Id(1);
    pub const MERCHANT_CATEGORY_CODE: Id = Id(52);
    pub const TRANSACTION_CURRENCY: Id = Id(53);
    pub const TRANSACTION_AMOUNT: Id = Id(54);
    pub const COUNTRY_CODE: Id = Id(58);
    pub const MERCHANT_NAME: Id = Id(59);
    pub const MERCHANT_CITY: Id = Id(60);
    pub const POSTAL_CODE: Id = Id(61);
    pub const ADDITIONAL_DATA: Id = Id(62);
    pub const CRC: Id = Id(63);
    pub const MERCHANT_INFORMATION_LANGUAGE: Id = Id(64);
    /// Sub-id 00 of every template: the globally unique identifier of whoever defined it.
    pub const GLOBALLY_UNIQUE_ID: Id = Id(0);
    /// Sub-id 05 of the additional data template (62).
    pub const REFERENCE_LABEL: Id = Id(5);

    /// The id `n`, if it has two digits.
    pub const fn new(n: u8) -> Option<Id> {
        if n <= 99 {
            Some(Id(n))
        } else {
            None
        }
    }

    /// The id `n`, for constants: a value above 99 fails the build, not the program.
    pub(crate) const fn of(n: u8) -> Id {
        assert!(n <= 99, "a data object id has two digits");
        Id(n)
    }

    pub const fn get(self) -> u8 {
        self.0
    }

    /// Merchant account information: 02-25 are primitive (reserved for card networks),
    /// 26-51 are templates.
    pub const fn is_merchant_account(self) -> bool {
        matches!(self.0, 2..=51)
    }

    /// Top-level ids whose value is itself a sequence of data objects: merchant account
    /// information templates (26-51), additional data (62), merchant information in another
    /// language (64) and the unreserved templates (80-99).
    pub const fn is_template(self) -> bool {
        matches!(self.0, 26..=51 | 62 | 64 | 80..=99)
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}", self.0)
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}
