//! Where things are: the project checkout (for `stacks/`), the state directory (`.paytool/`)
//! and the download cache (`~/.cache/paytool`).

use anyhow::Context;
use std::path::{Path, PathBuf};

/// The checkout `paytool` runs from: the nearest ancestor of the working directory that holds
/// `stacks/local`, else the checkout this binary was built from.
pub fn project_root() -> anyhow::Result<PathBuf> {
    if let Some(root) = std::env::var_os("PAYTOOL_PROJECT_ROOT") {
        return Ok(PathBuf::from(root));
    }
    let cwd = std::env::current_dir().context("the working directory cannot be read")?;
    if let Some(found) = cwd.ancestors().find(|dir| is_project_root(dir)) {
        return Ok(found.to_path_buf());
    }
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf);
    match built_from {
        Some(root) if is_project_root(&root) => Ok(root),
        _ => Err(crate::support::exit::fail(
            crate::support::exit::Code::StateDir,
            "no paytool checkout found (a directory with stacks/local): run paytool inside the repository or set PAYTOOL_PROJECT_ROOT",
        )),
    }
}

fn is_project_root(dir: &Path) -> bool {
    dir.join("stacks/local").is_dir() && dir.join("Cargo.toml").is_file()
}

/// The state directory: `--home`, else `PAYTOOL_HOME`, else `<project>/.paytool`.
pub fn state_dir(explicit: Option<&Path>, project: &Path) -> PathBuf {
    match explicit {
        Some(path) => absolute(path),
        None => project.join(".paytool"),
    }
}

/// The download cache shared by every installation on this machine.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PAYTOOL_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("paytool");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".cache/paytool")
}

fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().map_or_else(|_| path.to_path_buf(), |cwd| cwd.join(path))
    }
}

/// The directory holding the service binaries: the one `paytool` itself runs from, because
/// `cargo build --workspace` puts every binary of the workspace side by side.
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("PAYTOOL_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().context("cannot find the paytool executable")?;
    exe.parent()
        .map(Path::to_path_buf)
        .context("the paytool executable has no parent directory")
}
