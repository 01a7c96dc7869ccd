//! A browser for the tests of the sign-in pages (the merchant dashboard, the consumer wallet)
//! against the running test platform (`paytool up`): HTTPS through the gateway, Keycloak's real
//! login page. No browser engine: a client that keeps cookies per host and follows redirects the
//! way a browser does, so each step (and each Set-Cookie) can be looked at.

// Each test binary that includes this module uses a part of it.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;

pub const PASSWORD: &str = "correct horse battery";
pub const SESSION_COOKIE: &str = "__Host-paytool-session";
/// A login is a handful of redirects; more means a loop.
const REDIRECTS_MAX: usize = 10;
/// The gateway's names a browser of these tests visits; all resolve to loopback.
const HOSTS: [&str; 4] = [
    "merchant.local.test",
    "wallet.local.test",
    "api.local.test",
    "sso.local.test",
];

pub struct Browser {
    pub client: reqwest::Client,
    pub port: u64,
    /// host → cookie name → value. Paths are ignored: every cookie of a host is sent to it.
    pub cookies: HashMap<String, HashMap<String, String>>,
    /// Every Set-Cookie seen, with the host that sent it, in order.
    pub set_cookies: Vec<(String, String)>,
}

pub struct Page {
    pub url: String,
    pub status: u16,
    pub body: String,
}

