//! What every service's web page has in common: the frame of a page (head, header bar, `main`),
//! the signed-out and no-account cards, the sign-out form, money as text, the headers of a page
//! and of its static assets.
//!
//! Markup is written with `maud`, whose `html!` is checked when the crate compiles and escapes
//! every interpolated value (`&`, `<`, `>`, `"`; maud quotes every attribute with `"`, so `'`
//! needs no escape). Nothing here builds HTML out of strings: a value becomes markup only through
//! `html!`, or through `PreEscaped` of a literal of ours.

use super::Session;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use maud::{html, Markup, PreEscaped};

/// Static assets of the pages (a script, a style sheet) are cached this long. They change only
/// with the binary; an hour keeps reloads cheap without keeping an old script long after a
/// deployment.
pub const ASSET_MAX_AGE_S: u32 = 3_600;

/// Minor units as the currency shows them: `1200` JPY is "1200 JPY", `1250` USD "12.50 USD".
pub fn format_money(value: i64, currency: &str, exponent: u8) -> String {
    let sign = if value < 0 { "-" } else { "" };
    let magnitude = value.unsigned_abs();
    if exponent == 0 {
        return format!("{sign}{magnitude} {currency}");
    }
    let scale = 10u64.pow(u32::from(exponent));
    format!(
        "{sign}{}.{:0width$} {currency}",
        magnitude / scale,
        magnitude % scale,
        width = usize::from(exponent)
    )
}

/// A page's script or style sheet, served from the binary.
pub fn static_asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (
                header::CACHE_CONTROL,
                format!("public, max-age={ASSET_MAX_AGE_S}"),
            ),
        ],
        body,
    )
        .into_response()
}

/// A personal page with the headers every page gets: no caching, no sniffing, and a policy
/// that allows only this origin (`img_src` adds image sources such as `blob:`), plus Keycloak
/// (`sso`) as where the sign-out form's redirect goes.
pub fn page_response(sso: &str, img_src: &str, body: Markup) -> Response {
    let policy = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'{img_src}; \
         connect-src 'self'; form-action 'self' {sso}; frame-ancestors 'none'; base-uri 'none'"
    );
    let mut response = (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "same-origin"),
        ],
        body.into_string(),
    )
        .into_response();
    if let Ok(policy) = HeaderValue::from_str(&policy) {
        response
            .headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    response
}

impl Session {
    /// How a page names the person: their email, else their name, else "This login".
    pub fn who(&self) -> &str {
        self.email
            .as_deref()
            .or(self.name.as_deref())
            .unwrap_or("This login")
    }
}

/// What a page's script reads from `body`'s `data-` attributes; an attribute that is `None`
/// is left out.
#[derive(Debug, Clone, Copy, Default)]
pub struct BodyData<'a> {
    /// The account's currency, its ISO 4217 alphabetic code.
    pub currency: Option<&'a str>,
    /// The currency's exponent: how many of its minor units are one major unit, as a power of 10.
    pub exponent: Option<u8>,
    /// The session's CSRF token, for a script that does not ask `GET /session` for it.
    pub csrf: Option<&'a str>,
    /// Where a script's feed starts (RFC 3339).
    pub since: Option<&'a str>,
}

/// What a signed-in person without the service's kind of account is told to register.
pub struct Account {
    /// "merchant account", "wallet": in "No merchant account" and "has no wallet".
    pub noun: &'static str,
    /// The API's registration endpoint, `/v1/merchants`.
    pub endpoint: &'static str,
    /// The `paytool pay register` argument, `merchant`.
    pub role: &'static str,
}

/// One service's pages: the header bar's brand, the start of its titles, its script and style
/// sheet (paths, and the text served there), and the account it needs.
pub struct Shell {
    pub brand: &'static str,
    /// "Merchant dashboard": titles are "Merchant dashboard — sign in" and the like.
    pub app: &'static str,
    pub style_path: &'static str,
    pub script_path: &'static str,
    pub style: &'static str,
    pub script: &'static str,
    pub account: Account,
}

