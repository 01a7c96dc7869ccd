//! EMVCo Merchant-Presented Mode (MPM) QR payloads: the text inside a merchant's payment QR code.
//!
//! [`decode`] checks a scanned payload (TLV syntax, the 512-character limit, the CRC, mandatory
//! fields and their formats) and returns a typed [`Payload`]; [`encode`] builds the payload for a
//! [`PaymentRequest`] of this platform. Amounts are integer minor units everywhere; field 54's
//! decimal text is converted exactly by [`format_amount`] and [`parse_amount`]. The README next
//! to this crate lists the format decisions.
//!
//! ```
//! use emvco::{decode, encode, CountryCode, CurrencyCode, Mcc, MerchantCity, MerchantName};
//!
//! let request = emvco::PaymentRequest {
//!     gui: "test.local.paytool".into(),
//!     merchant_id: "m-000042".into(),
//!     payment_request_id: Some("pr-7f3a9c".into()),
//!     merchant_category_code: Mcc::parse("5812")?,
//!     currency: CurrencyCode::from_alpha("USD")?,
//!     amount_minor_units: Some(1250),
//!     country: CountryCode::parse("US")?,
//!     merchant_name: MerchantName::parse("Paytool Test Cafe")?,
//!     merchant_city: MerchantCity::parse("Seattle")?,
//!     reference_label: None,
//! };
//! let text = encode(&request)?;
//! assert!(text.contains("540512.50"));
//! let payload = decode(&text)?;
//! assert_eq!(payload.amount.and_then(|a| a.minor_units), Some(1250));
//! # Ok::<(), emvco::Error>(())
//! ```

mod crc;
mod currency;
mod error;
mod id;
mod payload;
mod tlv;

pub use crc::crc16_ccitt_false;
pub use currency::{
    amount_parts, format_amount, parse_amount, CurrencyInfo, CURRENCIES, MAX_AMOUNT_CHARS,
    MAX_EXPONENT,
};
pub use error::{Error, SNIPPET_MAX_CHARS};
pub use id::Id;
pub use payload::{
    decode, encode, verify_crc, Amount, CountryCode, CurrencyCode, Initiation, Mcc,
    MerchantAccount, MerchantCity, MerchantName, Payload, PaymentRequest, PlatformAccount,
    MAX_MERCHANT_CITY_CHARS, MAX_MERCHANT_NAME_CHARS, MAX_PAYLOAD_CHARS, PLATFORM_GUI,
    PLATFORM_MERCHANT_ID_SUB_ID, PLATFORM_PAYMENT_REQUEST_ID_SUB_ID, PLATFORM_TEMPLATE_ID,
};
pub use tlv::{parse_objects, DataObject, MAX_VALUE_CHARS};
