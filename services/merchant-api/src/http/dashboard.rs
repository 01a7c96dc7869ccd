//! The merchant's dashboard: a small server-rendered page at `/` and its one script and style
//! sheet, served from the binary. The browser signs in through `paykit::web` and never holds a
//! token; the script calls this service's own API with the session cookie, sending the CSRF
//! token (which the page carries) on every POST.
//!
//! Everything is same-origin and the Content-Security-Policy allows nothing else: no CDN, no
//! inline script, no third-party request.

use super::{merchant_of, AppState, Merchant};
use crate::error::Error;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use maud::{html, Markup};
use paykit::problem::Problem;
use paykit::web::{format_money, Account, BodyData, Session, Shell};

pub const SCRIPT_PATH: &str = "/assets/dashboard.mjs";
pub const STYLE_PATH: &str = "/assets/dashboard.css";
/// The exponent used for a currency the EMVCo table does not know (most have two).
const EXPONENT_FALLBACK: u8 = 2;

static SHELL: Shell = Shell {
    brand: "paytool · merchant",
    app: "Merchant dashboard",
    style_path: STYLE_PATH,
    script_path: SCRIPT_PATH,
    style: include_str!("../../web/dashboard.css"),
    script: include_str!("../../web/dashboard.mjs"),
    account: Account {
        noun: "merchant account",
        endpoint: "/v1/merchants",
        role: "merchant",
    },
};

pub fn router() -> Router<AppState> {
    Router::new().route("/", get(page)).merge(SHELL.assets())
}

fn exponent_of(currency: &str) -> u8 {
    emvco::CurrencyInfo::by_alpha(currency).map_or(EXPONENT_FALLBACK, |info| info.exponent)
}

/// Today's completed payments (UTC), net of the platform's fee, as of `at`.
struct Totals {
    count: i64,
    net: i64,
    at: chrono::DateTime<chrono::Utc>,
}

async fn totals(state: &AppState, merchant: &Merchant) -> Result<Totals, Error> {
    Ok(sqlx::query_as!(
        Totals,
        r#"SELECT now() AS "at!", count(*) AS "count!", COALESCE(sum(amount_value - fee_value), 0)::bigint AS "net!"
         FROM transactions
         WHERE merchant_id = $1 AND kind = 'payment'
           AND completed_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
           AND completed_at <= now()"#,
        merchant.id
    )
    .fetch_one(&state.pool)
    .await?)
}

async fn page(
    State(state): State<AppState>,
    session: Option<Extension<Session>>,
) -> Result<Response, Error> {
    let Some(sessions) = &state.sessions else {
        return Ok(Problem::new(
            StatusCode::NOT_FOUND,
            "dashboard-not-configured",
            "Dashboard not configured",
        )
        .with_detail("This merchant-api runs without web sign-in settings (APP__WEB__...).")
        .into_response());
    };
    let sso = sessions.settings().keycloak_public_url.clone();
    let Some(Extension(session)) = session else {
        return Ok(html(&sso, signed_out()));
    };
    let body = match merchant_of(&state, &session.principal).await {
        Ok(merchant) => {
            let totals = totals(&state, &merchant).await?;
            dashboard(&merchant, &totals, &session.csrf_token)
        }
        Err(Error::NotRegistered | Error::Forbidden(_)) => not_a_merchant(&session),
        Err(other) => return Err(other),
    };
    Ok(html(&sso, body))
}

/// The page with the headers every page gets: no caching (it is personal), and a policy that
/// allows only this origin, plus Keycloak as where the sign-out form's redirect goes.
fn html(sso: &str, body: Markup) -> Response {
    paykit::web::page_response(sso, "", body)
}

fn signed_out() -> Markup {
    SHELL.signed_out(
        "Merchant dashboard",
        "Sign in with your merchant account to see today's payments as they arrive, show QR codes and refund payments.",
    )
}

fn not_a_merchant(session: &Session) -> Markup {
    SHELL.no_account(session)
}

