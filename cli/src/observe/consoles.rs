//! The platform's dashboards on the local runtime: Prometheus console templates made from the
//! Perses dashboards in `stacks/observability/dashboards/` at each start of Prometheus, served by
//! Prometheus itself at `/consoles/<name>.html` and, behind the sign-in, at
//! `https://dashboards.local.test`.
//!
//! Why not Perses itself here: its server builds from the Go module proxy, but its web UI needs
//! npm packages the registry here does not have (`@perses-dev/client` and `@perses-dev/spec`
//! among them) and its chart plugins need their schemas, published only with its releases on
//! GitHub (docs/observability.md). Console templates are Prometheus' own dashboards (Go
//! templates evaluated by the server, graphs drawn in the browser by the console library it
//! ships), so the same dashboard files drive both: Perses on kind, consoles here.
//!
//! A stat panel becomes a value the server computes when the page is asked (`-` when the query
//! answers nothing); a time-series panel a graph of its queries over the dashboard's duration.
//! Variables stand for every value (`$job` → `.*`), `$__rate_interval` for one minute (four
//! scrapes) and `$__range` for the dashboard's duration.

use super::html;
use anyhow::Context;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// Where the dashboards are, in the checkout.
pub const DASHBOARDS_DIR: &str = "stacks/observability/dashboards";
/// A rate's window in the consoles: four scrapes of the local runtime's 15 s.
const RATE_INTERVAL: &str = "1m";
/// The most dashboards and panels a console page is made for (a bound on what a file may ask).
const DASHBOARDS_MAX: usize = 32;
const PANELS_MAX: usize = 64;

#[derive(Debug, Deserialize)]
pub struct Dashboard {
    pub metadata: Metadata,
    pub spec: DashboardSpec,
}

#[derive(Debug, Deserialize)]
pub struct Metadata {
    pub name: String,
}

#[derive(Debug, Deserialize)]
pub struct DashboardSpec {
    pub display: Display,
    pub duration: String,
    #[serde(default)]
    pub variables: Vec<Variable>,
    pub panels: BTreeMap<String, Panel>,
    #[serde(default)]
    pub layouts: Vec<Layout>,
}

#[derive(Debug, Deserialize)]
pub struct Display {
    pub name: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Deserialize)]
pub struct Variable {
    pub spec: VariableSpec,
}

#[derive(Debug, Deserialize)]
pub struct VariableSpec {
    pub name: String,
}

#[derive(Debug, Deserialize)]
pub struct Panel {
    pub spec: PanelSpec,
}

#[derive(Debug, Deserialize)]
pub struct PanelSpec {
    pub display: Display,
    pub plugin: Plugin,
    pub queries: Vec<Query>,
}

#[derive(Debug, Deserialize)]
pub struct Plugin {
    pub kind: String,
    #[serde(default)]
    pub spec: serde_json::Value,
}

#[derive(Debug, Deserialize)]
pub struct Query {
    pub spec: QuerySpec,
}

#[derive(Debug, Deserialize)]
pub struct QuerySpec {
    pub plugin: QueryPlugin,
}

#[derive(Debug, Deserialize)]
pub struct QueryPlugin {
    pub spec: PromQuery,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PromQuery {
    pub query: String,
    #[serde(default)]
    pub series_name_format: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Layout {
    pub spec: LayoutSpec,
}

#[derive(Debug, Deserialize)]
pub struct LayoutSpec {
    pub items: Vec<LayoutItem>,
}

#[derive(Debug, Deserialize)]
pub struct LayoutItem {
    pub x: u32,
    pub y: u32,
    pub content: serde_json::Value,
}

/// Every dashboard of the directory, by file name order.
pub fn load(dir: &Path) -> anyhow::Result<Vec<Dashboard>> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    paths.sort();
    anyhow::ensure!(
        paths.len() <= DASHBOARDS_MAX,
        "{}: more than {DASHBOARDS_MAX} dashboards",
        dir.display()
    );
    paths
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path)?;
            serde_yaml::from_str(&text)
                .with_context(|| format!("{} is not a dashboard", path.display()))
        })
        .collect()
}

