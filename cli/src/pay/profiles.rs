//! Saved identities for `paytool pay --as NAME`: `<home>/pay/profiles.json` (mode 0600 in a
//! 0700 directory, since it holds passwords and tokens).
//!
//! Several `paytool pay` processes may run at once (a till charging while a watcher refreshes
//! its token), so every change is a read-modify-write under an exclusive `flock` on
//! `profiles.lock`, and the file is replaced atomically: no writer loses another's change and no
//! reader sees half a file.

use crate::runtime::home::{write_atomic, Home};
use crate::support::exit::{fail, Code};
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
/// The profile `paytool login` saves, and the one `paytool pay` uses when `--as` is omitted.
pub const LOGIN_PROFILE: &str = "me";

pub use crate::args::Role;

/// An access token, the refresh token that renews it, and when each stops working.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tokens {
    pub access_token: String,
    pub access_expires_at: DateTime<Utc>,
    pub refresh_token: Option<String>,
    /// `None` when Keycloak gave no bound (`refresh_expires_in: 0`, an offline token).
    pub refresh_expires_at: Option<DateTime<Utc>>,
}

/// How a profile signed in, and so how it signs in again once its refresh token is refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Login {
    /// `paytool pay register`: the password is kept and used again.
    #[default]
    Password,
    /// `paytool login` (RFC 8628 device grant): no password is ever seen; a person must
    /// approve a new login.
    Device,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Profile {
    /// Absent in files written before device logins existed: those are all password logins.
    #[serde(default)]
    pub login: Login,
    /// The role `id`, `account_id` and `currency` belong to.
    pub role: Role,
    /// A sign-in that holds both roles: the other one's account (`paytool pay --role`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other_role: Option<RoleAccount>,
    pub email: String,
    /// Kept so that a later command can log in again once the refresh token has expired.
    /// Empty for a device login.
    #[serde(default, skip_serializing_if = "String::is_empty")]
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

/// A device authorization that `paytool login --no-wait` started and a later `paytool login`
/// finishes (it polls this code instead of asking for a new one while it is valid).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingLogin {
    pub device_code: String,
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: Option<String>,
    pub interval_s: u64,
    pub expires_at: DateTime<Utc>,
}

/// One role's account, for a sign-in that holds two.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoleAccount {
    pub role: Role,
    pub id: String,
    pub account_id: String,
    pub currency: String,
}

impl Profile {
    /// The roles this profile can act in: its own, and a sign-in's second one.
    pub fn held_roles(&self) -> Vec<Role> {
        std::iter::once(self.role)
            .chain(self.other_role.as_ref().map(|other| other.role))
            .collect()
    }

