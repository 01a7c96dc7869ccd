//! Properties over random input: `decode` never panics, accepts only what re-encodes to itself,
//! and catches any one-character change to a valid payload.

mod common;

use emvco::{
    decode, encode, CountryCode, CurrencyCode, Mcc, MerchantCity, MerchantName, PaymentRequest,
    CURRENCIES,
};
use proptest::prelude::*;

/// A random valid request: any table currency, static or dynamic, printable ASCII text.
fn requests() -> impl Strategy<Value = PaymentRequest> {
    (
        0..CURRENCIES.len(),
        proptest::option::of(1i64..=99_999_999_999),
        "[A-Za-z0-9 .&'-]{1,25}",
        "[A-Za-z .-]{1,15}",
        "[a-z0-9-]{1,30}",
        proptest::option::of("[A-Za-z0-9-]{1,30}"),
        proptest::option::of("[ -~]{1,25}"),
        "[0-9]{4}",
        "[A-Z]{2}",
    )
        .prop_map(
            |(currency, amount, name, city, merchant_id, request_id, label, mcc, country)| {
                PaymentRequest {
                    gui: common::GUI.to_owned(),
                    merchant_id,
                    payment_request_id: request_id,
                    merchant_category_code: Mcc::parse(&mcc).expect("4 digits"),
                    currency: CurrencyCode::parse(CURRENCIES[currency].numeric).expect("table"),
                    amount_minor_units: amount,
                    country: CountryCode::parse(&country).expect("2 letters"),
                    merchant_name: MerchantName::parse(&name).expect("1-25 chars"),
                    merchant_city: MerchantCity::parse(&city).expect("1-15 chars"),
                    reference_label: label,
                }
            },
        )
}

/// The payload again, from the objects `decode` returned.
fn reassembled(payload: &emvco::Payload) -> String {
    payload
        .objects
        .iter()
        .map(|o| format!("{}{:02}{}", o.id, o.value.chars().count(), o.value))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decode_never_panics_on_any_string(input in "\\PC{0,600}|.{0,40}") {
        let _ = decode(&input);
    }

    #[test]
    fn decode_never_panics_on_tlv_shaped_input(
        input in "([0-9]{2}[0-9]{2}[ -~é北]{0,12}){0,12}(6304[0-9A-Fa-f]{0,5})?"
    ) {
        if let Ok(payload) = decode(&input) {
            prop_assert_eq!(reassembled(&payload), input);
        }
    }

    #[test]
    fn every_valid_request_round_trips(request in requests()) {
        let text = encode(&request).expect("a valid request encodes");
        let payload = decode(&text).expect("an encoded payload decodes");
        prop_assert_eq!(reassembled(&payload), text);
        prop_assert_eq!(&payload.merchant_name, &request.merchant_name);
        prop_assert_eq!(&payload.merchant_city, &request.merchant_city);
        prop_assert_eq!(&payload.currency, &request.currency);
        prop_assert_eq!(&payload.country, &request.country);
        prop_assert_eq!(&payload.reference_label, &request.reference_label);
        prop_assert_eq!(
            payload.amount.as_ref().and_then(|a| a.minor_units),
            request.amount_minor_units
        );
        let account = payload.platform_account(common::GUI).expect("platform template");
        prop_assert_eq!(account.merchant_id.as_deref(), Some(request.merchant_id.as_str()));
        prop_assert_eq!(account.payment_request_id, request.payment_request_id);
    }

    #[test]
    fn one_changed_ascii_character_is_always_refused(
        request in requests(),
        position in any::<prop::sample::Index>(),
        replacement in proptest::char::range(' ', '~'),
    ) {
        let text = encode(&request).expect("encodes");
        let mut chars: Vec<char> = text.chars().collect();
        let position = position.index(chars.len());
        prop_assume!(chars[position] != replacement);
        chars[position] = replacement;
        let changed: String = chars.into_iter().collect();
        prop_assert!(decode(&changed).is_err(), "accepted {}", changed);
    }

    #[test]
    fn any_changed_inserted_or_removed_character_never_panics(
        request in requests(),
        position in any::<prop::sample::Index>(),
        replacement in any::<char>(),
        edit in 0..3u8,
    ) {
        let text = encode(&request).expect("encodes");
        let mut chars: Vec<char> = text.chars().collect();
        let position = position.index(chars.len());
        match edit {
            0 => chars[position] = replacement,
            1 => chars.insert(position, replacement),
            _ => {
                chars.remove(position);
            }
        }
        let edited: String = chars.into_iter().collect();
        if let Ok(payload) = decode(&edited) {
            // Only an edit that left the text as it was (or a 1-in-65536 CRC collision) passes.
            prop_assert_eq!(reassembled(&payload), edited);
        }
    }
}
