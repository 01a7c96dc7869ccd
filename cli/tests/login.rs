//! `paytool login` against the running test platform, approved the way a person approves it:
//! the built binary prints a code and waits, while this test, playing the person's browser
//! (reqwest with a cookie jar), opens the verification page through the gateway, signs in on
//! Keycloak's real login form and answers its consent page. Then `paytool pay` acts as that
//! person without `--as`, and `paytool logout` ends the Keycloak session.
//!
//! The sign-in is the installation's one profile `me`, so the tests here take turns
//! ([`SIGN_IN`]); they share the platform of `scripts/test.sh` (`PAYTOOL_TEST_STATUS`).

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const STATUS_ENV: &str = "PAYTOOL_TEST_STATUS";
const PASSWORD: &str = "correct horse battery staple";
/// Keycloak polls every 5 s on this realm: an approved login ends within one or two polls.
const LOGIN_EXIT_TIMEOUT_MS: u64 = 30_000;
/// How long the CLI may take to print its code (one request to Keycloak).
const CODE_PRINTED_TIMEOUT_MS: u64 = 15_000;

/// One sign-in per installation: the tests that make or end it run one at a time. Tokio's
/// mutex, since each test holds it across awaits on a runtime of its own (and it is not
/// poisoned by a test that fails holding it).
static SIGN_IN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn status() -> Value {
    let path = std::env::var(STATUS_ENV).unwrap_or_else(|_| {
        panic!("{STATUS_ENV} is not set: run the tests through scripts/test.sh, which starts a test platform")
    });
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"))
}

fn home() -> String {
    status()["home"]
        .as_str()
        .expect("the installation's home")
        .to_string()
}

/// `paytool --home <platform> ARGS`, connecting from `source` (its own loopback address, so
/// that the gateway's per-address limits count these tests apart).
fn paytool(source: Ipv4Addr, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_paytool"));
    command
        .arg("--home")
        .arg(home())
        .args(args)
        .env("PAYTOOL_PAY_SOURCE_ADDRESS", source.to_string())
        .stdin(Stdio::null());
    command
}

fn run(source: Ipv4Addr, args: &[&str]) -> Output {
    paytool(source, args).output().expect("paytool runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The person's browser: trusts only the installation's CA, resolves the gateway's names to
/// loopback itself, keeps cookies and follows redirects as a browser does.
struct Browser {
    client: reqwest::Client,
    port: u64,
}

impl Browser {
    fn new(source: Ipv4Addr) -> Self {
        let status = status();
        let port = status["gateway"]["https_port"].as_u64().expect("the port");
        let ca = std::fs::read(
            status["gateway"]["ca_certificate"]
                .as_str()
                .expect("the CA"),
        )
        .expect("the CA is readable");
        let mut builder = reqwest::Client::builder()
            .cookie_store(true)
            .local_address(IpAddr::V4(source))
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("the CA parses"));
        for host in ["api.local.test", "sso.local.test"] {
            builder = builder.resolve(host, SocketAddr::from(([127, 0, 0, 1], port as u16)));
        }
        Self {
            client: builder.build().expect("a client"),
            port,
        }
    }

    /// A consumer registered through the API, as the wallet app does; returns the answer.
    async fn register_consumer(&self, email: &str) -> Value {
        let response = self
            .client
            .post(format!("https://api.local.test:{}/v1/consumers", self.port))
            .json(&json!({ "email": email, "password": PASSWORD, "name": "Login Tester", "currency": "JPY" }))
            .send()
            .await
            .expect("consumer-api answers");
        assert_eq!(response.status(), 201, "registration");
        response.json().await.expect("json")
    }

    async fn page(&self, request: reqwest::RequestBuilder) -> (String, String) {
        let response = request.send().await.expect("Keycloak answers");
        let url = response.url().to_string();
        let status = response.status();
        let html = response.text().await.expect("a page");
        assert!(status.is_success(), "{url} answered {status}: {html}");
        (url, html)
    }

    /// Opens the verification page, signs in on Keycloak's login form and answers the consent
    /// page with Yes or No; returns the last page's text.
    async fn approve(&self, verification_uri_complete: &str, email: &str, accept: bool) -> String {
        let (url, html) = self.page(self.client.get(verification_uri_complete)).await;
        let action = form_action(&html, "kc-form-login")
            .unwrap_or_else(|| panic!("no login form at {url}: {html}"));
        let (url, html) = self
            .page(self.client.post(absolute(&url, &action)).form(&[
                ("username", email),
                ("password", PASSWORD),
                ("credentialId", ""),
            ]))
            .await;
        // The realm asks for consent to the CLI's scopes; a realm that does not goes straight
        // to the device status page.
        if html.contains("name=\"accept\"") || html.contains("name=\"cancel\"") {
            let action =
                form_action(&html, "").unwrap_or_else(|| panic!("no consent form: {html}"));
            let code = input_value(&html, "code").unwrap_or_default();
            let button = if accept {
                ("accept", "Yes")
            } else {
                ("cancel", "No")
            };
            let (_, html) = self
                .page(
                    self.client
                        .post(absolute(&url, &action))
                        .form(&[("code", code.as_str()), button]),
                )
                .await;
            return visible_text(&html);
        }
        visible_text(&html)
    }
}

/// The `action` of the form with id `id` (or of the first form when `id` is empty), unescaped.
fn form_action(html: &str, id: &str) -> Option<String> {
    let mut rest = html;
    while let Some(start) = rest.find("<form") {
        let tag_end = rest[start..].find('>')? + start;
        let tag = &rest[start..tag_end];
        if id.is_empty() || tag.contains(&format!("id=\"{id}\"")) {
            return attribute(tag, "action").map(|a| a.replace("&amp;", "&"));
        }
        rest = &rest[tag_end..];
    }
    None
}

fn attribute(tag: &str, name: &str) -> Option<String> {
    let at = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    Some(tag[at..at + tag[at..].find('"')?].to_string())
}

fn input_value(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\""))?;
    let start = html[..at].rfind('<')?;
    let end = at + html[at..].find('>')?;
    attribute(&html[start..end], "value")
}

