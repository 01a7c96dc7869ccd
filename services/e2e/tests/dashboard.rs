//! The merchant dashboard's sign-in, as a browser goes through it, against the running test
//! platform (`paytool up`): HTTPS through the gateway, Keycloak's real login page, merchant-api's
//! backend-for-frontend, with the browser of `web` (shared with the wallet's tests).

mod web;

use serde_json::{json, Value};
use std::collections::HashMap;
use web::{form_action, Browser, PASSWORD, SESSION_COOKIE};

async fn register_merchant(browser: &Browser) -> String {
    web::register_merchant(browser, "Dashboard Ramen").await
}

async fn stored_tokens(subject: &str) -> Vec<String> {
    web::stored_tokens("merchant_api", subject).await
}

async fn session(browser: &mut Browser) -> (u16, Value) {
    browser.session("merchant").await
}

async fn create_request(browser: &mut Browser, csrf: Option<&str>) -> reqwest::Response {
    let mut request = browser
        .client
        .post(browser.url("merchant", "/v1/payment-requests"))
        .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
        .json(&json!({ "amount": { "value": 880, "currency": "JPY" }, "reference": "T-1" }));
    if let Some(csrf) = csrf {
        request = request.header("X-CSRF-Token", csrf);
    }
    browser.send(request).await
}

