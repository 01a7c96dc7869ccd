//! The ports an installation uses, chosen once and kept in its marker.
//!
//! Everything binds to loopback except the gateway. The gateway takes 443/80 where this process
//! may bind them, else 8443/8080. `PAYTOOL_PORT_BASE=N` moves every port to N..N+9 so that a
//! second installation (the test suite's, say) can run beside a developer's.
//!
//! Every default sits below Linux's ephemeral range (32768–60999): a port in that range can be
//! taken at any moment as the source port of some outgoing connection, and a start would then
//! fail with "address in use" for no reason a person could see.

use crate::exit::{fail, Code};
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
}

pub const PORT_BASE_ENV: &str = "PAYTOOL_PORT_BASE";
/// The first port of Linux's default ephemeral range (net.ipv4.ip_local_port_range).
const EPHEMERAL_FIRST: u16 = 32768;

impl Ports {
    pub fn plan() -> anyhow::Result<Self> {
        match std::env::var(PORT_BASE_ENV) {
            Ok(base) => {
                let base: u16 = base
                    .parse()
                    .ok()
                    .filter(|b| *b >= 1024 && *b <= EPHEMERAL_FIRST - 10)
                    .ok_or_else(|| {
                        fail(
                            Code::PortTaken,
                            format!(
                                "{PORT_BASE_ENV}={base} is not a port between 1024 and {}: higher ports are handed out to outgoing connections",
                                EPHEMERAL_FIRST - 10
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
        }
    }

    /// Every port that binds to loopback, named by what wants it.
    pub fn loopback(&self) -> [(&'static str, u16); 8] {
        [
            ("postgres", self.postgres),
            ("kafka", self.kafka),
            ("kafka (controller)", self.kafka_controller),
            ("keycloak", self.keycloak),
            ("keycloak (management)", self.keycloak_management),
            ("orchestrator", self.orchestrator),
            ("consumer-api", self.consumer_api),
            ("merchant-api", self.merchant_api),
        ]
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
    fn a_port_base_spreads_ten_consecutive_ports() {
        let ports = Ports::from_base(27000);
        let mut all: Vec<u16> = ports.loopback().iter().map(|(_, port)| *port).collect();
        all.extend([ports.gateway_http, ports.gateway_https]);
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 10, "no port is used twice");
        assert_eq!(all.first(), Some(&27000));
        assert_eq!(all.last(), Some(&27009));
    }

    #[test]
    fn no_default_port_is_in_the_ephemeral_range() {
        for (what, port) in Ports::from_base(0).loopback() {
            assert!(port < EPHEMERAL_FIRST, "{what}: {port}");
        }
    }

    #[test]
    fn public_urls_omit_the_default_https_port() {
        let mut ports = Ports::from_base(0);
        assert_eq!(ports.public_url("sso"), "https://sso.local.test:8443");
        ports.gateway_https = 443;
        assert_eq!(ports.public_url("sso"), "https://sso.local.test");
    }
}
