//! The image registry of local delivery (`paytool up --delivery`): CNCF Distribution v3, built
//! from source by scripts/install-registry.sh, on loopback, behind the gateway over TLS at
//! `https://registry.local.test`. Images are stored on the file system under the installation;
//! every request needs the installation's registry credentials (htpasswd, bcrypt), which
//! `paytool status --json --show-secrets` shows and `paytool images push` uses.

use super::{http_probe, render, ComponentName, Ctx, Spec};
use crate::runtime::home::{derive, Home, Secrets};
use crate::runtime::probe::Probe;
use nix::sys::signal::Signal;
use std::path::PathBuf;

const TEMPLATE: &str = "stacks/local/registry/config.yml.tera";
/// The one user of an installation's registry.
pub const USER: &str = "paytool";
/// bcrypt's cost for the stored hash: the registry checks it at every request that brings the
/// password (each push and pull starts with one), so a high cost is paid on every image
/// operation; 10 is bcrypt's usual default.
const BCRYPT_COST: u32 = 10;

super::engine_component!(
    /// The image registry.
    Registry, Registry, prepare = prepare
);

fn dir(home: &Home) -> PathBuf {
    home.component_dir(ComponentName::Registry.as_str())
}

/// The registry's password, derived from the installation's Keycloak admin password: nothing
/// new is kept, and it says nothing of the admin's.
pub fn password(secrets: &Secrets) -> String {
    derive(&secrets.keycloak_admin, "registry:paytool")
}

/// Its API on loopback (`/v2/`), for tools on this machine that do not go through the gateway.
pub fn url(home: &Home) -> String {
    format!("http://127.0.0.1:{}", home.ports().registry)
}

/// The debug server's health check: the storage driver answers.
fn probe(home: &Home, _secrets: &Secrets) -> Probe {
    http_probe(format!(
        "http://127.0.0.1:{}/debug/health",
        home.ports().registry_debug
    ))
}

fn spec(ctx: &Ctx) -> anyhow::Result<Spec> {
    let ports = ctx.home.ports();
    let mut env = vec![
        // Its own traces go to the collector like the services' (distribution v3 reads the
        // standard OpenTelemetry variables).
        ("OTEL_SERVICE_NAME".to_string(), "registry".to_string()),
    ];
    env.extend(
        super::services::telemetry_env(&ctx.home)
            .into_iter()
            .filter(|(name, _)| name.starts_with("OTEL_")),
    );
    Ok(Spec {
        name: ComponentName::Registry,
        instance: 0,
        program: ctx.tools.registry.clone(),
        args: vec![
            "serve".into(),
            dir(&ctx.home).join("config.yml").display().to_string(),
        ],
        env,
        cwd: dir(&ctx.home),
        run_as: None,
        ports: vec![("api", ports.registry), ("debug", ports.registry_debug)],
        urls: vec![ctx.home.ports().public_url("registry"), url(&ctx.home)],
        probe: probe(&ctx.home, &ctx.secrets),
        ready_timeout_ms: 30_000,
        // In-flight uploads finish (its graceful shutdown), then it exits.
        stop_signal: Signal::SIGTERM,
        stop_timeout_ms: 10_000,
    })
}

/// The registry's htpasswd file: its one user with the derived password, bcrypt-hashed with
/// a new salt each time (the file is remade rather than compared). The kind runtime's
/// registry reads the same, from the secret store.
pub fn htpasswd_line(secrets: &Secrets) -> anyhow::Result<String> {
    let hash = bcrypt::hash(password(secrets), BCRYPT_COST)?;
    Ok(format!("{USER}:{hash}\n"))
}

async fn prepare(ctx: &Ctx) -> anyhow::Result<()> {
    let dir = dir(&ctx.home);
    let storage = dir.join("storage");
    std::fs::create_dir_all(&storage)?;
    let htpasswd = dir.join("htpasswd");
    crate::runtime::home::write_atomic(&htpasswd, htpasswd_line(&ctx.secrets)?.as_bytes(), 0o600)?;
    let ports = ctx.home.ports();
    let mut context = tera::Context::new();
    context.insert("storage", &storage);
    context.insert("htpasswd", &htpasswd);
    context.insert("port", &ports.registry);
    context.insert("debug_port", &ports.registry_debug);
    // Signs the state of an upload between requests: one registry, so any stable secret.
    context.insert(
        "secret",
        &derive(&ctx.secrets.keycloak_admin, "registry:http"),
    );
    let config = render(ctx, TEMPLATE, &context)?;
    crate::runtime::home::write_atomic(&dir.join("config.yml"), config.as_bytes(), 0o600)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_install_script_pins_the_version_setup_expects() {
        let script = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/install-registry.sh"),
        )
        .expect("the script");
        assert!(script.contains(&format!(
            "VERSION=v{}\n",
            crate::runtime::setup::REGISTRY_VERSION
        )));
    }

    #[test]
    fn the_password_is_derived_stable_and_not_the_admins() {
        let secrets = Secrets::generate();
        let password = password(&secrets);
        assert_eq!(password, super::password(&secrets));
        assert_ne!(password, secrets.keycloak_admin);
        assert_eq!(password.len(), 32);
        let hash = bcrypt::hash(&password, 4).expect("bcrypt");
        assert!(bcrypt::verify(&password, &hash).expect("verify"));
        assert!(!bcrypt::verify("not-it", &hash).expect("verify"));
    }
}