impl Dashboard {
    /// The panels in reading order: by the grid's rows, then columns.
    fn ordered_panels(&self) -> Vec<(&str, &Panel)> {
        let mut placed: Vec<(u32, u32, &str)> = self
            .spec
            .layouts
            .iter()
            .flat_map(|layout| &layout.spec.items)
            .filter_map(|item| {
                let reference = item.content.get("$ref")?.as_str()?;
                let key = reference.strip_prefix("#/spec/panels/")?;
                Some((item.y, item.x, key))
            })
            .collect();
        placed.sort();
        let mut out: Vec<(&str, &Panel)> = placed
            .iter()
            .filter_map(|(_, _, key)| self.spec.panels.get_key_value(*key))
            .map(|(key, panel)| (key.as_str(), panel))
            .collect();
        // A panel on no grid still shows, after the others.
        for (key, panel) in &self.spec.panels {
            if !out.iter().any(|(k, _)| k == key) {
                out.push((key.as_str(), panel));
            }
        }
        out
    }

    /// A query as the console runs it: its variables replaced by what they stand for here.
    pub fn runnable(&self, query: &str) -> String {
        let mut out = query
            .replace("$__rate_interval", RATE_INTERVAL)
            .replace("$__range", &self.spec.duration);
        for variable in &self.spec.variables {
            out = out.replace(&format!("${{{}}}", variable.spec.name), ".*");
            out = out.replace(&format!("${}", variable.spec.name), ".*");
        }
        out
    }
}

/// A dashboard's duration (`1h`, `6h`, `30m`, `2d`) in seconds, as the console library's
/// graphs take it.
fn duration_s(text: &str) -> anyhow::Result<u64> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .with_context(|| format!("the duration {text:?} has no unit"))?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .with_context(|| format!("the duration {text:?} has no number"))?;
    let unit_s = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 604_800,
        _ => anyhow::bail!("the duration {text:?}: a unit of s, m, h, d or w"),
    };
    Ok(number * unit_s)
}

/// A Go template string literal: backquoted (PromQL has no backquotes; one would end it).
fn go_raw(text: &str) -> anyhow::Result<String> {
    anyhow::ensure!(!text.contains('`'), "a query with a backquote: {text}");
    Ok(format!("`{text}`"))
}

/// A series name format (`{{job}} {{route}}`) as the console library's graphs take it
/// (`[[job]] [[route]]`): braces would be read as the page's own template actions.
/// A query's `seriesNameFormat` (Perses' `{{label}}` placeholders, written `[[label]]`) as the
/// argument of the library's `paytoolName`, which fills it in the browser. Prometheus' own `[[label]]`
/// interpolation is not used: it drops the text after the last placeholder and writes
/// "undefined" for a missing label (the `or vector(0)` series has none).
fn series_name(format: Option<&str>) -> anyhow::Result<String> {
    Ok(format!(
        "paytoolName({})",
        // Go's template parser, which reads the page first, must not see the braces.
        serde_json::to_string(&format.unwrap_or("").replace("{{", "[[").replace("}}", "]]"))?
    ))
}

/// After a stat's value, the labels its `seriesNameFormat` names, of the series shown (a
/// stat shows the query's first series: "3,121 JPY" rather than a number without its
/// currency). Only `{{label}}` placeholders are taken; the rest of the format is the chart's.
fn stat_labels(format: Option<&str>) -> anyhow::Result<String> {
    let mut out = String::new();
    let mut rest = format.unwrap_or("");
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .with_context(|| format!("an unclosed placeholder in {format:?}"))?;
        let label = after[..end].trim();
        anyhow::ensure!(
            !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "a placeholder that is not a label name in {format:?}"
        );
        out.push_str(&format!(" {{{{ . | first | label \"{label}\" }}}}"));
        rest = &after[end + 2..];
    }
    Ok(out)
}

/// The stat's value, formatted by its unit (Prometheus' template functions).
fn humanizer(plugin: &Plugin) -> &'static str {
    let unit = plugin.spec["format"]["unit"].as_str().unwrap_or("decimal");
    let places = plugin.spec["format"]["decimalPlaces"].as_u64();
    match unit {
        // A count (Prometheus' increase extrapolates: 3.098 payments is 3).
        "decimal" if places == Some(0) => "printf \"%.0f\"",
        "percent-decimal" => "humanizePercentage",
        "seconds" => "humanizeDuration",
        "bytes" => "humanize1024",
        _ => "humanize",
    }
}