    /// The same profile acting in `role`: its second role's account swapped in (in memory;
    /// only tokens are ever saved back). `None` when it does not hold `role`.
    pub fn acting_as(mut self, role: Role) -> Option<Self> {
        if self.role == role {
            return Some(self);
        }
        let other = self.other_role.take().filter(|o| o.role == role)?;
        self.other_role = Some(RoleAccount {
            role: self.role,
            id: std::mem::replace(&mut self.id, other.id),
            account_id: std::mem::replace(&mut self.account_id, other.account_id),
            currency: std::mem::replace(&mut self.currency, other.currency),
        });
        self.role = role;
        Some(self)
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    format: u32,
    profiles: BTreeMap<String, Profile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pending_login: Option<PendingLogin>,
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

    /// Saves a login as `name`, replacing an earlier login of that name; a registered (password)
    /// profile of that name is left alone and refused. Clears the pending device login.
    pub fn put_login(&self, name: &str, profile: &Profile) -> anyhow::Result<()> {
        let _lock = self.lock()?;
        let mut file = self.read()?;
        if let Some(existing) = file.profiles.get(name) {
            if existing.login != Login::Device {
                return Err(fail(
                    Code::Usage,
                    format!(
                        "the profile '{name}' in {} is a registered {} ({}), not a login: rename it there to sign in",
                        self.path().display(),
                        existing.role.as_str(),
                        existing.email
                    ),
                ));
            }
        }
        file.profiles.insert(name.to_string(), profile.clone());
        file.pending_login = None;
        self.write(&file)
    }

    /// Removes the login `name` (a registered profile is refused) and any pending device
    /// login; returns what was removed.
    pub fn remove_login(&self, name: &str) -> anyhow::Result<Option<Profile>> {
        let _lock = self.lock()?;
        let mut file = self.read()?;
        if file
            .profiles
            .get(name)
            .is_some_and(|existing| existing.login != Login::Device)
        {
            return Err(fail(
                Code::Usage,
                format!("the profile '{name}' was registered, not signed in with `paytool login`: there is no login to end"),
            ));
        }
        let removed = file.profiles.remove(name);
        let had_pending = file.pending_login.take().is_some();
        if removed.is_some() || had_pending {
            self.write(&file)?;
        }
        Ok(removed)
    }

    pub fn find(&self, name: &str) -> anyhow::Result<Option<Profile>> {
        Ok(self.read()?.profiles.remove(name))
    }

    pub fn pending_login(&self) -> anyhow::Result<Option<PendingLogin>> {
        Ok(self.read()?.pending_login)
    }

    pub fn set_pending_login(&self, pending: Option<PendingLogin>) -> anyhow::Result<()> {
        let _lock = self.lock()?;
        let mut file = self.read()?;
        file.pending_login = pending;
        self.write(&file)
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
            login: Login::Password,
            role: Role::Consumer,
            other_role: None,
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
        assert_eq!(crate::support::exit::code_of(&again), 2);
        assert_eq!(
            crate::support::exit::code_of(&store.get("bob").expect_err("absent")),
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

    #[tokio::test]
    async fn a_login_replaces_a_login_but_never_a_registered_profile() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store {
            dir: dir.path().join("pay"),
        };
        let mut login = profile("me@example.test");
        login.login = Login::Device;
        login.password = String::new();
        store.put_login(LOGIN_PROFILE, &login).expect("saved");
        login.email = "again@example.test".to_string();
        store.put_login(LOGIN_PROFILE, &login).expect("replaced");
        let saved = store.find(LOGIN_PROFILE).expect("read").expect("there");
        assert_eq!(saved.email, "again@example.test");
        assert_eq!(saved.login, Login::Device);
        // No password is written for a device login.
        let text = fs::read_to_string(store.path()).expect("file");
        assert!(!text.contains("\"password\""), "{text}");
        store
            .create("alice", || async { Ok(profile("a@example.test")) })
            .await
            .expect("created");
        let refused = store.put_login("alice", &login).expect_err("registered");
        assert_eq!(crate::support::exit::code_of(&refused), 2);
        assert!(store.remove_login("alice").is_err());
        assert!(store
            .remove_login(LOGIN_PROFILE)
            .expect("removed")
            .is_some());
        assert!(store.find(LOGIN_PROFILE).expect("read").is_none());
        assert!(store.remove_login(LOGIN_PROFILE).expect("none").is_none());
    }

    #[test]
    fn a_profile_saved_before_logins_existed_reads_as_a_password_login() {
        let old = r#"{"role":"merchant","email":"m@example.test","password":"pw pw pw pw",
            "display_name":"m","id":"1","account_id":"2","currency":"JPY",
            "created_at":"2026-01-01T00:00:00Z","tokens":{"access_token":"a",
            "access_expires_at":"2026-01-01T00:00:00Z","refresh_token":null,"refresh_expires_at":null}}"#;
        let profile: Profile = serde_json::from_str(old).expect("reads");
        assert_eq!(profile.login, Login::Password);
        assert!(profile.other_role.is_none());
    }

    #[test]
    fn a_sign_in_with_both_roles_acts_in_either_with_that_roles_account() {
        let mut both = profile("both@example.test");
        both.other_role = Some(RoleAccount {
            role: Role::Merchant,
            id: "m".to_string(),
            account_id: "ma".to_string(),
            currency: "USD".to_string(),
        });
        assert_eq!(both.held_roles(), [Role::Consumer, Role::Merchant]);
        let merchant = both.clone().acting_as(Role::Merchant).expect("holds it");
        assert_eq!(
            (
                merchant.role,
                merchant.account_id.as_str(),
                merchant.currency.as_str()
            ),
            (Role::Merchant, "ma", "USD")
        );
        let back = merchant.acting_as(Role::Consumer).expect("holds it");
        assert_eq!(
            (back.account_id.as_str(), back.currency.as_str()),
            ("w", "JPY")
        );
        assert!(profile("c@example.test")
            .acting_as(Role::Merchant)
            .is_none());
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
