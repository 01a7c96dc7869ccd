//! Payloads published by others, from national QR schemes built on EMVCo and from the spec.
//! Only the payload strings are taken (they are data); each names where it was found. Every CRC
//! here was checked independently before it was written down.

use emvco::{decode, verify_crc, Error, Id, Initiation};

fn id(n: u8) -> Id {
    Id::new(n).expect("two digits")
}

/// Singapore, SGQR with PayNow (static, a charity's UEN). From the README of
/// github.com/poonchuanan/Python-PayNow-QR-Code-Generator (README.md, "Understanding the format").
const SGQR_PAYNOW: &str = "00020101021126430009SG.PAYNOW010120210T04SS0129D030110502QS51810007SG.SGQR011221073031741D020701.000103066003160402010503279060400000708202107305204000053037025802SG5925LOVING HEART MULTI-SERVIC6009Singapore6304A177";

/// Indonesia, QRIS (static, issued through Bank Nobu). From the README of
/// github.com/YanaMiku-BOTz/api-qris-statis-ke-dinamis (README.md, "Contoh Request", codeqr).
const QRIS: &str = "00020101021126670016COM.NOBUBANK.WWW01189360050300000879140214107456374359710303UMI51440014ID.CO.QRIS.WWW0215ID20232494105490303UMI5204511153033605802ID5912YANAMIKUBOTZ6005TEGAL61055211162070703A016304F0A6";

/// The EMVCo MPM specification's own example (China, with the merchant's name and city in
/// Chinese in template 64). As carried by github.com/mvallim/emv-qrcode in
/// src/test/java/com/emv/qrcode/validators/Crc16ValidatorTest.java (testSuccessCrc16Sample1).
const EMVCO_SPEC_EXAMPLE: &str = "00020101021229300012D156000000000510A93FO3230Q31280012D15600000001030812345678520441115802CN5914BEST TRANSPORT6007BEIJING64200002ZH0104最佳运输0202北京540523.7253031565502016233030412340603***0708A60086670902ME91320016A0112233449988770708123456786304A13A";

/// A payload using nearly every optional object (tips, fees, postal code, a full additional data
/// template, templates 64 and 80, RFU object 65). From github.com/mvallim/emv-qrcode,
/// src/test/java/com/emv/qrcode/decoder/mpm/MerchantPresentedModeDecoderTest.java
/// (testeSuccessToString).
const EMVCO_EVERY_FIELD: &str = "00020101021102160004hoge0104abcd520441115303156540523.725502015603500570155802CN5914BEST TRANSPORT6007BEIJING6107123456762950105123450205678900305098760405543210505abcde0605fghij0705klmno0805pqres0905tuvxy5010000110101i64280002ZH0102北京0204最佳运输0304abcd65020080320016A01122334499887707081234567863044220";

/// Singapore, PayNow dynamic with an amount and a bill number. The usage example of
/// github.com/VirgilZhao/paynow (README.md), as mirrored at
/// https://github-three-lyart.vercel.app/VirgilZhao/paynow.
const PAYNOW_DYNAMIC: &str = "00020101021226470009SG.PAYNOW010120208123456780301004082026030452040000530370254040.995802SG5911testcompany6009Singapore62270123testordernumber1234567863040047";

/// Vietnam, VietQR (NAPAS) transfer of VND 120 000. From the README of github.com/subiz/vietqr.
const VIETQR: &str = "00020101021238570010A00000072701270006970415011300110019324180208QRIBFTTA530370454061200005802VN62170813ung ho lu lut6304C15C";

/// Thailand, PromptPay transfer of THB 4 999.99, embedded in a payment link in
/// github.com/dictotal/pay, src/platform/PAY/v-go/data.js (qrCodeInfo.thirdUrl, url_ali).
const PROMPTPAY: &str =
    "00020101021153037645802TH29370016A0000006770101110113006681017332754074999.9963040154";

/// Cambodia, USD 10.00. From the README of github.com/phannaly/emv-qr-code.
const CAMBODIA: &str = "00020101021252044131153137210116372101160123456789ABCDE6016Banteay Meanchey5913Kuntheas Shop5802KH540510.005303840621201081234567863041FF2";

