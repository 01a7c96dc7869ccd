//! The ports an installation uses, chosen once and kept in its marker.
//!
//! Everything binds to loopback except the gateway. The gateway takes 443/80 where this process
//! may bind them, else 8443/8080. `PAYTOOL_PORT_BASE=N` moves every port to N..N+58 so that a
//! second installation (the test suite's, say) can run beside a developer's.
//!
//! Every default sits below Linux's ephemeral range (32768–60999): a port in that range can be
//! taken at any moment as the source port of some outgoing connection, and a start would then
//! fail with "address in use" for no reason a person could see.

use crate::support::exit::{fail, Code};
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ports {
    pub gateway_http: u16,
    pub gateway_https: u16,
    pub postgres: u16,
    pub kafka: u16,
    pub kafka_controller: u16,
    pub keycloak: u16,
    pub keycloak_management: u16,
    pub orchestrator: u16,
    pub consumer_api: u16,
    pub merchant_api: u16,
    /// Observability (base + 10 …): the collector's OTLP/HTTP receiver, health and Prometheus
    /// endpoint; Jaeger's OTLP/gRPC receiver and query API. Missing in markers written before
    /// they existed: filled in on load (see [`Ports::filled`]).
    #[serde(default)]
    pub otel_otlp_http: u16,
    #[serde(default)]
    pub otel_health: u16,
    #[serde(default)]
    pub otel_prometheus: u16,
    #[serde(default)]
    pub otel_telemetry: u16,
    #[serde(default)]
    pub jaeger_otlp_grpc: u16,
    #[serde(default)]
    pub jaeger_query: u16,
    #[serde(default)]
    pub jaeger_query_grpc: u16,
    #[serde(default)]
    pub jaeger_telemetry: u16,
    /// Metrics and alerts (base + 18 …): Prometheus, Alertmanager, the webhook receiver that
    /// keeps Alertmanager's notifications for `paytool alerts`, and the UDP port where the
    /// gateway's access log arrives to become spans.
    #[serde(default)]
    pub prometheus: u16,
    #[serde(default)]
    pub alertmanager: u16,
    #[serde(default)]
    pub alert_receiver: u16,
    #[serde(default)]
    pub gateway_spans: u16,
    /// Exporters (base + 22 …): PostgreSQL's (Debian's postgres_exporter) and the JMX
    /// exporter agent inside Kafka's JVM, both scraped by Prometheus.
    #[serde(default)]
    pub postgres_exporter: u16,
    #[serde(default)]
    pub kafka_metrics: u16,
    /// Calls between services (base + 24 …): the gateway listens here on loopback, in plain
    /// HTTP, and balances over the ready instances of each service, so that a caller never
    /// reaches an instance that is being drained (see docs/resilience.md).
    #[serde(default)]
    pub internal_orchestrator: u16,
    #[serde(default)]
    pub internal_consumer_api: u16,
    #[serde(default)]
    pub internal_merchant_api: u16,
    /// The first of the ports of the services' extra instances (base + 27 …): instance `i ≥ 1`
    /// of the service with index `s` listens at `replica_first + s·(REPLICAS_MAX−1) + i − 1`;
    /// instance 0 keeps the service's own port above.
    #[serde(default)]
    pub replica_first: u16,
    /// PostgreSQL's high availability (base + 36 …, `paytool up --ha`): etcd's client and peer
    /// ports, and each Patroni node's PostgreSQL and REST API. `postgres` above is then
    /// HAProxy, the stable address of whichever node is the primary.
    #[serde(default)]
    pub etcd_client: u16,
    #[serde(default)]
    pub etcd_peer: u16,
    #[serde(default)]
    pub patroni_postgres: [u16; 2],
    #[serde(default)]
    pub patroni_rest: [u16; 2],
    /// Kafka's second and third brokers (base + 42 …, `paytool up --kafka-brokers 3`): each
    /// one's client listener, controller listener and JMX exporter agent. The first broker
    /// keeps `kafka`, `kafka_controller` and `kafka_metrics` above.
    #[serde(default)]
    pub kafka_brokers: [u16; 2],
    #[serde(default)]
    pub kafka_controllers: [u16; 2],
    #[serde(default)]
    pub kafka_metrics_more: [u16; 2],
    /// Toxiproxy (base + 48 …, `paytool up --chaos`): its HTTP API, then one proxy per route
    /// of `toxiproxy::ROUTES` from `toxiproxy_first` on, in that order. Base + 42 … 47 are
    /// Kafka's further brokers.
    #[serde(default)]
    pub toxiproxy_api: u16,
    #[serde(default)]
    pub toxiproxy_first: u16,
    /// Services scaffolded into the project (base + 59 …, `paytool scaffold service`): one
    /// port each, [`APPS_MAX`] in all. A service's stamp keeps its port in the default
    /// installation (28401 …); every installation gives it the same place in its own range.
    #[serde(default)]
    pub app_first: u16,
    /// Local delivery (base + 67 …, `paytool up --delivery`): the image registry's HTTP API
    /// (behind the gateway at `registry.local.test`) and its debug server (health, metrics),
    /// then the CI server's web server (behind the gateway at `ci.local.test`) and the port its
    /// worker connects to.
    #[serde(default)]
    pub registry: u16,
    #[serde(default)]
    pub registry_debug: u16,
    #[serde(default)]
    pub ci_web: u16,
    #[serde(default)]
    pub ci_worker: u16,
    /// The operators' web UIs (base + 71 …): VictoriaLogs (every component's log, behind the
    /// gateway at `logs.local.test`), the sign-in proxy the gateway asks before any of them,
    /// and the dashboards (`dashboards.local.test`).
    #[serde(default)]
    pub victorialogs: u16,
    #[serde(default)]
    pub sign_in: u16,
    #[serde(default)]
    pub dashboards: u16,
    /// The trace viewer (paytool's agent; `traces.local.test`).
    #[serde(default)]
    pub traces: u16,
}

