//! The consumer's wallet in a browser: a small server-rendered page at `/` and its one script
//! and style sheet, served from the binary. The browser signs in through `paykit::web` and never
//! holds a token; the script calls this service's own API with the session cookie, sending the
//! CSRF token (from `GET /session`) and an Idempotency-Key on every POST.
//!
//! Everything is same-origin and the Content-Security-Policy allows nothing else: no CDN, no
//! inline script, no third-party request. The payment code's SVGs are shown as `blob:` images
//! made by the script from the API's answer, so that nothing the server did not render as
//! markup of its own becomes part of the page's DOM.

use super::wallet::{consumer_of, wallet_view, Consumer};
use super::AppState;
use crate::error::Error;
use axum::extract::{Extension, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use paykit::problem::Problem;
use paykit::web::Session;
pub use paykit::web::{escape, format_money};

const SCRIPT: &str = include_str!("../../web/wallet.mjs");
const STYLE: &str = include_str!("../../web/wallet.css");
pub const SCRIPT_PATH: &str = "/assets/wallet.mjs";
pub const STYLE_PATH: &str = "/assets/wallet.css";
/// The script and style change only with the binary; an hour keeps reloads cheap without
/// keeping an old script long after a deployment.
/// The exponent used for a currency the EMVCo table does not know (most have two).
const EXPONENT_FALLBACK: u8 = 2;
/// The longest EMVCo payload the pay form takes: the format's own limit is 512 characters.
const PAYLOAD_MAX_CHARS: usize = 512;

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

async fn page(
    State(state): State<AppState>,
    session: Option<Extension<Session>>,
) -> Result<Response, Error> {
    let Some(sessions) = &state.sessions else {
        return Ok(Problem::new(
            StatusCode::NOT_FOUND,
            "wallet-not-configured",
            "Wallet not configured",
        )
        .with_detail("This consumer-api runs without web sign-in settings (APP__WEB__...).")
        .into_response());
    };
    let sso = sessions.settings().keycloak_public_url.clone();
    let Some(Extension(session)) = session else {
        return Ok(html(&sso, &signed_out()));
    };
    let body = match consumer_of(&state, &session.principal).await {
        Ok(consumer) => {
            // The page still works without the ledger's answer: the script asks again.
            let available = match wallet_view(&state, &consumer).await {
                Ok(view) => view["available"]["value"].as_i64(),
                Err(error) => {
                    tracing::warn!(%error, "the wallet page is shown without its balance");
                    None
                }
            };
            wallet(&consumer, available, &session)
        }
        Err(Error::NotRegistered | Error::Forbidden(_)) => not_a_consumer(&session),
        Err(other) => return Err(other),
    };
    Ok(html(&sso, &body))
}

/// The page with the headers every page gets: no caching (it is personal), and a policy that
/// allows only this origin, plus Keycloak as where the sign-out form's redirect goes. `blob:`
/// images are the payment code's SVGs, made by the script from this origin's answer.
fn html(sso: &str, body: &str) -> Response {
    let mut response = paykit::web::page_response(sso, " blob:", body.to_string());
    // The camera is for scanning merchants' QR codes on this page only; nothing else is needed.
    response.headers_mut().insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(self), microphone=(), geolocation=()"),
    );
    response
}

const SHELL: paykit::web::Shell = paykit::web::Shell {
    brand: "paytool · wallet",
    style_path: STYLE_PATH,
    script_path: SCRIPT_PATH,
};

fn layout(title: &str, header_extra: &str, main: &str, body_attributes: &str) -> String {
    SHELL.layout(title, header_extra, main, body_attributes)
}

