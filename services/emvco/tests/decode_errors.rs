//! Every way `decode` refuses a payload, each with the error it must name.

mod common;

use common::{body, minimal_objects, tlv, with_crc, GUI};
use emvco::{decode, Error, Id};

fn id(n: u8) -> Id {
    Id::new(n).expect("two digits")
}

/// The minimal payload with object number `index` replaced by `replacement` (TLV-encoded, or
/// empty to drop it), and a correct CRC.
fn replacing(index: usize, replacement: &str) -> String {
    let mut objects = minimal_objects();
    objects[index] = replacement.to_owned();
    with_crc(&body(&objects))
}

fn index_of(tag: &str) -> usize {
    minimal_objects()
        .iter()
        .position(|o| o.starts_with(tag))
        .expect("tag in the minimal payload")
}

#[test]
fn the_minimal_payload_the_other_tests_break_is_valid() {
    let payload = decode(&with_crc(&body(&minimal_objects()))).expect("valid");
    assert_eq!(
        payload.amount.as_ref().expect("amount").minor_units,
        Some(1250)
    );
    assert!(payload.account_for(GUI).is_some());
}

#[test]
fn a_wrong_crc_is_refused_naming_the_expected_and_found_values() {
    let good = with_crc(&body(&minimal_objects()));
    let expected = u16::from_str_radix(&good[good.len() - 4..], 16).expect("hex");
    let found = expected ^ 0x0001;
    let bad = format!("{}{found:04X}", &good[..good.len() - 4]);
    let error = decode(&bad).expect_err("wrong CRC");
    assert_eq!(error, Error::CrcMismatch { expected, found });
    let message = error.to_string();
    assert!(message.contains(&format!("{expected:04X}")), "{message}");
    assert!(message.contains(&format!("{found:04X}")), "{message}");
}

#[test]
fn a_payload_without_a_crc_is_refused() {
    assert_eq!(decode(&body(&minimal_objects())), Err(Error::CrcMissing));
}

#[test]
fn a_crc_followed_by_another_object_is_refused() {
    let payload = format!(
        "{}{}",
        with_crc(&body(&minimal_objects())),
        tlv("61", "12345")
    );
    assert_eq!(decode(&payload), Err(Error::CrcNotLast));
}

#[test]
fn a_crc_of_the_wrong_length_or_alphabet_is_refused() {
    let body = body(&minimal_objects());
    assert_eq!(
        decode(&format!("{body}6303ABC")),
        Err(Error::CrcBadLength { length: 3 })
    );
    // Lower-case hex is refused so that a one-character change to the CRC is always caught.
    assert!(matches!(
        decode(&format!("{body}6304abcd")),
        Err(Error::CrcBadFormat { .. })
    ));
    assert!(matches!(
        decode(&format!("{body}6304XYZ1")),
        Err(Error::CrcBadFormat { .. })
    ));
}

#[test]
fn a_truncated_object_is_refused() {
    let good = with_crc(&body(&minimal_objects()));
    // Cut inside the last object's value.
    let cut = &good[..good.len() - 2];
    assert!(matches!(
        decode(cut),
        Err(Error::TruncatedValue {
            declared: 4,
            available: 2,
            ..
        })
    ));
    // Cut inside a header.
    assert!(matches!(
        decode("000201630"),
        Err(Error::TruncatedHeader {
            offset: 6,
            available: 3
        })
    ));
    // A length running past the end.
    assert!(matches!(
        decode("00020101991"),
        Err(Error::TruncatedValue { declared: 99, .. })
    ));
}

#[test]
fn ids_and_lengths_that_are_not_two_digits_are_refused() {
    assert!(matches!(
        decode("0002010A0211"),
        Err(Error::BadId { offset: 6, .. })
    ));
    assert!(matches!(
        decode("00020101 211"),
        Err(Error::BadLength { offset: 6, .. })
    ));
    assert!(matches!(decode("x"), Err(Error::TruncatedHeader { .. })));
    assert!(matches!(decode("-1020101"), Err(Error::BadId { .. })));
}

#[test]
fn a_payload_over_512_characters_is_refused_before_parsing() {
    let long = "0".repeat(513);
    assert_eq!(
        decode(&long),
        Err(Error::TooLong {
            chars: 513,
            max: 512
        })
    );
    let long_multibyte = "é".repeat(513);
    assert!(matches!(
        decode(&long_multibyte),
        Err(Error::TooLong { .. })
    ));
    assert_eq!(decode(""), Err(Error::Empty));
}

