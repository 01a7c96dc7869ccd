//! Toxiproxy (`paytool up --chaos`): a TCP proxy per route between a service and what it
//! calls, where `paytool chaos` adds latency, a bandwidth cap, timeouts, resets, slow closes or
//! a cut (docs/chaos.md). This kernel has no netem: the network's faults are made here.
//!
//! A route is one (caller → destination) pair: each service to PostgreSQL and to Keycloak, and
//! the calls between services (which go to the gateway's internal listeners, so a route's
//! upstream is that listener and a fault on it hits every instance of the callee). Every
//! instance of a caller shares its route. Kafka stays direct: its clients connect to the
//! addresses the broker advertises, not to the one they bootstrapped from, so a proxy in front
//! of it would carry only the first connection.
//!
//! The proxies are made through Toxiproxy's HTTP API once it answers (`/populate`, which leaves
//! a proxy that is already as wanted alone): again after every restart, since Toxiproxy keeps
//! them in memory only. Without `--chaos` nothing runs and the services call directly.

use super::services::Service;
use super::{http_probe, Component, ComponentName, Ctx, Spec, Step};
use crate::runtime::home::{Home, Secrets};
use crate::runtime::ports::TOXIPROXY_ROUTES;
use crate::runtime::probe::Probe;
use anyhow::Context;
use nix::sys::signal::Signal;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::time::Duration;

/// A call to Toxiproxy's API (on loopback, answering from memory) that takes longer than this
/// is stuck.
const API_TIMEOUT_MS: u64 = 5_000;
/// Toxiproxy starts in well under a second; a start that takes longer is broken.
const READY_TIMEOUT_MS: u64 = 30_000;
/// It closes its listeners and exits at once on SIGTERM.
const STOP_TIMEOUT_MS: u64 = 5_000;

/// What a service calls through Toxiproxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Destination {
    Postgres,
    Keycloak,
    Orchestrator,
    ConsumerApi,
    MerchantApi,
}

impl Destination {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Keycloak => "keycloak",
            Self::Orchestrator => "orchestrator",
            Self::ConsumerApi => "consumer-api",
            Self::MerchantApi => "merchant-api",
        }
    }

    /// Where it listens for its callers: PostgreSQL's port (HAProxy's with `--ha`), Keycloak's,
    /// or the gateway's internal listener of a service.
    pub fn port(self, home: &Home) -> u16 {
        let ports = home.ports();
        match self {
            Self::Postgres => ports.postgres,
            Self::Keycloak => ports.keycloak,
            Self::Orchestrator => Service::Orchestrator.internal_port(home),
            Self::ConsumerApi => Service::ConsumerApi.internal_port(home),
            Self::MerchantApi => Service::MerchantApi.internal_port(home),
        }
    }
}

/// One caller → destination pair, with its proxy's name in Toxiproxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub from: Service,
    pub to: Destination,
    pub name: &'static str,
}

const fn route(from: Service, to: Destination, name: &'static str) -> Route {
    Route { from, to, name }
}

/// Every route, in the order of their ports (`Ports::toxiproxy_route`): appending keeps the
/// ports of an installation; reordering moves them.
pub const ROUTES: [Route; TOXIPROXY_ROUTES as usize] = [
    route(
        Service::Orchestrator,
        Destination::Postgres,
        "orchestrator-to-postgres",
    ),
    route(
        Service::Orchestrator,
        Destination::Keycloak,
        "orchestrator-to-keycloak",
    ),
    route(
        Service::ConsumerApi,
        Destination::Postgres,
        "consumer-api-to-postgres",
    ),
    route(
        Service::ConsumerApi,
        Destination::Keycloak,
        "consumer-api-to-keycloak",
    ),
    route(
        Service::ConsumerApi,
        Destination::Orchestrator,
        "consumer-api-to-orchestrator",
    ),
    route(
        Service::ConsumerApi,
        Destination::MerchantApi,
        "consumer-api-to-merchant-api",
    ),
    route(
        Service::MerchantApi,
        Destination::Postgres,
        "merchant-api-to-postgres",
    ),
    route(
        Service::MerchantApi,
        Destination::Keycloak,
        "merchant-api-to-keycloak",
    ),
    route(
        Service::MerchantApi,
        Destination::Orchestrator,
        "merchant-api-to-orchestrator",
    ),
    route(
        Service::MerchantApi,
        Destination::ConsumerApi,
        "merchant-api-to-consumer-api",
    ),
];

