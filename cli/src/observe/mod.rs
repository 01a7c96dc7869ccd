//! Seeing the running platform: every component's log searched in VictoriaLogs, one payment's trace, SLOs and the rules generated from them,
//! the alerts Alertmanager sent, and paytool's agent (the webhook receiver and the gateway's
//! spans).

pub mod agent;
pub mod alerts;
pub mod consoles;
pub mod logs;
pub mod slo;
pub mod slo_rules;
pub mod trace;
pub mod traces_ui;

/// Text put into an HTML page (the dashboards' consoles, the trace viewer), its markup
/// characters escaped: the few that matter in text and in quoted attributes.
fn html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
