//! One-time payment codes: a consumer shows one (as a QR code and a Code 128 barcode) and a
//! merchant scans and charges it. Numeric, 18 digits, valid at most 60 s, single use, derived
//! with a server secret so that nobody without the secret can predict one.

use super::wallet::consumer_of;
use super::AppState;
use crate::error::Error;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use hmac::{Hmac, Mac};
use paykit::auth::Principal;
use rand::RngCore;
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// How long a code can be charged.
pub const CODE_VALIDITY_S: i64 = 60;
/// Codes start with this, like the 25–30 prefixes of other wallets' codes: a till can tell a
/// paytool code from a card number or a loyalty barcode before it asks anyone.
pub const CODE_PREFIX: &str = "28";
/// Digits after the prefix: 10^16 possibilities for one 60-second code.
const CODE_RANDOM_DIGITS: u32 = 16;
/// Height of the Code 128 rendering, in SVG user units.
const CODE128_HEIGHT: u32 = 80;
/// Without its namespace an SVG is not an image: a browser shows nothing for it as an <img>
/// or a file (barcoders leaves it out unless asked).
const SVG_NAMESPACE: &str = "http://www.w3.org/2000/svg";

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/payment-codes", post(create))
}

/// HMAC-SHA256 of the consumer, a fresh random nonce and the expiry, under the server's key;
/// the first 8 bytes, reduced to 16 decimal digits, follow the prefix.
pub fn derive_code(
    key: &[u8],
    consumer: uuid::Uuid,
    nonce: &[u8; 16],
    expires_at_unix: i64,
) -> String {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(consumer.as_bytes());
    mac.update(nonce);
    mac.update(&expires_at_unix.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let number = u64::from_be_bytes(first) % 10u64.pow(CODE_RANDOM_DIGITS);
    format!("{CODE_PREFIX}{number:016}")
}

pub fn code_hash(code: &str) -> String {
    hex::encode(Sha256::digest(code.as_bytes()))
}

async fn create(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<(StatusCode, Json<Value>), Error> {
    let consumer = consumer_of(&state, &principal).await?;
    // The database's clock, the one the redemption checks against: an instance whose own clock
    // is off (chaos experiment clock-skew-consumer-api, 90 s) made codes that another instance
    // called expired, or that lived 150 s.
    let expires_at = sqlx::query_scalar!(
        r#"SELECT now() + $1::int8 * interval '1 second' AS "expires_at!""#,
        CODE_VALIDITY_S
    )
    .fetch_one(&state.pool)
    .await?;
    let mut nonce = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let code = derive_code(
        state.payment_code_key.expose_secret().as_bytes(),
        consumer.id,
        &nonce,
        expires_at.timestamp(),
    );
    sqlx::query!(
        "INSERT INTO payment_codes (code_sha256, consumer_id, wallet_account_id, currency, expires_at) VALUES ($1, $2, $3, $4, $5)",
        code_hash(&code),
        consumer.id,
        consumer.wallet,
        consumer.currency.as_str(),
        expires_at,
    )
    .execute(&state.pool)
    .await?;
    let qr = qrcode::QrCode::new(code.as_bytes())
        .map_err(|e| Error::Upstream(anyhow::anyhow!("QR rendering: {e}")))?
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .build();
    // Code set C packs two digits per symbol: the shortest barcode for an all-digit code.
    let barcode = barcoders::sym::code128::Code128::new(format!("Ć{code}"))
        .map_err(|e| Error::Upstream(anyhow::anyhow!("Code 128: {e}")))?;
    let code128 = barcoders::generators::svg::SVG::new(CODE128_HEIGHT)
        .xmlns(SVG_NAMESPACE.to_string())
        .generate(barcode.encode())
        .map_err(|e| Error::Upstream(anyhow::anyhow!("Code 128 rendering: {e}")))?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({ "code": code, "expires_at": expires_at, "qr_svg": qr, "code128_svg": code128 }),
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_is_eighteen_digits_with_the_prefix_and_depends_on_every_input() {
        let consumer = uuid::Uuid::new_v4();
        let code = derive_code(b"key", consumer, &[7; 16], 1_800_000_000);
        assert_eq!(code.len(), 18);
        assert!(
            code.starts_with(CODE_PREFIX) && code.chars().all(|c| c.is_ascii_digit()),
            "{code}"
        );
        assert_eq!(
            code,
            derive_code(b"key", consumer, &[7; 16], 1_800_000_000),
            "deterministic for the same inputs"
        );
        assert_ne!(
            code,
            derive_code(b"other key", consumer, &[7; 16], 1_800_000_000)
        );
        assert_ne!(
            code,
            derive_code(b"key", uuid::Uuid::new_v4(), &[7; 16], 1_800_000_000)
        );
        assert_ne!(code, derive_code(b"key", consumer, &[8; 16], 1_800_000_000));
        assert_ne!(code, derive_code(b"key", consumer, &[7; 16], 1_800_000_001));
    }
}
