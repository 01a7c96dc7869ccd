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
use paykit::problem::Problem;
use paykit::web::Session;
pub use paykit::web::{escape, format_money};

const SCRIPT: &str = include_str!("../../web/dashboard.mjs");
const STYLE: &str = include_str!("../../web/dashboard.css");
pub const SCRIPT_PATH: &str = "/assets/dashboard.mjs";
pub const STYLE_PATH: &str = "/assets/dashboard.css";
/// The script and style change only with the binary; an hour keeps reloads cheap without
/// keeping an old script long after a deployment.
/// The exponent used for a currency the EMVCo table does not know (most have two).
const EXPONENT_FALLBACK: u8 = 2;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(page))
        .route(SCRIPT_PATH, get(script))
        .route(STYLE_PATH, get(style))
        // Browsers ask for it on every page; an empty answer keeps a 404 out of their consoles.
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
}

fn exponent_of(currency: &str) -> u8 {
    emvco::CurrencyInfo::by_alpha(currency).map_or(EXPONENT_FALLBACK, |info| info.exponent)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    paykit::web::static_asset(content_type, body)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

/// Today's completed payments (UTC), net of the platform's fee, as of `at`.
struct Totals {
    count: i64,
    net: i64,
    at: chrono::DateTime<chrono::Utc>,
}

async fn totals(state: &AppState, merchant: &Merchant) -> Result<Totals, Error> {
    let (at, count, net): (chrono::DateTime<chrono::Utc>, i64, i64) = sqlx::query_as(
        "SELECT now(), count(*), COALESCE(sum(amount_value - fee_value), 0)::bigint
         FROM transactions
         WHERE merchant_id = $1 AND kind = 'payment'
           AND completed_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
           AND completed_at <= now()",
    )
    .bind(merchant.id)
    .fetch_one(&state.pool)
    .await?;
    Ok(Totals { count, net, at })
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
        return Ok(html(&sso, &signed_out()));
    };
    let body = match merchant_of(&state, &session.principal).await {
        Ok(merchant) => {
            let totals = totals(&state, &merchant).await?;
            dashboard(&merchant, &totals, &session.csrf_token)
        }
        Err(Error::NotRegistered | Error::Forbidden(_)) => not_a_merchant(&session),
        Err(other) => return Err(other),
    };
    Ok(html(&sso, &body))
}

/// The page with the headers every page gets: no caching (it is personal), and a policy that
/// allows only this origin, plus Keycloak as where the sign-out form's redirect goes.
fn html(sso: &str, body: &str) -> Response {
    paykit::web::page_response(sso, "", body.to_string())
}

const SHELL: paykit::web::Shell = paykit::web::Shell {
    brand: "paytool · merchant",
    style_path: STYLE_PATH,
    script_path: SCRIPT_PATH,
};

fn layout(title: &str, header_extra: &str, main: &str, body_attributes: &str) -> String {
    SHELL.layout(title, header_extra, main, body_attributes)
}

fn signed_out() -> String {
    layout(
        "Merchant dashboard — sign in",
        "",
        r#"<section class="card" aria-labelledby="signin-title">
<h1 id="signin-title">Merchant dashboard</h1>
<p>Sign in with your merchant account to see today's payments as they arrive, show QR codes and refund payments.</p>
<p><a class="button" href="/login" data-testid="login-link">Sign in</a></p>
</section>"#,
        "",
    )
}

fn logout_form(csrf_token: &str) -> String {
    format!(
        r#"<form method="post" action="/logout" class="logout">
<input type="hidden" name="csrf_token" value="{}">
<button type="submit" data-testid="logout-button">Sign out</button>
</form>"#,
        escape(csrf_token)
    )
}

fn not_a_merchant(session: &Session) -> String {
    let who = session
        .email
        .as_deref()
        .or(session.name.as_deref())
        .unwrap_or("This login");
    layout(
        "Merchant dashboard — no merchant account",
        &logout_form(&session.csrf_token),
        &format!(
            r#"<section class="card" aria-labelledby="none-title">
<h1 id="none-title">No merchant account</h1>
<p>{} has no merchant account. Register one with <code>POST /v1/merchants</code> (or <code>paytool pay register merchant</code>), then sign in again.</p>
</section>"#,
            escape(who)
        ),
        "",
    )
}

