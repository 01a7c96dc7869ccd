//! Keycloak (keycloak-quarkus-dist from Maven Central), on PostgreSQL, behind the gateway at
//! `https://sso.local.test`, with the `paytool` realm imported from `stacks/`.
//!
//! Each installation runs from its own Keycloak home: a hard-linked copy of the cached, built
//! distribution. Keycloak writes into its home at run time (`data/`: temporary files,
//! transaction logs, the realm import directory), so two installations must not share one.

use super::{run_to_log, sign_in, ComponentName, Ctx, Spec};
use crate::runtime::home::{Home, Secrets};
use crate::runtime::probe::Probe;
use anyhow::Context;
use nix::sys::signal::Signal;
use std::path::{Path, PathBuf};

pub const REALM: &str = "paytool";
pub const ADMIN_USER: &str = "admin";
const REALM_TEMPLATE: &str = "stacks/local/keycloak/realm-paytool.json.tera";
/// Marker the setup step leaves in a built distribution; its content is the version.
const BUILT_STAMP: &str = ".paytool-built";

fn home_dir(ctx: &Ctx) -> PathBuf {
    ctx.home
        .component_dir(ComponentName::Keycloak.as_str())
        .join("home")
}

super::engine_component!(
    /// Keycloak with the `paytool` realm.
    Keycloak, Keycloak, prepare = prepare, after_ready = after_ready
);

fn probe(home: &Home, _secrets: &Secrets) -> Probe {
    super::http_probe(format!(
        "http://127.0.0.1:{}/health/ready",
        home.ports().keycloak_management
    ))
}

fn spec(ctx: &Ctx) -> anyhow::Result<Spec> {
    let ports = ctx.home.ports();
    let home = home_dir(ctx);
    let args = vec![
        "start".to_string(),
        "--optimized".to_string(),
        "--import-realm".to_string(),
        "--http-enabled=true".to_string(),
        "--http-host=127.0.0.1".to_string(),
        format!("--http-port={}", ports.keycloak),
        format!("--http-management-port={}", ports.keycloak_management),
        // Browsers and tokens see the gateway's URL; services may call Keycloak directly.
        format!("--hostname={}", ports.public_url("sso")),
        "--hostname-backchannel-dynamic=true".to_string(),
        "--proxy-headers=xforwarded".to_string(),
        // One node: without this Keycloak opens cluster ports (7800, 57800) on every interface
        // to look for peers, even after a build with the same option.
        "--cache=local".to_string(),
        format!(
            "--db-url=jdbc:postgresql://127.0.0.1:{}/keycloak",
            ports.postgres
        ),
        "--db-username=keycloak".to_string(),
        "--db-pool-max-size=20".to_string(),
    ];
    Ok(Spec {
        name: ComponentName::Keycloak,
        instance: 0,
        program: home.join("bin/kc.sh"),
        args,
        env: vec![
            (
                "JAVA_HOME".into(),
                ctx.tools.keycloak_java_home.display().to_string(),
            ),
            ("JAVA_OPTS_KC_HEAP".into(), "-Xms128m -Xmx768m".into()),
            // Java 25 prints an IllegalAccessError at every shutdown without the first flag; the
            // temporary files stay inside the installation.
            (
                "JAVA_OPTS_APPEND".into(),
                format!(
                    "--add-opens=java.base/java.lang=ALL-UNNAMED --sun-misc-unsafe-memory-access=allow -Djava.io.tmpdir={}",
                    home.join("data/tmp").display()
                ),
            ),
            // Secrets by environment, not argv: argv is world-readable in /proc.
            ("KC_DB_PASSWORD".into(), ctx.secrets.db_keycloak.clone()),
            ("KC_BOOTSTRAP_ADMIN_USERNAME".into(), ADMIN_USER.into()),
            (
                "KC_BOOTSTRAP_ADMIN_PASSWORD".into(),
                ctx.secrets.keycloak_admin.clone(),
            ),
        ],
        cwd: home,
        run_as: None,
        ports: vec![
            ("http", ports.keycloak),
            ("management", ports.keycloak_management),
        ],
        urls: vec![
            ports.public_url("sso"),
            format!("http://127.0.0.1:{}", ports.keycloak),
        ],
        probe: probe(&ctx.home, &ctx.secrets),
        // The first start creates the schema and imports the realm: slow on two cores.
        ready_timeout_ms: 300_000,
        stop_signal: Signal::SIGTERM,
        stop_timeout_ms: 30_000,
    })
}

