//! The nginx gateway: TLS for `*.local.test` with the installation's certificate, routing each
//! host to its component, and `whoami.local.test` echoing the request (njs).

use super::{render, run_to_log, ComponentName, Ctx, Spec};
use crate::runtime::home::{Home, Secrets};
use crate::runtime::probe::Probe;
use crate::runtime::tls::TlsFiles;
use nix::sys::signal::Signal;
use nix::unistd::{chown, User};
use std::path::PathBuf;

const TEMPLATE: &str = "stacks/local/gateway/nginx.conf.tera";
/// Snippets the main configuration includes: rendered next to it.
const SNIPPETS: [(&str, &str); 2] = [
    ("proxy_conf", "stacks/local/gateway/proxy.conf.tera"),
    ("problems_conf", "stacks/local/gateway/problems.conf.tera"),
];
/// nginx's workers drop to this user when the master runs as root.
const WORKER_USER: &str = "www-data";

fn dir(home: &Home) -> PathBuf {
    home.component_dir(ComponentName::Gateway.as_str())
}

fn config_path(home: &Home) -> PathBuf {
    dir(home).join("nginx.conf")
}

super::engine_component!(
    /// nginx with njs: TLS for `*.local.test`, token checks, rate limits.
    Gateway, Gateway, prepare = prepare
);

pub fn probe(home: &Home, _secrets: &Secrets) -> Probe {
    let port = home.ports().gateway_https;
    Probe::Http {
        url: format!("{}/health", home.ports().public_url("whoami")),
        resolve: Some(("whoami.local.test".to_string(), port)),
        ca: Some(TlsFiles::of(home).ca_cert),
    }
}

fn spec(ctx: &Ctx) -> anyhow::Result<Spec> {
    let ports = ctx.home.ports();
    Ok(Spec {
        name: ComponentName::Gateway,
        program: ctx.tools.nginx.clone(),
        args: vec![
            "-p".into(),
            dir(&ctx.home).display().to_string(),
            "-c".into(),
            config_path(&ctx.home).display().to_string(),
            // Errors before the configuration is read go to stderr (our log), not /var/log.
            "-e".into(),
            "stderr".into(),
        ],
        env: Vec::new(),
        cwd: dir(&ctx.home),
        run_as: None,
        ports: vec![("http", ports.gateway_http), ("https", ports.gateway_https)],
        urls: ["whoami", "sso", "api", "merchant"]
            .iter()
            .map(|host| ports.public_url(host))
            .collect(),
        probe: probe(&ctx.home, &ctx.secrets),
        ready_timeout_ms: 15_000,
        // SIGQUIT is nginx's graceful shutdown: finish open requests, then exit.
        stop_signal: Signal::SIGQUIT,
        stop_timeout_ms: 10_000,
    })
}

async fn prepare(ctx: &Ctx) -> anyhow::Result<()> {
    let dir = dir(&ctx.home);
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp)?;
    let root = nix::unistd::Uid::effective().is_root();
    let worker = if root {
        User::from_name(WORKER_USER).ok().flatten()
    } else {
        None
    };
    if let Some(user) = &worker {
        // Workers buffer large bodies here.
        chown(&tmp, Some(user.uid), Some(user.gid))?;
    }
    let ports = ctx.home.ports();
    let tls = TlsFiles::of(&ctx.home);
    let mut context = tera::Context::new();
    context.insert("worker_user", &worker.as_ref().map(|u| u.name.clone()));
    context.insert("njs_module", &ctx.tools.njs_module);
    context.insert(
        "whoami_js",
        &ctx.project.join("stacks/local/gateway/whoami.js"),
    );
    context.insert("tmp_dir", &tmp);
    context.insert("pid_file", &dir.join("nginx.pid"));
    context.insert("http_port", &ports.gateway_http);
    context.insert("https_port", &ports.gateway_https);
    context.insert("https_suffix", &ports.https_suffix());
    context.insert("certificate", &tls.cert);
    context.insert("certificate_key", &tls.key);
    context.insert("keycloak_port", &ports.keycloak);
    context.insert("consumer_api_port", &ports.consumer_api);
    context.insert("merchant_api_port", &ports.merchant_api);
    context.insert("gateway_spans_port", &ports.gateway_spans);
    context.insert("edge_js", &ctx.project.join("stacks/local/gateway/edge.js"));
    context.insert(
        "issuer",
        &format!(
            "{}/realms/{}",
            ports.public_url("sso"),
            super::keycloak::REALM
        ),
    );
    context.insert("realm", super::keycloak::REALM);
    context.insert("limits", &RateLimits::default());
    context.insert("apis", &apis());
    for (name, template) in SNIPPETS {
        let path = dir.join(
            std::path::Path::new(template)
                .file_stem()
                .expect("snippet templates have names"),
        );
        std::fs::write(&path, render(ctx, template, &context)?)?;
        context.insert(name, &path);
    }
    let config = render(ctx, TEMPLATE, &context)?;
    std::fs::write(config_path(&ctx.home), config)?;
    // `nginx -t` names the line of a broken configuration; a failed start would only say "exited".
    let mut check = tokio::process::Command::new(&ctx.tools.nginx);
    check
        .arg("-t")
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(config_path(&ctx.home))
        .args(["-e", "stderr"]);
    run_to_log(ctx, ComponentName::Gateway, &mut check).await
}

/// The gateway's rate limits per second (bursts are requests allowed at once above the rate).
/// Registrations and sign-ins have fixed, stricter limits in the template.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RateLimits {
    pub per_address_rps: u32,
    pub per_address_burst: u32,
    pub per_user_rps: u32,
    pub per_user_burst: u32,
    pub charges_rps: u32,
    pub charges_burst: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        // A person or a till never needs more; a script that does is throttled before a service
        // spends anything on it.
        Self {
            per_address_rps: 100,
            per_address_burst: 200,
            per_user_rps: 20,
            per_user_burst: 40,
            charges_rps: 10,
            charges_burst: 20,
        }
    }
}

/// One API host of the gateway.
#[derive(Debug, serde::Serialize)]
struct Api {
    host: &'static str,
    what: &'static str,
    /// The nginx upstream; with `-` for `_` it is also the service's client id, the token's `aud`.
    upstream: &'static str,
    /// The public registration route.
    registration: &'static str,
    /// "allow" where a browser session may stand in for a bearer token.
    session: &'static str,
    charges: bool,
    streams: bool,
}

fn apis() -> [Api; 3] {
    [
        Api {
            host: "api.local.test",
            what: "the consumer API, for apps with bearer tokens",
            upstream: "consumer_api",
            registration: "/v1/consumers",
            session: "deny",
            charges: false,
            streams: false,
        },
        Api {
            host: "wallet.local.test",
            what: "the consumer wallet: consumer-api's page, sign-in and API on one origin, so \
                   the session cookie is first-party and the page needs no CORS",
            upstream: "consumer_api",
            registration: "/v1/consumers",
            session: "allow",
            charges: false,
            streams: false,
        },
        Api {
            host: "merchant.local.test",
            what: "the merchant API and dashboard",
            upstream: "merchant_api",
            registration: "/v1/merchants",
            session: "allow",
            charges: true,
            streams: true,
        },
    ]
}