fn signed_out() -> String {
    layout(
        "Wallet — sign in",
        "",
        r#"<section class="card" aria-labelledby="signin-title">
<h1 id="signin-title">Your wallet</h1>
<p>Sign in to see your balance, top up, pay a merchant's QR code and show a payment code at the till.</p>
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

fn who(session: &Session) -> &str {
    session
        .email
        .as_deref()
        .or(session.name.as_deref())
        .unwrap_or("This login")
}

fn not_a_consumer(session: &Session) -> String {
    layout(
        "Wallet — no wallet",
        &logout_form(&session.csrf_token),
        &format!(
            r#"<section class="card" aria-labelledby="none-title">
<h1 id="none-title">No wallet</h1>
<p>{} has no wallet. Register one with <code>POST /v1/consumers</code> (or <code>paytool pay register consumer</code>), then sign in again.</p>
</section>"#,
            escape(who(session))
        ),
        "",
    )
}

fn wallet(consumer: &Consumer, available: Option<i64>, session: &Session) -> String {
    let currency = consumer.currency.as_str();
    let exponent = exponent_of(currency);
    let attributes = format!(
        r#" data-currency="{}" data-exponent="{exponent}""#,
        escape(currency)
    );
    let (balance_value, balance_text) = match available {
        Some(value) => (value.to_string(), format_money(value, currency, exponent)),
        None => (String::new(), "…".to_string()),
    };
    let main = format!(
        r#"<h1 class="who">Wallet <span class="muted">{who}</span></h1>
<p id="message" data-testid="message" class="message" role="status" aria-live="polite"></p>
<div class="grid">
<section class="card" aria-labelledby="balance-title">
<h2 id="balance-title">Available</h2>
<p class="balance" data-testid="balance" id="balance" data-value="{balance_value}" aria-live="polite">{balance_text}</p>
<form id="topup-form" data-testid="topup-form" novalidate>
<label for="topup-amount">Top up ({currency_text})</label>
<div class="row">
<input id="topup-amount" name="amount" data-testid="topup-amount" inputmode="decimal" autocomplete="off" required>
<button type="submit" data-testid="topup-submit">Top up</button>
</div>
</form>
</section>
<section class="card" aria-labelledby="code-title">
<h2 id="code-title">Pay at the till</h2>
<p class="muted">Show a one-time code; the merchant scans it and charges your wallet.</p>
<button type="button" id="code-button" data-testid="code-button">Show payment code</button>
<figure id="code-result" class="code" hidden>
<img id="code-qr" data-testid="code-qr" alt="QR code of your payment code" width="200" height="200">
<img id="code-128" data-testid="code-128" alt="Barcode of your payment code" class="barcode">
<figcaption><span id="code-digits" data-testid="code-digits" class="digits"></span>
<span id="code-countdown" class="muted" aria-live="off"></span></figcaption>
</figure>
</section>
<section class="card" aria-labelledby="pay-title">
<h2 id="pay-title">Pay a merchant's QR code</h2>
<form id="pay-form" data-testid="pay-form" novalidate>
<label for="pay-payload">QR code contents</label>
<textarea id="pay-payload" name="payload" data-testid="pay-payload" rows="3" maxlength="{payload_max}" autocomplete="off" spellcheck="false" placeholder="000201…"></textarea>
<div class="scan">
<button type="button" id="scan-camera" hidden>Scan with the camera</button>
<label class="file" for="scan-file">Read a photo of the code</label>
<input id="scan-file" type="file" accept="image/*">
</div>
<video id="scan-video" muted playsinline hidden aria-label="Camera preview"></video>
<label for="pay-amount">Amount ({currency_text}) <span class="muted">(only for codes without an amount)</span></label>
<input id="pay-amount" name="amount" data-testid="pay-amount" inputmode="decimal" autocomplete="off">
<button type="submit" data-testid="pay-submit">Pay</button>
</form>
<p id="pay-result" data-testid="pay-result" class="result"></p>
</section>
<section class="card wide" aria-labelledby="history-title">
<h2 id="history-title">History</h2>
<ul id="history" data-testid="history" class="history"></ul>
</section>
</div>"#,
        who = escape(who(session)),
        currency_text = escape(currency),
        payload_max = PAYLOAD_MAX_CHARS,
    );
    layout(
        "Wallet",
        &logout_form(&session.csrf_token),
        &main,
        &attributes,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::header;
    use paykit::auth::Principal;

    fn session(email: &str) -> Session {
        Session {
            principal: Principal {
                subject: "s".into(),
                client_id: "wallet-web".into(),
                realm_roles: vec!["consumer".into()],
                client_roles: Default::default(),
            },
            csrf_token: "tok\"en".into(),
            name: None,
            email: Some(email.into()),
            expires_at: chrono::Utc::now(),
        }
    }

    fn consumer() -> Consumer {
        Consumer {
            id: uuid::Uuid::nil(),
            wallet: uuid::Uuid::nil(),
            currency: paykit::money::Currency::parse("JPY").expect("JPY"),
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
    fn the_wallet_has_every_test_id_and_no_markup_from_the_persons_email() {
        let page = wallet(
            &consumer(),
            Some(1500),
            &session("<script>x</script>@a.test"),
        );
        assert!(!page.contains("<script>x"), "{page}");
        assert!(page.contains("&lt;script&gt;x&lt;/script&gt;@a.test"));
        assert!(page.contains(r#"value="tok&quot;en""#));
        for testid in [
            "balance",
            "topup-form",
            "topup-amount",
            "topup-submit",
            "pay-form",
            "pay-payload",
            "pay-amount",
            "pay-submit",
            "pay-result",
            "code-button",
            "code-digits",
            "code-qr",
            "code-128",
            "history",
            "message",
            "logout-button",
        ] {
            assert!(
                page.contains(&format!(r#"data-testid="{testid}""#)),
                "{testid}"
            );
        }
        assert!(page.contains(r#"data-value="1500" aria-live="polite">1500 JPY<"#));
        assert!(page.contains(r#"type="file" accept="image/*""#));
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
        assert!(policy.contains("connect-src 'self'"));
        assert!(policy.contains("img-src 'self' blob:"));
        assert!(policy.contains("form-action 'self' https://sso.local.test:26001"));
        assert!(!policy.contains("unsafe"));
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    }
}