/// The most instances a service may run (`paytool up --replicas N`): every instance has its
/// port reserved in the installation's range.
pub const REPLICAS_MAX: u8 = 4;
/// Services whose extra instances have ports in the range: orchestrator, consumer-api,
/// merchant-api, in that order (the index `s` above).
const REPLICATED_SERVICES: u16 = 3;

pub const PORT_BASE_ENV: &str = "PAYTOOL_PORT_BASE";
/// The first port of Linux's default ephemeral range (net.ipv4.ip_local_port_range).
const EPHEMERAL_FIRST: u16 = 32768;
/// The most Kafka brokers an installation may run (`paytool up --kafka-brokers 3`): every
/// broker has its ports reserved in the installation's range.
pub const KAFKA_BROKERS_MAX: u8 = 3;
/// Routes through Toxiproxy: each service to PostgreSQL and to Keycloak, and the calls between
/// services (`toxiproxy::ROUTES`, which a test keeps this long).
pub const TOXIPROXY_ROUTES: u16 = 10;
/// The most scaffolded services a project may have: each has its port reserved in every
/// installation's range.
pub const APPS_MAX: u16 = 8;
/// The first scaffolded service's port in the default installation; a stamp's `port` is one of
/// `APP_PORTS`.
pub const APP_PORTS: std::ops::Range<u16> = 28401..28401 + APPS_MAX;
/// Local delivery's ports (`paytool up --delivery`): the registry's API and debug server, the
/// CI server's web server and worker port.
const DELIVERY_PORTS: u16 = 4;
/// The operators' web UIs: VictoriaLogs, the sign-in proxy, the dashboards (kept for a
/// dashboards server of their own), the trace viewer.
const OPERATOR_PORTS: u16 = 4;
/// How many ports from `PAYTOOL_PORT_BASE` an installation takes (base .. base + 74): 27
/// before the replicas, the replicas', 6 of PostgreSQL's HA, 3 per further Kafka broker,
/// Toxiproxy's API and its routes, the scaffolded services', local delivery's, then the
/// operators' web UIs.
const PORTS_PER_BASE: u16 = 27
    + REPLICATED_SERVICES * (REPLICAS_MAX as u16 - 1)
    + 6
    + 3 * (KAFKA_BROKERS_MAX as u16 - 1)
    + 1
    + TOXIPROXY_ROUTES
    + APPS_MAX
    + DELIVERY_PORTS
    + OPERATOR_PORTS;

impl Ports {
    pub fn plan() -> anyhow::Result<Self> {
        match std::env::var(PORT_BASE_ENV) {
            Ok(base) => {
                let base: u16 = base
                    .parse()
                    .ok()
                    .filter(|b| *b >= 1024 && *b <= EPHEMERAL_FIRST - PORTS_PER_BASE)
                    .ok_or_else(|| {
                        fail(
                            Code::PortTaken,
                            format!(
                                "{PORT_BASE_ENV}={base} is not a port between 1024 and {}: higher ports are handed out to outgoing connections",
                                EPHEMERAL_FIRST - PORTS_PER_BASE
                            ),
                        )
                    })?;
                Ok(Self::from_base(base))
            }
            Err(_) => {
                let privileged = can_bind(443) && can_bind(80);
                let (http, https) = if privileged { (80, 443) } else { (8080, 8443) };
                Ok(Self {
                    gateway_http: http,
                    gateway_https: https,
                    ..Self::from_base(0)
                })
            }
        }
    }

