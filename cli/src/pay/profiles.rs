//! Saved identities for `paytool pay --as NAME`: `<home>/pay/profiles.json` (mode 0600 in a
//! 0700 directory, since it holds passwords and tokens).
//!
//! Several `paytool pay` processes may run at once (a till charging while a watcher refreshes
//! its token), so every change is a read-modify-write under an exclusive `flock` on
//! `profiles.lock`, and the file is replaced atomically: no writer loses another's change and no
//! reader sees half a file.

use crate::exit::{fail, Code};
use crate::home::{write_atomic, Home};
use anyhow::Context;
use chrono::{DateTime, Utc};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

/// Bumped when the file's layout changes incompatibly.
const PROFILES_FORMAT: u32 = 1;
/// Profile names go into file names and messages: short, and nothing that needs quoting.
const PROFILE_NAME_MAX_CHARS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Consumer,
    Merchant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Consumer => "consumer",
            Role::Merchant => "merchant",
        }
    }
}

/// An access token, the refresh token that renews it, and when each stops working.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tokens {
    pub access_token: String,
    pub access_expires_at: DateTime<Utc>,
    pub refresh_token: Option<String>,
    /// `None` when Keycloak gave no bound (`refresh_expires_in: 0`, an offline token).
    pub refresh_expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Profile {
    pub role: Role,
    pub email: String,
    /// Kept so that a later command can log in again once the refresh token has expired.
    pub password: String,
    pub display_name: String,
    /// The consumer's or the merchant's id.
    pub id: String,
    /// The wallet (consumer) or the merchant's ledger account.
    pub account_id: String,
    pub currency: String,
    pub created_at: DateTime<Utc>,
    pub tokens: Tokens,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    format: u32,
    profiles: BTreeMap<String, Profile>,
}

#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn of(home: &Home) -> Self {
        Self {
            dir: home.dir.join("pay"),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join("profiles.json")
    }

    /// Holds the lock until dropped. Blocking, but every holder keeps it for a file write or
    /// one registration, well under a second.
    fn lock(&self) -> anyhow::Result<Flock<fs::File>> {
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700))?;
        let path = self.dir.join("profiles.lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, errno)| anyhow::anyhow!("cannot lock {}: {errno}", path.display()))
    }

    fn read(&self) -> anyhow::Result<File> {
        let path = self.path();
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(File {
                    format: PROFILES_FORMAT,
                    ..File::default()
                })
            }
            Err(error) => {
                return Err(error).with_context(|| format!("cannot read {}", path.display()))
            }
        };
        let file: File = serde_json::from_str(&text).map_err(|error| {
            fail(
                Code::StateDir,
                format!(
                    "{} is corrupt ({error}): move it away and register the profiles again",
                    path.display()
                ),
            )
        })?;
        if file.format != PROFILES_FORMAT {
            return Err(fail(
                Code::StateDir,
                format!(
                    "{} has format {} (this paytool reads {PROFILES_FORMAT}): move it away and register again",
                    path.display(),
                    file.format
                ),
            ));
        }
        Ok(file)
    }

    fn write(&self, file: &File) -> anyhow::Result<()> {
        write_atomic(
            &self.path(),
            serde_json::to_string_pretty(file)?.as_bytes(),
            0o600,
        )
    }

    pub fn all(&self) -> anyhow::Result<BTreeMap<String, Profile>> {
        Ok(self.read()?.profiles)
    }

    pub fn get(&self, name: &str) -> anyhow::Result<Profile> {
        self.read()?.profiles.remove(name).ok_or_else(|| {
            fail(
                Code::Usage,
                format!(
                    "no profile named '{name}' in {}: make one with `paytool pay register consumer {name}` (or merchant)",
                    self.path().display()
                ),
            )
        })
    }

    /// Runs `make` (the registration) with the lock held, so that two registrations of one
    /// name cannot both reach the platform, then saves what it made.
    pub async fn create<F, Fut>(&self, name: &str, make: F) -> anyhow::Result<Profile>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<Profile>>,
    {
        check_name(name)?;
        let _lock = self.lock()?;
        let mut file = self.read()?;
        if let Some(existing) = file.profiles.get(name) {
            return Err(fail(
                Code::Usage,
                format!(
                    "a profile named '{name}' exists already ({} {}): pick another name",
                    existing.role.as_str(),
                    existing.email
                ),
            ));
        }
        let profile = make().await?;
        file.profiles.insert(name.to_string(), profile.clone());
        self.write(&file)?;
        Ok(profile)
    }

    /// Saves renewed tokens, unless the profile was replaced meanwhile (another email).
    pub fn save_tokens(&self, name: &str, email: &str, tokens: &Tokens) -> anyhow::Result<()> {
        let _lock = self.lock()?;
        let mut file = self.read()?;
        if let Some(profile) = file.profiles.get_mut(name) {
            if profile.email == email {
                profile.tokens = tokens.clone();
                self.write(&file)?;
            }
        }
        Ok(())
    }
}

