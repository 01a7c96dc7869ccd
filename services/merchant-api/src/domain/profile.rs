//! What a merchant registers with, checked against the EMVCo fields it ends up in.

use emvco::{CountryCode, CurrencyCode, Mcc, MerchantCity, MerchantName};

/// A merchant's name, city, country, category and currency, each valid for its QR field.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: MerchantName,
    pub city: MerchantCity,
    pub country: CountryCode,
    pub mcc: Mcc,
    /// ISO 4217 alphabetic ("JPY"); `currency_numeric` is what field 53 carries.
    pub currency: &'static str,
    pub currency_numeric: CurrencyCode,
}

impl Profile {
    /// Checks each field; the error names the field and its rule, for the client.
    pub fn parse(
        name: &str,
        city: &str,
        country: &str,
        mcc: &str,
        currency: &str,
    ) -> Result<Self, String> {
        let name = MerchantName::parse(name.trim())
            .map_err(|e| format!("name: {e} (QR codes carry at most 25 characters)"))?;
        let city = MerchantCity::parse(city.trim())
            .map_err(|e| format!("city: {e} (QR codes carry at most 15 characters)"))?;
        let country = CountryCode::parse(country)
            .map_err(|e| format!("country: {e} (an ISO 3166-1 alpha-2 code such as JP)"))?;
        let mcc = Mcc::parse(mcc)
            .map_err(|e| format!("mcc: {e} (an ISO 18245 merchant category code such as 5812)"))?;
        let info = emvco::CurrencyInfo::by_alpha(currency).ok_or_else(|| {
            let known: Vec<&str> = emvco::CURRENCIES.iter().map(|c| c.alpha).collect();
            format!(
                "currency: {currency:?} is not one this platform settles; use one of {}",
                known.join(", ")
            )
        })?;
        let currency_numeric =
            CurrencyCode::parse(info.numeric).map_err(|e| format!("currency: {e}"))?;
        Ok(Self {
            name,
            city,
            country,
            mcc,
            currency: info.alpha,
            currency_numeric,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_profile_parses_and_keeps_the_numeric_currency() {
        let profile = Profile::parse("Cafe Paytool", "Tokyo", "JP", "5812", "JPY").expect("valid");
        assert_eq!(profile.currency, "JPY");
        assert_eq!(profile.currency_numeric.as_str(), "392");
    }

    #[test]
    fn each_field_is_held_to_its_qr_limit() {
        let long_name = "N".repeat(26);
        for (fields, field) in [
            ((long_name.as_str(), "Tokyo", "JP", "5812", "JPY"), "name"),
            (("Cafe", "A city far too long", "JP", "5812", "JPY"), "city"),
            (("Cafe", "Tokyo", "JPN", "5812", "JPY"), "country"),
            (("Cafe", "Tokyo", "JP", "58a2", "JPY"), "mcc"),
            (("Cafe", "Tokyo", "JP", "5812", "XTS"), "currency"),
        ] {
            let error = Profile::parse(fields.0, fields.1, fields.2, fields.3, fields.4)
                .expect_err("refused");
            assert!(error.starts_with(field), "{field}: {error}");
        }
    }
}
