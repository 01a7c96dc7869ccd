//! The consumer wallet at wallet.local.test, as a browser goes through it, against the running
//! test platform (`paytool up`): HTTPS through the gateway, Keycloak's real login page,
//! consumer-api's backend-for-frontend, with the browser of `web` (shared with the dashboard's
//! tests). And single sign-on: one Keycloak session signs a person in to the dashboard and the
//! wallet.

mod web;

use serde_json::{json, Value};
use std::collections::HashMap;
use web::{Browser, SESSION_COOKIE};

/// The payment request the merchant shows, in JPY (no minor units).
const PRICE_JPY: i64 = 750;
const TOP_UP_JPY: i64 = 2000;
/// A payment code is valid this long (consumer-api's CODE_VALIDITY_S).
const CODE_VALIDITY_S: i64 = 60;

const WALLET_TEST_IDS: [&str; 16] = [
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
];

/// A merchant signed in at the dashboard in a browser of its own shows a QR code for `value`
/// JPY, made through the gateway with its cookie and CSRF token; the payload.
async fn merchants_qr(value: i64) -> String {
    let mut merchant = Browser::new();
    let email = web::register_merchant(&merchant, "Wallet Noodles").await;
    let dashboard = merchant.sign_in("merchant", &email).await;
    assert_eq!(dashboard.status, 200, "{}", dashboard.body);
    let (_, who) = merchant.session("merchant").await;
    let csrf = who["csrf_token"]
        .as_str()
        .expect("a CSRF token")
        .to_string();
    let created = merchant
        .post(
            "merchant",
            "/v1/payment-requests",
            &json!({ "amount": { "value": value, "currency": "JPY" } }),
            Some(&csrf),
        )
        .await;
    assert_eq!(created.status(), 201);
    let request: Value = created.json().await.expect("json");
    request["payload"].as_str().expect("a payload").to_string()
}

