//! The sign-in in front of the operators' web UIs (logs, dashboards, traces): OAuth2 Proxy
//! (MIT), built by scripts/install-oauth2-proxy.sh with the observability build. The gateway
//! asks it about every request to those hosts (`auth_request /oauth2/auth`); a browser without
//! its session is sent through Keycloak's sign-in (the realm's `operations` client, the
//! authorization code flow with PKCE), and only a person with the realm role `operator` gets
//! one. It answers on loopback only and passes nothing upstream itself.
//!
//! The browser reaches Keycloak's sign-in page at its public address; the proxy redeems the
//! code and reads the realm's keys on Keycloak's loopback port, so that it needs neither the
//! gateway's names in /etc/hosts nor its certificate authority.

use super::{http_probe, Component, ComponentName, Ctx, Spec, Step};
use crate::runtime::home::{derive, Home, Secrets};
use crate::runtime::probe::Probe;
use nix::sys::signal::Signal;

/// The realm's client the sign-in uses (made by `paytool up`, components::keycloak).
pub const CLIENT: &str = "operations";
/// The realm role a person needs to see the operators' UIs, and the account that has it.
pub const ROLE: &str = "operator";
pub const USER: &str = "operator";
/// The gateway hosts behind the sign-in on the local runtime (`<host>.local.test`).
pub const HOSTS: &[&str] = &["logs", "dashboards", "traces"];
/// Every host the realm lets the sign-in return to, on either runtime: the kind runtime also
/// serves the dashboards and Jaeger's UI behind it (stacks/kind/platform/observability).
pub const REALM_HOSTS: &[&str] = &["logs", "dashboards", "traces"];
/// The session cookie. `__Host-`: sent only over TLS, to the host that set it, for every path.
const COOKIE: &str = "__Host-paytool-operations";
/// How long a session lasts before the person signs in again (Keycloak's own session may make
/// that one click).
const SESSION_HOURS: u32 = 8;

pub struct SignIn;

pub fn client_secret(secrets: &Secrets) -> String {
    derive(&secrets.keycloak_admin, "operations-client")
}

/// The `operator` account's password (`paytool status --show-secrets`).
pub fn password(secrets: &Secrets) -> String {
    derive(&secrets.keycloak_admin, "operator-password")
}

/// The session cookie's encryption key: 32 characters, as the proxy asks (16, 24 or 32 bytes).
pub fn cookie_secret(secrets: &Secrets) -> String {
    let secret = derive(&secrets.keycloak_admin, "operations-cookie");
    assert_eq!(secret.len(), 32, "the proxy takes a 32-byte cookie secret");
    secret
}

/// Where Keycloak sends the browser back to, on each host behind the sign-in.
pub fn redirect_uris(home: &Home) -> Vec<String> {
    let ports = home.ports();
    REALM_HOSTS
        .iter()
        .map(|host| format!("{}/oauth2/callback", ports.public_url(host)))
        .collect()
}

/// The proxy's own address, for the gateway.
pub fn url(home: &Home) -> String {
    format!("http://127.0.0.1:{}", home.ports().sign_in)
}

impl Component for SignIn {
    fn name(&self) -> ComponentName {
        ComponentName::SignIn
    }

    fn spec(&self, ctx: &Ctx) -> anyhow::Result<Spec> {
        let ports = ctx.home.ports();
        let realm = super::keycloak::REALM;
        let public = format!("{}/realms/{realm}", ports.public_url("sso"));
        let loopback = format!("http://127.0.0.1:{}/realms/{realm}", ports.keycloak);
        let args = vec![
            format!("--http-address=127.0.0.1:{}", ports.sign_in),
            "--provider=keycloak-oidc".into(),
            format!("--client-id={CLIENT}"),
            format!("--allowed-role={ROLE}"),
            "--email-domain=*".into(),
            "--code-challenge-method=S256".into(),
            // The issuer the tokens name, the browser's sign-in page, and the two calls the
            // proxy makes itself, on loopback.
            "--skip-oidc-discovery=true".into(),
            format!("--oidc-issuer-url={public}"),
            format!("--login-url={public}/protocol/openid-connect/auth"),
            format!("--redeem-url={loopback}/protocol/openid-connect/token"),
            format!("--oidc-jwks-url={loopback}/protocol/openid-connect/certs"),
            format!("--profile-url={loopback}/protocol/openid-connect/userinfo"),
            // Behind the gateway: the host and scheme of the callback come from its headers,
            // and only the gateway's own names are places to return to after signing in.
            "--reverse-proxy=true".into(),
            "--whitelist-domain=.local.test:*".into(),
            "--skip-provider-button=true".into(),
            // Only asked whether a request may pass (auth_request): nothing is proxied.
            "--upstream=static://202".into(),
            "--set-xauthrequest=true".into(),
            format!("--cookie-name={COOKIE}"),
            "--cookie-secure=true".into(),
            "--cookie-samesite=lax".into(),
            format!("--cookie-expire={SESSION_HOURS}h"),
            "--silence-ping-logging=true".into(),
        ];
        Ok(Spec {
            name: self.name(),
            instance: 0,
            program: ctx.tools.oauth2_proxy.clone(),
            args,
            // Secrets in the environment, not on the command line that `ps` shows.
            env: vec![
                (
                    "OAUTH2_PROXY_CLIENT_SECRET".into(),
                    client_secret(&ctx.secrets),
                ),
                (
                    "OAUTH2_PROXY_COOKIE_SECRET".into(),
                    cookie_secret(&ctx.secrets),
                ),
            ],
            cwd: ctx.home.component_dir(self.name().as_str()),
            run_as: None,
            ports: vec![("http", ports.sign_in)],
            urls: vec![url(&ctx.home)],
            probe: self.probe(&ctx.home, &ctx.secrets),
            ready_timeout_ms: 30_000,
            stop_signal: Signal::SIGTERM,
            stop_timeout_ms: 5_000,
        })
    }

    fn probe(&self, home: &Home, _secrets: &Secrets) -> Probe {
        http_probe(format!("{}/ping", url(home)))
    }

    fn prepare<'a>(&'a self, ctx: &'a Ctx) -> Step<'a> {
        Box::pin(async move {
            std::fs::create_dir_all(ctx.home.component_dir(self.name().as_str()))?;
            Ok(())
        })
    }

    /// Built with the collector, in the background of a first `up`.
    fn built_in_background(&self) -> bool {
        true
    }
}