/// The JavaScript and CSS content types, as the assets are served.
const SCRIPT_CONTENT_TYPE: &str = "text/javascript; charset=utf-8";
const STYLE_CONTENT_TYPE: &str = "text/css; charset=utf-8";

impl Shell {
    /// The page's script and style sheet, and an empty favicon (browsers ask for it on every
    /// page; an empty answer keeps a 404 out of their consoles).
    pub fn assets<S>(&'static self) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        Router::new()
            .route(
                self.script_path,
                get(move || async move { static_asset(SCRIPT_CONTENT_TYPE, self.script) }),
            )
            .route(
                self.style_path,
                get(move || async move { static_asset(STYLE_CONTENT_TYPE, self.style) }),
            )
            .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
    }

    /// The frame of a page: head with the app's style sheet and module script, a header bar with
    /// the app's name and, when signed in, the sign-out form with the session's `csrf_token`,
    /// and `main`.
    pub fn layout(
        &self,
        title: &str,
        csrf_token: Option<&str>,
        data: BodyData<'_>,
        main: Markup,
    ) -> Markup {
        html! {
            // Lower case, as the pages have always been served (maud's DOCTYPE is upper case).
            (PreEscaped("<!doctype html>"))
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (title) }
                    link rel="stylesheet" href=(self.style_path);
                    script type="module" src=(self.script_path) {}
                }
                body
                    data-currency=[data.currency]
                    data-exponent=[data.exponent]
                    data-csrf=[data.csrf]
                    data-since=[data.since]
                {
                    header class="bar" {
                        p class="brand" { (self.brand) }
                        @if let Some(csrf_token) = csrf_token {
                            (logout_form(csrf_token))
                        }
                    }
                    main id="main" { (main) }
                }
            }
        }
    }

    /// The page of a browser that is not signed in: `heading` and `blurb` say what signing in
    /// gives.
    pub fn signed_out(&self, heading: &str, blurb: &str) -> Markup {
        self.layout(
            &format!("{} — sign in", self.app),
            None,
            BodyData::default(),
            html! {
                section class="card" aria-labelledby="signin-title" {
                    h1 id="signin-title" { (heading) }
                    p { (blurb) }
                    p { a class="button" href="/login" data-testid="login-link" { "Sign in" } }
                }
            },
        )
    }

    /// The page of a signed-in person without the service's kind of account.
    pub fn no_account(&self, session: &Session) -> Markup {
        let Account {
            noun,
            endpoint,
            role,
        } = self.account;
        self.layout(
            &format!("{} — no {noun}", self.app),
            Some(&session.csrf_token),
            BodyData::default(),
            html! {
                section class="card" aria-labelledby="none-title" {
                    h1 id="none-title" { "No " (noun) }
                    p {
                        (session.who()) " has no " (noun) ". Register one with "
                        code { "POST " (endpoint) }
                        " (or " code { "paytool pay register " (role) } "), then sign in again."
                    }
                }
            },
        )
    }
}