async fn prepare(ctx: &Ctx) -> anyhow::Result<()> {
    let home = home_dir(ctx);
    let cached = &ctx.tools.keycloak_home;
    let wanted = std::fs::read_to_string(cached.join(BUILT_STAMP)).with_context(|| {
        format!(
            "Keycloak is not set up in {}: run `paytool setup`",
            cached.display()
        )
    })?;
    let have = std::fs::read_to_string(home.join(BUILT_STAMP)).unwrap_or_default();
    if have != wanted {
        if home.exists() {
            std::fs::remove_dir_all(&home)?;
        }
        std::fs::create_dir_all(home.parent().context("keycloak dir")?)?;
        copy_tree(ctx, cached, &home).await?;
        // The copy's data/ is this installation's alone.
        let _ = std::fs::remove_dir_all(home.join("data"));
    }
    let import = home.join("data/import");
    std::fs::create_dir_all(&import)?;
    std::fs::create_dir_all(home.join("data/tmp"))?;
    let secrets = RealmSecrets {
        merchant_dashboard: &ctx.secrets.client_merchant_dashboard,
        wallet_web: &ctx.secrets.client_wallet_web,
        consumer_api: &ctx.secrets.client_consumer_api,
        merchant_api: &ctx.secrets.client_merchant_api,
        orchestrator: &ctx.secrets.client_orchestrator,
        operator: &ctx.secrets.client_operator,
        operations: &sign_in::client_secret(&ctx.secrets),
        operator_password: &sign_in::password(&ctx.secrets),
    };
    let realm = realm(&ctx.project, &ctx.home.ports().https_suffix(), &secrets)?;
    crate::runtime::home::write_atomic(
        &import.join("realm-paytool.json"),
        realm.as_bytes(),
        0o600,
    )?;
    Ok(())
}

/// The realm's client secrets, as the import file carries them.
pub struct RealmSecrets<'a> {
    pub merchant_dashboard: &'a str,
    pub wallet_web: &'a str,
    pub consumer_api: &'a str,
    pub merchant_api: &'a str,
    pub orchestrator: &'a str,
    pub operator: &'a str,
    /// The sign-in proxy's client (`operations`), and the `operator` account's password.
    pub operations: &'a str,
    pub operator_password: &'a str,
}

/// The `paytool` realm's import file, from the one template both runtimes use: the local one
/// with this installation's secrets and gateway port, the kind one with Keycloak's `${ENV}`
/// placeholders (resolved from the pod's environment at import) and the standard port.
pub fn realm(
    project: &Path,
    public_url_suffix: &str,
    secrets: &RealmSecrets<'_>,
) -> anyhow::Result<String> {
    let mut context = tera::Context::new();
    context.insert("public_url_suffix", public_url_suffix);
    context.insert("secret_merchant_dashboard", secrets.merchant_dashboard);
    context.insert("secret_wallet_web", secrets.wallet_web);
    context.insert("secret_consumer_api", secrets.consumer_api);
    context.insert("secret_merchant_api", secrets.merchant_api);
    context.insert("secret_orchestrator", secrets.orchestrator);
    context.insert("secret_operator", secrets.operator);
    context.insert("secret_operations", secrets.operations);
    context.insert("operator_password", secrets.operator_password);
    context.insert("operations_hosts", sign_in::REALM_HOSTS);
    let path = project.join(REALM_TEMPLATE);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read the template {}", path.display()))?;
    let realm = tera::Tera::one_off(&text, &context, false)
        .map_err(|e| anyhow::anyhow!("cannot render {}: {e:?}", path.display()))?;
    // Fail here, with the file named, rather than deep inside Keycloak's import.
    serde_json::from_str::<serde_json::Value>(&realm)
        .with_context(|| format!("{} does not render to JSON", path.display()))?;
    Ok(realm)
}

/// Hard links where the file system allows (instant, no space), a copy otherwise.
async fn copy_tree(ctx: &Ctx, from: &Path, to: &Path) -> anyhow::Result<()> {
    let mut link = tokio::process::Command::new("cp");
    link.arg("-al").arg(from).arg(to);
    if run_to_log(ctx, ComponentName::Keycloak, 0, &mut link)
        .await
        .is_ok()
    {
        return Ok(());
    }
    let _ = std::fs::remove_dir_all(to);
    let mut copy = tokio::process::Command::new("cp");
    copy.arg("-a").arg(from).arg(to);
    run_to_log(ctx, ComponentName::Keycloak, 0, &mut copy).await
}

