//! The nginx gateway: TLS for `*.local.test` with the installation's certificate, routing each
//! host to its component, and `whoami.local.test` echoing the request (njs).

use super::services::Service;
use super::{render, run_to_log, ComponentName, Ctx, Spec};
use crate::runtime::home::{Home, Secrets};
use crate::runtime::probe::Probe;
use crate::runtime::tls::TlsFiles;
use nix::sys::signal::Signal;
use nix::unistd::{chown, User};
use std::path::PathBuf;

const TEMPLATE: &str = "stacks/local/gateway/nginx.conf.tera";
/// Snippets the main configuration includes: rendered next to it.
const SNIPPETS: [(&str, &str); 3] = [
    ("proxy_conf", "stacks/local/gateway/proxy.conf.tera"),
    ("problems_conf", "stacks/local/gateway/problems.conf.tera"),
    ("fastcgi_conf", "stacks/local/gateway/fastcgi.conf.tera"),
];
/// nginx's workers drop to this user when the master runs as root.
const WORKER_USER: &str = "www-data";

/// What the gateway's git.local.test block needs of the git server (`components::git`).
#[derive(serde::Serialize)]
struct GitServer {
    socket: PathBuf,
    repositories: PathBuf,
    http_backend: &'static str,
    gitweb_dir: &'static str,
    gitweb_config: PathBuf,
    user: &'static str,
    /// The gateway compares the SHA-256 of the password it is given with this, so its
    /// configuration never holds the password. The password is 32 random-looking characters
    /// (an HMAC): a fast hash is no help to guessing it.
    password_sha256: String,
    client: &'static str,
}

impl GitServer {
    fn of(home: &Home, secrets: &Secrets) -> Self {
        Self {
            socket: super::git::socket(home),
            repositories: super::git::repositories(home),
            http_backend: super::git::HTTP_BACKEND,
            gitweb_dir: super::git::GITWEB_DIR,
            gitweb_config: super::git::gitweb_config(home),
            user: super::git::USER,
            password_sha256: sha256_hex(&super::git::password(secrets)),
            client: super::git::CLIENT,
        }
    }
}

/// What the gateway's ci.local.test block needs of the CI server (`components::ci`).
#[derive(serde::Serialize)]
struct CiServer {
    port: u16,
    user: &'static str,
    /// As for the git server: the gateway holds the password's SHA-256 only.
    password_sha256: String,
    client: &'static str,
}

impl CiServer {
    fn of(home: &Home, secrets: &Secrets) -> Self {
        Self {
            port: home.ports().ci_web,
            user: super::ci::USER,
            password_sha256: sha256_hex(&super::ci::password(secrets)),
            client: super::ci::CLIENT,
        }
    }
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text))
}

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
        instance: 0,
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
        ports: vec![
            ("http", ports.gateway_http),
            ("https", ports.gateway_https),
            ("orchestrator-internal", ports.internal_orchestrator),
            ("consumer-api-internal", ports.internal_consumer_api),
            ("merchant-api-internal", ports.internal_merchant_api),
        ],
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
    // Every configured instance to begin with; the supervisor narrows it to the ready ones
    // (`write_upstreams`) once the gateway runs.
    let upstreams = upstreams_path(&ctx.home);
    std::fs::write(
        &upstreams,
        render_upstreams(|service| {
            (0..service.replicas(&ctx.home))
                .map(|instance| service.instance_port(&ctx.home, instance))
                .collect()
        }),
    )?;
    context.insert("upstreams_conf", &upstreams);
    context.insert("internals", &internals(&ctx.home));
    context.insert("gateway_spans_port", &ports.gateway_spans);
    context.insert(
        "trace_sample_percent",
        &ctx.home.marker.trace_sample_percent,
    );
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
    let apps = super::apps::of(&ctx.home)
        .into_iter()
        .map(|app| {
            Ok(AppHost {
                name: app.as_str(),
                host: format!("{}.local.test", app.as_str()),
                upstream: app.database(),
                port: app.port(&ctx.home)?,
            })
        })
        .collect::<anyhow::Result<Vec<AppHost>>>()?;
    context.insert("apps", &apps);
    context.insert(
        "registry_port",
        &ctx.home.marker.delivery.then_some(ports.registry),
    );
    context.insert(
        "git",
        &ctx.home
            .marker
            .delivery
            .then(|| GitServer::of(&ctx.home, &ctx.secrets)),
    );
    context.insert(
        "ci",
        &ctx.home
            .marker
            .delivery
            .then(|| CiServer::of(&ctx.home, &ctx.secrets)),
    );
    context.insert("sign_in_port", &ports.sign_in);
    context.insert("operations", &operations(&ctx.home));
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
    run_to_log(ctx, ComponentName::Gateway, 0, &mut check).await
}