/// The SGQR specimen with twelve payment schemes on one label, as shown in "A quick guide on how
/// SGQR code works" (https://victor.medium.com/a-quick-guide-into-how-sgqr-code-works-126e20bad640).
const SGQR_SPECIMEN: &str = "00020101021102164761360000000*1704155123456789123451110123456789012153123456789012341531250003440001034450003445311000126330015SG.COM.DASH.WWW0110000005550127670014A00000076200010120COM.LQDPALLIANCE.WWW021512345678901234503020028660011SG.COM.OCBC0147OCBCP2P629A358D-ECE7-4554-AD56-EBD12D84CA7E4F7329500006SG.EZI013603600006-76bb-4a5a-aa1a-fbcb64d6ecf530850013SG.COM.EZLINK01201234567890123456-1230204SGQR0324A123456,B123456,C12345670404A23X31260008COM.GRAB0110A93FO3230Q32390007COM.DBS011012345678900210123456789033900011SG.COM.NETS01230201401832831128823590002150001118703240000308885872010901199084E5DC3D834430017COM.QQ.WEIXIN.PAY011012345678900204123435660010SG.COM.UOB014845D233507F5E8C306E3871A4E9FACA601A80C114B5645E5D36940009SG.PAYNOW010100216+6212345678901230301004351234567890123456789012345678901234505082020123137270009SG.AIRPAY0110A11BC0000X51860007SG.SGQR0112180307510317020701.0003030608100604020205031380609Counter010708201804075204581453037025802SG5916FOOD XYZ PTE LTD6009SINGAPORE6106081006622301081234567R060787654306304317F";

#[test]
fn a_singapore_paynow_sgqr_decodes() {
    let payload = decode(SGQR_PAYNOW).expect("valid SGQR");
    assert_eq!(payload.country.as_str(), "SG");
    assert_eq!(payload.currency.as_str(), "702");
    assert_eq!(payload.currency_alpha, Some("SGD"));
    assert_eq!(payload.merchant_name.as_str(), "LOVING HEART MULTI-SERVIC");
    assert_eq!(payload.merchant_city.as_str(), "Singapore");
    assert_eq!(payload.merchant_category_code.as_str(), "0000");
    assert_eq!(payload.initiation, Some(Initiation::Static));
    assert_eq!(payload.amount, None);
    let paynow = payload.account_for("SG.PAYNOW").expect("PayNow template");
    assert_eq!(paynow.id, id(26));
    assert_eq!(paynow.sub(id(2)), Some("T04SS0129D"));
    assert!(payload.account_for("SG.SGQR").is_some());
    assert_eq!(payload.crc, 0xA177);
}

#[test]
fn an_indonesian_qris_decodes() {
    let payload = decode(QRIS).expect("valid QRIS");
    assert_eq!(payload.country.as_str(), "ID");
    assert_eq!(payload.currency_alpha, Some("IDR"));
    assert_eq!(payload.merchant_name.as_str(), "YANAMIKUBOTZ");
    assert_eq!(payload.merchant_city.as_str(), "TEGAL");
    assert_eq!(payload.merchant_category_code.as_str(), "5111");
    let guis: Vec<_> = payload
        .merchant_accounts
        .iter()
        .map(|a| (a.id.get(), a.gui.as_deref()))
        .collect();
    assert_eq!(
        guis,
        vec![(26, Some("COM.NOBUBANK.WWW")), (51, Some("ID.CO.QRIS.WWW"))]
    );
    // Postal code and the terminal label survive although the codec does not interpret them.
    assert_eq!(payload.object(id(61)), Some("52111"));
    assert_eq!(payload.additional_data[0].id, id(7));
    assert_eq!(payload.additional_data[0].value, "A01");
}

#[test]
fn the_emvco_specification_example_decodes_with_its_chinese_template() {
    let payload = decode(EMVCO_SPEC_EXAMPLE).expect("the spec's example");
    assert_eq!(payload.country.as_str(), "CN");
    assert_eq!(payload.currency_alpha, Some("CNY"));
    assert_eq!(payload.merchant_name.as_str(), "BEST TRANSPORT");
    assert_eq!(payload.merchant_city.as_str(), "BEIJING");
    let amount = payload.amount.as_ref().expect("amount");
    assert_eq!(
        (amount.text.as_str(), amount.minor_units),
        ("23.72", Some(2372))
    );
    assert_eq!(payload.object(id(64)), Some("0002ZH0104最佳运输0202北京"));
    assert_eq!(
        payload.account_for("D15600000000").map(|a| a.id),
        Some(id(29))
    );
    assert_eq!(
        payload.account_for("D15600000001").map(|a| a.id),
        Some(id(31))
    );
    // Its objects are not in ascending order (54 follows 64): decoding does not require it.
    assert_eq!(payload.crc, 0xA13A);
}

