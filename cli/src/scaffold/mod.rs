//! `paytool scaffold`: new services from the project's templates (`templates/service/<lang>/`),
//! and their upgrades to newer templates by three-way merge.
//!
//! A scaffolded service is registered by its stamp (`services/NAME/.paytool-template.json`):
//! the template, its version, the answers, and every file as it was rendered. `paytool up`
//! reads the stamps (`runtime::components::apps`); `scaffold upgrade` uses the rendered files
//! as the merge base.

pub mod template;

use crate::args::{ScaffoldCommand, ScaffoldServiceArgs, ServiceLanguage};
use crate::runtime::components::apps::{self, Language, STAMP_FILE};
use crate::runtime::ports::APP_PORTS;
use crate::support::exit::{fail, Code};
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::Path;
use template::{Answers, Rendered, Template};

/// The one-line description a service gets when none is given.
const DESCRIPTION_MAX_CHARS: usize = 200;
const OWNER_MAX_CHARS: usize = 63;

/// What a scaffolded service keeps of how it was made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stamp {
    /// `service/rust`: the template's directory under `templates/`.
    pub template: String,
    pub version: u32,
    pub answers: Answers,
    /// Every file as the template rendered it, by path relative to the project: the base of
    /// the next upgrade's three-way merge.
    pub files: Rendered,
}

impl Stamp {
    fn path(project: &Path, name: &str) -> std::path::PathBuf {
        project.join("services").join(name).join(STAMP_FILE)
    }

    fn read(project: &Path, name: &str) -> anyhow::Result<Self> {
        let path = Self::path(project, name);
        let text = std::fs::read_to_string(&path).map_err(|_| {
            fail(
                Code::Usage,
                format!(
                    "{name} was not scaffolded (there is no {}): `paytool scaffold service {name} --lang rust` makes one",
                    path.display()
                ),
            )
        })?;
        serde_json::from_str(&text).map_err(|e| {
            fail(
                Code::Usage,
                format!(
                    "{} is not a stamp ({e}): restore it from Git",
                    path.display()
                ),
            )
        })
    }

    fn write(&self, project: &Path) -> anyhow::Result<()> {
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        std::fs::write(Self::path(project, &self.answers.name), text)?;
        Ok(())
    }
}

pub fn run(project: &Path, command: ScaffoldCommand) -> anyhow::Result<i32> {
    match command {
        ScaffoldCommand::Service(args) => service(project, &args),
        ScaffoldCommand::Upgrade {
            name,
            dry_run,
            json,
        } => upgrade(project, &name, dry_run, json),
    }
}

fn language(of: ServiceLanguage) -> Language {
    match of {
        ServiceLanguage::Rust => Language::Rust,
        ServiceLanguage::Kotlin => Language::Kotlin,
    }
}

/// What `scaffold service` did (or, with `--dry-run`, would do).
#[derive(Debug, Serialize)]
struct Scaffolded {
    name: String,
    language: Language,
    port: u16,
    url: String,
    template_version: u32,
    files: Vec<String>,
    workspace_member: Option<String>,
    dry_run: bool,
}