#[tokio::test]
async fn a_merchant_signs_in_to_the_dashboard_uses_it_with_the_cookie_alone_and_signs_out() {
    let mut browser = Browser::new();
    let email = register_merchant(&browser).await;

    let signed_out = browser.open(&browser.url("merchant", "/")).await;
    assert_eq!(signed_out.status, 200);
    assert!(signed_out.body.contains(r#"data-testid="login-link""#));

    let dashboard = browser.sign_in("merchant", &email).await;
    assert_eq!(dashboard.status, 200, "{}", dashboard.body);
    assert_eq!(dashboard.url, browser.url("merchant", "/"));

    // The session cookie: host-only, script-proof, sent on top-level navigations only.
    let (host, set_cookie) = browser
        .set_cookies
        .iter()
        .find(|(_, text)| text.starts_with(&format!("{SESSION_COOKIE}=")))
        .expect("the callback set the session cookie");
    assert_eq!(host, "merchant.local.test");
    for attribute in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
        assert!(
            set_cookie.split(';').any(|part| part.trim() == attribute),
            "{set_cookie} lacks {attribute}"
        );
    }
    assert!(
        !set_cookie.to_lowercase().contains("domain="),
        "{set_cookie}"
    );
    let cookie = browser
        .session_cookie("merchant")
        .expect("the browser keeps it");
    assert_eq!(cookie.len(), 43, "32 random bytes, base64url");

    let (status, who) = session(&mut browser).await;
    assert_eq!(status, 200, "{who}");
    assert_eq!(who["email"], email.as_str());
    assert!(who["roles"]
        .as_array()
        .expect("roles")
        .contains(&json!("merchant")));
    let csrf = who["csrf_token"]
        .as_str()
        .expect("a CSRF token")
        .to_string();

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
            dashboard
                .body
                .contains(&format!(r#"data-testid="{testid}""#)),
            "the dashboard lacks {testid}"
        );
    }
    assert!(dashboard.body.contains("Dashboard Ramen"));

    // No token ever reaches the browser: not in the page, not in /session, not in a cookie.
    let tokens = stored_tokens(who["subject"].as_str().expect("a subject")).await;
    assert!(!tokens.is_empty(), "the server keeps the tokens");
    for token in &tokens {
        assert!(!dashboard.body.contains(token.as_str()));
        assert!(!who.to_string().contains(token.as_str()));
        assert!(browser
            .cookies
            .values()
            .flat_map(HashMap::values)
            .all(|value| value != token));
    }
    assert!(!dashboard.body.contains("eyJ"), "no JWT in the page");

    // The cookie authenticates the API, but a change needs the CSRF token as well.
    let refused = create_request(&mut browser, None).await;
    assert_eq!(refused.status(), 403);
    let problem: Value = refused.json().await.expect("a problem");
    assert_eq!(problem["type"], "https://paytool.local.test/problems/csrf");
    let created = create_request(&mut browser, Some(&csrf)).await;
    assert_eq!(created.status(), 201);
    let request: Value = created.json().await.expect("json");
    let qr = browser
        .send(browser.client.get(browser.url(
            "merchant",
            request["qr_svg_url"].as_str().expect("a QR url"),
        )))
        .await;
    assert_eq!(qr.status(), 200, "the page's <img> loads with the cookie");
    let listed = browser
        .send(
            browser
                .client
                .get(browser.url("merchant", "/v1/transactions")),
        )
        .await;
    assert_eq!(listed.status(), 200);
    // The page's EventSource: the live feed opens with the cookie alone.
    let stream = browser
        .send(
            browser
                .client
                .get(browser.url("merchant", "/v1/transactions/stream"))
                .header("Accept", "text/event-stream"),
        )
        .await;
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    drop(stream);

    // Sign-out: the session ends here and at Keycloak, and the browser comes back home.
    let response = browser
        .send(
            browser
                .client
                .post(browser.url("merchant", "/logout"))
                .header("X-CSRF-Token", &csrf),
        )
        .await;
    assert_eq!(response.status(), 303);
    let location = response.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(
        location
            .starts_with(&browser.url("sso", "/realms/paytool/protocol/openid-connect/logout?")),
        "{location}"
    );
    assert!(location.contains("id_token_hint="));
    assert!(
        browser.session_cookie("merchant").is_none(),
        "the cookie is cleared"
    );
    let home = browser.follow(response).await;
    assert_eq!(home.url, browser.url("merchant", "/"), "{}", home.body);
    assert!(home.body.contains(r#"data-testid="login-link""#));
    let (status, _) = session(&mut browser).await;
    assert_eq!(status, 401);
    // The old cookie is worth nothing now, even to someone who kept it.
    let replayed = browser
        .client
        .get(browser.url("merchant", "/session"))
        .header("Cookie", format!("{SESSION_COOKIE}={cookie}"))
        .send()
        .await
        .expect("sent");
    assert_eq!(replayed.status(), 401);
    assert!(stored_tokens(who["subject"].as_str().expect("a subject"))
        .await
        .is_empty());
}

#[tokio::test]
async fn a_sign_out_without_the_csrf_token_is_refused_and_the_session_lives_on() {
    let mut browser = Browser::new();
    let email = register_merchant(&browser).await;
    let dashboard = browser.sign_in("merchant", &email).await;
    assert_eq!(dashboard.status, 200, "{}", dashboard.body);
    let response = browser
        .send(browser.client.post(browser.url("merchant", "/logout")))
        .await;
    assert_eq!(response.status(), 403);
    let (status, _) = session(&mut browser).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_callback_this_browser_did_not_start_is_refused() {
    let mut browser = Browser::new();
    let email = register_merchant(&browser).await;
    // An attacker starts a login and sends the victim the callback URL with the attacker's code.
    let mut attacker = Browser::new();
    let login = attacker
        .send(attacker.client.get(attacker.url("merchant", "/login")))
        .await;
    let authorize = login.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_string();
    let page = attacker.open(&authorize).await;
    let action = form_action(&page.body);
    let callback = attacker
        .send(
            attacker
                .client
                .post(action)
                .form(&[("username", email.as_str()), ("password", PASSWORD)]),
        )
        .await;
    let callback_url = callback.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(callback_url.starts_with(&attacker.url("merchant", "/callback?")));
    let victim = browser.open(&callback_url).await;
    assert_eq!(victim.status, 400, "{}", victim.body);
    assert!(victim.body.contains("login-state"));
    assert!(browser.session_cookie("merchant").is_none());
}

#[tokio::test]
async fn an_expired_access_token_is_renewed_for_a_pages_parallel_requests_and_a_refused_refresh_ends_the_session(
) {
    let mut browser = Browser::new();
    let email = register_merchant(&browser).await;
    let dashboard = browser.sign_in("merchant", &email).await;
    assert_eq!(dashboard.status, 200, "{}", dashboard.body);
    let (_, who) = session(&mut browser).await;
    let subject = who["subject"].as_str().expect("a subject").to_string();
    let pool = web::database("merchant_api").await;
    let expire = || {
        sqlx::query(
            "UPDATE web_sessions SET access_expires_at = now() - interval '1 minute' WHERE subject = $1",
        )
        .bind(&subject)
    };
    let access = || {
        sqlx::query_scalar::<_, String>("SELECT access_token FROM web_sessions WHERE subject = $1")
            .bind(&subject)
    };
    let before = access().fetch_one(&pool).await.expect("a session");
    expire().execute(&pool).await.expect("expired");
    // A page makes several requests at once; each gets through, with one refresh among them.
    let cookie = browser.session_cookie("merchant").expect("a cookie");
    let requests = (0..5).map(|_| {
        browser
            .client
            .get(browser.url("merchant", "/v1/transactions"))
            .header("Cookie", format!("{SESSION_COOKIE}={cookie}"))
            .send()
    });
    for response in futures_util::future::join_all(requests).await {
        assert_eq!(response.expect("sent").status(), 200);
    }
    let after = access()
        .fetch_one(&pool)
        .await
        .expect("the session lives on");
    assert_ne!(before, after, "the access token was renewed");

    expire().execute(&pool).await.expect("expired");
    sqlx::query("UPDATE web_sessions SET refresh_token = 'revoked' WHERE subject = $1")
        .bind(&subject)
        .execute(&pool)
        .await
        .expect("updated");
    let (status, _) = session(&mut browser).await;
    assert_eq!(status, 401);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM web_sessions WHERE subject = $1")
        .bind(&subject)
        .fetch_one(&pool)
        .await
        .expect("counted");
    assert_eq!(left, 0, "a refused refresh ends the session");
}
