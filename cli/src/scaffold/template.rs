//! A service template: `templates/service/<language>/template.toml` and the tree under its
//! `files/`, rendered into paths relative to the project (contents and paths alike).
//!
//! The files are written in the syntax of Backstage's `fetch:template` (`${{ values.name }}`),
//! so that the portal's Software Template (`template.yaml` beside them) and `paytool scaffold`
//! render the same tree. paytool renders them with Tera after turning `${{` into `{{`: only
//! plain substitutions of [`VALUES`] are used, which both engines read alike (a test keeps it
//! so).

use crate::runtime::components::apps::Language;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A template holds at most this many files, each at most this large: a bound on what one
/// scaffold writes (and on what its stamp keeps).
pub const FILES_MAX: usize = 100;
pub const FILE_BYTES_MAX: u64 = 64 * 1024;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub language: Language,
    /// Bumped whenever a file under `files/` changes; `scaffold upgrade` compares it.
    pub version: u32,
    pub description: String,
}

/// The answers a service is rendered with, stamped into it (`.paytool-template.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answers {
    pub name: String,
    pub language: Language,
    /// Its port in the default installation (`runtime::ports::APP_PORTS`).
    pub port: u16,
    /// The Backstage owner (a group), e.g. `payments-team`.
    pub owner: String,
    pub description: String,
}

pub struct Template {
    pub manifest: Manifest,
    root: PathBuf,
}

/// The rendered files of a service, by path relative to the project, in path order.
pub type Rendered = BTreeMap<String, String>;

impl Template {
    pub fn dir(project: &Path, language: Language) -> PathBuf {
        project.join("templates/service").join(language.as_str())
    }

    pub fn load(project: &Path, language: Language) -> anyhow::Result<Self> {
        let root = Self::dir(project, language);
        let path = root.join("template.toml");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read the template {}", path.display()))?;
        let manifest: Manifest = toml::from_str(&text)
            .with_context(|| format!("{} is not a template manifest", path.display()))?;
        anyhow::ensure!(
            manifest.language == language,
            "{} says it is the {} template",
            path.display(),
            manifest.language.as_str()
        );
        Ok(Self { manifest, root })
    }

    /// The layer every language's template starts from (the contract, the manifests, the
    /// catalog entry, the docs, the SLO): `templates/service/common/files`.
    pub fn common_dir(project: &Path) -> PathBuf {
        project.join("templates/service/common")
    }

    /// Every file of the template, rendered for these answers: the common layer, then the
    /// language's own files (which win where both have a path).
    pub fn render(&self, answers: &Answers) -> anyhow::Result<Rendered> {
        let common = self
            .root
            .parent()
            .map(|service| service.join("common"))
            .context("a template sits in templates/service/")?;
        let mut rendered = Rendered::new();
        for layer in [common.join("files"), self.root.join("files")] {
            rendered.extend(self.render_layer(&layer, answers)?);
        }
        anyhow::ensure!(
            rendered.len() <= FILES_MAX,
            "the template has {} files; at most {FILES_MAX}",
            rendered.len()
        );
        if self.manifest.language == Language::Rust {
            format_rust(&self.root, &mut rendered)?;
        }
        Ok(rendered)
    }

    fn render_layer(&self, files: &Path, answers: &Answers) -> anyhow::Result<Rendered> {
        let mut context = tera::Context::new();
        context.insert("values", &self.values(answers));
        let render = |what: &Path, text: &str| {
            tera::Tera::one_off(&text.replace("${{", "{{"), &context, false)
                .map_err(|e| anyhow::anyhow!("cannot render {}: {e:?}", what.display()))
        };
        let mut rendered = Rendered::new();
        for source in walk(files)? {
            let relative = source
                .strip_prefix(files)
                .expect("walked under files/")
                .to_str()
                .with_context(|| format!("{} is not UTF-8", source.display()))?;
            let target = render(&source, relative)?;
            let size = std::fs::metadata(&source)?.len();
            anyhow::ensure!(
                size <= FILE_BYTES_MAX,
                "{} is larger than a template file may be ({FILE_BYTES_MAX} bytes)",
                source.display()
            );
            let text = std::fs::read_to_string(&source)
                .with_context(|| format!("cannot read {}", source.display()))?;
            rendered.insert(target, render(&source, &text)?);
        }
        Ok(rendered)
    }
}

/// A rustfmt of one file that takes longer than this is stuck.
const RUSTFMT_TIMEOUT_MS: u64 = 10_000;

