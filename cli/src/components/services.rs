//! The platform's own Rust services, started from the binaries beside `paytool`.

use super::{Ctx, Spec};
use crate::home::Home;
use nix::sys::signal::Signal;

pub const SERVICES: &[&str] = &["orchestrator", "consumer-api", "merchant-api"];

pub fn port(home: &Home, service: &str) -> u16 {
    let ports = home.ports();
    match service {
        "orchestrator" => ports.orchestrator,
        "consumer-api" => ports.consumer_api,
        _ => ports.merchant_api,
    }
}

/// The database each service owns (one per service) and its role, which has the same name.
pub fn database(service: &str) -> String {
    service.replace('-', "_")
}

pub fn database_url(ctx: &Ctx, service: &str) -> String {
    let password = match service {
        "orchestrator" => &ctx.secrets.db_orchestrator,
        "consumer-api" => &ctx.secrets.db_consumer_api,
        _ => &ctx.secrets.db_merchant_api,
    };
    let db = database(service);
    format!(
        "postgres://{db}:{password}@127.0.0.1:{}/{db}",
        ctx.home.ports().postgres
    )
}

fn client_secret<'a>(ctx: &'a Ctx, service: &str) -> &'a str {
    match service {
        "orchestrator" => &ctx.secrets.client_orchestrator,
        "consumer-api" => &ctx.secrets.client_consumer_api,
        _ => &ctx.secrets.client_merchant_api,
    }
}

pub fn spec(ctx: &Ctx, service: &str) -> anyhow::Result<Spec> {
    let name: &'static str = SERVICES
        .iter()
        .copied()
        .find(|s| *s == service)
        .ok_or_else(|| anyhow::anyhow!("unknown component {service}"))?;
    let port = port(&ctx.home, name);
    let public = match name {
        "consumer-api" => vec![
            ctx.home.ports().public_url("api"),
            ctx.home.ports().public_url("wallet"),
        ],
        "merchant-api" => vec![ctx.home.ports().public_url("merchant")],
        _ => Vec::new(),
    };
    let mut env: Vec<(String, String)> = vec![
        ("APP__HTTP__HOST".into(), "127.0.0.1".into()),
        ("APP__HTTP__PORT".into(), port.to_string()),
        ("APP__DATABASE__URL".into(), database_url(ctx, name)),
        // Tokens are verified locally against the realm's keys; `iss` is the public URL.
        (
            "APP__AUTH__ISSUER".into(),
            format!(
                "{}/realms/{}",
                ctx.home.ports().public_url("sso"),
                super::keycloak::REALM
            ),
        ),
        (
            "APP__AUTH__JWKS_URL".into(),
            format!(
                "http://127.0.0.1:{}/realms/{}/protocol/openid-connect/certs",
                ctx.home.ports().keycloak,
                super::keycloak::REALM
            ),
        ),
        ("APP__AUTH__AUDIENCE".into(), name.to_string()),
        // The service's own account: registering users, calling the orchestrator.
        (
            "APP__KEYCLOAK__BASE_URL".into(),
            format!("http://127.0.0.1:{}", ctx.home.ports().keycloak),
        ),
        (
            "APP__KEYCLOAK__REALM".into(),
            super::keycloak::REALM.to_string(),
        ),
        ("APP__KEYCLOAK__CLIENT_ID".into(), name.to_string()),
        (
            "APP__KEYCLOAK__CLIENT_SECRET".into(),
            client_secret(ctx, name).to_string(),
        ),
        (
            "APP__ORCHESTRATOR__BASE_URL".into(),
            format!("http://127.0.0.1:{}", ctx.home.ports().orchestrator),
        ),
        // Each service relays its outbox to Kafka; merchant-api also consumes payments.v1.
        (
            "APP__KAFKA__BOOTSTRAP_SERVERS".into(),
            format!("127.0.0.1:{}", ctx.home.ports().kafka),
        ),
        ("RUST_LOG".into(), "info".into()),
        // Spans go to the collector (and on to Jaeger).
        (
            paykit::telemetry::OTLP_ENDPOINT_ENV.into(),
            super::observability::otlp_endpoint(&ctx.home),
        ),
    ];
    if name == "consumer-api" {
        // The wallet's sign-in (a backend-for-frontend at wallet.local.test).
        env.extend(web_env(
            ctx,
            "wallet",
            "wallet-web",
            &ctx.secrets.client_wallet_web,
        ));
        // Only the service that makes payment codes gets the key they are derived with.
        env.push((
            "APP__PAYMENT_CODE_KEY".into(),
            ctx.secrets.payment_code_key.clone(),
        ));
        // Paying a merchant's QR code goes through merchant-api, which owns payment requests.
        env.push((
            "APP__MERCHANT_API__BASE_URL".into(),
            format!("http://127.0.0.1:{}", ctx.home.ports().merchant_api),
        ));
    }
    if name == "merchant-api" {
        // Charging a consumer's code goes through consumer-api, which owns the codes.
        env.push((
            "APP__CONSUMER_API__BASE_URL".into(),
            format!("http://127.0.0.1:{}", ctx.home.ports().consumer_api),
        ));
        // The dashboard's sign-in (a backend-for-frontend).
        env.extend(web_env(
            ctx,
            "merchant",
            "merchant-dashboard",
            &ctx.secrets.client_merchant_dashboard,
        ));
    }
    Ok(Spec {
        name,
        program: ctx.bin_dir.join(name),
        args: Vec::new(),
        env,
        cwd: ctx.home.dir.clone(),
        run_as: None,
        ports: vec![("http", port)],
        urls: [vec![format!("http://127.0.0.1:{port}")], public].concat(),
        probe: super::probe(&ctx.home, &ctx.secrets, name),
        ready_timeout_ms: 30_000,
        stop_signal: Signal::SIGTERM,
        stop_timeout_ms: 10_000,
    })
}

/// A backend-for-frontend's sign-in settings (APP__WEB__*): browsers are sent to Keycloak's
/// public pages; the code is exchanged for tokens over loopback with the client's secret.
fn web_env(ctx: &Ctx, host: &str, client_id: &str, secret: &str) -> [(String, String); 6] {
    let ports = ctx.home.ports();
    [
        ("APP__WEB__PUBLIC_BASE_URL".into(), ports.public_url(host)),
        ("APP__WEB__CLIENT_ID".into(), client_id.into()),
        ("APP__WEB__CLIENT_SECRET".into(), secret.into()),
        (
            "APP__WEB__KEYCLOAK_PUBLIC_URL".into(),
            ports.public_url("sso"),
        ),
        (
            "APP__WEB__KEYCLOAK_INTERNAL_URL".into(),
            format!("http://127.0.0.1:{}", ports.keycloak),
        ),
        ("APP__WEB__REALM".into(), super::keycloak::REALM.into()),
    ]
}

/// The service binaries `up` needs, with the ones that are missing.
pub fn missing_binaries(bin_dir: &std::path::Path) -> Vec<&'static str> {
    SERVICES
        .iter()
        .copied()
        .filter(|s| !bin_dir.join(s).is_file())
        .collect()
}