impl Route {
    /// The route from a service to a destination, if that service calls it.
    pub fn find(from: Service, to: Destination) -> Option<&'static Route> {
        ROUTES.iter().find(|r| r.from == from && r.to == to)
    }

    /// Its place in `ROUTES`, which is its port's offset.
    pub fn index(&self) -> u16 {
        let index = ROUTES.iter().position(|r| r == self).unwrap_or_default();
        u16::try_from(index).unwrap_or_default()
    }

    /// The proxy's port: where the caller connects with `--chaos`.
    pub fn listen_port(&self, home: &Home) -> u16 {
        home.ports().toxiproxy_route(self.index())
    }

    /// The destinations a service calls, said in one line for an error.
    pub fn of(from: Service) -> String {
        ROUTES
            .iter()
            .filter(|r| r.from == from)
            .map(|r| r.to.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The port a service reaches a destination at: its route's proxy with `--chaos`, else the
/// destination itself.
pub fn reach(home: &Home, from: Service, to: Destination) -> u16 {
    match Route::find(from, to) {
        Some(route) if home.marker.chaos => route.listen_port(home),
        _ => to.port(home),
    }
}

pub fn api_url(home: &Home) -> String {
    format!("http://127.0.0.1:{}", home.ports().toxiproxy_api)
}

pub struct Toxiproxy;

impl Component for Toxiproxy {
    fn name(&self) -> ComponentName {
        ComponentName::Toxiproxy
    }

    fn spec(&self, ctx: &Ctx) -> anyhow::Result<Spec> {
        let ports = ctx.home.ports();
        let mut named = vec![("api", ports.toxiproxy_api)];
        named.extend(ROUTES.iter().map(|r| (r.name, r.listen_port(&ctx.home))));
        Ok(Spec {
            name: ComponentName::Toxiproxy,
            instance: 0,
            program: ctx.tools.toxiproxy.clone(),
            args: [
                "-host",
                "127.0.0.1",
                "-port",
                &ports.toxiproxy_api.to_string(),
            ]
            .map(str::to_string)
            .to_vec(),
            env: Vec::new(),
            cwd: ctx.home.dir.clone(),
            run_as: None,
            ports: named,
            urls: vec![api_url(&ctx.home)],
            probe: self.probe(&ctx.home, &ctx.secrets),
            ready_timeout_ms: READY_TIMEOUT_MS,
            stop_signal: Signal::SIGTERM,
            stop_timeout_ms: STOP_TIMEOUT_MS,
        })
    }

    fn specs(&self, ctx: &Ctx) -> anyhow::Result<Vec<Spec>> {
        if ctx.home.marker.chaos {
            Ok(vec![self.spec(ctx)?])
        } else {
            Ok(Vec::new())
        }
    }

    fn probe(&self, home: &Home, _secrets: &Secrets) -> Probe {
        http_probe(format!("{}/version", api_url(home)))
    }

    fn after_ready<'a>(&'a self, ctx: &'a Ctx) -> Step<'a> {
        Box::pin(async move { Api::new(&ctx.home)?.populate(&ctx.home).await })
    }
}

/// A toxic's kind, as Toxiproxy names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ToxicKind {
    Latency,
    Bandwidth,
    Timeout,
    ResetPeer,
    SlowClose,
}

/// Which way the data a toxic acts on flows: to the destination, or back to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Stream {
    Upstream,
    Downstream,
}

impl Stream {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Upstream => "upstream",
            Self::Downstream => "downstream",
        }
    }
}

/// One toxic on a proxy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Toxic {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ToxicKind,
    pub stream: Stream,
    /// 1.0: every connection.
    pub toxicity: f32,
    pub attributes: Value,
}

