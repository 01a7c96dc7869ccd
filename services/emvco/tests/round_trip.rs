//! Encode then decode gives back the same fields.

mod common;

use common::{request, GUI};
use emvco::{decode, encode, Id, Initiation, MAX_PAYLOAD_CHARS};

#[test]
fn a_static_payload_round_trips_without_an_amount() {
    let request = request("JPY", "JP", None);
    let payload_text = encode(&request).expect("encodes");
    let payload = decode(&payload_text).expect("decodes");

    assert_eq!(payload.initiation, Some(Initiation::Static));
    assert_eq!(payload.amount, None);
    assert_eq!(payload.currency.as_str(), "392");
    assert_eq!(payload.currency_alpha, Some("JPY"));
    assert_eq!(payload.country.as_str(), "JP");
    assert_eq!(payload.merchant_name.as_str(), "Paytool Test Cafe");
    assert_eq!(payload.merchant_city.as_str(), "Tokyo");
    assert_eq!(payload.merchant_category_code.as_str(), "5812");
    let account = payload.platform_account(GUI).expect("platform template");
    assert_eq!(account.merchant_id.as_deref(), Some("m-000042"));
    assert_eq!(account.payment_request_id, None);
    assert_eq!(payload.reference_label, None);
}

#[test]
fn dynamic_payloads_round_trip_in_every_exponent() {
    for (alpha, country, minor_units, field_54) in [
        ("JPY", "JP", 1000, "1000"),
        ("USD", "US", 1250, "12.50"),
        ("EUR", "DE", 99, "0.99"),
        ("SGD", "SG", 100_000, "1000.00"),
        ("THB", "TH", 499_999, "4999.99"),
        ("IDR", "ID", 1_000_000, "10000.00"),
        ("VND", "VN", 120_000, "120000"),
        ("KRW", "KR", 15_000, "15000"),
        ("BHD", "BH", 12_345, "12.345"),
        ("KWD", "KW", 1, "0.001"),
        ("INR", "IN", 999_999_999_999, "9999999999.99"),
    ] {
        let request = request(alpha, country, Some(minor_units));
        let payload_text = encode(&request).expect("encodes");
        let payload = decode(&payload_text).expect("decodes");

        assert_eq!(payload.initiation, Some(Initiation::Dynamic), "{alpha}");
        let amount = payload
            .amount
            .clone()
            .expect("dynamic payloads carry an amount");
        assert_eq!(amount.text, field_54, "{alpha}");
        assert_eq!(amount.minor_units, Some(minor_units), "{alpha}");
        assert_eq!(payload.currency, request.currency);
        assert_eq!(payload.currency_alpha, Some(alpha));
        assert_eq!(payload.country, request.country);
        assert_eq!(payload.merchant_name, request.merchant_name);
        assert_eq!(payload.merchant_city, request.merchant_city);
        assert_eq!(
            payload.merchant_category_code,
            request.merchant_category_code
        );
        assert_eq!(payload.reference_label, request.reference_label);
        let account = payload.platform_account(GUI).expect("platform template");
        assert_eq!(account.merchant_id.as_deref(), Some("m-000042"));
        assert_eq!(account.payment_request_id, request.payment_request_id);
    }
}

#[test]
fn encoded_objects_come_in_ascending_id_order_with_the_crc_last() {
    let payload_text = encode(&request("USD", "US", Some(1250))).expect("encodes");
    let payload = decode(&payload_text).expect("decodes");
    let ids: Vec<u8> = payload.objects.iter().map(|o| o.id.get()).collect();
    assert_eq!(ids, vec![0, 1, 26, 52, 53, 54, 58, 59, 60, 62, 63]);
    assert!(payload_text.starts_with("000201010212"));
    assert!(payload_text[..payload_text.len() - 4].ends_with("6304"));
    assert_eq!(payload.object(Id::TRANSACTION_AMOUNT), Some("12.50"));
}

#[test]
fn the_platform_template_uses_sub_ids_00_01_and_02() {
    let payload_text = encode(&request("USD", "US", Some(1250))).expect("encodes");
    assert!(
        payload_text.contains("26470018test.local.paytool0108m-0000420209pr-7f3a9c"),
        "{payload_text}"
    );
}

#[test]
fn the_decoded_payload_serializes_to_json_for_the_cli() {
    let payload =
        decode(&encode(&request("JPY", "JP", Some(1000))).expect("encodes")).expect("decodes");
    let json = serde_json::to_value(&payload).expect("serializes");
    assert_eq!(json["currency"], "392");
    assert_eq!(json["currency_alpha"], "JPY");
    assert_eq!(json["initiation"], "dynamic");
    assert_eq!(json["amount"]["minor_units"], 1000);
    assert_eq!(json["merchant_accounts"][0]["id"], "26");
}

#[test]
fn a_platform_template_longer_than_99_characters_is_refused() {
    let mut big = request("USD", "US", Some(1250));
    big.merchant_id = "m".repeat(99);
    big.payment_request_id = Some("p".repeat(99));
    assert!(matches!(
        encode(&big),
        Err(emvco::Error::BadTextLength {
            field: "merchant account template",
            max: 99,
            chars: 228
        })
    ));
}

#[test]
fn values_an_encoder_must_not_emit_are_refused() {
    let mut bad = request("USD", "US", Some(1250));
    bad.reference_label = Some("tab\there".to_owned());
    assert!(matches!(
        encode(&bad),
        Err(emvco::Error::NotPrintableAscii { .. })
    ));

    let mut bad = request("USD", "US", Some(1250));
    bad.merchant_id = String::new();
    assert!(matches!(
        encode(&bad),
        Err(emvco::Error::BadTextLength { .. })
    ));

    let mut bad = request("USD", "US", Some(0));
    bad.payment_request_id = None;
    assert!(matches!(
        encode(&bad),
        Err(emvco::Error::AmountNotPositive { .. })
    ));

    let mut unknown = request("USD", "US", Some(100));
    unknown.currency = emvco::CurrencyCode::parse("999").expect("three digits");
    assert!(matches!(
        encode(&unknown),
        Err(emvco::Error::UnknownCurrency { .. })
    ));
}

#[test]
fn every_encoded_payload_fits_the_limit() {
    let payload_text = encode(&request("USD", "US", Some(1250))).expect("encodes");
    assert!(payload_text.chars().count() <= MAX_PAYLOAD_CHARS);
}