/// The realm's clients that `paytool up` makes after the import, with their secrets: each
/// scaffolded service's, and with local delivery the git and CI servers' (whose tokens the
/// gateway takes for them).
pub fn made_clients(home: &Home, secrets: &Secrets) -> Vec<(String, String)> {
    let mut clients: Vec<(String, String)> = super::apps::of(home)
        .into_iter()
        .map(|app| (app.as_str().to_string(), app.client_secret(secrets)))
        .collect();
    if home.marker.delivery {
        clients.push((
            super::git::CLIENT.to_string(),
            super::git::client_secret(secrets),
        ));
        clients.push((
            super::ci::CLIENT.to_string(),
            super::ci::client_secret(secrets),
        ));
    }
    clients
}

/// Ready is not enough: the realm must have been imported and must answer. Then every
/// scaffolded service gets its client (the import ran once, when the installation was made, so
/// a service scaffolded later cannot come through it).
async fn after_ready(ctx: &Ctx) -> anyhow::Result<()> {
    let url = format!(
        "http://127.0.0.1:{}/realms/{REALM}/.well-known/openid-configuration",
        ctx.home.ports().keycloak
    );
    let client = crate::runtime::probe::http_client(None, None)?;
    let response = client.get(&url).send().await?;
    anyhow::ensure!(
        response.status().is_success(),
        "the realm {REALM} is missing ({url} answered {})",
        response.status()
    );
    // The operators' sign-in (components::sign_in) needs its client, its role and the account
    // that has it: the realm's import makes them on installations made since they exist, so a
    // start asks first, without signing in as the admin, whether the client is there (its
    // authorization endpoint knows the client and where it may return to).
    let operations_missing = !operations_client_answers(&client, &ctx.home).await;
    let clients = made_clients(&ctx.home, &ctx.secrets);
    if clients.is_empty() && !operations_missing {
        return Ok(());
    }
    // The admin's first token hashes its password: slow on a loaded machine, so its own bound.
    let admin_http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(ADMIN_TIMEOUT_MS))
        .build()?;
    let admin = RealmAdmin::sign_in(&admin_http, &ctx.home, &ctx.secrets).await?;
    for (client_id, secret) in clients {
        admin
            .ensure_service_client(&client_id, &secret)
            .await
            .with_context(|| format!("the Keycloak client {client_id}"))?;
    }
    if !operations_missing {
        return Ok(());
    }
    admin
        .ensure_browser_client(
            sign_in::CLIENT,
            &sign_in::client_secret(&ctx.secrets),
            &sign_in::redirect_uris(&ctx.home),
        )
        .await
        .with_context(|| format!("the Keycloak client {}", sign_in::CLIENT))?;
    admin
        .ensure_user_with_role(
            sign_in::USER,
            &sign_in::password(&ctx.secrets),
            sign_in::ROLE,
        )
        .await
        .with_context(|| format!("the Keycloak user {}", sign_in::USER))?;
    Ok(())
}

/// One call of Keycloak's admin API (the first signs in: a password hash).
const ADMIN_TIMEOUT_MS: u64 = 30_000;

/// Whether the realm has the operators' client with this installation's return addresses:
/// Keycloak's authorization endpoint answers its sign-in page (200) for a known client and a
/// return address it allows, and refuses (400) anything else.
async fn operations_client_answers(client: &reqwest::Client, home: &Home) -> bool {
    let Some(redirect) = sign_in::redirect_uris(home).into_iter().next() else {
        return false;
    };
    let url = format!(
        "http://127.0.0.1:{}/realms/{REALM}/protocol/openid-connect/auth",
        home.ports().keycloak
    );
    client
        .get(&url)
        .query(&[
            ("client_id", sign_in::CLIENT),
            ("redirect_uri", redirect.as_str()),
            ("response_type", "code"),
            ("scope", "openid"),
        ])
        .send()
        .await
        .is_ok_and(|answer| answer.status() == reqwest::StatusCode::OK)
}

/// The realm's clients, administered as Keycloak's bootstrap admin (the master realm's
/// `admin-cli`), on the loopback port.
struct RealmAdmin<'a> {
    http: &'a reqwest::Client,
    base_url: String,
    token: String,
}