fn dashboard(merchant: &Merchant, totals: &Totals, csrf_token: &str) -> String {
    let currency = merchant.currency.as_str();
    let exponent = exponent_of(currency);
    let attributes = format!(
        r#" data-currency="{}" data-exponent="{exponent}" data-csrf="{}" data-since="{}""#,
        escape(currency),
        escape(csrf_token),
        escape(
            &totals
                .at
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        ),
    );
    let step = if exponent == 0 {
        "1".to_string()
    } else {
        format!("0.{}1", "0".repeat(usize::from(exponent) - 1))
    };
    let main = format!(
        r#"<h1 class="merchant">{name} <span class="muted">{city}</span></h1>
<div class="grid">
<section class="card" aria-labelledby="totals-title">
<h2 id="totals-title">Today (UTC)</h2>
<dl class="totals" aria-live="polite">
<div><dt>Payments</dt><dd data-testid="totals-count" id="totals-count">{count}</dd></div>
<div><dt>Net of fees</dt><dd data-testid="totals-sum" id="totals-sum" data-value="{net}">{net_text}</dd></div>
</dl>
</section>
<section class="card" aria-labelledby="qr-title">
<h2 id="qr-title">New payment request</h2>
<form id="qr-form" data-testid="qr-form" novalidate>
<label for="qr-amount">Amount ({currency_text})</label>
<input id="qr-amount" name="amount" data-testid="qr-amount" inputmode="decimal" autocomplete="off" required pattern="[0-9]+([.][0-9]+)?" data-step="{step}">
<label for="qr-reference">Reference <span class="muted">(optional, up to {reference_max} characters)</span></label>
<input id="qr-reference" name="reference" data-testid="qr-reference" maxlength="{reference_max}" autocomplete="off">
<button type="submit" data-testid="qr-submit">Show QR code</button>
</form>
<p id="qr-status" role="status" aria-live="polite"></p>
<figure id="qr-result" hidden>
<img data-testid="qr-image" id="qr-image" alt="QR code of the payment request" width="264" height="264">
<figcaption>Payload: <code data-testid="qr-payload" id="qr-payload"></code></figcaption>
</figure>
</section>
<section class="card wide" aria-labelledby="tx-title">
<h2 id="tx-title">Transactions</h2>
<p id="tx-status" class="muted" role="status">Connecting to the live feed…</p>
<ul id="tx-list" data-testid="tx-list" class="tx-list" aria-live="polite" aria-relevant="additions text"></ul>
</section>
</div>"#,
        name = escape(&merchant.name),
        city = escape(&merchant.city),
        count = totals.count,
        net = totals.net,
        net_text = escape(&format_money(totals.net, currency, exponent)),
        currency_text = escape(currency),
        reference_max = super::payment_requests::REFERENCE_MAX_CHARS,
    );
    layout(
        &format!("{} — merchant dashboard", merchant.name),
        &logout_form(csrf_token),
        &main,
        &attributes,
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
    fn escaping_covers_the_five_characters_html_gives_meaning() {
        assert_eq!(
            escape(r#"<a href="x" title='y'>&</a>"#),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
    }

    #[test]
    fn money_is_formatted_with_the_currencys_exponent() {
        assert_eq!(format_money(1200, "JPY", 0), "1200 JPY");
        assert_eq!(format_money(1250, "USD", 2), "12.50 USD");
        assert_eq!(format_money(5, "USD", 2), "0.05 USD");
        assert_eq!(format_money(-1005, "BHD", 3), "-1.005 BHD");
    }

    #[test]
    fn a_merchants_name_cannot_inject_markup_into_the_dashboard() {
        let totals = Totals {
            count: 2,
            net: 1980,
            at: chrono::Utc::now(),
        };
        let page = dashboard(&merchant("<script>alert(1)</script>"), &totals, "tok\"en");
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
        let page = signed_out();
        assert!(page.contains(r#"href="/login" data-testid="login-link""#));
        assert!(!page.contains("logout-button"));
    }

    #[test]
    fn the_page_allows_no_other_origin_than_its_own_and_keycloaks_for_the_sign_out() {
        let response = html("https://sso.local.test:26001", "<p>x</p>");
        let policy = response.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .expect("ascii")
            .to_string();
        assert!(policy.contains("script-src 'self'"));
        assert!(policy.contains("form-action 'self' https://sso.local.test:26001"));
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    }
}