/// One dashboard as a console template.
pub fn render(dashboard: &Dashboard, all: &[Dashboard]) -> anyhow::Result<String> {
    let panels = dashboard.ordered_panels();
    anyhow::ensure!(
        panels.len() <= PANELS_MAX,
        "{}: more than {PANELS_MAX} panels",
        dashboard.metadata.name
    );
    let mut out = String::new();
    out.push_str("{{ template \"paytool_head\" . }}\n");
    out.push_str(&menu(all, &dashboard.metadata.name));
    out.push_str(&format!(
        "<main class=\"container-fluid\">\n<h1>{}</h1>\n<p class=\"lead\">{}</p>\n",
        html(&dashboard.spec.display.name),
        html(&dashboard.spec.display.description)
    ));
    out.push_str("<div class=\"row\">\n");
    for (key, panel) in panels
        .iter()
        .filter(|(_, p)| p.spec.plugin.kind == "StatChart")
    {
        let query = panel
            .spec
            .queries
            .first()
            .with_context(|| format!("{key}: a stat without a query"))?;
        let expr = dashboard.runnable(&query.spec.plugin.spec.query);
        out.push_str(&format!(
            "<div class=\"col-md-3 paytool-stat\" data-panel=\"{key}\"><h5>{}</h5>\
             <div class=\"paytool-value\">{{{{ with query {} }}}}{{{{ . | first | value | {} }}}}{}{{{{ else }}}}-{{{{ end }}}}</div>\
             <small>{}</small></div>\n",
            html(&panel.spec.display.name),
            go_raw(&expr)?,
            humanizer(&panel.spec.plugin),
            stat_labels(query.spec.plugin.spec.series_name_format.as_deref())?,
            html(&panel.spec.display.description)
        ));
    }
    out.push_str("</div>\n");
    for (key, panel) in panels
        .iter()
        .filter(|(_, p)| p.spec.plugin.kind == "TimeSeriesChart")
    {
        let exprs: Vec<String> = panel
            .spec
            .queries
            .iter()
            .map(|q| dashboard.runnable(&q.spec.plugin.spec.query))
            .collect();
        let names = panel
            .spec
            .queries
            .iter()
            .map(|q| series_name(q.spec.plugin.spec.series_name_format.as_deref()))
            .collect::<anyhow::Result<Vec<String>>>()?;
        out.push_str(&format!(
            "<section class=\"paytool-graph\" data-panel=\"{key}\"><h4>{}</h4><p>{}</p>\
             <div id=\"graph-{key}\"></div>\n<script>\nnew PromConsole.Graph({{\n  node: document.querySelector(\"#graph-{key}\"),\n  expr: {},\n  name: [{}],\n  duration: {},\n  yAxisFormatter: PromConsole.NumberFormatter.humanize,\n  yHoverFormatter: PromConsole.NumberFormatter.humanize,\n}});\n</script></section>\n",
            html(&panel.spec.display.name),
            html(&panel.spec.display.description),
            serde_json::to_string(&exprs)?,
            names.join(", "),
            duration_s(&dashboard.spec.duration)?
        ));
    }
    out.push_str("</main>\n{{ template \"paytool_tail\" . }}\n");
    anyhow::ensure!(
        !out.contains("{{{"),
        "{}: a template action inside a value",
        dashboard.metadata.name
    );
    Ok(out)
}

fn menu(all: &[Dashboard], current: &str) -> String {
    let mut out = String::from(
        "<nav class=\"navbar navbar-expand navbar-dark bg-dark\"><a class=\"navbar-brand\" href=\"index.html\">paytool</a><ul class=\"navbar-nav\">",
    );
    for dashboard in all {
        let active = if dashboard.metadata.name == current {
            " active"
        } else {
            ""
        };
        out.push_str(&format!(
            "<li class=\"nav-item{active}\"><a class=\"nav-link\" href=\"{}.html\">{}</a></li>",
            html(&dashboard.metadata.name),
            html(&dashboard.spec.display.name)
        ));
    }
    out.push_str("<li class=\"nav-item\"><a class=\"nav-link\" href=\"{{ pathPrefix }}/graph\">Explore</a></li></ul></nav>\n");
    out
}