    /// Base 0 means the well-known defaults for everything but the gateway.
    pub fn from_base(base: u16) -> Self {
        if base == 0 {
            return Self {
                gateway_http: 8080,
                gateway_https: 8443,
                postgres: 25432,
                kafka: 29092,
                kafka_controller: 29093,
                keycloak: 28080,
                keycloak_management: 29000,
                orchestrator: 28101,
                consumer_api: 28102,
                merchant_api: 28103,
                otel_otlp_http: 28318,
                otel_health: 28133,
                otel_prometheus: 28889,
                otel_telemetry: 28888,
                jaeger_otlp_grpc: 28417,
                jaeger_query: 28686,
                jaeger_query_grpc: 28685,
                jaeger_telemetry: 28488,
                prometheus: 28090,
                alertmanager: 28093,
                alert_receiver: 28094,
                gateway_spans: 28514,
                postgres_exporter: 29187,
                kafka_metrics: 29404,
                internal_orchestrator: 28111,
                internal_consumer_api: 28112,
                internal_merchant_api: 28113,
                replica_first: 28201,
                etcd_client: 28301,
                etcd_peer: 28302,
                patroni_postgres: [28303, 28304],
                patroni_rest: [28305, 28306],
                kafka_brokers: [29094, 29095],
                kafka_controllers: [29096, 29097],
                kafka_metrics_more: [29405, 29406],
                // Toxiproxy's own default API port is 8474; 28475 … 28484 are its routes.
                toxiproxy_api: 28474,
                toxiproxy_first: 28475,
                app_first: APP_PORTS.start,
                registry: 28500,
                registry_debug: 28501,
                ci_web: 28502,
                ci_worker: 28503,
                victorialogs: 28520,
                sign_in: 28521,
                dashboards: 28522,
                traces: 28523,
            };
        }
        Self {
            gateway_http: base,
            gateway_https: base + 1,
            postgres: base + 2,
            kafka: base + 3,
            kafka_controller: base + 4,
            keycloak: base + 5,
            keycloak_management: base + 6,
            orchestrator: base + 7,
            consumer_api: base + 8,
            merchant_api: base + 9,
            otel_otlp_http: base + 10,
            otel_health: base + 11,
            otel_prometheus: base + 12,
            otel_telemetry: base + 13,
            jaeger_otlp_grpc: base + 14,
            jaeger_query: base + 15,
            jaeger_query_grpc: base + 16,
            jaeger_telemetry: base + 17,
            prometheus: base + 18,
            alertmanager: base + 19,
            alert_receiver: base + 20,
            gateway_spans: base + 21,
            postgres_exporter: base + 22,
            kafka_metrics: base + 23,
            internal_orchestrator: base + 24,
            internal_consumer_api: base + 25,
            internal_merchant_api: base + 26,
            replica_first: base + 27,
            etcd_client: base + 36,
            etcd_peer: base + 37,
            patroni_postgres: [base + 38, base + 39],
            patroni_rest: [base + 40, base + 41],
            kafka_brokers: [base + 42, base + 43],
            kafka_controllers: [base + 44, base + 45],
            kafka_metrics_more: [base + 46, base + 47],
            toxiproxy_api: base + 48,
            toxiproxy_first: base + 49,
            app_first: base + 49 + TOXIPROXY_ROUTES,
            registry: base + 49 + TOXIPROXY_ROUTES + APPS_MAX,
            registry_debug: base + 50 + TOXIPROXY_ROUTES + APPS_MAX,
            ci_web: base + 51 + TOXIPROXY_ROUTES + APPS_MAX,
            ci_worker: base + 52 + TOXIPROXY_ROUTES + APPS_MAX,
            victorialogs: base + 49 + TOXIPROXY_ROUTES + APPS_MAX + DELIVERY_PORTS,
            sign_in: base + 50 + TOXIPROXY_ROUTES + APPS_MAX + DELIVERY_PORTS,
            dashboards: base + 51 + TOXIPROXY_ROUTES + APPS_MAX + DELIVERY_PORTS,
            traces: base + 52 + TOXIPROXY_ROUTES + APPS_MAX + DELIVERY_PORTS,
        }
    }