#[test]
fn each_missing_mandatory_field_is_named() {
    for (tag, n, name) in [
        ("52", 52, "merchant category code"),
        ("53", 53, "transaction currency"),
        ("58", 58, "country code"),
        ("59", 59, "merchant name"),
        ("60", 60, "merchant city"),
    ] {
        let payload = replacing(index_of(tag), "");
        assert_eq!(
            decode(&payload),
            Err(Error::MissingField { id: id(n), name }),
            "without {tag}"
        );
    }
}

#[test]
fn a_payload_without_the_format_indicator_first_is_refused() {
    assert_eq!(
        decode(&replacing(0, "")),
        Err(Error::FormatIndicatorNotFirst)
    );
    let mut objects = minimal_objects();
    objects.swap(0, 1);
    assert_eq!(
        decode(&with_crc(&body(&objects))),
        Err(Error::FormatIndicatorNotFirst)
    );
    assert_eq!(
        decode(&replacing(0, &tlv("00", "02"))),
        Err(Error::BadFormatIndicator { found: "02".into() })
    );
}

#[test]
fn a_point_of_initiation_other_than_11_or_12_is_refused() {
    assert_eq!(
        decode(&replacing(1, &tlv("01", "13"))),
        Err(Error::BadInitiation { found: "13".into() })
    );
}

#[test]
fn a_payload_without_merchant_account_information_is_refused() {
    assert_eq!(
        decode(&replacing(index_of("26"), "")),
        Err(Error::MissingMerchantAccount)
    );
}

#[test]
fn a_merchant_account_template_without_a_globally_unique_id_is_refused() {
    let template = tlv("26", &tlv("01", "m-000042"));
    assert_eq!(
        decode(&replacing(index_of("26"), &template)),
        Err(Error::MissingGloballyUniqueId { id: id(26) })
    );
}

#[test]
fn a_malformed_template_is_refused_with_the_template_named() {
    let template = tlv("26", "0018test.local.paytool01");
    let error = decode(&replacing(index_of("26"), &template)).expect_err("bad template");
    assert!(
        matches!(&error, Error::InTemplate { id: t, source } if *t == id(26)
            && matches!(**source, Error::TruncatedHeader { .. })),
        "{error:?}"
    );
    assert!(error.to_string().starts_with("in template 26: "));
}

#[test]
fn a_primitive_merchant_account_from_a_card_network_counts() {
    let payload = replacing(index_of("26"), &tlv("04", "4111111111111111"));
    let payload = decode(&payload).expect("valid");
    assert_eq!(payload.merchant_accounts[0].id, id(4));
    assert_eq!(payload.merchant_accounts[0].gui, None);
}

#[test]
fn malformed_codes_are_refused() {
    for (tag, value) in [("52", "581"), ("52", "58a2"), ("52", "58122")] {
        assert!(
            matches!(
                decode(&replacing(index_of(tag), &tlv(tag, value))),
                Err(Error::BadMcc { .. })
            ),
            "{tag}={value}"
        );
    }
    for value in ["84", "USD", "8400", "８４０"] {
        assert!(
            matches!(
                decode(&replacing(index_of("53"), &tlv("53", value))),
                Err(Error::BadCurrency { .. })
            ),
            "53={value}"
        );
    }
    for value in ["us", "USA", "U1", "Ü"] {
        assert!(
            matches!(
                decode(&replacing(index_of("58"), &tlv("58", value))),
                Err(Error::BadCountry { .. })
            ),
            "58={value}"
        );
    }
}

#[test]
fn malformed_amounts_are_refused() {
    for value in [
        "+12.50", "-1", "1.25e1", "12,50", "12.5.0", ".50", "12.", "1 2",
    ] {
        assert!(
            matches!(
                decode(&replacing(index_of("54"), &tlv("54", value))),
                Err(Error::BadAmount { .. })
            ),
            "54={value}"
        );
    }
    assert!(matches!(
        decode(&replacing(index_of("54"), &tlv("54", "12345678901.00"))),
        Err(Error::BadAmount { .. })
    ));
    assert_eq!(
        decode(&replacing(index_of("54"), &tlv("54", "0.00"))),
        Err(Error::AmountNotPositive { minor_units: 0 })
    );
}