fn service(project: &Path, args: &ScaffoldServiceArgs) -> anyhow::Result<i32> {
    let usage = |why: String| fail(Code::Usage, why);
    apps::check_name(&args.name).map_err(usage)?;
    let owner = args.owner.trim();
    let owner_valid = !owner.is_empty()
        && owner.len() <= OWNER_MAX_CHARS
        && owner
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/'));
    if !owner_valid {
        return Err(usage(format!(
            "--owner {owner:?}: a Backstage owner reference (letters, digits, - _ . : /, at most {OWNER_MAX_CHARS})"
        )));
    }
    let description = args
        .description
        .clone()
        .unwrap_or_else(|| format!("The {} service.", args.name));
    if description.chars().count() > DESCRIPTION_MAX_CHARS
        || description.chars().any(|c| c.is_control() || c == '"')
    {
        return Err(usage(format!(
            "--description: one line of at most {DESCRIPTION_MAX_CHARS} characters, without quotes"
        )));
    }
    let existing = apps::discover(project)?;
    let port = match args.port {
        Some(port) if !APP_PORTS.contains(&port) => {
            return Err(usage(format!(
                "--port {port}: a scaffolded service's port is one of {}..{}",
                APP_PORTS.start,
                APP_PORTS.end - 1
            )))
        }
        Some(port) => {
            if let Some(other) = existing.iter().find(|app| app.port == port) {
                return Err(usage(format!("--port {port} is {}'s", other.name)));
            }
            port
        }
        None => APP_PORTS
            .clone()
            .find(|port| existing.iter().all(|app| app.port != *port))
            .ok_or_else(|| {
                usage(format!(
                    "every scaffolded service's port ({}..{}) is taken",
                    APP_PORTS.start,
                    APP_PORTS.end - 1
                ))
            })?,
    };
    let language = language(args.language);
    let template = Template::load(project, language)?;
    let answers = Answers {
        name: args.name.clone(),
        language,
        port,
        owner: owner.to_string(),
        description,
    };
    let rendered = template.render(&answers)?;
    // Nothing is written over: the service's directory and every file must be new.
    let dir = project.join("services").join(&args.name);
    if dir.exists() {
        return Err(usage(format!(
            "{} exists: choose another name, or remove it first",
            dir.display()
        )));
    }
    if let Some(taken) = rendered.keys().find(|path| project.join(path).exists()) {
        return Err(usage(format!(
            "{} exists and the template would write it: choose another name",
            project.join(taken).display()
        )));
    }
    let member = match language {
        Language::Rust => Some(format!("services/{}", args.name)),
        Language::Kotlin => None,
    };
    let outcome = Scaffolded {
        name: args.name.clone(),
        language,
        port,
        url: format!("https://{}.local.test", args.name),
        template_version: template.manifest.version,
        files: rendered.keys().cloned().collect(),
        workspace_member: member.clone(),
        dry_run: args.dry_run,
    };
    if !args.dry_run {
        write_all(project, &rendered)?;
        let stamp = Stamp {
            template: format!("service/{}", language.as_str()),
            version: template.manifest.version,
            answers,
            files: rendered,
        };
        let registered = stamp.write(project).and_then(|()| match &member {
            Some(member) => add_workspace_member(project, member),
            None => Ok(()),
        });
        if let Err(error) = registered {
            // All or nothing: a half-made service would be found by the next `up`.
            let _ = std::fs::remove_dir_all(&dir);
            for path in &outcome.files {
                let _ = std::fs::remove_file(project.join(path));
            }
            return Err(error);
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
    } else {
        print_next_steps(&outcome);
    }
    Ok(0)
}

fn print_next_steps(outcome: &Scaffolded) {
    let verb = if outcome.dry_run {
        "would write"
    } else {
        "wrote"
    };
    println!(
        "{verb} {} files for {} ({} template v{}, port {}):",
        outcome.files.len(),
        outcome.name,
        outcome.language.as_str(),
        outcome.template_version,
        outcome.port
    );
    for file in &outcome.files {
        println!("  {file}");
    }
    if outcome.dry_run {
        return;
    }
    if let Some(member) = &outcome.workspace_member {
        println!("added {member} to the workspace (Cargo.toml)");
    }
    let (test, also) = match outcome.language {
        Language::Rust => (
            format!("cargo test -p {}", outcome.name),
            format!(
                " services/contracts/{}.events.yaml Cargo.toml",
                outcome.name
            ),
        ),
        Language::Kotlin => (
            format!("(cd services/{} && mvn test)", outcome.name),
            String::new(),
        ),
    };
    println!(
        "\nnext:\n  paytool up      # builds, starts and routes it\n  curl {}/health/ready\n  {test}      # its contract tests, with PAYTOOL_TEST_STATUS and PAYTOOL_TEST_DATABASE_URL set (README: Developing)\n  git add services/{} services/contracts/{}.yaml{also}",
        outcome.url, outcome.name, outcome.name
    );
}

/// Writes every file, or none: the first failure removes what was written.
fn write_all(project: &Path, files: &Rendered) -> anyhow::Result<()> {
    let mut written: Vec<std::path::PathBuf> = Vec::new();
    for (relative, text) in files {
        let path = project.join(relative);
        let outcome = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&path, text));
        if let Err(error) = outcome {
            for done in &written {
                let _ = std::fs::remove_file(done);
            }
            return Err(error).with_context(|| format!("cannot write {}", path.display()));
        }
        written.push(path);
    }
    Ok(())
}

/// Adds a member to the workspace's `members`, keeping the file's formatting and comments.
fn add_workspace_member(project: &Path, member: &str) -> anyhow::Result<()> {
    let path = project.join("Cargo.toml");
    let text = std::fs::read_to_string(&path)?;
    let mut document: toml_edit::DocumentMut = text
        .parse()
        .with_context(|| format!("{} does not parse", path.display()))?;
    let members = document["workspace"]["members"]
        .as_array_mut()
        .with_context(|| format!("{} has no [workspace] members", path.display()))?;
    if members.iter().any(|m| m.as_str() == Some(member)) {
        return Ok(());
    }
    members.push(member);
    // One member a line, as the file has them.
    for value in members.iter_mut() {
        value.decor_mut().set_prefix("\n    ");
    }
    members.set_trailing("\n");
    members.set_trailing_comma(true);
    std::fs::write(&path, document.to_string())?;
    Ok(())
}

