//! Payment requests: the EMVCo merchant-presented QR codes a merchant shows to be paid.
//! Static ones carry no amount and can be paid any number of times; dynamic ones carry the
//! amount, are paid once and expire.

use super::{merchant_amount, merchant_of, AppState, Merchant};
use crate::domain::barcode;
use crate::error::Error;
use axum::extract::{Extension, Path, State};
use axum::http::{header, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use paykit::auth::Principal;
use paykit::events::Envelope;
use paykit::idempotency::idempotent;
use paykit::money::Money;
use paykit::problem::JsonBody;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

/// A dynamic request's lifetime when the merchant names none.
const EXPIRES_IN_DEFAULT_S: i64 = 300;
/// The shortest and longest lifetimes a merchant may ask for.
const EXPIRES_IN_MIN_S: i64 = 30;
const EXPIRES_IN_MAX_S: i64 = 86_400;
/// EMVCo's reference label (62, sub-id 05) holds at most 25 characters.
pub const REFERENCE_MAX_CHARS: usize = 25;

pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route(
            "/v1/payment-requests",
            post(create).layer(from_fn_with_state(state, idempotent::<AppState>)),
        )
        .route("/v1/payment-requests/{id}", get(read))
        .route("/v1/payment-requests/{id}/qr.svg", get(qr_svg))
        .route("/v1/payment-requests/{id}/qr.png", get(qr_png))
        .route("/v1/payment-requests/{id}/code128.svg", get(code128_svg))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRequest {
    amount: Option<Money>,
    reference: Option<String>,
    expires_in_s: Option<i64>,
}

/// A reference must fit the QR field and a Code 128 receipt barcode: printable ASCII.
pub fn check_reference(reference: Option<&str>) -> Result<Option<String>, Error> {
    let Some(reference) = reference.map(str::trim) else {
        return Ok(None);
    };
    let printable = reference.chars().all(|c| c.is_ascii_graphic() || c == ' ');
    if reference.is_empty() || reference.chars().count() > REFERENCE_MAX_CHARS || !printable {
        return Err(Error::Invalid(format!(
            "reference must be 1 to {REFERENCE_MAX_CHARS} printable ASCII characters"
        )));
    }
    Ok(Some(reference.to_string()))
}

/// A row of `payment_requests` as the insert returns it and [`owned`] selects it (the same
/// columns in both, checked against the schema at compile time).
struct RequestRow {
    id: Uuid,
    kind: String,
    amount_value: Option<i64>,
    currency: String,
    reference: Option<String>,
    payload: String,
    status: String,
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
    payment_id: Option<Uuid>,
    created_at: chrono::DateTime<chrono::Utc>,
}

fn view(row: &RequestRow) -> Value {
    let RequestRow {
        id,
        kind,
        amount_value: amount,
        currency,
        reference,
        payload,
        status,
        expires_at,
        payment_id: payment,
        created_at,
    } = row;
    let expired = expires_at.is_some_and(|at| at <= chrono::Utc::now()) && status == "open";
    let base = format!("/v1/payment-requests/{id}");
    json!({
        "id": id,
        "kind": kind,
        "status": if expired { "expired" } else { status.as_str() },
        "amount": amount.map(|value| json!({ "value": value, "currency": currency })),
        "currency": currency,
        "reference": reference,
        "payload": payload,
        "expires_at": expires_at,
        "payment_id": payment,
        "created_at": created_at,
        "qr_svg_url": format!("{base}/qr.svg"),
        "qr_png_url": format!("{base}/qr.png"),
        "code128_svg_url": reference.as_ref().map(|_| format!("{base}/code128.svg")),
    })
}

async fn create(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    JsonBody(body): JsonBody<NewRequest>,
) -> Result<(StatusCode, Json<Value>), Error> {
    let merchant = merchant_of(&state, &principal).await?;
    let reference = check_reference(body.reference.as_deref())?;
    let amount = match body.amount {
        None => None,
        Some(amount) => Some(merchant_amount(&merchant, amount)?.value),
    };
    let expires_at = match (amount, body.expires_in_s) {
        (None, Some(_)) => {
            return Err(Error::Invalid(
                "expires_in_s: a static QR (no amount) does not expire".into(),
            ))
        }
        (None, None) => None,
        (Some(_), seconds) => {
            let seconds = seconds.unwrap_or(EXPIRES_IN_DEFAULT_S);
            if !(EXPIRES_IN_MIN_S..=EXPIRES_IN_MAX_S).contains(&seconds) {
                return Err(Error::Invalid(format!(
                    "expires_in_s must be between {EXPIRES_IN_MIN_S} and {EXPIRES_IN_MAX_S}"
                )));
            }
            Some(chrono::Utc::now() + chrono::Duration::seconds(seconds))
        }
    };
    let id = Uuid::new_v4();
    let payload = payload_for(&state, &merchant, id, amount, reference.as_deref())?;
    let mut tx = state.pool.begin().await?;
    let row = sqlx::query_as!(
        RequestRow,
        r#"INSERT INTO payment_requests (id, merchant_id, kind, amount_value, currency, reference, payload, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         RETURNING id, kind, amount_value, currency::text AS "currency!", reference, payload, status, expires_at, payment_id, created_at"#,
        id,
        merchant.id,
        if amount.is_some() { "dynamic" } else { "static" },
        amount,
        &merchant.currency,
        reference.as_deref(),
        &payload,
        expires_at,
    )
    .fetch_one(&mut *tx)
    .await?;
    let request = view(&row);
    let mut data = request.clone();
    data["merchant_id"] = json!(merchant.id);
    let event = Envelope::new(
        "payment_request.created",
        format!("payment_request/{id}"),
        data,
    );
    paykit::events::append(
        &mut tx,
        crate::MERCHANTS_TOPIC,
        &merchant.id.to_string(),
        &event,
    )
    .await?;
    tx.commit().await?;
    paykit::events::wake_relays();
    Ok((StatusCode::CREATED, Json(request)))
}

/// The EMVCo payload: this platform's template carries the merchant and the request (as 32 hex
/// digits each, so that the template stays within its 99 characters).
fn payload_for(
    state: &AppState,
    merchant: &Merchant,
    id: Uuid,
    amount: Option<i64>,
    reference: Option<&str>,
) -> Result<String, Error> {
    let stored = |what: &str, e: emvco::Error| {
        Error::Upstream(anyhow::anyhow!(
            "the merchant's stored {what} is invalid: {e}"
        ))
    };
    let request = emvco::PaymentRequest {
        gui: state.payments.qr_gui.clone(),
        merchant_id: merchant.id.simple().to_string(),
        payment_request_id: Some(id.simple().to_string()),
        merchant_category_code: emvco::Mcc::parse(&merchant.mcc).map_err(|e| stored("mcc", e))?,
        currency: emvco::CurrencyCode::from_alpha(&merchant.currency)
            .map_err(|e| stored("currency", e))?,
        amount_minor_units: amount,
        country: emvco::CountryCode::parse(&merchant.country).map_err(|e| stored("country", e))?,
        merchant_name: emvco::MerchantName::parse(&merchant.name).map_err(|e| stored("name", e))?,
        merchant_city: emvco::MerchantCity::parse(&merchant.city).map_err(|e| stored("city", e))?,
        reference_label: reference.map(str::to_string),
    };
    emvco::encode(&request).map_err(|e| Error::Invalid(e.to_string()))
}

async fn owned(state: &AppState, principal: &Principal, id: Uuid) -> Result<RequestRow, Error> {
    let merchant = merchant_of(state, principal).await?;
    sqlx::query_as!(
        RequestRow,
        r#"SELECT id, kind, amount_value, currency::text AS "currency!", reference, payload, status, expires_at, payment_id, created_at
         FROM payment_requests WHERE id = $1 AND merchant_id = $2"#,
        id,
        merchant.id
    )
    .fetch_optional(&state.pool)
    .await?
    .ok_or(Error::NotFound("payment request"))
}

async fn read(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<Uuid>,
) -> Result<Json<Value>, Error> {
    Ok(Json(view(&owned(&state, &principal, id).await?)))
}

fn image(content_type: &'static str, body: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // The code of a request never changes: cache it privately (it is the merchant's).
            (header::CACHE_CONTROL, "private, max-age=86400, immutable"),
        ],
        body,
    )
        .into_response()
}

fn render_error(error: barcode::RenderError) -> Error {
    Error::Upstream(anyhow::Error::new(error))
}

async fn qr_svg(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<Uuid>,
) -> Result<Response, Error> {
    let row = owned(&state, &principal, id).await?;
    let svg = barcode::qr_svg(&row.payload).map_err(render_error)?;
    Ok(image("image/svg+xml", svg.into_bytes()))
}

async fn qr_png(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<Uuid>,
) -> Result<Response, Error> {
    let row = owned(&state, &principal, id).await?;
    let png = barcode::qr_png(&row.payload).map_err(render_error)?;
    Ok(image("image/png", png))
}

/// The reference as Code 128, for a printed receipt; 404 when the request has none.
async fn code128_svg(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<Uuid>,
) -> Result<Response, Error> {
    let row = owned(&state, &principal, id).await?;
    let reference = row.reference.ok_or(Error::NotFound("reference"))?;
    let svg = barcode::code128_svg(&reference).map_err(render_error)?;
    Ok(image("image/svg+xml", svg.into_bytes()))
}