#[test]
fn an_amount_with_more_decimals_than_the_currency_is_refused() {
    let error = decode(&replacing(index_of("54"), &tlv("54", "12.505"))).expect_err("3 decimals");
    assert_eq!(
        error,
        Error::TooManyDecimals {
            found: "12.505".into(),
            currency: "USD",
            exponent: 2
        }
    );
    let mut objects = minimal_objects();
    objects[index_of("53")] = tlv("53", "392");
    objects[index_of("54")] = tlv("54", "1000.0");
    assert!(matches!(
        decode(&with_crc(&body(&objects))),
        Err(Error::TooManyDecimals { exponent: 0, .. })
    ));
}

#[test]
fn an_amount_in_a_currency_outside_the_table_is_only_syntax_checked() {
    let mut objects = minimal_objects();
    objects[index_of("53")] = tlv("53", "116");
    objects[index_of("54")] = tlv("54", "4000.123");
    let payload = decode(&with_crc(&body(&objects))).expect("valid");
    let amount = payload.amount.expect("amount");
    assert_eq!(
        (amount.text.as_str(), amount.minor_units),
        ("4000.123", None)
    );
    assert_eq!(payload.currency_alpha, None);
}

#[test]
fn a_repeated_top_level_id_is_refused() {
    let mut objects = minimal_objects();
    objects.insert(index_of("59"), tlv("58", "US"));
    assert_eq!(
        decode(&with_crc(&body(&objects))),
        Err(Error::Duplicate { id: id(58) })
    );
}

#[test]
fn a_repeated_id_inside_a_template_is_refused() {
    let template = tlv(
        "26",
        &format!("{}{}{}", tlv("00", GUI), tlv("01", "a"), tlv("01", "b")),
    );
    assert_eq!(
        decode(&replacing(index_of("26"), &template)),
        Err(Error::InTemplate {
            id: id(26),
            source: Box::new(Error::Duplicate { id: id(1) })
        })
    );
}

#[test]
fn names_and_cities_longer_than_the_spec_allows_are_refused() {
    assert_eq!(
        decode(&replacing(index_of("59"), &tlv("59", &"N".repeat(26)))),
        Err(Error::BadTextLength {
            field: "merchant name",
            max: 25,
            chars: 26
        })
    );
    assert_eq!(
        decode(&replacing(index_of("60"), &tlv("60", &"C".repeat(16)))),
        Err(Error::BadTextLength {
            field: "merchant city",
            max: 15,
            chars: 16
        })
    );
}

#[test]
fn non_ascii_names_are_measured_in_characters() {
    let payload =
        decode(&replacing(index_of("59"), &tlv("59", "Café Ünïcødé 東京"))).expect("valid");
    assert_eq!(payload.merchant_name.as_str(), "Café Ünïcødé 東京");
}

#[test]
fn a_control_character_in_a_value_is_refused() {
    assert_eq!(
        decode(&replacing(index_of("60"), &tlv("60", "Sea\nttle"))),
        Err(Error::ControlCharacter { id: id(60) })
    );
}

#[test]
fn an_empty_value_is_refused() {
    let mut objects = minimal_objects();
    objects.insert(index_of("60") + 1, "6100".to_owned());
    assert_eq!(
        decode(&with_crc(&body(&objects))),
        Err(Error::EmptyValue { id: id(61) })
    );
}

#[test]
fn unknown_ids_survive_a_decode() {
    let mut objects = minimal_objects();
    objects.push(tlv("61", "98101"));
    objects.push(tlv(
        "80",
        &format!("{}{}", tlv("00", "com.example"), tlv("01", "x")),
    ));
    let payload = decode(&with_crc(&body(&objects))).expect("valid");
    assert_eq!(payload.object(id(61)), Some("98101"));
    assert!(payload.object(id(80)).is_some());
}

#[test]
fn error_messages_quote_at_most_a_snippet_of_hostile_input() {
    let error =
        decode(&replacing(index_of("52"), &tlv("52", &"7".repeat(90)))).expect_err("bad MCC");
    let Error::BadMcc { found } = &error else {
        panic!("expected a bad MCC, got {error:?}");
    };
    assert_eq!(
        found.chars().count(),
        emvco::SNIPPET_MAX_CHARS + 1,
        "{found}"
    );
    assert!(found.ends_with('…'));
}