/// Formats the rendered Rust files as `cargo fmt` would (the project's rustfmt.toml, found
/// from `dir`): a line's length depends on the service's name, so a template cannot be
/// formatted for every name in advance. Deterministic, so the stamp's copy, the service's files
/// and an upgrade's new rendering stay comparable. Without rustfmt (a toolchain without the
/// component) the files stay as rendered.
fn format_rust(dir: &Path, rendered: &mut Rendered) -> anyhow::Result<()> {
    use std::io::Write;
    for (path, text) in rendered
        .iter_mut()
        .filter(|(path, _)| path.ends_with(".rs"))
    {
        let child = std::process::Command::new("rustfmt")
            .args(["--edition", "2021", "--emit", "stdout"])
            .current_dir(dir)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(error).context("cannot run rustfmt"),
        };
        // rustfmt reads all of its input before it writes: no deadlock on a full pipe.
        let mut stdin = child.stdin.take().expect("piped");
        stdin
            .write_all(text.as_bytes())
            .context("cannot feed rustfmt")?;
        drop(stdin);
        let pid = child.id();
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || sender.send(child.wait_with_output()));
        let output =
            match receiver.recv_timeout(std::time::Duration::from_millis(RUSTFMT_TIMEOUT_MS)) {
                Ok(output) => output.context("rustfmt")?,
                Err(_) => {
                    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX));
                    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                    anyhow::bail!("rustfmt took over {RUSTFMT_TIMEOUT_MS} ms on {path}");
                }
            };
        anyhow::ensure!(
            output.status.success(),
            "the template renders {path} as Rust that rustfmt cannot read: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
        *text = String::from_utf8(output.stdout).context("rustfmt's output")?;
    }
    Ok(())
}

/// The values a template may use, as `${{ values.NAME }}`; the Backstage template's
/// `fetch:template` step passes the same ones.
pub const VALUES: [&str; 8] = [
    "name",
    "crate",
    "title",
    "owner",
    "description",
    "port",
    "language",
    "template_version",
];

impl Template {
    fn values(&self, answers: &Answers) -> BTreeMap<&'static str, serde_json::Value> {
        let values: [serde_json::Value; 8] = [
            answers.name.clone().into(),
            answers.name.replace('-', "_").into(),
            title(&answers.name).into(),
            answers.owner.clone().into(),
            answers.description.clone().into(),
            answers.port.into(),
            answers.language.as_str().into(),
            self.manifest.version.into(),
        ];
        VALUES.into_iter().zip(values).collect()
    }
}