fn upstreams_path(home: &Home) -> PathBuf {
    dir(home).join("upstreams.conf")
}

/// After one failed attempt an instance is skipped for this long (nginx's passive health
/// check; with one instance nginx never skips it).
const UPSTREAM_FAIL_TIMEOUT_S: u32 = 2;
/// Idle connections each nginx worker keeps open to each service.
const UPSTREAM_KEEPALIVE: u32 = 16;

/// The services' nginx upstreams with the given instance ports. A service with no instance
/// ready keeps every configured one: an upstream needs a server, and the 502 of a refused
/// connection becomes a 503 problem anyway.
fn render_upstreams(ports_of: impl Fn(Service) -> Vec<u16>) -> String {
    let mut text = String::from(
        "# Written by paytool's supervisor: the instances of each service that are ready.\n",
    );
    for service in Service::ALL {
        let ports = ports_of(service);
        assert!(!ports.is_empty(), "{service:?} has no instance to list");
        text.push_str(&format!("upstream {} {{\n", service.upstream()));
        for port in ports {
            text.push_str(&format!(
                "    server 127.0.0.1:{port} max_fails=1 fail_timeout={UPSTREAM_FAIL_TIMEOUT_S}s;\n"
            ));
        }
        text.push_str(&format!("    keepalive {UPSTREAM_KEEPALIVE};\n}}\n"));
    }
    text
}

/// Writes the upstreams with the instances that are ready (each service's configured
/// instances when none is), and says whether the file changed, in which case the running
/// nginx must be told (SIGHUP).
pub fn write_upstreams(
    home: &Home,
    ready: &std::collections::BTreeSet<(ComponentName, u8)>,
) -> anyhow::Result<bool> {
    let text = render_upstreams(|service| {
        let configured = 0..service.replicas(home);
        let ready: Vec<u16> = configured
            .clone()
            .filter(|instance| ready.contains(&(service.component_name(), *instance)))
            .map(|instance| service.instance_port(home, instance))
            .collect();
        if ready.is_empty() {
            configured
                .map(|instance| service.instance_port(home, instance))
                .collect()
        } else {
            ready
        }
    });
    let path = upstreams_path(home);
    if std::fs::read_to_string(&path).is_ok_and(|old| old == text) {
        return Ok(false);
    }
    crate::runtime::home::write_atomic(&path, text.as_bytes(), 0o644)?;
    Ok(true)
}

/// A scaffolded service's host on the gateway.
#[derive(Debug, serde::Serialize)]
struct AppHost {
    name: &'static str,
    host: String,
    /// The nginx upstream's name: `app_` and this (the name with underscores).
    upstream: String,
    port: u16,
}

/// One internal listener of the gateway: where the other services call this one.
#[derive(Debug, serde::Serialize)]
struct Internal {
    service: &'static str,
    upstream: &'static str,
    port: u16,
}

fn internals(home: &Home) -> Vec<Internal> {
    Service::ALL
        .into_iter()
        .map(|service| Internal {
            service: service.as_str(),
            upstream: service.upstream(),
            port: service.internal_port(home),
        })
        .collect()
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

/// One of the operators' web UIs: a gateway host behind the sign-in, and where it is.
#[derive(Debug, serde::Serialize)]
struct OperationsHost {
    host: String,
    what: &'static str,
    port: u16,
    /// Where `/` leads, when the UI's start page is not there.
    start: Option<&'static str>,
}

/// The operators' web UIs (components::sign_in::HOSTS), each behind the sign-in.
fn operations(home: &Home) -> Vec<OperationsHost> {
    let ports = home.ports();
    super::sign_in::HOSTS
        .iter()
        .map(|host| {
            let (what, port, start) = match *host {
                "logs" => (
                    "VictoriaLogs: every component's log",
                    ports.victorialogs,
                    Some("/select/vmui/"),
                ),
                "dashboards" => (
                    "the dashboards (Prometheus' consoles, observe::consoles) and Prometheus' own UI",
                    ports.prometheus,
                    Some("/consoles/index.html"),
                ),
                "traces" => (
                    "the trace viewer (paytool's agent, reading Jaeger)",
                    ports.traces,
                    None,
                ),
                other => unreachable!("no web UI is named {other}"),
            };
            OperationsHost {
                host: format!("{host}.local.test"),
                what,
                port,
                start,
            }
        })
        .collect()
}
