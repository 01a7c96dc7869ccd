//! The typed payload: decoding with every check, and encoding a platform payment request.

use crate::crc::crc16_ccitt_false;
use crate::currency::{amount_parts, format_amount, parse_amount, CurrencyInfo};
use crate::error::{snippet, Error};
use crate::id::Id;
use crate::tlv::{parse_objects, write_object, DataObject, MAX_VALUE_CHARS};
use serde::Serialize;
use std::collections::BTreeSet;

/// The largest payload EMVCo allows, in characters.
pub const MAX_PAYLOAD_CHARS: usize = 512;
/// The longest merchant name (data object 59), in characters.
pub const MAX_MERCHANT_NAME_CHARS: usize = 25;
/// The longest merchant city (data object 60), in characters.
pub const MAX_MERCHANT_CITY_CHARS: usize = 15;
/// The CRC object's id and length, which the checksum covers, and its value's size.
const CRC_HEADER: &str = "6304";
const CRC_VALUE_CHARS: usize = 4;

/// The merchant account information template this platform writes its account into.
/// This platform's globally unique identifier (template sub-id 00): a reverse domain name, as
/// EMVCo suggests, under the project's own test domain.
pub const PLATFORM_GUI: &str = "test.local.paytool";
pub const PLATFORM_TEMPLATE_ID: Id = Id::of(26);
/// Sub-id of the platform's merchant id inside its template.
pub const PLATFORM_MERCHANT_ID_SUB_ID: Id = Id::of(1);
/// Sub-id of the platform's payment request id inside its template (dynamic payloads).
pub const PLATFORM_PAYMENT_REQUEST_ID_SUB_ID: Id = Id::of(2);

/// Static (one code for many payments, the payer types the amount) or dynamic (one payment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Initiation {
    Static,
    Dynamic,
}

impl Initiation {
    fn parse(value: &str) -> Result<Self, Error> {
        match value {
            "11" => Ok(Self::Static),
            "12" => Ok(Self::Dynamic),
            other => Err(Error::BadInitiation {
                found: snippet(other),
            }),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Static => "11",
            Self::Dynamic => "12",
        }
    }
}

/// A merchant category code (ISO 18245): four digits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Mcc(String);