/// The index: every dashboard with its description.
pub fn index(all: &[Dashboard]) -> String {
    let mut out = String::from("{{ template \"paytool_head\" . }}\n");
    out.push_str(&menu(all, ""));
    out.push_str(
        "<main class=\"container-fluid\"><h1>Dashboards</h1><ul class=\"list-unstyled\">\n",
    );
    for dashboard in all {
        out.push_str(&format!(
            "<li><h4><a href=\"{}.html\">{}</a></h4><p>{}</p></li>\n",
            html(&dashboard.metadata.name),
            html(&dashboard.spec.display.name),
            html(&dashboard.spec.display.description)
        ));
    }
    out.push_str("</ul></main>\n{{ template \"paytool_tail\" . }}\n");
    out
}

/// The library every page uses: Prometheus' own console styles and scripts (its `/classic`
/// static files), a head and a tail.
pub const LIBRARY: &str = r#"{{ define "paytool_head" -}}
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>paytool dashboards</title>
<link type="text/css" rel="stylesheet" href="{{ pathPrefix }}/classic/static/rickshaw/rickshaw.min.css">
<link type="text/css" rel="stylesheet" href="{{ pathPrefix }}/classic/static/bootstrap4/css/bootstrap.min.css">
<link type="text/css" rel="stylesheet" href="{{ pathPrefix }}/classic/static/css/prom_console.css">
<script src="{{ pathPrefix }}/classic/static/d3/d3.min.js"></script>
<script src="{{ pathPrefix }}/classic/static/rickshaw/rickshaw.min.js"></script>
<script src="{{ pathPrefix }}/classic/static/jquery/jquery.min.js"></script>
<script src="{{ pathPrefix }}/classic/static/bootstrap4/js/bootstrap.min.js"></script>
<script>var PATH_PREFIX = "{{ pathPrefix }}";</script>
<script src="{{ pathPrefix }}/classic/static/js/prom_console.js"></script>
<script>
// A line's name from its query's seriesNameFormat: each [[label]] is the series' label, or
// nothing; a line none of whose labels are there (a series without labels, such as a query's
// "or vector(0)") is called "none", and a format that is empty names the line by its labels.
function paytoolName(format) {
  return function (metric) {
    var labels = Object.keys(metric).filter(function (l) { return l.indexOf("__") !== 0; });
    if (!format) {
      return labels.length ? labels.map(function (l) { return l + "=" + metric[l]; }).join(", ") : "none";
    }
    var found = 0, placeholders = 0;
    var name = format.replace(/\[\[\s*([A-Za-z_][A-Za-z0-9_]*)\s*\]\]/g, function (_, l) {
      placeholders += 1;
      if (metric[l] === undefined) return "";
      found += 1;
      return metric[l];
    }).trim();
    return (placeholders > 0 && found === 0) || !name ? "none" : name;
  };
}
</script>
<style>
.paytool-stat { padding: 0.5rem 1rem; }
.paytool-value { font-size: 2rem; font-weight: 600; }
.paytool-graph { margin: 1rem 0 2rem; }
</style>
</head>
<body>
{{- end }}
{{ define "paytool_tail" -}}
</body>
</html>
{{- end }}
"#;