fn dashboard(merchant: &Merchant, totals: &Totals, csrf_token: &str) -> Markup {
    let currency = merchant.currency.as_str();
    let exponent = exponent_of(currency);
    let since = totals
        .at
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    // The amount field's smallest step, for the script: "1" for JPY, "0.01" for USD.
    let step = if exponent == 0 {
        "1".to_string()
    } else {
        format!("0.{}1", "0".repeat(usize::from(exponent) - 1))
    };
    let reference_max = super::payment_requests::REFERENCE_MAX_CHARS;
    let main = html! {
        h1 class="merchant" { (merchant.name) " " span class="muted" { (merchant.city) } }
        div class="grid" {
            section class="card" aria-labelledby="totals-title" {
                h2 id="totals-title" { "Today (UTC)" }
                dl class="totals" aria-live="polite" {
                    div {
                        dt { "Payments" }
                        dd data-testid="totals-count" id="totals-count" { (totals.count) }
                    }
                    div {
                        dt { "Net of fees" }
                        dd data-testid="totals-sum" id="totals-sum" data-value=(totals.net) {
                            (format_money(totals.net, currency, exponent))
                        }
                    }
                }
            }
            section class="card" aria-labelledby="qr-title" {
                h2 id="qr-title" { "New payment request" }
                form id="qr-form" data-testid="qr-form" novalidate {
                    label for="qr-amount" { "Amount (" (currency) ")" }
                    input id="qr-amount" name="amount" data-testid="qr-amount" inputmode="decimal"
                        autocomplete="off" required pattern="[0-9]+([.][0-9]+)?" data-step=(step);
                    label for="qr-reference" {
                        "Reference "
                        span class="muted" { "(optional, up to " (reference_max) " characters)" }
                    }
                    input id="qr-reference" name="reference" data-testid="qr-reference"
                        maxlength=(reference_max) autocomplete="off";
                    button type="submit" data-testid="qr-submit" { "Show QR code" }
                }
                p id="qr-status" role="status" aria-live="polite" {}
                figure id="qr-result" hidden {
                    img data-testid="qr-image" id="qr-image" alt="QR code of the payment request"
                        width="264" height="264";
                    figcaption { "Payload: " code data-testid="qr-payload" id="qr-payload" {} }
                }
            }
            section class="card wide" aria-labelledby="tx-title" {
                h2 id="tx-title" { "Transactions" }
                p id="tx-status" class="muted" role="status" { "Connecting to the live feed…" }
                ul id="tx-list" data-testid="tx-list" class="tx-list" aria-live="polite"
                    aria-relevant="additions text" {}
            }
        }
    };
    SHELL.layout(
        &format!("{} — merchant dashboard", merchant.name),
        Some(csrf_token),
        BodyData {
            currency: Some(currency),
            exponent: Some(exponent),
            csrf: Some(csrf_token),
            since: Some(&since),
        },
        main,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::header;

    fn merchant(name: &str) -> Merchant {
        Merchant {
            id: uuid::Uuid::nil(),
            name: name.to_string(),
            city: "Kyoto".into(),
            country: "JP".into(),
            mcc: "5812".into(),
            currency: "JPY".into(),
            ledger_account_id: uuid::Uuid::nil(),
        }
    }

    #[test]
    fn a_merchants_name_cannot_inject_markup_into_the_dashboard() {
        let totals = Totals {
            count: 2,
            net: 1980,
            at: chrono::Utc::now(),
        };
        let page =
            dashboard(&merchant("<script>alert(1)</script>"), &totals, "tok\"en").into_string();
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains(r#"data-csrf="tok&quot;en""#));
        for testid in [
            "totals-count",
            "totals-sum",
            "tx-list",
            "qr-form",
            "qr-amount",
            "qr-reference",
            "qr-submit",
            "qr-image",
            "qr-payload",
            "logout-button",
        ] {
            assert!(
                page.contains(&format!(r#"data-testid="{testid}""#)),
                "{testid}"
            );
        }
        assert!(page.contains(">1980 JPY<"));
    }

    #[test]
    fn the_signed_out_page_links_to_the_sign_in() {
        let page = signed_out().into_string();
        assert!(page.contains(r#"href="/login" data-testid="login-link""#));
        assert!(!page.contains("logout-button"));
    }

    #[test]
    fn the_page_allows_no_other_origin_than_its_own_and_keycloaks_for_the_sign_out() {
        let response = html("https://sso.local.test:26001", maud::html! { p { "x" } });
        let policy = response.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .expect("ascii")
            .to_string();
        assert!(policy.contains("script-src 'self'"));
        assert!(policy.contains("form-action 'self' https://sso.local.test:26001"));
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    }
}
