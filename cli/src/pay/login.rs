//! `paytool login` and `paytool logout`: a person signs in with the OAuth 2.0 device
//! authorization grant (RFC 8628) of the public client `paytool-cli`, approving a short code in
//! any browser, so that no password ever passes through paytool. The tokens become the profile
//! `me`, which `paytool pay` acts as when `--as` is omitted; they renew with the refresh token
//! until the Keycloak session ends, and then only a new `paytool login` helps.

use super::client::{unverified_claims, DevicePoll, Gateway, Host, Refusal, Session};
use super::profiles::{Login, PendingLogin, Profile, Role, RoleAccount, Store, LOGIN_PROFILE};
use crate::args::LoginArgs;
use crate::runtime::home::Home;
use crate::support::exit::{fail, Code};
use chrono::Utc;
use serde_json::{json, Value};
use std::time::Duration;

/// RFC 8628 §3.5: the poll interval when the server names none, and what `slow_down` adds.
const DEFAULT_POLL_INTERVAL_S: u64 = 5;
const SLOW_DOWN_STEP_S: u64 = 5;
/// A saved `--no-wait` code this close to its expiry is not worth resuming: ask for a new one.
const PENDING_REUSE_MARGIN_S: i64 = 15;

pub async fn login(home: &Home, args: &LoginArgs) -> anyhow::Result<i32> {
    // Listening from the start (not from the first poll), so that a Ctrl-C right after the
    // code is shown still ends the wait with 130 rather than killing the process outright.
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let store = Store::of(home);
    let gateway = Gateway::connect(home)?;
    let pending = match store
        .pending_login()?
        .filter(|p| p.expires_at > Utc::now() + chrono::Duration::seconds(PENDING_REUSE_MARGIN_S))
    {
        Some(pending) => pending,
        None => new_code(&gateway).await?,
    };
    show_code(&pending, args.json)?;
    if args.no_wait {
        store.set_pending_login(Some(pending))?;
        if !args.json {
            println!("run `paytool login` again to finish once the code is approved");
        }
        return Ok(0);
    }
    let tokens = tokio::select! {
        polled = poll(&gateway, &pending, args.timeout_s) => polled,
        _ = interrupt.recv() => {
            // The code is forgotten: the next `paytool login` starts afresh.
            store.set_pending_login(None)?;
            eprintln!("paytool: login cancelled");
            return Ok(Code::Interrupted as i32);
        }
    };
    let tokens = match tokens {
        Ok(tokens) => tokens,
        Err(error) => {
            store.set_pending_login(None)?;
            return Err(error);
        }
    };
    let profile = profile_of(&gateway, tokens).await?;
    // A sign-in that replaces another ends the earlier Keycloak session rather than leaving
    // it to time out.
    if let Some(earlier) = store.find(LOGIN_PROFILE)? {
        if earlier.login == Login::Device {
            if let Some(refresh) = &earlier.tokens.refresh_token {
                let _ = gateway.revoke(refresh).await;
            }
        }
    }
    store.put_login(LOGIN_PROFILE, &profile)?;
    let claims = unverified_claims(&profile.tokens.access_token)?;
    let summary = json!({
        "profile": LOGIN_PROFILE,
        "login": "device",
        "username": claims["preferred_username"],
        "name": claims["name"],
        "email": profile.email,
        "roles": profile.held_roles(),
        "realm_roles": claims["realm_access"]["roles"],
        "role": profile.role,
        "account_id": profile.account_id,
        "currency": profile.currency,
        "session_expires_at": profile.tokens.refresh_expires_at,
        "profiles_file": store.path(),
    });
    if args.json {
        println!("{summary}");
    } else {
        let roles: Vec<&str> = profile.held_roles().iter().map(|r| r.as_str()).collect();
        println!(
            "signed in as {} ({}), {}; saved as the profile '{LOGIN_PROFILE}' in {}",
            text(&claims["preferred_username"]),
            text(&claims["name"]),
            roles.join(" and "),
            store.path().display()
        );
        println!("`paytool pay balance` now acts as you; `paytool logout` signs out");
    }
    Ok(0)
}