    /// Broker `instance`'s client, controller and metrics ports (instance 0 is the first
    /// broker, on `kafka`, `kafka_controller` and `kafka_metrics`).
    pub fn kafka_broker(&self, instance: u8) -> KafkaPorts {
        assert!(instance < KAFKA_BROKERS_MAX, "broker {instance}");
        match usize::from(instance) {
            0 => KafkaPorts {
                broker: self.kafka,
                controller: self.kafka_controller,
                metrics: self.kafka_metrics,
            },
            i => KafkaPorts {
                broker: self.kafka_brokers[i - 1],
                controller: self.kafka_controllers[i - 1],
                metrics: self.kafka_metrics_more[i - 1],
            },
        }
    }

    /// The port of instance `instance` of the service with index `service` (0 orchestrator,
    /// 1 consumer-api, 2 merchant-api); instance 0 is the service's own port.
    pub fn instance_port(&self, service: u16, instance: u8) -> u16 {
        assert!(service < REPLICATED_SERVICES, "service index {service}");
        assert!(instance < REPLICAS_MAX, "instance {instance}");
        match instance {
            0 => [self.orchestrator, self.consumer_api, self.merchant_api][usize::from(service)],
            _ => {
                self.replica_first + service * (u16::from(REPLICAS_MAX) - 1) + u16::from(instance)
                    - 1
            }
        }
    }

    /// The port of Toxiproxy's proxy for route `index` of `toxiproxy::ROUTES`.
    pub fn toxiproxy_route(&self, index: u16) -> u16 {
        assert!(index < TOXIPROXY_ROUTES, "route {index}");
        self.toxiproxy_first + index
    }

    /// Fills the ports of a marker written before they existed (zero after loading), from the
    /// same base as its other ports.
    pub fn filled(self) -> Self {
        let base = if self.postgres == 25432 {
            0
        } else {
            self.postgres - 2
        };
        let planned = Self::from_base(base);
        let or_planned = |port: u16, planned: u16| if port == 0 { planned } else { port };
        Self {
            otel_otlp_http: or_planned(self.otel_otlp_http, planned.otel_otlp_http),
            otel_health: or_planned(self.otel_health, planned.otel_health),
            otel_prometheus: or_planned(self.otel_prometheus, planned.otel_prometheus),
            otel_telemetry: or_planned(self.otel_telemetry, planned.otel_telemetry),
            jaeger_otlp_grpc: or_planned(self.jaeger_otlp_grpc, planned.jaeger_otlp_grpc),
            jaeger_query: or_planned(self.jaeger_query, planned.jaeger_query),
            jaeger_query_grpc: or_planned(self.jaeger_query_grpc, planned.jaeger_query_grpc),
            jaeger_telemetry: or_planned(self.jaeger_telemetry, planned.jaeger_telemetry),
            prometheus: or_planned(self.prometheus, planned.prometheus),
            alertmanager: or_planned(self.alertmanager, planned.alertmanager),
            alert_receiver: or_planned(self.alert_receiver, planned.alert_receiver),
            gateway_spans: or_planned(self.gateway_spans, planned.gateway_spans),
            postgres_exporter: or_planned(self.postgres_exporter, planned.postgres_exporter),
            kafka_metrics: or_planned(self.kafka_metrics, planned.kafka_metrics),
            internal_orchestrator: or_planned(
                self.internal_orchestrator,
                planned.internal_orchestrator,
            ),
            internal_consumer_api: or_planned(
                self.internal_consumer_api,
                planned.internal_consumer_api,
            ),
            internal_merchant_api: or_planned(
                self.internal_merchant_api,
                planned.internal_merchant_api,
            ),
            replica_first: or_planned(self.replica_first, planned.replica_first),
            etcd_client: or_planned(self.etcd_client, planned.etcd_client),
            etcd_peer: or_planned(self.etcd_peer, planned.etcd_peer),
            patroni_postgres: if self.patroni_postgres == [0, 0] {
                planned.patroni_postgres
            } else {
                self.patroni_postgres
            },
            patroni_rest: if self.patroni_rest == [0, 0] {
                planned.patroni_rest
            } else {
                self.patroni_rest
            },
            kafka_brokers: if self.kafka_brokers == [0, 0] {
                planned.kafka_brokers
            } else {
                self.kafka_brokers
            },
            kafka_controllers: if self.kafka_controllers == [0, 0] {
                planned.kafka_controllers
            } else {
                self.kafka_controllers
            },
            kafka_metrics_more: if self.kafka_metrics_more == [0, 0] {
                planned.kafka_metrics_more
            } else {
                self.kafka_metrics_more
            },
            toxiproxy_api: or_planned(self.toxiproxy_api, planned.toxiproxy_api),
            toxiproxy_first: or_planned(self.toxiproxy_first, planned.toxiproxy_first),
            app_first: or_planned(self.app_first, planned.app_first),
            registry: or_planned(self.registry, planned.registry),
            registry_debug: or_planned(self.registry_debug, planned.registry_debug),
            ci_web: or_planned(self.ci_web, planned.ci_web),
            ci_worker: or_planned(self.ci_worker, planned.ci_worker),
            victorialogs: or_planned(self.victorialogs, planned.victorialogs),
            sign_in: or_planned(self.sign_in, planned.sign_in),
            dashboards: or_planned(self.dashboards, planned.dashboards),
            traces: or_planned(self.traces, planned.traces),
            ..self
        }
    }

