//! `paytool qr decode|encode`: the EMVCo merchant-presented payloads this platform prints,
//! decoded to JSON or made from fields, with the `emvco` crate the services use.

use crate::args::QrEncodeArgs;
use crate::support::exit::{fail, Code};
use emvco::{CountryCode, CurrencyCode, Mcc, MerchantCity, MerchantName, PaymentRequest};

pub use emvco::PLATFORM_GUI;

pub fn decode(payload: &str) -> anyhow::Result<i32> {
    let decoded = emvco::decode(payload.trim())
        .map_err(|error| fail(Code::Failed, format!("not a valid EMVCo payload: {error}")))?;
    println!("{}", serde_json::to_string_pretty(&decoded)?);
    Ok(0)
}

pub fn encode(args: &QrEncodeArgs) -> anyhow::Result<i32> {
    let invalid =
        |error: emvco::Error| fail(Code::Failed, format!("cannot make the payload: {error}"));
    let request = PaymentRequest {
        gui: PLATFORM_GUI.to_string(),
        merchant_id: args.merchant_id.clone(),
        payment_request_id: args.request_id.clone(),
        merchant_category_code: Mcc::parse(&args.mcc).map_err(invalid)?,
        currency: CurrencyCode::from_alpha(&args.currency).map_err(invalid)?,
        amount_minor_units: args.amount_minor,
        country: CountryCode::parse(&args.country).map_err(invalid)?,
        merchant_name: MerchantName::parse(&args.name).map_err(invalid)?,
        merchant_city: MerchantCity::parse(&args.city).map_err(invalid)?,
        reference_label: args.reference.clone(),
    };
    println!("{}", emvco::encode(&request).map_err(invalid)?);
    Ok(0)
}