async fn new_code(gateway: &Gateway) -> anyhow::Result<PendingLogin> {
    let asked_at = Utc::now();
    let answer = gateway.device_authorization().await?;
    let field = |name: &str| answer[name].as_str().map(str::to_string);
    let expires_in_s = answer["expires_in"]
        .as_i64()
        .filter(|s| *s > 0)
        .ok_or_else(|| {
            fail(
                Code::Failed,
                "Keycloak's device authorization has no expires_in",
            )
        })?;
    Ok(PendingLogin {
        device_code: field("device_code").unwrap_or_default(),
        user_code: field("user_code")
            .ok_or_else(|| fail(Code::Failed, "Keycloak gave no user_code"))?,
        verification_uri: field("verification_uri")
            .ok_or_else(|| fail(Code::Failed, "Keycloak gave no verification_uri"))?,
        verification_uri_complete: field("verification_uri_complete"),
        interval_s: answer["interval"]
            .as_u64()
            .filter(|s| *s > 0)
            .unwrap_or(DEFAULT_POLL_INTERVAL_S),
        expires_at: asked_at + chrono::Duration::seconds(expires_in_s),
    })
}

/// The code to approve, as one block a person can act on (or one JSON line).
fn show_code(pending: &PendingLogin, json: bool) -> anyhow::Result<()> {
    let expires_in_s = (pending.expires_at - Utc::now()).num_seconds().max(0);
    if json {
        let line = json!({
            "user_code": pending.user_code,
            "verification_uri": pending.verification_uri,
            "verification_uri_complete": pending.verification_uri_complete,
            "expires_in_s": expires_in_s,
            "expires_at": pending.expires_at,
            "interval_s": pending.interval_s,
        });
        // Flushed at once: a program reading the pipe approves the code while we wait.
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")?;
        out.flush()?;
        return Ok(());
    }
    println!();
    println!("  To sign in, open this page in a browser:");
    println!("      {}", pending.verification_uri);
    println!("  and enter the code:");
    println!("      {}", pending.user_code);
    if let Some(complete) = &pending.verification_uri_complete {
        println!("  (or open {complete}, which fills the code in)");
    }
    println!(
        "  The code is valid for {} min {} s.",
        expires_in_s / 60,
        expires_in_s % 60
    );
    println!();
    Ok(())
}

/// Polls the token endpoint every `interval` (longer after each `slow_down`) until the code
/// is approved, denied or expired, or `timeout_s` has passed.
async fn poll(
    gateway: &Gateway,
    pending: &PendingLogin,
    timeout_s: Option<u32>,
) -> anyhow::Result<super::profiles::Tokens> {
    let mut deadline = pending.expires_at;
    if let Some(seconds) = timeout_s {
        deadline = deadline.min(Utc::now() + chrono::Duration::seconds(i64::from(seconds)));
    }
    let mut interval_s = pending.interval_s;
    let not_approved = |why: String| {
        anyhow::Error::new(Refusal {
            code: Code::Unauthorized,
            status: 400,
            title: "Login refused".to_string(),
            detail: Some(format!("{why}: run `paytool login` again")),
        })
    };
    loop {
        let left_ms = (deadline - Utc::now()).num_milliseconds();
        if left_ms <= 0 {
            return Err(not_approved(format!(
                "the code {} was not approved in time",
                pending.user_code
            )));
        }
        // The last poll comes at the deadline rather than after it.
        let wait_ms = (interval_s * 1000).min(u64::try_from(left_ms).unwrap_or(0));
        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
        match gateway.poll_device(&pending.device_code).await? {
            DevicePoll::Tokens(tokens) => return Ok(tokens),
            DevicePoll::Pending => {}
            DevicePoll::SlowDown => interval_s += SLOW_DOWN_STEP_S,
            DevicePoll::Denied(why) => {
                return Err(not_approved(format!("the sign-in was denied ({why})")))
            }
            DevicePoll::Expired(why) => {
                return Err(not_approved(format!("the code expired ({why})")))
            }
        }
    }
}

