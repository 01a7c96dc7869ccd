//! The portal's catalog (`catalog/`, every `services/*/catalog-info.yaml`, the templates'
//! `template.yaml`) holds together: each entity has the fields its kind needs, every reference
//! (owner, system, domain, APIs, dependencies) names an entity of the catalog, every API's
//! definition file exists, and a service scaffolded from the template fits in too.

use paytool::runtime::components::apps::Language;
use paytool::scaffold::template::{Answers, Template};
use serde::Deserialize;
use serde_yaml::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn project() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ is in the project")
        .to_path_buf()
}

/// An entity with the directory of the file it came from (relative `$text` and targets).
struct Entity {
    file: PathBuf,
    value: Value,
}

impl Entity {
    fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or("")
    }

    fn name(&self) -> &str {
        self.value["metadata"]["name"].as_str().unwrap_or("")
    }

    /// `kind:name`, lowercase, as Backstage writes references.
    fn reference(&self) -> String {
        format!("{}:{}", self.kind().to_ascii_lowercase(), self.name())
    }
}

fn documents(path: &Path, text: &str) -> Vec<Entity> {
    serde_yaml::Deserializer::from_str(text)
        .map(|document| Entity {
            file: path.to_path_buf(),
            value: Value::deserialize(document)
                .unwrap_or_else(|e| panic!("{} is YAML: {e}", path.display())),
        })
        .collect()
}

/// The catalog as Backstage would read it from `catalog/catalog-info.yaml`: the Location's
/// targets, globs in the last path segment expanded.
fn catalog(project: &Path, extra: &[(PathBuf, String)]) -> Vec<Entity> {
    let root = project.join("catalog/catalog-info.yaml");
    let mut entities = documents(&root, &std::fs::read_to_string(&root).expect("the root"));
    let targets: Vec<String> = entities[0].value["spec"]["targets"]
        .as_sequence()
        .expect("the Location lists targets")
        .iter()
        .filter_map(|t| t.as_str().map(str::to_string))
        .collect();
    for target in targets {
        let path = root.parent().expect("dir").join(&target);
        let files: Vec<PathBuf> = match target.split_once("/*/") {
            // `../services/*/catalog-info.yaml`: every directory there that has the file.
            Some((dir, file)) => {
                let dir = root.parent().expect("dir").join(dir);
                let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
                    .expect("the glob's directory")
                    .filter_map(Result::ok)
                    .map(|entry| entry.path().join(file))
                    .filter(|path| path.is_file())
                    .collect();
                found.sort();
                found
            }
            None => {
                assert!(path.is_file(), "the target {target} exists");
                vec![path]
            }
        };
        for file in files {
            let text = std::fs::read_to_string(&file).expect("readable");
            entities.extend(documents(&file, &text));
        }
    }
    for (path, text) in extra {
        entities.extend(documents(path, text));
    }
    entities
}

fn check(entities: &[Entity]) {
    let mut refs = BTreeSet::new();
    for entity in entities {
        assert!(
            entity.value["apiVersion"].as_str().is_some_and(
                |v| v.starts_with("backstage.io/") || v.starts_with("scaffolder.backstage.io/")
            ),
            "{}: apiVersion",
            entity.file.display()
        );
        let name = entity.name();
        let valid_name = !name.is_empty()
            && name.len() <= 63
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        assert!(valid_name, "{}: name {name:?}", entity.file.display());
        assert!(
            refs.insert(entity.reference()),
            "{} is defined twice",
            entity.reference()
        );
    }
    let defined = |kind: &str, target: &str| {
        let reference = if target.contains(':') {
            target.to_string()
        } else {
            format!("{kind}:{target}")
        };
        assert!(
            refs.contains(&reference),
            "{reference} is not in the catalog"
        );
    };
    for entity in entities {
        let spec = &entity.value["spec"];
        let required: &[&str] = match entity.kind() {
            "Component" => &["type", "lifecycle", "owner"],
            "API" => &["type", "lifecycle", "owner", "definition"],
            "Resource" | "Group" => &["type"],
            "System" | "Domain" => &["owner"],
            "Template" => &["type", "steps", "parameters"],
            "Location" => &["targets"],
            other => panic!("{}: kind {other}", entity.file.display()),
        };
        for field in required {
            assert!(
                !spec[*field].is_null(),
                "{} {}: spec.{field}",
                entity.kind(),
                entity.name()
            );
        }
        if let Some(owner) = spec["owner"].as_str() {
            defined("group", owner);
        }
        if let Some(system) = spec["system"].as_str() {
            defined("system", system);
        }
        if let Some(domain) = spec["domain"].as_str() {
            defined("domain", domain);
        }
        for (field, kind) in [
            ("providesApis", "api"),
            ("consumesApis", "api"),
            ("dependsOn", "component"),
        ] {
            for target in spec[field].as_sequence().into_iter().flatten() {
                defined(kind, target.as_str().expect("a reference"));
            }
        }
        if let Some(text) = spec["definition"]["$text"].as_str() {
            let path = entity.file.parent().expect("dir").join(text);
            assert!(
                path.is_file(),
                "{}: {} exists",
                entity.name(),
                path.display()
            );
        }
    }
}

#[test]
fn the_platforms_catalog_holds_together() {
    let entities = catalog(&project(), &[]);
    check(&entities);
    let refs: BTreeSet<String> = entities.iter().map(Entity::reference).collect();
    for expected in [
        "component:orchestrator",
        "component:consumer-api",
        "component:merchant-api",
        "api:payment-events",
        "resource:postgres",
        "system:paytool",
        "template:service-rust",
    ] {
        assert!(refs.contains(expected), "{expected} in {refs:?}");
    }
}

#[test]
fn a_service_scaffolded_from_the_template_fits_the_catalog() {
    let project = project();
    let template = Template::load(&project, Language::Rust).expect("the Rust template");
    let files = template
        .render(&Answers {
            name: "loyalty".into(),
            language: Language::Rust,
            port: 28401,
            owner: "payments-team".into(),
            description: "Loyalty points.".into(),
        })
        .expect("renders");
    // Its entry, as if it sat in services/loyalty/ (its `$text` points at ../contracts/).
    let scratch = tempfile::tempdir().expect("temp");
    for (path, text) in &files {
        let full = scratch.path().join(path);
        std::fs::create_dir_all(full.parent().expect("dir")).expect("mkdir");
        std::fs::write(&full, text).expect("write");
    }
    let entry = scratch.path().join("services/loyalty/catalog-info.yaml");
    let extra = [(
        entry.clone(),
        files["services/loyalty/catalog-info.yaml"].clone(),
    )];
    check(&catalog(&project, &extra));
}