impl Browser {
    pub fn new() -> Self {
        let status = paykit::testing::platform_status();
        let port = status["gateway"]["https_port"]
            .as_u64()
            .expect("the gateway's port");
        let ca = std::fs::read(
            status["gateway"]["ca_certificate"]
                .as_str()
                .expect("the CA"),
        )
        .expect("the CA is readable");
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("the CA parses"));
        for host in HOSTS {
            let address: SocketAddr = format!("127.0.0.1:{port}").parse().expect("an address");
            builder = builder.resolve(host, address);
        }
        Self {
            client: builder.build().expect("a client"),
            port,
            cookies: HashMap::new(),
            set_cookies: Vec::new(),
        }
    }

    /// `host` is the first label: "merchant", "wallet", "api", "sso".
    pub fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}.local.test:{}{path}", self.port)
    }

    fn cookie_header(&self, url: &reqwest::Url) -> Option<String> {
        let jar = self.cookies.get(url.host_str()?)?;
        (!jar.is_empty()).then(|| {
            jar.iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    /// The session cookie the browser keeps for `host` ("merchant", "wallet").
    pub fn session_cookie(&self, host: &str) -> Option<String> {
        self.cookies
            .get(&format!("{host}.local.test"))
            .and_then(|jar| jar.get(SESSION_COOKIE))
            .cloned()
    }

    fn keep_cookies(&mut self, url: &reqwest::Url, response: &reqwest::Response) {
        let host = url.host_str().expect("a host").to_string();
        for value in response.headers().get_all(reqwest::header::SET_COOKIE) {
            let text = value.to_str().expect("ascii").to_string();
            let pair = text.split(';').next().unwrap_or_default();
            let (name, value) = pair.split_once('=').expect("name=value");
            let expired = text.to_lowercase().contains("max-age=0") || value.is_empty();
            let jar = self.cookies.entry(host.clone()).or_default();
            if expired {
                jar.remove(name.trim());
            } else {
                jar.insert(name.trim().to_string(), value.trim().to_string());
            }
            self.set_cookies.push((host.clone(), text));
        }
    }

    /// Sends one request with the host's cookies, keeps what it sets; no redirect followed.
    pub async fn send(&mut self, request: reqwest::RequestBuilder) -> reqwest::Response {
        let request = request.build().expect("a request");
        let url = request.url().clone();
        let mut request = reqwest::RequestBuilder::from_parts(self.client.clone(), request);
        if let Some(cookies) = self.cookie_header(&url) {
            request = request.header(reqwest::header::COOKIE, cookies);
        }
        let response = request.send().await.expect("the gateway answers");
        self.keep_cookies(&url, &response);
        response
    }

    /// Follows redirects from `response` with GETs, as a browser does after 302/303.
    pub async fn follow(&mut self, mut response: reqwest::Response) -> Page {
        for _ in 0..REDIRECTS_MAX {
            if !response.status().is_redirection() {
                let url = response.url().to_string();
                let status = response.status().as_u16();
                let body = response.text().await.expect("a body");
                return Page { url, status, body };
            }
            let next = location(&response);
            response = self.send(self.client.get(next)).await;
        }
        panic!("more than {REDIRECTS_MAX} redirects");
    }

    pub async fn open(&mut self, url: &str) -> Page {
        let response = self.send(self.client.get(url)).await;
        self.follow(response).await
    }

    /// Signs in from `host`'s /login through Keycloak's login form; the page it ends on.
    pub async fn sign_in(&mut self, host: &str, email: &str) -> Page {
        let login_page = self.open(&self.url(host, "/login")).await;
        assert_eq!(login_page.status, 200, "{}", login_page.body);
        assert!(
            login_page.url.starts_with(&self.url("sso", "/realms/")),
            "the browser is at Keycloak's login page: {}",
            login_page.url
        );
        let action = form_action(&login_page.body);
        let response = self
            .send(
                self.client
                    .post(action)
                    .form(&[("username", email), ("password", PASSWORD)]),
            )
            .await;
        self.follow(response).await
    }

    /// `GET /session` at `host`: its status and body.
    pub async fn session(&mut self, host: &str) -> (u16, Value) {
        let response = self.send(self.client.get(self.url(host, "/session"))).await;
        let status = response.status().as_u16();
        (status, response.json().await.expect("json"))
    }

    /// A POST as the page's script makes it: JSON, an Idempotency-Key, the cookies, and the
    /// CSRF token when given.
    pub async fn post(
        &mut self,
        host: &str,
        path: &str,
        body: &Value,
        csrf: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .post(self.url(host, path))
            .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
            .json(body);
        if let Some(csrf) = csrf {
            request = request.header("X-CSRF-Token", csrf);
        }
        self.send(request).await
    }

    /// A GET with the cookies: its status and JSON body.
    pub async fn get_json(&mut self, host: &str, path: &str) -> (u16, Value) {
        let response = self.send(self.client.get(self.url(host, path))).await;
        let status = response.status().as_u16();
        (status, response.json().await.expect("json"))
    }
}

/// Where a redirect sends the browser, resolved against the URL it came from.
pub fn location(response: &reqwest::Response) -> reqwest::Url {
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .expect("a redirect has a Location")
        .to_str()
        .expect("ascii");
    response.url().join(location).expect("a location")
}

/// The action of Keycloak's login form, its HTML entities decoded.
pub fn form_action(html: &str) -> String {
    let form = html
        .find("id=\"kc-form-login\"")
        .map(|at| &html[html[..at].rfind("<form").expect("a form")..])
        .expect("Keycloak's login form");
    let start = form.find("action=\"").expect("an action") + "action=\"".len();
    let end = start + form[start..].find('"').expect("a closing quote");
    form[start..end].replace("&amp;", "&")
}

/// A merchant registered through the gateway (no sign-in); its email.
pub async fn register_merchant(browser: &Browser, name: &str) -> String {
    let email = e2e::unique_email("dashboard");
    let registered = browser
        .client
        .post(browser.url("merchant", "/v1/merchants"))
        .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
        .json(&json!({ "name": name, "city": "Kyoto", "country": "JP",
                       "mcc": "5812", "currency": "JPY", "email": email, "password": PASSWORD }))
        .send()
        .await
        .expect("sent");
    assert_eq!(registered.status(), 201);
    email
}

/// A consumer registered through the gateway (no sign-in); its email.
pub async fn register_consumer(browser: &Browser, name: &str) -> String {
    let email = e2e::unique_email("wallet");
    let registered = browser
        .client
        .post(browser.url("api", "/v1/consumers"))
        .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
        .json(&json!({ "email": email, "password": PASSWORD, "name": name }))
        .send()
        .await
        .expect("sent");
    assert_eq!(registered.status(), 201, "{:?}", registered.text().await);
    email
}

/// A service's database on the test platform: "merchant_api", "consumer_api".
pub async fn database(name: &str) -> sqlx::PgPool {
    let status = paykit::testing::platform_status();
    let url = status["connections"]["databases"][name]
        .as_str()
        .expect("the service's database");
    sqlx::PgPool::connect(url).await.expect("the database")
}

/// The tokens a service keeps for a signed-in subject, read from its database.
pub async fn stored_tokens(database_name: &str, subject: &str) -> Vec<String> {
    let pool = database(database_name).await;
    let rows: Vec<(String, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT access_token, refresh_token, id_token FROM web_sessions WHERE subject = $1",
    )
    .bind(subject)
    .fetch_all(&pool)
    .await
    .expect("the sessions");
    rows.into_iter()
        .flat_map(|(a, r, i)| [Some(a), r, i])
        .flatten()
        .collect()
}