impl<'a> RealmAdmin<'a> {
    async fn sign_in(
        http: &'a reqwest::Client,
        home: &Home,
        secrets: &Secrets,
    ) -> anyhow::Result<RealmAdmin<'a>> {
        let base_url = format!("http://127.0.0.1:{}", home.ports().keycloak);
        let answer = http
            .post(format!(
                "{base_url}/realms/master/protocol/openid-connect/token"
            ))
            .form(&[
                ("grant_type", "password"),
                ("client_id", "admin-cli"),
                ("username", ADMIN_USER),
                ("password", secrets.keycloak_admin.as_str()),
            ])
            .send()
            .await?;
        let status = answer.status();
        anyhow::ensure!(
            status.is_success(),
            "Keycloak refused its admin's credentials ({status})"
        );
        let body: serde_json::Value = answer.json().await?;
        let token = body["access_token"]
            .as_str()
            .context("Keycloak answered the admin without an access token")?
            .to_string();
        Ok(RealmAdmin {
            http,
            base_url,
            token,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/admin/realms/{REALM}{path}", self.base_url)
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let answer = request.bearer_auth(&self.token).send().await?;
        let status = answer.status();
        if status.is_success() {
            return Ok(answer);
        }
        let body = answer.text().await.unwrap_or_default();
        anyhow::bail!(
            "Keycloak's admin API answered {status}: {}",
            body.chars().take(200).collect::<String>()
        )
    }

    async fn find_client(&self, client_id: &str) -> anyhow::Result<Option<serde_json::Value>> {
        let found: Vec<serde_json::Value> = self
            .send(
                self.http
                    .get(self.url("/clients"))
                    .query(&[("clientId", client_id)]),
            )
            .await?
            .json()
            .await?;
        Ok(found.into_iter().find(|c| c["clientId"] == client_id))
    }

    /// A confidential client for a service: client credentials only (no browser flows), with
    /// `secret`, whose tokens carry the service itself as an audience, so that its own account
    /// (and the tests and tools that use it) can call it. Idempotent: made if missing, its secret
    /// and audience put right if they drifted.
    async fn ensure_service_client(&self, client_id: &str, secret: &str) -> anyhow::Result<()> {
        let mapper = serde_json::json!({
            "name": format!("audience {client_id}"),
            "protocol": "openid-connect",
            "protocolMapper": "oidc-audience-mapper",
            "config": {
                "included.client.audience": client_id,
                "access.token.claim": "true",
                "id.token.claim": "false"
            }
        });
        let wanted = serde_json::json!({
            "clientId": client_id,
            "name": client_id,
            "enabled": true,
            "protocol": "openid-connect",
            "publicClient": false,
            "clientAuthenticatorType": "client-secret",
            "secret": secret,
            "serviceAccountsEnabled": true,
            "standardFlowEnabled": false,
            "implicitFlowEnabled": false,
            "directAccessGrantsEnabled": false,
            "protocolMappers": [mapper.clone()]
        });
        let Some(existing) = self.upsert_client(wanted).await? else {
            return Ok(());
        };
        let id = existing["id"].as_str().context("a client without an id")?;
        let has_mapper = existing["protocolMappers"]
            .as_array()
            .is_some_and(|all| all.iter().any(|m| m["name"] == mapper["name"]));
        if !has_mapper {
            self.send(
                self.http
                    .post(self.url(&format!("/clients/{id}/protocol-mappers/models")))
                    .json(&mapper),
            )
            .await?;
        }
        Ok(())
    }
}

impl RealmAdmin<'_> {
    /// A confidential client for a browser's sign-in (the authorization code flow with PKCE)
    /// that returns only to `redirect_uris`. Idempotent: made if missing, put right if not.
    async fn ensure_browser_client(
        &self,
        client_id: &str,
        secret: &str,
        redirect_uris: &[String],
    ) -> anyhow::Result<()> {
        let origins: Vec<String> = redirect_uris
            .iter()
            .filter_map(|uri| uri.strip_suffix("/oauth2/callback").map(str::to_string))
            .collect();
        let wanted = serde_json::json!({
            "clientId": client_id,
            "name": client_id,
            "enabled": true,
            "protocol": "openid-connect",
            "publicClient": false,
            "clientAuthenticatorType": "client-secret",
            "secret": secret,
            "standardFlowEnabled": true,
            "implicitFlowEnabled": false,
            "directAccessGrantsEnabled": false,
            "serviceAccountsEnabled": false,
            "redirectUris": redirect_uris,
            "webOrigins": origins,
            "attributes": { "pkce.code.challenge.method": "S256" }
        });
        self.upsert_client(wanted).await?;
        Ok(())
    }