impl Mcc {
    pub fn parse(value: &str) -> Result<Self, Error> {
        if value.len() == 4 && value.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(value.to_owned()))
        } else {
            Err(Error::BadMcc {
                found: snippet(value),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A transaction currency as field 53 carries it: the ISO 4217 numeric code, three digits. A
/// code outside [`crate::CURRENCIES`] is still a currency; only its exponent is unknown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct CurrencyCode(String);

impl CurrencyCode {
    pub fn parse(value: &str) -> Result<Self, Error> {
        if value.len() == 3 && value.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(value.to_owned()))
        } else {
            Err(Error::BadCurrency {
                found: snippet(value),
            })
        }
    }

    /// The currency with alphabetic code `alpha` ("JPY"), if the table knows it.
    pub fn from_alpha(alpha: &str) -> Result<Self, Error> {
        CurrencyInfo::by_alpha(alpha)
            .map(|info| Self(info.numeric.to_owned()))
            .ok_or_else(|| Error::UnknownCurrency {
                found: snippet(alpha),
            })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Alphabetic code and exponent, if the table knows this currency.
    pub fn info(&self) -> Option<&'static CurrencyInfo> {
        CurrencyInfo::by_numeric(&self.0)
    }
}

/// A country code (ISO 3166-1 alpha-2): two upper-case letters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct CountryCode(String);

impl CountryCode {
    pub fn parse(value: &str) -> Result<Self, Error> {
        if value.len() == 2 && value.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Self(value.to_owned()))
        } else {
            Err(Error::BadCountry {
                found: snippet(value),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The merchant's name (data object 59): 1 to 25 characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct MerchantName(String);

impl MerchantName {
    pub fn parse(value: &str) -> Result<Self, Error> {
        bounded_text("merchant name", value, MAX_MERCHANT_NAME_CHARS).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The merchant's city (data object 60): 1 to 15 characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct MerchantCity(String);

impl MerchantCity {
    pub fn parse(value: &str) -> Result<Self, Error> {
        bounded_text("merchant city", value, MAX_MERCHANT_CITY_CHARS).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Decoding accepts any non-control character (lengths count characters); encoding is stricter,
/// see [`printable_ascii`].
fn bounded_text(field: &'static str, value: &str, max: usize) -> Result<String, Error> {
    let chars = value.chars().count();
    if chars == 0 || chars > max {
        return Err(Error::BadTextLength { field, max, chars });
    }
    Ok(value.to_owned())
}

/// Field 54 as found, and what it means in minor units when the currency's exponent is known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Amount {
    pub text: String,
    pub minor_units: Option<i64>,
}

/// One merchant account information object (02-51). Templates (26-51) are opened: `gui` is their
/// sub-id 00 and `objects` all their sub-objects; primitive ones (02-25, card networks) have only
/// `value`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MerchantAccount {
    pub id: Id,
    pub value: String,
    pub gui: Option<String>,
    pub objects: Vec<DataObject>,
}

impl MerchantAccount {
    /// The value of sub-object `sub_id`, in a template.
    pub fn sub(&self, sub_id: Id) -> Option<&str> {
        self.objects
            .iter()
            .find(|o| o.id == sub_id)
            .map(|o| o.value.as_str())
    }
}

/// What this platform wrote into its merchant account template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlatformAccount {
    pub merchant_id: Option<String>,
    pub payment_request_id: Option<String>,
}

/// A decoded, validated payload. `objects` holds every top-level data object in order, so ids
/// this codec does not interpret (postal code, tips, language template, unreserved templates)
/// are not lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Payload {
    pub initiation: Option<Initiation>,
    pub merchant_accounts: Vec<MerchantAccount>,
    pub merchant_category_code: Mcc,
    pub currency: CurrencyCode,
    /// Alphabetic code of `currency`, when the table knows it.
    pub currency_alpha: Option<&'static str>,
    pub amount: Option<Amount>,
    pub country: CountryCode,
    pub merchant_name: MerchantName,
    pub merchant_city: MerchantCity,
    pub additional_data: Vec<DataObject>,
    pub reference_label: Option<String>,
    pub crc: u16,
    pub objects: Vec<DataObject>,
}

impl Payload {
    /// The merchant account template whose globally unique identifier is `gui`.
    pub fn account_for(&self, gui: &str) -> Option<&MerchantAccount> {
        self.merchant_accounts
            .iter()
            .find(|a| a.gui.as_deref() == Some(gui))
    }

    /// This platform's merchant id and payment request id, if a template carries `gui`.
    pub fn platform_account(&self, gui: &str) -> Option<PlatformAccount> {
        self.account_for(gui).map(|account| PlatformAccount {
            merchant_id: account.sub(PLATFORM_MERCHANT_ID_SUB_ID).map(str::to_owned),
            payment_request_id: account
                .sub(PLATFORM_PAYMENT_REQUEST_ID_SUB_ID)
                .map(str::to_owned),
        })
    }

    /// The top-level data object `id`, interpreted or not.
    pub fn object(&self, id: Id) -> Option<&str> {
        self.objects
            .iter()
            .find(|o| o.id == id)
            .map(|o| o.value.as_str())
    }
}

/// Checks only that `input` ends in a CRC object whose checksum is right, without validating the
/// rest. Useful for payloads of national schemes that leave out fields EMVCo calls mandatory.
pub fn verify_crc(input: &str) -> Result<u16, Error> {
    let objects = parse_objects(input)?;
    check_crc(input, &objects)
}

fn check_crc(input: &str, objects: &[DataObject]) -> Result<u16, Error> {
    let Some(last) = objects.last() else {
        return Err(Error::Empty);
    };
    let crc_count = objects.iter().filter(|o| o.id == Id::CRC).count();
    if crc_count == 0 {
        return Err(Error::CrcMissing);
    }
    if last.id != Id::CRC {
        return Err(Error::CrcNotLast);
    }
    if crc_count > 1 {
        return Err(Error::Duplicate { id: Id::CRC });
    }
    let length = last.value.chars().count();
    if length != CRC_VALUE_CHARS {
        return Err(Error::CrcBadLength { length });
    }
    let is_upper_hex = |b: u8| b.is_ascii_digit() || (b'A'..=b'F').contains(&b);
    if !last.value.bytes().all(is_upper_hex) {
        return Err(Error::CrcBadFormat {
            found: snippet(&last.value),
        });
    }
    let found = u16::from_str_radix(&last.value, 16).map_err(|_| Error::CrcBadFormat {
        found: snippet(&last.value),
    })?;
    // The value is four ASCII bytes, so everything before them is the covered prefix, "6304"
    // included.
    let covered = &input.as_bytes()[..input.len() - CRC_VALUE_CHARS];
    let expected = crc16_ccitt_false(covered);
    if expected != found {
        return Err(Error::CrcMismatch { expected, found });
    }
    Ok(found)
}

/// Decodes and validates an EMVCo merchant-presented payload. See the crate's README for the
/// checks. Never panics, whatever `input` is.
pub fn decode(input: &str) -> Result<Payload, Error> {
    if input.is_empty() {
        return Err(Error::Empty);
    }
    // Cheap bound before counting: a char is at most 4 bytes.
    if input.len() > MAX_PAYLOAD_CHARS * 4 || input.chars().count() > MAX_PAYLOAD_CHARS {
        return Err(Error::TooLong {
            chars: input.chars().count(),
            max: MAX_PAYLOAD_CHARS,
        });
    }
    let objects = parse_objects(input)?;
    let crc = check_crc(input, &objects)?;

    match objects.first() {
        Some(first) if first.id == Id::PAYLOAD_FORMAT_INDICATOR => {
            if first.value != "01" {
                return Err(Error::BadFormatIndicator {
                    found: snippet(&first.value),
                });
            }
        }
        _ => return Err(Error::FormatIndicatorNotFirst),
    }
    reject_duplicates(&objects)?;

    // Every template must itself be well-formed TLV without duplicate sub-ids.
    let mut templates = Vec::new();
    for object in objects.iter().filter(|o| o.id.is_template()) {
        let inner = parse_objects(&object.value)
            .and_then(|inner| reject_duplicates(&inner).map(|()| inner))
            .map_err(|source| Error::InTemplate {
                id: object.id,
                source: Box::new(source),
            })?;
        templates.push((object.id, inner));
    }
    let template = |id: Id| {
        templates
            .iter()
            .find(|(template_id, _)| *template_id == id)
            .map(|(_, inner)| inner)
    };
    let find = |id: Id| {
        objects
            .iter()
            .find(|o| o.id == id)
            .map(|o| o.value.as_str())
    };
    let required = |id: Id, name: &'static str| find(id).ok_or(Error::MissingField { id, name });

    let initiation = find(Id::POINT_OF_INITIATION)
        .map(Initiation::parse)
        .transpose()?;

    let mut merchant_accounts = Vec::new();
    for object in objects.iter().filter(|o| o.id.is_merchant_account()) {
        let inner = template(object.id).cloned().unwrap_or_default();
        let gui = inner
            .iter()
            .find(|o| o.id == Id::GLOBALLY_UNIQUE_ID)
            .map(|o| o.value.clone());
        if object.id.is_template() && gui.is_none() {
            return Err(Error::MissingGloballyUniqueId { id: object.id });
        }
        merchant_accounts.push(MerchantAccount {
            id: object.id,
            value: object.value.clone(),
            gui,
            objects: inner,
        });
    }

    let merchant_category_code = Mcc::parse(required(
        Id::MERCHANT_CATEGORY_CODE,
        "merchant category code",
    )?)?;
    let currency =
        CurrencyCode::parse(required(Id::TRANSACTION_CURRENCY, "transaction currency")?)?;
    let country = CountryCode::parse(required(Id::COUNTRY_CODE, "country code")?)?;
    let merchant_name = MerchantName::parse(required(Id::MERCHANT_NAME, "merchant name")?)?;
    let merchant_city = MerchantCity::parse(required(Id::MERCHANT_CITY, "merchant city")?)?;
    if merchant_accounts.is_empty() {
        return Err(Error::MissingMerchantAccount);
    }

    let amount = match find(Id::TRANSACTION_AMOUNT) {
        None => None,
        Some(text) => {
            let minor_units = match currency.info() {
                Some(info) => Some(parse_amount(text, info)?),
                // Without the exponent only the syntax can be checked.
                None => {
                    amount_parts(text)?;
                    None
                }
            };
            Some(Amount {
                text: text.to_owned(),
                minor_units,
            })
        }
    };

    let additional_data = template(Id::ADDITIONAL_DATA).cloned().unwrap_or_default();
    let reference_label = additional_data
        .iter()
        .find(|o| o.id == Id::REFERENCE_LABEL)
        .map(|o| o.value.clone());

    Ok(Payload {
        initiation,
        merchant_accounts,
        merchant_category_code,
        currency_alpha: currency.info().map(|info| info.alpha),
        currency,
        amount,
        country,
        merchant_name,
        merchant_city,
        additional_data,
        reference_label,
        crc,
        objects,
    })
}

fn reject_duplicates(objects: &[DataObject]) -> Result<(), Error> {
    let mut seen = BTreeSet::new();
    for object in objects {
        if !seen.insert(object.id) {
            return Err(Error::Duplicate { id: object.id });
        }
    }
    Ok(())
}

/// What the platform puts in a merchant's QR code. Without `amount_minor_units` the payload is
/// static ("11", the payer enters the amount); with it, dynamic ("12") and the amount goes into
/// field 54 in the currency's major units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PaymentRequest {
    /// This platform's globally unique identifier, e.g. "test.local.paytool" (template sub-id 00).
    pub gui: String,
    /// The merchant's id on this platform (template sub-id 01).
    pub merchant_id: String,
    /// The payment request this code pays (template sub-id 02), for dynamic codes.
    pub payment_request_id: Option<String>,
    pub merchant_category_code: Mcc,
    pub currency: CurrencyCode,
    pub amount_minor_units: Option<i64>,
    pub country: CountryCode,
    pub merchant_name: MerchantName,
    pub merchant_city: MerchantCity,
    /// Additional data template (62) sub-id 05.
    pub reference_label: Option<String>,
}

/// Builds the payload for `request`: objects in ascending id order, the CRC last.
pub fn encode(request: &PaymentRequest) -> Result<String, Error> {
    let mut account = String::new();
    write_checked(
        &mut account,
        Id::GLOBALLY_UNIQUE_ID,
        "globally unique identifier",
        &request.gui,
    )?;
    write_checked(
        &mut account,
        PLATFORM_MERCHANT_ID_SUB_ID,
        "merchant id",
        &request.merchant_id,
    )?;
    if let Some(payment_request_id) = &request.payment_request_id {
        write_checked(
            &mut account,
            PLATFORM_PAYMENT_REQUEST_ID_SUB_ID,
            "payment request id",
            payment_request_id,
        )?;
    }

    let (initiation, amount) = match request.amount_minor_units {
        None => (Initiation::Static, None),
        Some(minor_units) => {
            let info = request
                .currency
                .info()
                .ok_or_else(|| Error::UnknownCurrency {
                    found: request.currency.as_str().to_owned(),
                })?;
            let text = format_amount(minor_units, info.exponent)?;
            (Initiation::Dynamic, Some(text))
        }
    };

    let mut out = String::new();
    write_object(&mut out, Id::PAYLOAD_FORMAT_INDICATOR, "01");
    write_object(&mut out, Id::POINT_OF_INITIATION, initiation.as_str());
    write_checked(
        &mut out,
        PLATFORM_TEMPLATE_ID,
        "merchant account template",
        &account,
    )?;
    write_object(
        &mut out,
        Id::MERCHANT_CATEGORY_CODE,
        request.merchant_category_code.as_str(),
    );
    write_object(
        &mut out,
        Id::TRANSACTION_CURRENCY,
        request.currency.as_str(),
    );
    if let Some(amount) = &amount {
        write_object(&mut out, Id::TRANSACTION_AMOUNT, amount);
    }
    write_object(&mut out, Id::COUNTRY_CODE, request.country.as_str());
    write_checked(
        &mut out,
        Id::MERCHANT_NAME,
        "merchant name",
        request.merchant_name.as_str(),
    )?;
    write_checked(
        &mut out,
        Id::MERCHANT_CITY,
        "merchant city",
        request.merchant_city.as_str(),
    )?;
    if let Some(reference_label) = &request.reference_label {
        let mut additional = String::new();
        write_checked(
            &mut additional,
            Id::REFERENCE_LABEL,
            "reference label",
            reference_label,
        )?;
        write_checked(
            &mut out,
            Id::ADDITIONAL_DATA,
            "additional data template",
            &additional,
        )?;
    }
    out.push_str(CRC_HEADER);
    let crc = crc16_ccitt_false(out.as_bytes());
    out.push_str(&format!("{crc:04X}"));

    let chars = out.chars().count();
    if chars > MAX_PAYLOAD_CHARS {
        return Err(Error::TooLong {
            chars,
            max: MAX_PAYLOAD_CHARS,
        });
    }
    Ok(out)
}

/// Writes one object after checking that its value is 1 to 99 printable ASCII characters. The
/// platform only ever emits ASCII: every scanning app reads it, and bytes equal characters.
fn write_checked(out: &mut String, id: Id, field: &'static str, value: &str) -> Result<(), Error> {
    printable_ascii(field, value)?;
    let chars = value.chars().count();
    if chars == 0 || chars > MAX_VALUE_CHARS {
        return Err(Error::BadTextLength {
            field,
            max: MAX_VALUE_CHARS,
            chars,
        });
    }
    write_object(out, id, value);
    Ok(())
}

fn printable_ascii(field: &'static str, value: &str) -> Result<(), Error> {
    if value.bytes().all(|b| (0x20..=0x7E).contains(&b)) {
        Ok(())
    } else {
        Err(Error::NotPrintableAscii {
            field,
            found: snippet(value),
        })
    }
}
