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
use maud::{html, Markup};
use paykit::problem::Problem;
use paykit::web::{format_money, Account, BodyData, Session, Shell};

pub const SCRIPT_PATH: &str = "/assets/wallet.mjs";
pub const STYLE_PATH: &str = "/assets/wallet.css";
/// The exponent used for a currency the EMVCo table does not know (most have two).
const EXPONENT_FALLBACK: u8 = 2;
/// The longest EMVCo payload the pay form takes: the format's own limit is 512 characters.
const PAYLOAD_MAX_CHARS: usize = 512;

static SHELL: Shell = Shell {
    brand: "paytool · wallet",
    app: "Wallet",
    style_path: STYLE_PATH,
    script_path: SCRIPT_PATH,
    style: include_str!("../../web/wallet.css"),
    script: include_str!("../../web/wallet.mjs"),
    account: Account {
        noun: "wallet",
        endpoint: "/v1/consumers",
        role: "consumer",
    },
};

pub fn router() -> Router<AppState> {
    Router::new().route("/", get(page)).merge(SHELL.assets())
}

fn exponent_of(currency: &str) -> u8 {
    emvco::CurrencyInfo::by_alpha(currency).map_or(EXPONENT_FALLBACK, |info| info.exponent)
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
        return Ok(html(&sso, signed_out()));
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
    Ok(html(&sso, body))
}

/// The page with the headers every page gets: no caching (it is personal), and a policy that
/// allows only this origin, plus Keycloak as where the sign-out form's redirect goes. `blob:`
/// images are the payment code's SVGs, made by the script from this origin's answer.
fn html(sso: &str, body: Markup) -> Response {
    let mut response = paykit::web::page_response(sso, " blob:", body);
    // The camera is for scanning merchants' QR codes on this page only; nothing else is needed.
    response.headers_mut().insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(self), microphone=(), geolocation=()"),
    );
    response
}

fn signed_out() -> Markup {
    SHELL.signed_out(
        "Your wallet",
        "Sign in to see your balance, top up, pay a merchant's QR code and show a payment code at the till.",
    )
}

fn not_a_consumer(session: &Session) -> Markup {
    SHELL.no_account(session)
}

fn wallet(consumer: &Consumer, available: Option<i64>, session: &Session) -> Markup {
    let currency = consumer.currency.as_str();
    let exponent = exponent_of(currency);
    // Without the ledger's answer the balance is left for the script to fill in.
    let (balance_value, balance_text) = match available {
        Some(value) => (value.to_string(), format_money(value, currency, exponent)),
        None => (String::new(), "…".to_string()),
    };
    let main = html! {
        h1 class="who" { "Wallet " span class="muted" { (session.who()) } }
        p id="message" data-testid="message" class="message" role="status" aria-live="polite" {}
        div class="grid" {
            section class="card" aria-labelledby="balance-title" {
                h2 id="balance-title" { "Available" }
                p class="balance" data-testid="balance" id="balance" data-value=(balance_value)
                    aria-live="polite" { (balance_text) }
                form id="topup-form" data-testid="topup-form" novalidate {
                    label for="topup-amount" { "Top up (" (currency) ")" }
                    div class="row" {
                        input id="topup-amount" name="amount" data-testid="topup-amount"
                            inputmode="decimal" autocomplete="off" required;
                        button type="submit" data-testid="topup-submit" { "Top up" }
                    }
                }
            }
            section class="card" aria-labelledby="code-title" {
                h2 id="code-title" { "Pay at the till" }
                p class="muted" {
                    "Show a one-time code; the merchant scans it and charges your wallet."
                }
                button type="button" id="code-button" data-testid="code-button" {
                    "Show payment code"
                }
                figure id="code-result" class="code" hidden {
                    img id="code-qr" data-testid="code-qr" alt="QR code of your payment code"
                        width="200" height="200";
                    img id="code-128" data-testid="code-128" alt="Barcode of your payment code"
                        class="barcode";
                    figcaption {
                        span id="code-digits" data-testid="code-digits" class="digits" {}
                        // Kept from the old markup: between inline spans a line break is a space.
                        "\n"
                        span id="code-countdown" class="muted" aria-live="off" {}
                    }
                }
            }
            section class="card" aria-labelledby="pay-title" {
                h2 id="pay-title" { "Pay a merchant's QR code" }
                form id="pay-form" data-testid="pay-form" novalidate {
                    label for="pay-payload" { "QR code contents" }
                    textarea id="pay-payload" name="payload" data-testid="pay-payload" rows="3"
                        maxlength=(PAYLOAD_MAX_CHARS) autocomplete="off" spellcheck="false"
                        placeholder="000201…" {}
                    div class="scan" {
                        button type="button" id="scan-camera" hidden { "Scan with the camera" }
                        label class="file" for="scan-file" { "Read a photo of the code" }
                        input id="scan-file" type="file" accept="image/*";
                    }
                    video id="scan-video" muted playsinline hidden aria-label="Camera preview" {}
                    label for="pay-amount" {
                        "Amount (" (currency) ") "
                        span class="muted" { "(only for codes without an amount)" }
                    }
                    input id="pay-amount" name="amount" data-testid="pay-amount"
                        inputmode="decimal" autocomplete="off";
                    button type="submit" data-testid="pay-submit" { "Pay" }
                }
                p id="pay-result" data-testid="pay-result" class="result" {}
            }
            section class="card wide" aria-labelledby="history-title" {
                h2 id="history-title" { "History" }
                ul id="history" data-testid="history" class="history" {}
            }
        }
    };
    SHELL.layout(
        "Wallet",
        Some(&session.csrf_token),
        BodyData {
            currency: Some(currency),
            exponent: Some(exponent),
            ..BodyData::default()
        },
        main,
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
    fn the_wallet_has_every_test_id_and_no_markup_from_the_persons_email() {
        let page = wallet(
            &consumer(),
            Some(1500),
            &session("<script>x</script>@a.test"),
        )
        .into_string();
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
        assert!(policy.contains("connect-src 'self'"));
        assert!(policy.contains("img-src 'self' blob:"));
        assert!(policy.contains("form-action 'self' https://sso.local.test:26001"));
        assert!(!policy.contains("unsafe"));
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    }
}