    /// Makes the client `wanted` describes, or puts the one of its `clientId` right; an update
    /// leaves the client's protocol mappers alone, so they are not part of it. Answers the
    /// client as it was, when there was one.
    async fn upsert_client(
        &self,
        mut wanted: serde_json::Value,
    ) -> anyhow::Result<Option<serde_json::Value>> {
        let client_id = wanted["clientId"]
            .as_str()
            .context("a client without a clientId")?
            .to_string();
        let Some(existing) = self.find_client(&client_id).await? else {
            self.send(self.http.post(self.url("/clients")).json(&wanted))
                .await?;
            return Ok(None);
        };
        let id = existing["id"]
            .as_str()
            .context("a client without an id")?
            .to_string();
        if let Some(fields) = wanted.as_object_mut() {
            fields.remove("protocolMappers");
            fields.insert("id".into(), serde_json::Value::String(id.clone()));
        }
        self.send(
            self.http
                .put(self.url(&format!("/clients/{id}")))
                .json(&wanted),
        )
        .await?;
        Ok(Some(existing))
    }

    /// A realm role, and a person's account that has it, signing in with `password`.
    /// Idempotent: the password is set again at each start (it is derived from the
    /// installation's secrets, so it stays the same).
    async fn ensure_user_with_role(
        &self,
        username: &str,
        password: &str,
        role: &str,
    ) -> anyhow::Result<()> {
        let role_url = self.url(&format!("/roles/{role}"));
        let found = self
            .http
            .get(&role_url)
            .bearer_auth(&self.token)
            .send()
            .await?;
        if found.status() == reqwest::StatusCode::NOT_FOUND {
            self.send(self.http.post(self.url("/roles")).json(&serde_json::json!({
                "name": role,
                "description": "Sees the operators' web UIs: logs, dashboards, traces"
            })))
            .await?;
        }
        let role_representation: serde_json::Value =
            self.send(self.http.get(&role_url)).await?.json().await?;
        let find = || async {
            let users: Vec<serde_json::Value> = self
                .send(
                    self.http
                        .get(self.url("/users"))
                        .query(&[("username", username), ("exact", "true")]),
                )
                .await?
                .json()
                .await?;
            anyhow::Ok(users.into_iter().next())
        };
        let user = match find().await? {
            Some(user) => user,
            None => {
                // Every field Keycloak's user profile asks for, so that the first sign-in goes
                // straight through instead of asking the person to complete a profile.
                self.send(self.http.post(self.url("/users")).json(&serde_json::json!({
                    "username": username,
                    "enabled": true,
                    "email": format!("{username}@paytool.local.test"),
                    "emailVerified": true,
                    "firstName": "Platform",
                    "lastName": "Operator",
                    "requiredActions": []
                })))
                .await?;
                find().await?.context("the user made is not found")?
            }
        };
        let id = user["id"].as_str().context("a user without an id")?;
        self.send(
            self.http
                .put(self.url(&format!("/users/{id}/reset-password")))
                .json(&serde_json::json!({
                    "type": "password",
                    "value": password,
                    "temporary": false
                })),
        )
        .await?;
        self.send(
            self.http
                .post(self.url(&format!("/users/{id}/role-mappings/realm")))
                .json(&serde_json::json!([role_representation])),
        )
        .await?;
        Ok(())
    }
}

/// An access token for one of the realm's confidential clients (client credentials), from
/// Keycloak's loopback port: how paytool calls the services' internal and admin endpoints.
pub async fn client_token(
    http: &reqwest::Client,
    home: &Home,
    client_id: &str,
    secret: &str,
) -> anyhow::Result<String> {
    let answer = http
        .post(format!(
            "http://127.0.0.1:{}/realms/{REALM}/protocol/openid-connect/token",
            home.ports().keycloak
        ))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", secret),
        ])
        .send()
        .await?;
    let status = answer.status();
    anyhow::ensure!(
        status.is_success(),
        "Keycloak refused {client_id}'s credentials ({status}); is the realm from this installation? (`paytool down --purge` then `up` makes it anew)"
    );
    let body: serde_json::Value = answer.json().await?;
    body["access_token"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("Keycloak answered without an access token"))
}