/// Writes the consoles and their library into `dir` (`consoles/`, `console_libraries/`).
pub fn write(project: &Path, dir: &Path) -> anyhow::Result<()> {
    let all = load(&project.join(DASHBOARDS_DIR))?;
    let consoles = dir.join("consoles");
    let libraries = dir.join("console_libraries");
    for path in [&consoles, &libraries] {
        if path.exists() {
            std::fs::remove_dir_all(path)?;
        }
        std::fs::create_dir_all(path)?;
    }
    std::fs::write(libraries.join("paytool.lib"), LIBRARY)?;
    std::fs::write(consoles.join("index.html"), index(&all))?;
    for dashboard in &all {
        std::fs::write(
            consoles.join(format!("{}.html", dashboard.metadata.name)),
            render(dashboard, &all)?,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DASHBOARD: &str = r#"
kind: Dashboard
metadata: { name: http, project: paytool }
spec:
  display: { name: HTTP, description: "Requests & errors" }
  duration: 1h
  variables:
    - kind: ListVariable
      spec: { name: job }
  panels:
    rps:
      kind: Panel
      spec:
        display: { name: Requests per second }
        plugin: { kind: StatChart, spec: { format: { unit: requests/sec } } }
        queries:
          - kind: TimeSeriesQuery
            spec: { plugin: { kind: PrometheusTimeSeriesQuery, spec: { query: 'sum(rate(x_total{job=~"$job"}[$__rate_interval]))' } } }
    by_route:
      kind: Panel
      spec:
        display: { name: By route }
        plugin: { kind: TimeSeriesChart, spec: {} }
        queries:
          - kind: TimeSeriesQuery
            spec: { plugin: { kind: PrometheusTimeSeriesQuery, spec: { query: 'sum by (route) (increase(x_total[$__range]))', seriesNameFormat: '{{job}} {{route}}' } } }
  layouts:
    - kind: Grid
      spec:
        items:
          - { x: 0, y: 4, width: 24, height: 8, content: { $ref: '#/spec/panels/by_route' } }
          - { x: 0, y: 0, width: 6, height: 4, content: { $ref: '#/spec/panels/rps' } }
"#;

    #[test]
    fn a_dashboard_becomes_a_console_with_its_stats_computed_by_the_server_and_graphs_drawn_by_the_browser(
    ) {
        let dashboard: Dashboard = serde_yaml::from_str(DASHBOARD).expect("a dashboard");
        let page = render(&dashboard, std::slice::from_ref(&dashboard)).expect("a console");
        assert!(page.contains("<h1>HTTP</h1>"));
        assert!(page.contains("Requests &amp; errors"));
        // The stat: the variable stands for every value, the rate window for a minute.
        assert!(page.contains(
            r#"{{ with query `sum(rate(x_total{job=~".*"}[1m]))` }}{{ . | first | value | humanize }}{{ else }}-{{ end }}"#
        ));
        // The graph: the dashboard's range, the series named by the library's function from
        // the format (in brackets Go's template parser leaves alone).
        assert!(page.contains(r#"expr: ["sum by (route) (increase(x_total[1h]))"]"#));
        assert!(page.contains(r#"name: [paytoolName("[[job]] [[route]]")]"#));
        assert!(page.contains("duration: 3600,"));
        // The stat row first: the grid's order, not the file's.
        assert!(page.find("Requests per second") < page.find("By route"));
    }

    #[test]
    fn a_stat_shows_the_labels_its_series_name_names_after_its_value() {
        assert_eq!(stat_labels(None).expect("none"), "");
        assert_eq!(stat_labels(Some("completed")).expect("text"), "");
        assert_eq!(
            stat_labels(Some("{{currency}}")).expect("one"),
            r#" {{ . | first | label "currency" }}"#
        );
        assert_eq!(
            stat_labels(Some("{{ kind }} in {{currency}}")).expect("two"),
            r#" {{ . | first | label "kind" }} {{ . | first | label "currency" }}"#
        );
        assert!(stat_labels(Some("{{currency")).is_err());
        assert!(stat_labels(Some("{{ a-b }}")).is_err());
    }

    #[test]
    fn a_duration_is_read_in_seconds_and_one_without_a_unit_is_refused() {
        assert_eq!(duration_s("1h").expect("1h"), 3_600);
        assert_eq!(duration_s("24h").expect("24h"), 86_400);
        assert_eq!(duration_s("30m").expect("30m"), 1_800);
        assert!(duration_s("90").is_err());
        assert!(duration_s("1y").is_err());
    }

    #[test]
    fn a_query_that_would_end_its_template_string_is_refused() {
        assert!(go_raw("sum(x) `").is_err());
        assert_eq!(go_raw("up").expect("plain"), "`up`");
    }

    #[test]
    fn the_projects_dashboards_all_render() {
        let project = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let all = load(&project.join(DASHBOARDS_DIR)).expect("the dashboards load");
        assert_eq!(all.len(), 6);
        for dashboard in &all {
            let page = render(dashboard, &all).expect("a console");
            for panel in dashboard.spec.panels.values() {
                assert!(
                    page.contains(&html(&panel.spec.display.name)),
                    "{}: {}",
                    dashboard.metadata.name,
                    panel.spec.display.name
                );
            }
            assert!(
                !page.contains("$__"),
                "{}: a variable left",
                dashboard.metadata.name
            );
        }
        assert!(index(&all).contains("payments.html"));
    }
}