fn has_test_ids(page: &str) {
    for testid in WALLET_TEST_IDS {
        assert!(
            page.contains(&format!(r#"data-testid="{testid}""#)),
            "the wallet lacks {testid}"
        );
    }
}

#[tokio::test]
async fn a_consumer_signs_in_to_the_wallet_tops_up_pays_a_qr_shows_a_code_and_signs_out() {
    let mut browser = Browser::new();
    let email = web::register_consumer(&browser, "Wallet Person").await;

    let signed_out = browser.open(&browser.url("wallet", "/")).await;
    assert_eq!(signed_out.status, 200);
    assert!(signed_out.body.contains(r#"data-testid="login-link""#));

    let page = browser.sign_in("wallet", &email).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.url, browser.url("wallet", "/"));
    has_test_ids(&page.body);
    assert!(
        page.body
            .contains(r#"data-value="0" aria-live="polite">0 JPY<"#),
        "a new wallet shows its balance: {}",
        page.body
    );

    // The session cookie: host-only, script-proof, sent on top-level navigations only; and
    // every cookie the wallet sets is out of scripts' reach.
    let wallet_cookies: Vec<&String> = browser
        .set_cookies
        .iter()
        .filter(|(host, _)| host == "wallet.local.test")
        .map(|(_, text)| text)
        .collect();
    let set_cookie = wallet_cookies
        .iter()
        .find(|text| text.starts_with(&format!("{SESSION_COOKIE}=")))
        .expect("the callback set the session cookie");
    for attribute in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
        assert!(
            set_cookie.split(';').any(|part| part.trim() == attribute),
            "{set_cookie} lacks {attribute}"
        );
    }
    assert!(!set_cookie.to_lowercase().contains("domain="));
    for text in &wallet_cookies {
        assert!(
            text.split(';').any(|part| part.trim() == "HttpOnly"),
            "{text}"
        );
    }
    let cookie = browser
        .session_cookie("wallet")
        .expect("the browser keeps it");

    let (status, who) = browser.session("wallet").await;
    assert_eq!(status, 200, "{who}");
    assert_eq!(who["email"], email.as_str());
    assert!(who["roles"]
        .as_array()
        .expect("roles")
        .contains(&json!("consumer")));
    let csrf = who["csrf_token"]
        .as_str()
        .expect("a CSRF token")
        .to_string();

    // No token ever reaches the browser: not in the page, not in /session, not in a cookie.
    let subject = who["subject"].as_str().expect("a subject").to_string();
    let tokens = web::stored_tokens("consumer_api", &subject).await;
    assert!(!tokens.is_empty(), "the server keeps the tokens");
    for token in &tokens {
        assert!(!page.body.contains(token.as_str()));
        assert!(!who.to_string().contains(token.as_str()));
        assert!(browser
            .cookies
            .values()
            .flat_map(HashMap::values)
            .all(|value| value != token));
    }
    assert!(!page.body.contains("eyJ"), "no JWT in the page");

    // A top-up through the page's API: the cookie authenticates, but a change needs the CSRF
    // token as well.
    let top_up = json!({ "amount": { "value": TOP_UP_JPY, "currency": "JPY" } });
    let refused = browser
        .post("wallet", "/v1/wallet/top-ups", &top_up, None)
        .await;
    assert_eq!(refused.status(), 403);
    let problem: Value = refused.json().await.expect("a problem");
    assert_eq!(problem["type"], "https://paytool.local.test/problems/csrf");
    let topped = browser
        .post("wallet", "/v1/wallet/top-ups", &top_up, Some(&csrf))
        .await;
    assert_eq!(topped.status(), 201);
    let topped: Value = topped.json().await.expect("json");
    assert_eq!(topped["wallet"]["available"]["value"], TOP_UP_JPY);
    let (status, wallet) = browser.get_json("wallet", "/v1/wallet").await;
    assert_eq!(status, 200);
    assert_eq!(wallet["available"]["value"], TOP_UP_JPY);

    // A merchant's QR code, made through the gateway, paid with the cookie session.
    let payload = merchants_qr(PRICE_JPY).await;
    let paid = browser
        .post(
            "wallet",
            "/v1/payments",
            &json!({ "qr": payload }),
            Some(&csrf),
        )
        .await;
    assert_eq!(paid.status(), 201);
    let paid: Value = paid.json().await.expect("json");
    assert_eq!(paid["amount"]["value"], PRICE_JPY);
    assert_eq!(paid["merchant"]["name"], "Wallet Noodles");
    assert_eq!(paid["wallet"]["available"]["value"], TOP_UP_JPY - PRICE_JPY);
    let again = browser.open(&browser.url("wallet", "/")).await;
    assert!(
        again
            .body
            .contains(&format!(">{} JPY<", TOP_UP_JPY - PRICE_JPY)),
        "the page shows the balance after paying"
    );
    let (status, history) = browser.get_json("wallet", "/v1/transactions").await;
    assert_eq!(status, 200);
    let items = history["items"].as_array().expect("items");
    assert!(
        items
            .iter()
            .any(|tx| tx["merchant"]["name"] == "Wallet Noodles"
                && tx["amount"]["value"] == PRICE_JPY),
        "{history}"
    );
    assert!(items.iter().any(|tx| tx["kind"] == "top_up"), "{history}");

    // A one-time payment code, as the page shows it: digits, QR, Code 128 and its expiry.
    let code = browser
        .post("wallet", "/v1/payment-codes", &json!({}), Some(&csrf))
        .await;
    assert_eq!(code.status(), 201);
    let code: Value = code.json().await.expect("json");
    let digits = code["code"].as_str().expect("a code");
    assert_eq!(digits.len(), 18);
    assert!(digits.chars().all(|c| c.is_ascii_digit()));
    // Both are SVG documents a browser shows as images: with their namespace.
    for svg in ["qr_svg", "code128_svg"] {
        let text = code[svg].as_str().expect("an SVG");
        assert!(
            text.contains(r#"<svg"#) && text.contains(r#"xmlns="http://www.w3.org/2000/svg""#),
            "{svg}: {text}"
        );
    }
    let expires_at: chrono::DateTime<chrono::Utc> = code["expires_at"]
        .as_str()
        .expect("an expiry")
        .parse()
        .expect("a time");
    let left = expires_at - chrono::Utc::now();
    assert!(
        left.num_seconds() > 0 && left.num_seconds() <= CODE_VALIDITY_S,
        "{left}"
    );

    // Sign-out: the session ends here and at Keycloak, and the browser comes back home.
    let response = browser
        .send(
            browser
                .client
                .post(browser.url("wallet", "/logout"))
                .form(&[("csrf_token", csrf.as_str())]),
        )
        .await;
    assert_eq!(response.status(), 303);
    let location = web::location(&response).to_string();
    assert!(
        location
            .starts_with(&browser.url("sso", "/realms/paytool/protocol/openid-connect/logout?")),
        "{location}"
    );
    assert!(
        browser.session_cookie("wallet").is_none(),
        "the cookie is cleared"
    );
    let home = browser.follow(response).await;
    assert_eq!(home.url, browser.url("wallet", "/"), "{}", home.body);
    assert!(home.body.contains(r#"data-testid="login-link""#));
    let (status, _) = browser.session("wallet").await;
    assert_eq!(status, 401);
    let replayed = browser
        .client
        .get(browser.url("wallet", "/v1/wallet"))
        .header("Cookie", format!("{SESSION_COOKIE}={cookie}"))
        .send()
        .await
        .expect("sent");
    assert_eq!(replayed.status(), 401, "the old cookie is worth nothing");
    assert!(web::stored_tokens("consumer_api", &subject)
        .await
        .is_empty());
}

#[tokio::test]
async fn a_person_signed_in_at_the_dashboard_is_signed_in_to_the_wallet_without_the_password() {
    let mut browser = Browser::new();
    let email = web::register_consumer(&browser, "Both Sides").await;

    // Keycloak's session is the person's, whatever their roles: a consumer can sign in at the
    // dashboard, which then says there is no merchant account.
    let dashboard = browser.sign_in("merchant", &email).await;
    assert_eq!(dashboard.status, 200, "{}", dashboard.body);
    assert!(
        dashboard.body.contains("No merchant account"),
        "{}",
        dashboard.body
    );

    // The wallet's sign-in comes straight back from Keycloak with a code: no login form.
    let login = browser
        .send(browser.client.get(browser.url("wallet", "/login")))
        .await;
    assert_eq!(login.status(), 303);
    let authorize = web::location(&login);
    assert!(authorize
        .as_str()
        .starts_with(&browser.url("sso", "/realms/paytool/protocol/openid-connect/auth?")));
    let at_keycloak = browser.send(browser.client.get(authorize)).await;
    assert!(
        at_keycloak.status().is_redirection(),
        "Keycloak answered {} instead of sending the browser back",
        at_keycloak.status()
    );
    let callback = web::location(&at_keycloak);
    assert!(
        callback
            .as_str()
            .starts_with(&browser.url("wallet", "/callback?")),
        "{callback}"
    );
    assert!(callback.query_pairs().any(|(name, _)| name == "code"));
    let page = browser.follow(at_keycloak).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.url, browser.url("wallet", "/"));
    has_test_ids(&page.body);
    let (status, who) = browser.session("wallet").await;
    assert_eq!(status, 200);
    assert_eq!(who["email"], email.as_str());
    // Two sessions of one person, one cookie per host.
    assert!(browser.session_cookie("merchant").is_some());
    assert_ne!(
        browser.session_cookie("merchant"),
        browser.session_cookie("wallet")
    );
}

#[tokio::test]
async fn the_wallet_host_serves_the_page_with_a_strict_policy_and_keeps_internal_routes_closed() {
    let mut browser = Browser::new();
    let response = browser
        .send(browser.client.get(browser.url("wallet", "/")))
        .await;
    assert_eq!(response.status(), 200);
    let policy = response.headers()["content-security-policy"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(
        policy.starts_with("default-src 'none'; script-src 'self';"),
        "{policy}"
    );
    assert!(!policy.contains("unsafe"), "{policy}");
    assert_eq!(response.headers()["cache-control"], "no-store");
    let script = browser
        .send(
            browser
                .client
                .get(browser.url("wallet", "/assets/wallet.mjs")),
        )
        .await;
    assert_eq!(script.status(), 200);
    assert!(script.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .starts_with("text/javascript"));
    let internal = browser
        .send(
            browser
                .client
                .post(browser.url("wallet", "/internal/v1/payment-codes/redeem"))
                .json(&json!({})),
        )
        .await;
    assert_eq!(internal.status(), 404);
    let problem: Value = internal.json().await.expect("a problem");
    assert_eq!(
        problem["type"],
        "https://paytool.local.test/problems/not-found"
    );
}
