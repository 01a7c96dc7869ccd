//! Layered configuration: an optional file, then the environment.
//!
//! Order (later wins): `<dir>/base.toml`, `<dir>/<APP_ENVIRONMENT>.toml`, then environment
//! variables `APP__SECTION__KEY` (for example `APP__DATABASE__URL`). `dir` is `APP_CONFIG_DIR`
//! or `configuration` beside the working directory. Every file is optional so that a binary
//! started by `paytool` can be configured by environment alone.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::path::PathBuf;

/// Where the HTTP listener binds. Port 0 asks the OS for a free port (tests use that).
#[derive(Debug, Clone, Deserialize)]
pub struct HttpSettings {
    #[serde(default = "default_host")]
    pub host: String,
    #[serde(default)]
    pub port: u16,
}

fn default_host() -> String {
    // Loopback by default: only the gateway is meant to be reachable from outside.
    "127.0.0.1".to_string()
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            host: default_host(),
            port: 0,
        }
    }
}

/// Loads `T` from the layered sources described in the module docs.
pub fn load<T: DeserializeOwned>() -> anyhow::Result<T> {
    let dir = std::env::var_os("APP_CONFIG_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("configuration"));
    let environment = std::env::var("APP_ENVIRONMENT").unwrap_or_else(|_| "local".to_string());
    let settings = config::Config::builder()
        .add_source(config::File::from(dir.join("base.toml")).required(false))
        .add_source(config::File::from(dir.join(format!("{environment}.toml"))).required(false))
        .add_source(
            config::Environment::with_prefix("APP")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true),
        )
        .build()?;
    Ok(settings.try_deserialize()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Sample {
        http: HttpSettings,
    }

    #[test]
    fn environment_overrides_defaults_with_double_underscore_sections() {
        // One test touches the process environment, so there is no race with another test.
        std::env::set_var("APP_CONFIG_DIR", "/nonexistent-paykit-config");
        std::env::set_var("APP__HTTP__PORT", "4321");
        std::env::set_var("APP__HTTP__HOST", "127.0.0.2");
        let sample: Sample = load().expect("configuration loads from the environment alone");
        assert_eq!(sample.http.port, 4321);
        assert_eq!(sample.http.host, "127.0.0.2");
    }
}