/// `gift-cards` → `Gift cards`.
fn title(name: &str) -> String {
    let spaced = name.replace('-', " ");
    let mut chars = spaced.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Every file under `dir`, in path order, bounded by [`FILES_MAX`] (plus one, to say so).
fn walk(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current)
            .with_context(|| format!("cannot read {}", current.display()))?
        {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
            anyhow::ensure!(
                files.len() <= FILES_MAX,
                "{} holds more than {FILES_MAX} files",
                dir.display()
            );
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("cli/ is in the project")
            .to_path_buf()
    }

    #[test]
    fn templates_use_only_substitutions_both_engines_read_alike() {
        let layers = Language::ALL
            .map(|language| Template::dir(&project(), language))
            .into_iter()
            .chain([Template::common_dir(&project())]);
        for layer in layers {
            let files = layer.join("files");
            for path in walk(&files).expect("the template's files") {
                let text = std::fs::read_to_string(&path).expect("UTF-8");
                let whole = format!("{}\n{text}", path.display());
                assert!(
                    !whole.contains("{%") && !whole.contains("{#"),
                    "{}: no Tera or nunjucks tags, only ${{{{ values.NAME }}}}",
                    path.display()
                );
                let mut rest = whole.as_str();
                while let Some(at) = rest.find("{{") {
                    assert!(
                        at > 0 && rest[..at].ends_with('$'),
                        "{}: a `{{{{` that is not `${{{{`",
                        path.display()
                    );
                    let end = rest[at..].find("}}").expect("closed") + at;
                    let inner = rest[at + 2..end].trim();
                    let value = inner.strip_prefix("values.").unwrap_or("");
                    assert!(
                        VALUES.contains(&value),
                        "{}: `{inner}` is not one of values.{VALUES:?}",
                        path.display()
                    );
                    rest = &rest[end + 2..];
                }
            }
        }
    }

    #[test]
    fn the_rust_template_renders_a_crate_its_contract_and_its_manifests() {
        let template = Template::load(&project(), Language::Rust).expect("the Rust template");
        let answers = Answers {
            name: "gift-cards".into(),
            language: Language::Rust,
            port: 28402,
            owner: "cards-team".into(),
            description: "Gift cards.".into(),
        };
        let files = template.render(&answers).expect("renders");
        for path in [
            "services/gift-cards/Cargo.toml",
            "services/gift-cards/src/main.rs",
            "services/gift-cards/tests/api/main.rs",
            "services/contracts/gift-cards.yaml",
            "services/gift-cards/deploy/base/kustomization.yaml",
            "services/gift-cards/catalog-info.yaml",
            "services/gift-cards/mkdocs.yml",
            "services/gift-cards/slo.yaml",
        ] {
            assert!(files.contains_key(path), "{path} in {:?}", files.keys());
        }
        assert!(files["services/gift-cards/src/main.rs"].contains("use gift_cards::startup"));
        assert!(files["services/gift-cards/Cargo.toml"].contains("name = \"gift-cards\""));
        for (path, text) in &files {
            assert!(!text.contains("{{"), "{path} is rendered through");
            if path.ends_with(".yaml") || path.ends_with(".yml") {
                for document in serde_yaml::Deserializer::from_str(text) {
                    serde_yaml::Value::deserialize(document)
                        .unwrap_or_else(|e| panic!("{path} is YAML: {e}"));
                }
            }
        }
    }

    #[test]
    fn the_portals_template_passes_the_same_values_at_the_same_version() {
        for language in Language::ALL {
            let dir = Template::dir(&project(), language);
            let template = Template::load(&project(), language).expect("manifest");
            let text = std::fs::read_to_string(dir.join("template.yaml")).expect("template.yaml");
            let document: serde_yaml::Value = serde_yaml::from_str(&text).expect("YAML");
            assert_eq!(document["apiVersion"], "scaffolder.backstage.io/v1beta3");
            let fetches: Vec<&serde_yaml::Value> = document["spec"]["steps"]
                .as_sequence()
                .expect("steps")
                .iter()
                .filter(|s| s["action"] == "fetch:template")
                .collect();
            let urls: Vec<&str> = fetches
                .iter()
                .filter_map(|f| f["input"]["url"].as_str())
                .collect();
            assert_eq!(
                urls,
                ["../common/files", "./files"],
                "the layers, in paytool's order"
            );
            assert_eq!(
                fetches[0]["input"]["values"], fetches[1]["input"]["values"],
                "both layers get the same values"
            );
            let fetch = fetches[1];
            let values = fetch["input"]["values"].as_mapping().expect("values");
            let mut keys: Vec<&str> = values.keys().filter_map(|k| k.as_str()).collect();
            keys.sort_unstable();
            let mut expected = VALUES.to_vec();
            expected.sort_unstable();
            assert_eq!(
                keys, expected,
                "{language:?}: the values paytool renders with"
            );
            assert_eq!(
                values[&serde_yaml::Value::from("template_version")],
                serde_yaml::Value::from(template.manifest.version),
                "{language:?}: template.yaml and template.toml name one version"
            );
            assert_eq!(
                values[&serde_yaml::Value::from("language")],
                language.as_str()
            );
        }
    }

    #[test]
    fn the_kotlin_template_renders_over_the_common_layer() {
        let template = Template::load(&project(), Language::Kotlin).expect("the Kotlin template");
        let answers = Answers {
            name: "gift-cards".into(),
            language: Language::Kotlin,
            port: 28403,
            owner: "cards-team".into(),
            description: "Gift cards.".into(),
        };
        let files = template.render(&answers).expect("renders");
        assert!(
            files["services/gift-cards/pom.xml"].contains("<artifactId>gift-cards</artifactId>")
        );
        assert!(files["services/gift-cards/src/main/kotlin/Main.kt"]
            .starts_with("package paytool.gift_cards"));
        // The common layer's files, the language's runtime patch, and nothing of Rust's.
        for path in [
            "services/contracts/gift-cards.yaml",
            "services/gift-cards/deploy/base/deployment.yaml",
            "services/gift-cards/deploy/base/runtime.yaml",
            "services/gift-cards/catalog-info.yaml",
        ] {
            assert!(files.contains_key(path), "{path}");
        }
        assert!(files["services/gift-cards/deploy/base/runtime.yaml"].contains("JAVA_TOOL_OPTIONS"));
        assert!(files
            .keys()
            .all(|path| !path.ends_with(".rs") && !path.ends_with("Cargo.toml")));
        assert!(
            files.values().all(|text| !text.contains("{{")),
            "rendered through"
        );
    }

    #[test]
    fn a_title_is_the_name_in_words() {
        assert_eq!(title("gift-cards"), "Gift cards");
        assert_eq!(title("loyalty"), "Loyalty");
    }
}