/// Signs out with a plain form: the CSRF token goes as a hidden field, since a form cannot set
/// the header.
fn logout_form(csrf_token: &str) -> Markup {
    html! {
        form method="post" action="/logout" class="logout" {
            input type="hidden" name="csrf_token" value=(csrf_token);
            button type="submit" data-testid="logout-button" { "Sign out" }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Principal;

    static SHELL: Shell = Shell {
        brand: "paytool · test",
        app: "Test app",
        style_path: "/assets/test.css",
        script_path: "/assets/test.mjs",
        style: "p {}",
        script: "export {}",
        account: Account {
            noun: "test account",
            endpoint: "/v1/tests",
            role: "tester",
        },
    };

    fn session(name: Option<&str>, email: Option<&str>) -> Session {
        Session {
            principal: Principal {
                subject: "s".into(),
                client_id: "test-web".into(),
                realm_roles: vec![],
                client_roles: Default::default(),
            },
            csrf_token: "tok\"en".into(),
            name: name.map(Into::into),
            email: email.map(Into::into),
            expires_at: chrono::Utc::now(),
        }
    }

    #[tokio::test]
    async fn the_assets_are_the_script_the_style_sheet_and_an_empty_favicon() {
        use tower::ServiceExt;
        let get = |path: &str| {
            axum::http::Request::get(path)
                .body(axum::body::Body::empty())
                .expect("a request")
        };
        for (path, content_type, body) in [
            ("/assets/test.mjs", SCRIPT_CONTENT_TYPE, "export {}"),
            ("/assets/test.css", STYLE_CONTENT_TYPE, "p {}"),
        ] {
            let response = SHELL
                .assets::<()>()
                .oneshot(get(path))
                .await
                .expect("served");
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            assert_eq!(response.headers()[header::CONTENT_TYPE], content_type);
            assert_eq!(
                response.headers()[header::CACHE_CONTROL],
                "public, max-age=3600"
            );
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
                .await
                .expect("a body");
            assert_eq!(bytes, body);
        }
        let favicon = SHELL
            .assets::<()>()
            .oneshot(get("/favicon.ico"))
            .await
            .expect("served");
        assert_eq!(favicon.status(), StatusCode::NO_CONTENT);
    }

    #[test]
    fn money_is_formatted_with_the_currencys_exponent() {
        assert_eq!(format_money(1200, "JPY", 0), "1200 JPY");
        assert_eq!(format_money(1250, "USD", 2), "12.50 USD");
        assert_eq!(format_money(5, "USD", 2), "0.05 USD");
        assert_eq!(format_money(-1005, "BHD", 3), "-1.005 BHD");
    }

    #[test]
    fn text_in_a_page_is_escaped_where_html_gives_it_meaning() {
        let page = SHELL
            .layout(
                r#"<a href="x" title='y'>&</a>"#,
                None,
                BodyData::default(),
                html! {},
            )
            .into_string();
        // `'` stays: every attribute maud writes is quoted with `"`.
        assert!(
            page.contains("<title>&lt;a href=&quot;x&quot; title='y'&gt;&amp;&lt;/a&gt;</title>"),
            "{page}"
        );
    }

    #[test]
    fn only_a_signed_in_page_has_the_sign_out_form_with_the_csrf_token() {
        let signed_in = SHELL.no_account(&session(None, None)).into_string();
        assert!(signed_in.contains(
            r#"<input type="hidden" name="csrf_token" value="tok&quot;en"><button type="submit" data-testid="logout-button">Sign out</button>"#
        ), "{signed_in}");
        let signed_out = SHELL.signed_out("Test", "Sign in.").into_string();
        assert!(!signed_out.contains("logout"), "{signed_out}");
        assert!(signed_out.contains(r#"href="/login" data-testid="login-link""#));
        assert!(signed_out.starts_with("<!doctype html><html lang=\"en\">"));
    }

    #[test]
    fn a_page_names_the_person_by_email_then_name() {
        assert_eq!(session(Some("N"), Some("e@x")).who(), "e@x");
        assert_eq!(session(Some("N"), None).who(), "N");
        assert_eq!(session(None, None).who(), "This login");
        let page = SHELL
            .no_account(&session(None, Some("<b>e</b>@x")))
            .into_string();
        assert!(page.contains("<h1 id=\"none-title\">No test account</h1>"));
        assert!(page.contains("&lt;b&gt;e&lt;/b&gt;@x has no test account."));
    }

    #[test]
    fn body_data_attributes_are_written_in_order_and_left_out_when_none() {
        let data = BodyData {
            currency: Some("JPY"),
            exponent: Some(0),
            csrf: None,
            since: Some("2024-05-06T07:08:09Z"),
        };
        let page = SHELL.layout("t", None, data, html! {}).into_string();
        assert!(
            page.contains(
                r#"<body data-currency="JPY" data-exponent="0" data-since="2024-05-06T07:08:09Z">"#
            ),
            "{page}"
        );
    }
}