    /// Every port that binds to loopback, named by what wants it, with every extra
    /// instance's port whether it runs or not (the range is the installation's).
    pub fn loopback(&self) -> Vec<(&'static str, u16)> {
        let replicas = (0..REPLICATED_SERVICES).flat_map(|service| {
            (1..REPLICAS_MAX).map(move |instance| {
                let what = ["orchestrator", "consumer-api", "merchant-api"][usize::from(service)];
                (what, self.instance_port(service, instance))
            })
        });
        let mut ports = vec![
            ("postgres", self.postgres),
            ("kafka", self.kafka),
            ("kafka (controller)", self.kafka_controller),
            ("keycloak", self.keycloak),
            ("keycloak (management)", self.keycloak_management),
            ("orchestrator", self.orchestrator),
            ("consumer-api", self.consumer_api),
            ("merchant-api", self.merchant_api),
            ("otel-collector (otlp/http)", self.otel_otlp_http),
            ("otel-collector (health)", self.otel_health),
            ("otel-collector (prometheus)", self.otel_prometheus),
            ("otel-collector (telemetry)", self.otel_telemetry),
            ("jaeger (otlp/grpc)", self.jaeger_otlp_grpc),
            ("jaeger (query)", self.jaeger_query),
            ("jaeger (query/grpc)", self.jaeger_query_grpc),
            ("jaeger (telemetry)", self.jaeger_telemetry),
            ("prometheus", self.prometheus),
            ("alertmanager", self.alertmanager),
            ("alert-receiver", self.alert_receiver),
            ("postgres-exporter", self.postgres_exporter),
            ("kafka (metrics)", self.kafka_metrics),
            (
                "gateway (orchestrator, internal)",
                self.internal_orchestrator,
            ),
            (
                "gateway (consumer-api, internal)",
                self.internal_consumer_api,
            ),
            (
                "gateway (merchant-api, internal)",
                self.internal_merchant_api,
            ),
            ("etcd", self.etcd_client),
            ("etcd (peer)", self.etcd_peer),
            ("patroni (postgres)", self.patroni_postgres[0]),
            ("patroni.1 (postgres)", self.patroni_postgres[1]),
            ("patroni (rest)", self.patroni_rest[0]),
            ("patroni.1 (rest)", self.patroni_rest[1]),
            ("kafka.1", self.kafka_brokers[0]),
            ("kafka.2", self.kafka_brokers[1]),
            ("kafka.1 (controller)", self.kafka_controllers[0]),
            ("kafka.2 (controller)", self.kafka_controllers[1]),
            ("kafka.1 (metrics)", self.kafka_metrics_more[0]),
            ("kafka.2 (metrics)", self.kafka_metrics_more[1]),
            ("toxiproxy (api)", self.toxiproxy_api),
            ("registry", self.registry),
            ("registry (debug)", self.registry_debug),
            ("ci (web)", self.ci_web),
            ("ci (worker)", self.ci_worker),
            ("victorialogs", self.victorialogs),
            ("sign-in", self.sign_in),
            ("dashboards", self.dashboards),
            ("traces", self.traces),
        ];
        ports.extend(replicas);
        ports.extend((0..APPS_MAX).map(|slot| ("scaffolded service", self.app_first + slot)));
        ports.extend(
            crate::runtime::components::toxiproxy::ROUTES
                .iter()
                .map(|route| (route.name, self.toxiproxy_route(route.index()))),
        );
        ports
    }