pub fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.chars().count() <= PROFILE_NAME_MAX_CHARS
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with(['.', '-']);
    if ok {
        Ok(())
    } else {
        Err(fail(
            Code::Usage,
            format!(
                "bad profile name '{name}': use 1 to {PROFILE_NAME_MAX_CHARS} letters, digits, '-', '_' or '.', starting with a letter or digit"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(email: &str) -> Profile {
        Profile {
            role: Role::Consumer,
            email: email.to_string(),
            password: "a password of some length".to_string(),
            display_name: "alice".to_string(),
            id: "c".to_string(),
            account_id: "w".to_string(),
            currency: "JPY".to_string(),
            created_at: Utc::now(),
            tokens: Tokens {
                access_token: "a".to_string(),
                access_expires_at: Utc::now(),
                refresh_token: None,
                refresh_expires_at: None,
            },
        }
    }

    #[tokio::test]
    async fn profiles_are_saved_private_and_a_name_is_taken_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store {
            dir: dir.path().join("pay"),
        };
        store
            .create("alice", || async { Ok(profile("a@example.test")) })
            .await
            .expect("created");
        let mode = |path: PathBuf| fs::metadata(path).expect("exists").permissions().mode() & 0o777;
        assert_eq!(mode(store.path()), 0o600);
        assert_eq!(mode(store.dir.clone()), 0o700);
        assert_eq!(store.get("alice").expect("saved").email, "a@example.test");
        let again = store
            .create("alice", || async { Ok(profile("b@example.test")) })
            .await
            .expect_err("taken");
        assert_eq!(crate::exit::code_of(&again), 2);
        assert_eq!(
            crate::exit::code_of(&store.get("bob").expect_err("absent")),
            2
        );
    }

    #[tokio::test]
    async fn renewed_tokens_are_saved_only_for_the_same_account() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store {
            dir: dir.path().join("pay"),
        };
        store
            .create("alice", || async { Ok(profile("a@example.test")) })
            .await
            .expect("created");
        let mut tokens = profile("x").tokens;
        tokens.access_token = "renewed".to_string();
        store
            .save_tokens("alice", "other@example.test", &tokens)
            .expect("saved");
        assert_eq!(store.get("alice").expect("there").tokens.access_token, "a");
        store
            .save_tokens("alice", "a@example.test", &tokens)
            .expect("saved");
        assert_eq!(
            store.get("alice").expect("there").tokens.access_token,
            "renewed"
        );
    }

    #[test]
    fn profile_names_that_need_quoting_are_refused() {
        for name in ["alice", "shop-1", "a.b_c"] {
            assert!(check_name(name).is_ok(), "{name}");
        }
        for name in ["", "-x", ".x", "a b", "a/b", "ä"] {
            assert!(check_name(name).is_err(), "{name:?}");
        }
    }
}