/// Relative form actions (Keycloak's consent form has one) against the page's URL.
fn absolute(page: &str, action: &str) -> String {
    reqwest::Url::parse(page)
        .and_then(|base| base.join(action))
        .expect("a URL")
        .to_string()
}

fn visible_text(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `paytool login --json ARGS` started in the background, with its first line (the code).
struct LoginProcess {
    child: Child,
    code: Value,
    lines: mpsc::Receiver<String>,
}

impl LoginProcess {
    fn start(source: Ipv4Addr, args: &[&str]) -> Self {
        let mut all = vec!["login", "--json"];
        all.extend_from_slice(args);
        let mut child = paytool(source, &all)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("paytool login starts");
        let stdout = child.stdout.take().expect("stdout");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let first = lines
            .recv_timeout(Duration::from_millis(CODE_PRINTED_TIMEOUT_MS))
            .expect("paytool login prints the code to approve");
        let code: Value = serde_json::from_str(&first).expect("the code as one JSON line");
        Self { child, code, lines }
    }

    fn verification_uri_complete(&self) -> String {
        self.code["verification_uri_complete"]
            .as_str()
            .expect("verification_uri_complete")
            .to_string()
    }

    /// Waits for the exit; returns the code, the rest of stdout and stderr.
    fn finish(mut self) -> (Option<i32>, Vec<String>, String) {
        let deadline = Instant::now() + Duration::from_millis(LOGIN_EXIT_TIMEOUT_MS);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("paytool login still waits after {LOGIN_EXIT_TIMEOUT_MS} ms");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let mut err = String::new();
        if let Some(mut stderr) = self.child.stderr.take() {
            use std::io::Read;
            let _ = stderr.read_to_string(&mut err);
        }
        let rest = self.lines.iter().collect();
        (status.code(), rest, err)
    }
}

fn unique_email(prefix: &str) -> String {
    format!(
        "{prefix}-{}@example.test",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

fn profiles() -> Value {
    let path = format!("{}/pay/profiles.json", home());
    serde_json::from_str(&std::fs::read_to_string(&path).expect("profiles.json")).expect("json")
}

#[tokio::test]
async fn a_person_approves_the_code_in_a_browser_and_pay_then_acts_as_them_until_logout() {
    let _turn = SIGN_IN.lock().await;
    let source = Ipv4Addr::new(127, 0, 0, 41);
    let browser = Browser::new(source);
    let email = unique_email("device");
    let consumer = browser.register_consumer(&email).await;

    let login = LoginProcess::start(source, &[]);
    assert!(login.code["user_code"].is_string(), "{}", login.code);
    assert_eq!(login.code["interval_s"], 5, "{}", login.code);
    let page = login.verification_uri_complete();
    assert!(
        page.contains(login.code["user_code"].as_str().unwrap_or("?")),
        "{page}"
    );
    let shown = browser.approve(&page, &email, true).await;
    assert!(shown.contains("Device Login Successful"), "{shown}");
    let (code, rest, err) = login.finish();
    assert_eq!(code, Some(0), "stderr: {err}");
    let signed_in: Value = serde_json::from_str(&rest.join("\n")).expect("who signed in");
    assert_eq!(signed_in["username"], email.as_str());
    assert_eq!(signed_in["name"], "Login Tester");
    assert_eq!(signed_in["roles"], json!(["consumer"]));
    assert_eq!(signed_in["profile"], "me");

    // Saved as a device login, with no password.
    let me = &profiles()["profiles"]["me"];
    assert_eq!(me["login"], "device");
    assert!(me.get("password").is_none(), "{me}");

    // `pay` without --as is that person.
    let balance = run(source, &["pay", "balance", "--json"]);
    assert_eq!(balance.status.code(), Some(0), "{}", text(&balance.stderr));
    let wallet: Value = serde_json::from_slice(&balance.stdout).expect("json");
    assert_eq!(wallet["id"], consumer["wallet"]["id"]);
    let topup = run(source, &["pay", "topup", "700", "--json"]);
    assert_eq!(topup.status.code(), Some(0), "{}", text(&topup.stderr));
    let merchant_only = run(source, &["pay", "qr", "--amount", "5"]);
    assert_eq!(merchant_only.status.code(), Some(2));
    assert!(text(&merchant_only.stderr).contains("--as PROFILE"));

    // Logout revokes the session at Keycloak and deletes the profile.
    let refresh = me["tokens"]["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_string();
    let out = run(source, &["logout", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let ended: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(ended["session_revoked"], true, "{ended}");
    assert!(profiles()["profiles"].get("me").is_none());
    let port = status()["gateway"]["https_port"].as_u64().expect("port");
    let refused = browser
        .client
        .post(format!(
            "https://sso.local.test:{port}/realms/paytool/protocol/openid-connect/token"
        ))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", "paytool-cli"),
            ("refresh_token", refresh.as_str()),
        ])
        .send()
        .await
        .expect("Keycloak answers");
    assert_eq!(
        refused.status(),
        400,
        "the revoked refresh token is refused"
    );
    let after = run(source, &["pay", "balance"]);
    assert_eq!(after.status.code(), Some(2));
    assert_eq!(
        text(&after.stderr).lines().count(),
        1,
        "{}",
        text(&after.stderr)
    );
    assert!(text(&after.stderr).contains("paytool login"));
}

#[tokio::test]
async fn a_sign_in_renews_with_its_refresh_token_and_once_the_session_ended_says_to_log_in_again() {
    let _turn = SIGN_IN.lock().await;
    let source = Ipv4Addr::new(127, 0, 0, 42);
    let browser = Browser::new(source);
    let email = unique_email("ended");
    browser.register_consumer(&email).await;
    let login = LoginProcess::start(source, &[]);
    browser
        .approve(&login.verification_uri_complete(), &email, true)
        .await;
    let (code, _, err) = login.finish();
    assert_eq!(code, Some(0), "stderr: {err}");

    // An access token past its time is renewed with the refresh token, and saved.
    let path = format!("{}/pay/profiles.json", home());
    let mut file = profiles();
    let first_access = file["profiles"]["me"]["tokens"]["access_token"].clone();
    file["profiles"]["me"]["tokens"]["access_expires_at"] = json!("2000-01-01T00:00:00Z");
    std::fs::write(&path, serde_json::to_string_pretty(&file).expect("json")).expect("written");
    let renewed = run(source, &["pay", "balance"]);
    assert_eq!(renewed.status.code(), Some(0), "{}", text(&renewed.stderr));
    let mut file = profiles();
    assert_ne!(
        file["profiles"]["me"]["tokens"]["access_token"],
        first_access
    );

    // The session ends behind paytool's back (revoked elsewhere) and the access token is due.
    let refresh = file["profiles"]["me"]["tokens"]["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_string();
    let port = status()["gateway"]["https_port"].as_u64().expect("port");
    let revoked = browser
        .client
        .post(format!(
            "https://sso.local.test:{port}/realms/paytool/protocol/openid-connect/revoke"
        ))
        .form(&[("client_id", "paytool-cli"), ("token", refresh.as_str())])
        .send()
        .await
        .expect("Keycloak answers");
    assert!(revoked.status().is_success());
    file["profiles"]["me"]["tokens"]["access_expires_at"] = json!("2000-01-01T00:00:00Z");
    std::fs::write(&path, serde_json::to_string_pretty(&file).expect("json")).expect("written");

    let out = run(source, &["pay", "balance"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(11), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("run `paytool login` again"), "{err}");
    assert_eq!(run(source, &["logout"]).status.code(), Some(0));
}

#[tokio::test]
async fn denying_the_code_in_the_browser_refuses_the_login_with_exit_11() {
    let _turn = SIGN_IN.lock().await;
    let source = Ipv4Addr::new(127, 0, 0, 43);
    let browser = Browser::new(source);
    let email = unique_email("deny");
    browser.register_consumer(&email).await;
    let login = LoginProcess::start(source, &[]);
    browser
        .approve(&login.verification_uri_complete(), &email, false)
        .await;
    let (code, rest, err) = login.finish();
    assert_eq!(code, Some(11), "stderr: {err}");
    assert!(rest.is_empty(), "nothing more on stdout: {rest:?}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: Login refused: the sign-in was denied"),
        "{err}"
    );
}

#[test]
fn a_code_nobody_approves_refuses_the_login_with_exit_11_at_the_bound() {
    let _turn = SIGN_IN.blocking_lock();
    let source = Ipv4Addr::new(127, 0, 0, 44);
    let started = Instant::now();
    let login = LoginProcess::start(source, &["--timeout-s", "2"]);
    let (code, _, err) = login.finish();
    assert_eq!(code, Some(11), "stderr: {err}");
    assert!(err.contains("was not approved in time"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn no_wait_prints_the_code_and_a_later_login_finishes_that_same_code() {
    let _turn = SIGN_IN.lock().await;
    let source = Ipv4Addr::new(127, 0, 0, 45);
    let browser = Browser::new(source);
    let email = unique_email("later");
    browser.register_consumer(&email).await;
    let early = LoginProcess::start(source, &["--no-wait"]);
    let first = early.code.clone();
    let (code, rest, err) = early.finish();
    assert_eq!(code, Some(0), "stderr: {err}");
    assert!(rest.is_empty(), "{rest:?}");
    let page = first["verification_uri_complete"].as_str().expect("uri");
    browser.approve(page, &email, true).await;

    let later = LoginProcess::start(source, &[]);
    assert_eq!(later.code["user_code"], first["user_code"]);
    let (code, rest, err) = later.finish();
    assert_eq!(code, Some(0), "stderr: {err}");
    let signed_in: Value = serde_json::from_str(&rest.join("\n")).expect("json");
    assert_eq!(signed_in["username"], email.as_str());
    assert_eq!(run(source, &["logout"]).status.code(), Some(0));
}

#[test]
fn ctrl_c_while_waiting_for_approval_exits_130() {
    let _turn = SIGN_IN.blocking_lock();
    let source = Ipv4Addr::new(127, 0, 0, 46);
    let login = LoginProcess::start(source, &[]);
    let interrupted = Command::new("kill")
        .args(["-INT", &login.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(interrupted.success());
    let (code, _, err) = login.finish();
    assert_eq!(code, Some(130), "stderr: {err}");
    assert!(err.contains("login cancelled"), "{err}");
}