#[test]
fn a_payload_with_nearly_every_optional_object_decodes() {
    let payload = decode(EMVCO_EVERY_FIELD).expect("valid");
    assert_eq!(payload.country.as_str(), "CN");
    // The only merchant account is 02, a card network's primitive one.
    assert_eq!(payload.merchant_accounts.len(), 1);
    assert_eq!(payload.merchant_accounts[0].id, id(2));
    assert_eq!(payload.merchant_accounts[0].gui, None);
    assert_eq!(payload.reference_label.as_deref(), Some("abcde"));
    // Sub-id 50 of the additional data is a payment system specific template, kept as found.
    assert_eq!(
        payload
            .additional_data
            .last()
            .map(|o| (o.id, o.value.as_str())),
        Some((id(50), "000110101i"))
    );
    assert_eq!(payload.object(id(55)), Some("01"));
    assert_eq!(payload.object(id(61)), Some("1234567"));
    assert_eq!(payload.objects.len(), 18);
}

#[test]
fn a_dynamic_paynow_decodes_its_amount_in_cents() {
    let payload = decode(PAYNOW_DYNAMIC).expect("valid");
    assert_eq!(payload.initiation, Some(Initiation::Dynamic));
    assert_eq!(payload.country.as_str(), "SG");
    assert_eq!(payload.merchant_name.as_str(), "testcompany");
    assert_eq!(
        payload.amount.as_ref().and_then(|a| a.minor_units),
        Some(99)
    );
    assert_eq!(payload.additional_data[0].value, "testordernumber12345678");
}

#[test]
fn vietqr_and_promptpay_have_valid_crcs_but_leave_out_fields_emvco_makes_mandatory() {
    // Both schemes omit the MCC, the merchant name and the city; the codec is strict and says so.
    assert_eq!(verify_crc(VIETQR), Ok(0xC15C));
    assert_eq!(
        decode(VIETQR),
        Err(Error::MissingField {
            id: id(52),
            name: "merchant category code"
        })
    );
    assert_eq!(verify_crc(PROMPTPAY), Ok(0x0154));
    assert_eq!(
        decode(PROMPTPAY),
        Err(Error::MissingField {
            id: id(52),
            name: "merchant category code"
        })
    );
}

#[test]
fn a_city_longer_than_15_characters_is_refused_even_in_a_published_sample() {
    assert_eq!(verify_crc(CAMBODIA), Ok(0x1FF2));
    assert_eq!(
        decode(CAMBODIA),
        Err(Error::BadTextLength {
            field: "merchant city",
            max: 15,
            chars: 16
        })
    );
}

#[test]
fn the_sgqr_specimen_is_over_512_characters_and_refused() {
    assert_eq!(SGQR_SPECIMEN.chars().count(), 1042);
    assert_eq!(verify_crc(SGQR_SPECIMEN), Ok(0x317F));
    assert_eq!(
        decode(SGQR_SPECIMEN),
        Err(Error::TooLong {
            chars: 1042,
            max: 512
        })
    );
}

#[test]
fn every_accepted_sample_is_refused_after_any_single_ascii_change() {
    for sample in [
        SGQR_PAYNOW,
        QRIS,
        EMVCO_SPEC_EXAMPLE,
        EMVCO_EVERY_FIELD,
        PAYNOW_DYNAMIC,
    ] {
        let chars: Vec<char> = sample.chars().collect();
        for position in 0..chars.len() {
            let mut changed = chars.clone();
            changed[position] = if chars[position] == '7' { '8' } else { '7' };
            let changed: String = changed.into_iter().collect();
            assert!(
                decode(&changed).is_err(),
                "changing character {position} of {sample} to give {changed} was accepted"
            );
        }
    }
}