/// The profile for the tokens: who they are (from the claims), and the account of each role
/// they hold, read from the platform with those same tokens.
async fn profile_of(gateway: &Gateway, tokens: super::profiles::Tokens) -> anyhow::Result<Profile> {
    let claims = unverified_claims(&tokens.access_token)?;
    let realm_roles: Vec<&str> = claims["realm_access"]["roles"]
        .as_array()
        .map(|roles| roles.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let held: Vec<Role> = [Role::Consumer, Role::Merchant]
        .into_iter()
        .filter(|role| realm_roles.contains(&role.as_str()))
        .collect();
    let email = claims["email"]
        .as_str()
        .or(claims["preferred_username"].as_str())
        .unwrap_or_default()
        .to_string();
    if held.is_empty() {
        if let Some(refresh) = &tokens.refresh_token {
            let _ = gateway.revoke(refresh).await;
        }
        return Err(anyhow::Error::new(Refusal {
            code: Code::Unauthorized,
            status: 403,
            title: "Login refused".to_string(),
            detail: Some(format!(
                "{email} is neither a consumer nor a merchant of this platform (roles: {})",
                realm_roles.join(", ")
            )),
        }));
    }
    let mut profile = Profile {
        login: Login::Device,
        role: held[0],
        other_role: None,
        email,
        password: String::new(),
        display_name: text(&claims["name"]),
        id: String::new(),
        account_id: String::new(),
        currency: String::new(),
        created_at: Utc::now(),
        tokens,
    };
    // A session without a store: the tokens are saved once, with the profile.
    let mut session = Session::new(gateway.clone(), LOGIN_PROFILE, profile.clone(), None);
    let mut accounts = Vec::new();
    for role in &held {
        accounts.push(account(&mut session, *role).await?);
    }
    profile.tokens = session.profile.tokens;
    let mut accounts = accounts.into_iter();
    if let Some(first) = accounts.next() {
        profile.id = first.id;
        profile.account_id = first.account_id;
        profile.currency = first.currency;
    }
    profile.other_role = accounts.next();
    Ok(profile)
}

async fn account(session: &mut Session, role: Role) -> anyhow::Result<RoleAccount> {
    Ok(match role {
        Role::Consumer => {
            let wallet = session.get(Host::Api, "/v1/wallet").await?;
            RoleAccount {
                role,
                // consumer-api names no consumer id to its owner; money is sent to a sign-in
                // by its email.
                id: String::new(),
                account_id: text(&wallet["id"]),
                currency: text(&wallet["currency"]),
            }
        }
        Role::Merchant => {
            let merchant = session.get(Host::Merchant, "/v1/merchants/me").await?;
            RoleAccount {
                role,
                id: text(&merchant["id"]),
                account_id: text(&merchant["ledger_account_id"]),
                currency: text(&merchant["currency"]),
            }
        }
    })
}

pub async fn logout(home: &Home, json: bool) -> anyhow::Result<i32> {
    let store = Store::of(home);
    let Some(profile) = store.remove_login(LOGIN_PROFILE)? else {
        if json {
            println!("{}", json!({ "signed_out": false, "was_signed_in": false }));
        } else {
            println!("not signed in: nothing to do");
        }
        return Ok(0);
    };
    // The profile is gone either way; the Keycloak session is ended when it can be reached.
    let revoked = match &profile.tokens.refresh_token {
        Some(refresh) => match Gateway::connect(home) {
            Ok(gateway) => gateway.revoke(refresh).await.map_err(|e| format!("{e:#}")),
            Err(error) => Err(format!("{error:#}")),
        },
        None => Err("the profile had no refresh token".to_string()),
    };
    if json {
        println!(
            "{}",
            json!({
                "signed_out": true,
                "was_signed_in": true,
                "email": profile.email,
                "session_revoked": revoked.is_ok(),
                "revoke_error": revoked.as_ref().err(),
            })
        );
    } else {
        println!(
            "signed out {} (the profile '{LOGIN_PROFILE}' is deleted)",
            profile.email
        );
        if let Err(why) = &revoked {
            eprintln!(
                "paytool: the Keycloak session was not revoked ({why}); it ends by itself after 30 minutes unused"
            );
        }
    }
    Ok(0)
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_string(),
        other => other.to_string(),
    }
}