    /// Where a scaffolded service listens in this installation: its stamped port (one of
    /// [`APP_PORTS`]) at the same place in this installation's range.
    pub fn app_port(&self, stamped: u16) -> u16 {
        assert!(APP_PORTS.contains(&stamped), "app port {stamped}");
        self.app_first + (stamped - APP_PORTS.start)
    }

    /// `":8443"`, or `""` on the default HTTPS port: what public URLs append to the host.
    pub fn https_suffix(&self) -> String {
        if self.gateway_https == 443 {
            String::new()
        } else {
            format!(":{}", self.gateway_https)
        }
    }

    /// The public URL of a gateway host, e.g. `https://sso.local.test:8443`.
    pub fn public_url(&self, host: &str) -> String {
        format!("https://{host}.local.test{}", self.https_suffix())
    }
}

/// One Kafka broker's ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KafkaPorts {
    pub broker: u16,
    pub controller: u16,
    pub metrics: u16,
}

/// Whether this process could listen on the port (on the gateway's address, all interfaces).
pub fn can_bind(port: u16) -> bool {
    TcpListener::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)).is_ok()
}

/// Whether something already listens on loopback at this port.
pub fn in_use_on_loopback(port: u16) -> bool {
    TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)).is_err()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_base_spreads_consecutive_ports() {
        let ports = Ports::from_base(27000);
        let mut all: Vec<u16> = ports.loopback().iter().map(|(_, port)| *port).collect();
        all.extend([ports.gateway_http, ports.gateway_https, ports.gateway_spans]);
        all.sort_unstable();
        all.dedup();
        assert_eq!(
            all.len(),
            usize::from(PORTS_PER_BASE),
            "no port is used twice"
        );
        assert_eq!(all.first(), Some(&27000));
        assert_eq!(all.last(), Some(&(27000 + PORTS_PER_BASE - 1)));
    }

    #[test]
    fn a_marker_from_before_the_observability_ports_gets_them_from_its_base() {
        let planned = Ports::from_base(26000);
        let old = Ports {
            otel_otlp_http: 0,
            jaeger_query: 0,
            prometheus: 0,
            gateway_spans: 0,
            postgres_exporter: 0,
            kafka_metrics: 0,
            internal_consumer_api: 0,
            replica_first: 0,
            etcd_client: 0,
            patroni_rest: [0, 0],
            kafka_brokers: [0, 0],
            kafka_controllers: [0, 0],
            kafka_metrics_more: [0, 0],
            toxiproxy_api: 0,
            toxiproxy_first: 0,
            ..planned
        };
        assert_eq!(old.filled(), planned);
        let defaults = Ports::from_base(0);
        assert_eq!(
            Ports {
                alert_receiver: 0,
                ..defaults
            }
            .filled(),
            defaults
        );
    }

    #[test]
    fn no_default_port_is_in_the_ephemeral_range_or_used_twice() {
        let defaults = Ports::from_base(0);
        let mut all: Vec<u16> = defaults.loopback().iter().map(|(_, port)| *port).collect();
        all.extend([
            defaults.gateway_http,
            defaults.gateway_https,
            defaults.gateway_spans,
        ]);
        for port in &all {
            assert!(*port < EPHEMERAL_FIRST, "{port}");
        }
        let count = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), count, "no default port is used twice");
    }

    #[test]
    fn every_instance_of_every_service_has_its_own_port() {
        let ports = Ports::from_base(27000);
        assert_eq!(ports.instance_port(0, 0), ports.orchestrator);
        assert_eq!(ports.instance_port(2, 0), ports.merchant_api);
        assert_eq!(ports.instance_port(0, 1), 27027);
        assert_eq!(ports.instance_port(1, 1), 27030);
        assert_eq!(ports.instance_port(2, 3), 27035);
    }

    #[test]
    fn every_kafka_broker_has_its_own_ports_and_the_first_keeps_the_old_ones() {
        let ports = Ports::from_base(27000);
        assert_eq!(
            ports.kafka_broker(0),
            KafkaPorts {
                broker: 27003,
                controller: 27004,
                metrics: 27023
            }
        );
        assert_eq!(
            ports.kafka_broker(2),
            KafkaPorts {
                broker: 27043,
                controller: 27045,
                metrics: 27047
            }
        );
    }

    #[test]
    fn public_urls_omit_the_default_https_port() {
        let mut ports = Ports::from_base(0);
        assert_eq!(ports.public_url("sso"), "https://sso.local.test:8443");
        ports.gateway_https = 443;
        assert_eq!(ports.public_url("sso"), "https://sso.local.test");
    }
}