/// Toxiproxy's HTTP API.
pub struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    pub fn new(home: &Home) -> anyhow::Result<Self> {
        Self::at(&api_url(home))
    }

    /// The API at a URL kept from earlier (a fault's undo).
    pub fn at(base: &str) -> anyhow::Result<Self> {
        Ok(Self {
            base: base.to_string(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_millis(API_TIMEOUT_MS))
                .build()?,
        })
    }

    async fn send(&self, request: reqwest::RequestBuilder, what: &str) -> anyhow::Result<Value> {
        let response = request
            .send()
            .await
            .with_context(|| format!("Toxiproxy at {} ({what})", self.base))?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        anyhow::ensure!(
            status.is_success(),
            "Toxiproxy answered {status} to {what}: {}",
            body.trim()
        );
        Ok(serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    /// Makes every route's proxy (enabled, toxics kept when it exists as wanted already).
    pub async fn populate(&self, home: &Home) -> anyhow::Result<()> {
        let proxies: Vec<Value> = ROUTES
            .iter()
            .map(|r| {
                json!({
                    "name": r.name,
                    "listen": format!("127.0.0.1:{}", r.listen_port(home)),
                    "upstream": format!("127.0.0.1:{}", r.to.port(home)),
                    "enabled": true,
                })
            })
            .collect();
        self.send(
            self.http
                .post(format!("{}/populate", self.base))
                .json(&proxies),
            "populate",
        )
        .await
        .map(|_| ())
    }

    pub async fn add_toxic(&self, proxy: &str, toxic: &Toxic) -> anyhow::Result<()> {
        self.send(
            self.http
                .post(format!("{}/proxies/{proxy}/toxics", self.base))
                .json(toxic),
            &format!("adding {} to {proxy}", toxic.name),
        )
        .await
        .map(|_| ())
    }

    /// Idempotent: a toxic that is gone (removed already, or Toxiproxy restarted) is fine.
    pub async fn remove_toxic(&self, proxy: &str, name: &str) -> anyhow::Result<()> {
        let response = self
            .http
            .delete(format!("{}/proxies/{proxy}/toxics/{name}", self.base))
            .send()
            .await
            .with_context(|| format!("Toxiproxy at {} (removing {name})", self.base))?;
        let status = response.status();
        anyhow::ensure!(
            status.is_success() || status == reqwest::StatusCode::NOT_FOUND,
            "Toxiproxy answered {status} to removing {name} from {proxy}"
        );
        Ok(())
    }

    /// A disabled proxy listens no more and has closed every connection: a cut.
    pub async fn set_enabled(&self, proxy: &str, enabled: bool) -> anyhow::Result<()> {
        self.send(
            self.http
                .post(format!("{}/proxies/{proxy}", self.base))
                .json(&json!({ "enabled": enabled })),
            &format!("{} {proxy}", if enabled { "enabling" } else { "disabling" }),
        )
        .await
        .map(|_| ())
    }

    /// The proxy as Toxiproxy shows it (`enabled`, `toxics`, …).
    pub async fn proxy(&self, proxy: &str) -> anyhow::Result<Value> {
        self.send(
            self.http.get(format!("{}/proxies/{proxy}", self.base)),
            &format!("showing {proxy}"),
        )
        .await
    }

    /// Every proxy enabled and every toxic removed.
    pub async fn reset(&self) -> anyhow::Result<()> {
        self.send(self.http.post(format!("{}/reset", self.base)), "reset")
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_named_after_its_pair_and_appears_once() {
        for (index, route) in ROUTES.iter().enumerate() {
            assert_eq!(
                route.name,
                format!("{}-to-{}", route.from.as_str(), route.to.as_str())
            );
            assert_eq!(usize::from(route.index()), index);
            assert_eq!(Route::find(route.from, route.to), Some(route));
        }
    }

    #[test]
    fn the_install_script_pins_the_version_setup_expects() {
        let script = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../scripts/install-toxiproxy.sh"),
        )
        .expect("the script");
        assert!(script.contains(&format!(
            "VERSION=v{}\n",
            crate::runtime::setup::TOXIPROXY_VERSION
        )));
    }
}
