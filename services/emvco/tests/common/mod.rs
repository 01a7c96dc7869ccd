//! Builders shared by the integration tests.
#![allow(dead_code)]

use emvco::{
    crc16_ccitt_false, CountryCode, CurrencyCode, Mcc, MerchantCity, MerchantName, PaymentRequest,
};

pub const GUI: &str = "test.local.paytool";

/// A request in `alpha`, static when `amount_minor_units` is None.
pub fn request(alpha: &str, country: &str, amount_minor_units: Option<i64>) -> PaymentRequest {
    PaymentRequest {
        gui: GUI.to_owned(),
        merchant_id: "m-000042".to_owned(),
        payment_request_id: amount_minor_units.map(|_| "pr-7f3a9c".to_owned()),
        merchant_category_code: Mcc::parse("5812").expect("mcc"),
        currency: CurrencyCode::from_alpha(alpha).expect("known currency"),
        amount_minor_units,
        country: CountryCode::parse(country).expect("country"),
        merchant_name: MerchantName::parse("Paytool Test Cafe").expect("name"),
        merchant_city: MerchantCity::parse("Tokyo").expect("city"),
        reference_label: amount_minor_units.map(|_| "INV-2024-0001".to_owned()),
    }
}

/// `body` (everything before the CRC object) with a correct CRC appended.
pub fn with_crc(body: &str) -> String {
    let covered = format!("{body}6304");
    let crc = crc16_ccitt_false(covered.as_bytes());
    format!("{covered}{crc:04X}")
}

/// One TLV object.
pub fn tlv(id: &str, value: &str) -> String {
    format!("{id}{:02}{value}", value.chars().count())
}

/// A valid static payload body built by hand, without the CRC, from the given objects
/// (each already TLV-encoded), so that tests can drop, change or repeat any one of them.
pub fn body(objects: &[String]) -> String {
    objects.concat()
}

/// The objects of a minimal valid payload, in order, CRC excluded.
pub fn minimal_objects() -> Vec<String> {
    vec![
        tlv("00", "01"),
        tlv("01", "12"),
        tlv(
            "26",
            &format!("{}{}", tlv("00", GUI), tlv("01", "m-000042")),
        ),
        tlv("52", "5812"),
        tlv("53", "840"),
        tlv("54", "12.50"),
        tlv("58", "US"),
        tlv("59", "Paytool Test Cafe"),
        tlv("60", "Seattle"),
    ]
}