/// What `scaffold upgrade` did to each file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Change {
    /// The template changed it and the service had not: the new text.
    Updated,
    /// Both changed it; the changes did not overlap.
    Merged,
    /// Both changed the same lines: the file holds conflict markers.
    Conflict,
    /// New in the template.
    Added,
    /// Gone from the template, and unchanged in the service: removed.
    Removed,
    /// Gone from the template, but changed in the service: kept.
    KeptChanged,
}

#[derive(Debug, Serialize)]
struct Upgraded {
    name: String,
    from_version: u32,
    to_version: u32,
    changes: Vec<(String, Change)>,
    conflicts: usize,
    dry_run: bool,
}

fn upgrade(project: &Path, name: &str, dry_run: bool, json: bool) -> anyhow::Result<i32> {
    apps::check_name(name).map_err(|why| fail(Code::Usage, why))?;
    let stamp = Stamp::read(project, name)?;
    let template = Template::load(project, stamp.answers.language)?;
    let theirs = template.render(&stamp.answers)?;
    let mut changes: Vec<(String, Change)> = Vec::new();
    let mut writes: Vec<(String, Option<String>)> = Vec::new();
    let paths: std::collections::BTreeSet<&String> =
        stamp.files.keys().chain(theirs.keys()).collect();
    for path in paths {
        let base = stamp.files.get(path);
        let new = theirs.get(path);
        let ours = std::fs::read_to_string(project.join(path)).ok();
        let (change, text) = match (base, new, ours.as_ref()) {
            // The template did not change it: whatever the service did stays.
            (Some(base), Some(new), _) if base == new => continue,
            (_, Some(new), Some(ours)) if ours == new => continue,
            (Some(base), Some(new), Some(ours)) if ours == base => {
                (Change::Updated, Some(new.clone()))
            }
            (Some(base), Some(new), Some(ours)) => match diffy::merge(base, ours, new) {
                Ok(merged) => (Change::Merged, Some(merged)),
                Err(conflicted) => (Change::Conflict, Some(conflicted)),
            },
            // Deleted in the service, changed in the template: left deleted, said as a conflict.
            (Some(_), Some(_), None) => (Change::Conflict, None),
            (None, Some(new), None) => (Change::Added, Some(new.clone())),
            (None, Some(new), Some(ours)) => match diffy::merge("", ours, new) {
                Ok(merged) => (Change::Merged, Some(merged)),
                Err(conflicted) => (Change::Conflict, Some(conflicted)),
            },
            (Some(base), None, Some(ours)) if ours == base => (Change::Removed, None),
            (Some(_), None, Some(_)) => (Change::KeptChanged, None),
            (Some(_), None, None) | (None, None, _) => continue,
        };
        if let Some(text) = &text {
            writes.push((path.clone(), Some(text.clone())));
        } else if change == Change::Removed {
            writes.push((path.clone(), None));
        }
        changes.push((path.clone(), change));
    }
    let conflicts = changes
        .iter()
        .filter(|(_, change)| *change == Change::Conflict)
        .count();
    let outcome = Upgraded {
        name: name.to_string(),
        from_version: stamp.version,
        to_version: template.manifest.version,
        changes,
        conflicts,
        dry_run,
    };
    let unchanged = outcome.changes.is_empty() && stamp.version == template.manifest.version;
    if !dry_run && !unchanged {
        for (path, text) in &writes {
            let full = project.join(path);
            match text {
                Some(text) => {
                    if let Some(parent) = full.parent() {
                        std::fs::create_dir_all(parent)?;
                    }
                    std::fs::write(&full, text)?;
                }
                None => std::fs::remove_file(&full)?,
            }
        }
        // The new rendering is the base of the next upgrade, conflicts or not: what is left to
        // resolve is in the service's files, as after a `git merge`.
        Stamp {
            version: template.manifest.version,
            files: theirs,
            ..stamp
        }
        .write(project)?;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
    } else if unchanged {
        println!(
            "{name} is up to date with the {} template v{}: nothing to do",
            template.manifest.language.as_str(),
            outcome.to_version
        );
    } else {
        let verb = if dry_run { "would upgrade" } else { "upgraded" };
        println!(
            "{verb} {name} from template v{} to v{}:",
            outcome.from_version, outcome.to_version
        );
        for (path, change) in &outcome.changes {
            println!(
                "  {:<12} {path}",
                serde_json::to_value(change)?.as_str().unwrap_or("")
            );
        }
        if conflicts > 0 {
            println!("{conflicts} file(s) hold conflict markers (<<<<<<< ours … >>>>>>> theirs): resolve them, then build and test");
        }
    }
    Ok(if conflicts > 0 {
        Code::Failed as i32
    } else {
        0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A project with a two-file Rust template: `notes.txt` (three lines) and `keep.txt`.
    fn project_with_template(notes: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("paytool-upgrade-{}", uuid::Uuid::new_v4()));
        let files = dir.join("templates/service/rust/files/services/${{ values.name }}");
        std::fs::create_dir_all(&files).expect("template dir");
        std::fs::create_dir_all(dir.join("templates/service/common/files")).expect("common");
        std::fs::create_dir_all(dir.join("services")).expect("services");
        std::fs::write(
            dir.join("Cargo.toml"),
            "[workspace]\nmembers = [\n    \"cli\",\n]\n",
        )
        .expect("Cargo.toml");
        set_template(&dir, 1, notes);
        std::fs::write(files.join("keep.txt"), "${{ values.name }} stays\n").expect("keep");
        dir
    }

    fn set_template(dir: &Path, version: u32, notes: &str) {
        std::fs::write(
            dir.join("templates/service/rust/template.toml"),
            format!("language = \"rust\"\nversion = {version}\ndescription = \"test\"\n"),
        )
        .expect("manifest");
        std::fs::write(
            dir.join("templates/service/rust/files/services/${{ values.name }}/notes.txt"),
            notes,
        )
        .expect("notes");
    }

    fn scaffold(dir: &Path) {
        let args = ScaffoldServiceArgs {
            name: "loyalty".into(),
            language: ServiceLanguage::Rust,
            owner: "payments-team".into(),
            description: None,
            port: None,
            dry_run: false,
            json: true,
        };
        assert_eq!(service(dir, &args).expect("scaffolded"), 0);
    }

    #[test]
    fn an_upgrade_merges_the_templates_change_with_the_services_own_and_marks_a_clash() {
        let dir = project_with_template("one\ntwo\nthree\n");
        scaffold(&dir);
        let notes = dir.join("services/loyalty/notes.txt");
        assert_eq!(upgrade(&dir, "loyalty", false, true).expect("no-op"), 0);
        // The service changes its first line, the template its last: both are kept.
        std::fs::write(&notes, "ONE\ntwo\nthree\n").expect("ours");
        set_template(&dir, 2, "one\ntwo\nTHREE\n");
        assert_eq!(upgrade(&dir, "loyalty", false, true).expect("merged"), 0);
        assert_eq!(
            std::fs::read_to_string(&notes).expect("read"),
            "ONE\ntwo\nTHREE\n"
        );
        let stamp = Stamp::read(&dir, "loyalty").expect("stamp");
        assert_eq!(stamp.version, 2, "the stamp follows the template");
        // Both change the same line: conflict markers, exit 1, the other file untouched.
        std::fs::write(&notes, "ONE\nours\nTHREE\n").expect("ours");
        set_template(&dir, 3, "one\ntheirs\nTHREE\n");
        assert_eq!(upgrade(&dir, "loyalty", false, true).expect("conflict"), 1);
        let merged = std::fs::read_to_string(&notes).expect("read");
        assert!(
            merged.contains("<<<<<<<") && merged.contains("ours") && merged.contains("theirs"),
            "{merged}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("services/loyalty/keep.txt")).expect("keep"),
            "loyalty stays\n"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_dry_run_upgrade_writes_nothing() {
        let dir = project_with_template("one\n");
        scaffold(&dir);
        set_template(&dir, 2, "two\n");
        assert_eq!(upgrade(&dir, "loyalty", true, true).expect("planned"), 0);
        let notes = dir.join("services/loyalty/notes.txt");
        assert_eq!(std::fs::read_to_string(&notes).expect("read"), "one\n");
        assert_eq!(Stamp::read(&dir, "loyalty").expect("stamp").version, 1);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_workspace_member_is_added_once_one_a_line() {
        let dir = std::env::temp_dir().join(format!("paytool-scaffold-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(
            dir.join("Cargo.toml"),
            "[workspace]\nresolver = \"2\"\nmembers = [\n    \"cli\",\n    \"services/paykit\",\n]\n\n# kept\n[workspace.package]\nedition = \"2021\"\n",
        )
        .expect("write");
        add_workspace_member(&dir, "services/loyalty").expect("added");
        add_workspace_member(&dir, "services/loyalty").expect("added once");
        let text = std::fs::read_to_string(dir.join("Cargo.toml")).expect("read");
        assert_eq!(
            text,
            "[workspace]\nresolver = \"2\"\nmembers = [\n    \"cli\",\n    \"services/paykit\",\n    \"services/loyalty\",\n]\n\n# kept\n[workspace.package]\nedition = \"2021\"\n"
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
