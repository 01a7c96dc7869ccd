//! `paytool pay`: the payment flow driven through the running platform's TLS gateway, as a
//! consumer's phone and a merchant's till would: registration and login (saved as profiles),
//! top-ups, QR payments both ways, transfers, refunds, the lists and the live feed, and a
//! timed `demo` of all of it.
//!
//! Amounts are exact integer minor units (`amount`), every call that moves money carries an
//! Idempotency-Key (a fresh UUID unless `--idempotency-key`), and a problem answer ends the
//! command with `error: <title>: <detail>` and an exit code from `exit.rs` (9 refused, 10
//! declined, 11 login refused).

mod amount;
pub mod client;
mod demo;
pub mod ledger;
pub mod login;
mod profiles;
pub mod qr;
pub mod stream;

pub use profiles::Role;

use crate::args::{AsProfile, Keyed, PayCommand, PayRegisterArgs};
use crate::runtime::home::Home;
use crate::support::exit::{fail, Code};
use crate::support::ui::Ui;
use amount::display_json;
use client::{Gateway, Host, Refusal, Session};
use profiles::{Login, Profile, Store, LOGIN_PROFILE};
use rand::Rng;
use serde_json::{json, Value};
use std::io::IsTerminal;

/// Generated passwords: well inside the platform's 10 to 128 characters.
const GENERATED_PASSWORD_CHARS: usize = 24;
/// Random hex digits that make a generated email unique.
const EMAIL_SUFFIX_HEX_DIGITS: usize = 8;

pub async fn run(home: &Home, command: PayCommand) -> anyhow::Result<i32> {
    printing_refusals(dispatch(home, command)).await
}

/// Runs a command whose refusals by the platform end it with their own line and exit code.
pub async fn printing_refusals(
    command: impl std::future::Future<Output = anyhow::Result<i32>>,
) -> anyhow::Result<i32> {
    match command.await {
        Ok(code) => Ok(code),
        // The platform's refusals are printed exactly as `error: <title>: <detail>`; every
        // other failure gets the usual `paytool: ...` line from main.
        Err(error) => match error.downcast_ref::<Refusal>() {
            Some(refusal) => {
                eprintln!("{refusal}");
                Ok(refusal.code as i32)
            }
            None => Err(error),
        },
    }
}

async fn dispatch(home: &Home, command: PayCommand) -> anyhow::Result<i32> {
    let store = Store::of(home);
    match command {
        PayCommand::Register(args) => register(home, &store, &args).await,
        PayCommand::Topup {
            who,
            amount,
            currency,
            keyed,
            json,
        } => {
            let amount = amount::parse(&amount, currency.as_deref())?;
            let mut session = session(home, &store, &who, Some(Role::Consumer))?;
            let money = amount.in_currency(&session.profile.currency)?;
            let answer = post_money(
                &mut session,
                json,
                ("topup", &format!("{money}")),
                Host::Api,
                "/v1/wallet/top-ups",
                &json!({ "amount": money }),
                &keyed,
            )
            .await?;
            print(json, &answer, || {
                format!(
                    "topped up {}: wallet {} available (top-up {})",
                    display_json(&answer["amount"]),
                    display_json(&answer["wallet"]["available"]),
                    text(&answer["id"])
                )
            })
        }
        PayCommand::Qr {
            who,
            amount,
            reference,
            expires_in_s,
            keyed,
            json,
        } => {
            let amount = amount.map(|a| amount::parse(&a, None)).transpose()?;
            let mut session = session(home, &store, &who, Some(Role::Merchant))?;
            let mut body = json!({});
            if let Some(amount) = &amount {
                body["amount"] = json!(amount.in_currency(&session.profile.currency)?);
            }
            optional(&mut body, "reference", reference);
            optional(&mut body, "expires_in_s", expires_in_s);
            let answer = post_money(
                &mut session,
                json,
                ("qr", "making the payment request"),
                Host::Merchant,
                "/v1/payment-requests",
                &body,
                &keyed,
            )
            .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
                return Ok(0);
            }
            let payload = text(&answer["payload"]);
            println!("{}", render_qr(&payload)?);
            let amount = if answer["amount"].is_object() {
                display_json(&answer["amount"])
            } else {
                "any amount".to_string()
            };
            let mut about = format!(
                "payment request {} ({}, {amount}",
                text(&answer["id"]),
                text(&answer["kind"])
            );
            if let Some(reference) = answer["reference"].as_str() {
                about.push_str(&format!(", reference {reference}"));
            }
            if let Some(expires) = answer["expires_at"].as_str() {
                about.push_str(&format!(", expires {}", clock(expires)));
            }
            println!("{about})");
            println!("{payload}");
            Ok(0)
        }
        PayCommand::Pay {
            who,
            payload,
            amount,
            keyed,
            json,
        } => {
            let amount = amount.map(|a| amount::parse(&a, None)).transpose()?;
            let mut session = session(home, &store, &who, Some(Role::Consumer))?;
            let mut body = json!({ "qr": payload.trim() });
            if let Some(amount) = &amount {
                body["amount"] = json!(amount.in_currency(&session.profile.currency)?);
            }
            let answer = post_money(
                &mut session,
                json,
                ("pay", "paying"),
                Host::Api,
                "/v1/payments",
                &body,
                &keyed,
            )
            .await?;
            print(json, &answer, || {
                format!(
                    "paid {} to {} (payment {}); wallet {} available",
                    display_json(&answer["amount"]),
                    text(&answer["merchant"]["name"]),
                    text(&answer["id"]),
                    display_json(&answer["wallet"]["available"])
                )
            })
        }
        PayCommand::Code { who, json } => {
            let mut session = session(home, &store, &who, Some(Role::Consumer))?;
            let answer = waiting(json, "code", "asking for a code", async {
                session
                    .post(Host::Api, "/v1/payment-codes", &json!({}))
                    .await
            })
            .await?;
            if json {
                let out = json!({ "code": answer["code"], "expires_at": answer["expires_at"] });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                // The code alone on stdout, so that `$(paytool pay code --as alice)` is the code.
                println!("{}", text(&answer["code"]));
                eprintln!(
                    "valid once, until {}",
                    clock(answer["expires_at"].as_str().unwrap_or(""))
                );
            }
            Ok(0)
        }
        PayCommand::Charge {
            who,
            code,
            amount,
            currency,
            reference,
            keyed,
            json,
        } => {
            let amount = amount::parse(&amount, currency.as_deref())?;
            let mut session = session(home, &store, &who, Some(Role::Merchant))?;
            let mut body = json!({
                "payment_code": code.trim(),
                "amount": amount.in_currency(&session.profile.currency)?,
            });
            optional(&mut body, "reference", reference);
            let answer = post_money(
                &mut session,
                json,
                ("charge", "charging"),
                Host::Merchant,
                "/v1/charges",
                &body,
                &keyed,
            )
            .await?;
            print(json, &answer, || {
                format!(
                    "charged {} (fee {}, net {}): payment {}",
                    display_json(&answer["amount"]),
                    display_json(&answer["fee"]),
                    display_json(&answer["net"]),
                    text(&answer["id"])
                )
            })
        }
        PayCommand::Send {
            who,
            to,
            amount,
            currency,
            note,
            keyed,
            json,
        } => {
            let amount = amount::parse(&amount, currency.as_deref())?;
            let recipient = recipient(&store, &to)?;
            let mut session = session(home, &store, &who, Some(Role::Consumer))?;
            let mut body = json!({
                "to": recipient,
                "amount": amount.in_currency(&session.profile.currency)?,
            });
            optional(&mut body, "note", note);
            let answer = post_money(
                &mut session,
                json,
                ("send", "sending"),
                Host::Api,
                "/v1/transfers",
                &body,
                &keyed,
            )
            .await?;
            print(json, &answer, || {
                format!(
                    "sent {} to {to} (transfer {}); wallet {} available",
                    display_json(&answer["amount"]),
                    text(&answer["id"]),
                    display_json(&answer["wallet"]["available"])
                )
            })
        }
        PayCommand::Refund {
            who,
            payment_id,
            amount,
            currency,
            keyed,
            json,
        } => {
            let amount = amount::parse(&amount, currency.as_deref())?;
            let mut session = session(home, &store, &who, Some(Role::Merchant))?;
            let body = json!({
                "payment_id": payment_id.trim(),
                "amount": amount.in_currency(&session.profile.currency)?,
            });
            let answer = post_money(
                &mut session,
                json,
                ("refund", "refunding"),
                Host::Merchant,
                "/v1/refunds",
                &body,
                &keyed,
            )
            .await?;
            print(json, &answer, || {
                format!(
                    "refunded {} of payment {} (refund {})",
                    display_json(&answer["amount"]),
                    text(&answer["payment_id"]),
                    text(&answer["id"])
                )
            })
        }
        PayCommand::Txns { who, limit, json } => {
            let mut session = session(home, &store, &who, None)?;
            let (host, role) = match session.profile.role {
                Role::Consumer => (Host::Api, Role::Consumer),
                Role::Merchant => (Host::Merchant, Role::Merchant),
            };
            let path = format!("/v1/transactions?limit={limit}");
            let page = waiting(json, "txns", "reading", async {
                session.get(host, &path).await
            })
            .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&page)?);
            } else {
                print_transactions(role, &page);
            }
            Ok(0)
        }
        PayCommand::Balance { who, json } => {
            let mut session = session(home, &store, &who, None)?;
            let role = session.profile.role;
            let answer = waiting(json, "balance", "reading", async {
                match role {
                    Role::Consumer => session.get(Host::Api, "/v1/wallet").await,
                    Role::Merchant => session.get(Host::Merchant, "/v1/merchants/me").await,
                }
            })
            .await?;
            print(json, &answer, || match role {
                Role::Consumer => format!(
                    "available {} (posted {}, pending {})",
                    display_json(&answer["available"]),
                    display_json(&answer["posted"]),
                    display_json(&answer["pending"])
                ),
                Role::Merchant => format!("balance {}", display_json(&answer["balance"])),
            })
        }
        PayCommand::Watch {
            who,
            from_start,
            json,
        } => {
            let mut session = session(home, &store, &who, Some(Role::Merchant))?;
            watch(&mut session, from_start, json).await
        }
        PayCommand::Profiles { json } => profiles_list(&store, json),
        PayCommand::Demo { json } => demo::run(home, json).await,
    }
}

/// The profile `--as` names, else the `paytool login` sign-in, as a session on the gateway in
/// the role the command needs (`needs`) or `--role` picks; refuses a profile of the wrong role.
fn session(
    home: &Home,
    store: &Store,
    who: &AsProfile,
    needs: Option<Role>,
) -> anyhow::Result<Session> {
    let (name, profile) = match &who.profile {
        Some(name) => (name.clone(), store.get(name)?),
        None => match store.find(LOGIN_PROFILE)? {
            Some(profile) => (LOGIN_PROFILE.to_string(), profile),
            None => {
                return Err(fail(
                    Code::Usage,
                    "no profile to act as: sign in with `paytool login`, or pass --as PROFILE (`paytool pay profiles` lists them)",
                ))
            }
        },
    };
    let role = choose_role(&name, &profile, who.role, needs)?;
    let profile = profile.acting_as(role).ok_or_else(|| {
        fail(
            Code::Usage,
            format!("profile '{name}' has no {} account", role.as_str()),
        )
    })?;
    let gateway = Gateway::connect(home)?;
    Ok(Session::new(gateway, &name, profile, Some(store.clone())))
}

/// The role a command acts in: the profile's own, or for a sign-in that holds both, the one
/// `--role` or the command picks.
fn choose_role(
    name: &str,
    profile: &Profile,
    asked: Option<Role>,
    needs: Option<Role>,
) -> anyhow::Result<Role> {
    let held = profile.held_roles();
    let describe = |roles: &[Role]| {
        roles
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(" and ")
    };
    if let (Some(asked), Some(needs)) = (asked, needs) {
        if asked != needs {
            return Err(fail(
                Code::Usage,
                format!(
                    "--role {} does not fit: this command acts as a {}",
                    asked.as_str(),
                    needs.as_str()
                ),
            ));
        }
    }
    let role = match asked.or(needs) {
        Some(role) if held.contains(&role) => role,
        Some(role) => {
            return Err(fail(
                Code::Usage,
                format!(
                    "profile '{name}' ({}) is a {}; this command needs a {} profile: pass --as PROFILE",
                    profile.email,
                    describe(&held),
                    role.as_str()
                ),
            ))
        }
        None if held.len() == 1 => held[0],
        None => {
            return Err(fail(
                Code::Usage,
                format!(
                    "profile '{name}' ({}) is both {}: say which with --role consumer|merchant, or pass --as PROFILE",
                    profile.email,
                    describe(&held)
                ),
            ))
        }
    };
    Ok(role)
}

fn key(keyed: &Keyed) -> String {
    keyed
        .idempotency_key
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// `--to`: an email as it is; a profile name becomes that consumer's id.
fn recipient(store: &Store, to: &str) -> anyhow::Result<Value> {
    if to.contains('@') {
        return Ok(json!({ "email": to.trim() }));
    }
    let profile = store.get(to)?;
    if profile.login == Login::Device {
        // A sign-in knows its email from the token, not the consumer's id.
        if !profile.held_roles().contains(&Role::Consumer) {
            return Err(fail(
                Code::Usage,
                format!("profile '{to}' is not a consumer: money is sent to consumers"),
            ));
        }
        return Ok(json!({ "email": profile.email }));
    }
    if profile.role != Role::Consumer {
        return Err(fail(
            Code::Usage,
            format!("profile '{to}' is a merchant: money is sent to consumers"),
        ));
    }
    Ok(json!({ "consumer_id": profile.id }))
}

/// Runs one request under a spinner (on a terminal only, and removed afterwards: the
/// command prints its own outcome).
/// One money-moving POST from the terminal: its Idempotency-Key (`--idempotency-key`, or a
/// fresh one) and a progress line while it runs.
async fn post_money(
    session: &mut Session,
    json: bool,
    (step, doing): (&str, &str),
    host: Host,
    path: &str,
    body: &Value,
    keyed: &Keyed,
) -> anyhow::Result<Value> {
    let key = key(keyed);
    waiting(
        json,
        step,
        doing,
        session.post_keyed(host, path, body, &key),
    )
    .await
}

/// Sets an optional field of a request body when the option was given.
fn optional(body: &mut Value, field: &str, value: Option<impl serde::Serialize>) {
    if let Some(value) = value {
        body[field] = json!(value);
    }
}

async fn waiting<T>(
    quiet: bool,
    name: &str,
    message: &str,
    work: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let ui = Ui::new(quiet || !std::io::stderr().is_terminal());
    let line = ui.step(name);
    line.working(message);
    let outcome = work.await;
    line.clear();
    outcome
}

fn print(json: bool, answer: &Value, human: impl FnOnce() -> String) -> anyhow::Result<i32> {
    if json {
        println!("{}", serde_json::to_string_pretty(answer)?);
    } else {
        println!("{}", human());
    }
    Ok(0)
}

/// A string field, or `-` when absent.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_string(),
        other => other.to_string(),
    }
}

/// An RFC 3339 time as `YYYY-MM-DD HH:MM:SS UTC`; the text itself when it is not one.
fn clock(rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339).map_or_else(
        |_| rfc3339.to_string(),
        |t| {
            t.with_timezone(&chrono::Utc)
                .format("%Y-%m-%d %H:%M:%S UTC")
                .to_string()
        },
    )
}

/// The payload as a QR code of half-height block characters, light modules drawn as blocks
/// so that it reads as dark-on-light on the usual dark terminal.
fn render_qr(payload: &str) -> anyhow::Result<String> {
    use qrcode::render::unicode::Dense1x2;
    let code = qrcode::QrCode::with_error_correction_level(payload.as_bytes(), qrcode::EcLevel::M)
        .map_err(|e| fail(Code::Failed, format!("cannot draw the QR code: {e}")))?;
    Ok(code
        .render::<Dense1x2>()
        .dark_color(Dense1x2::Light)
        .light_color(Dense1x2::Dark)
        .quiet_zone(true)
        .build())
}

async fn register(home: &Home, store: &Store, args: &PayRegisterArgs) -> anyhow::Result<i32> {
    profiles::check_name(&args.name)?;
    if args.name == LOGIN_PROFILE {
        return Err(fail(
            Code::Usage,
            format!("the profile name '{LOGIN_PROFILE}' is kept for `paytool login`: pick another"),
        ));
    }
    let currency = amount::currency_info(&args.currency)?.alpha;
    let gateway = Gateway::connect(home)?;
    let identity = Identity::new(&args.name, args.email.clone(), args.password.clone());
    let display_name = args
        .display_name
        .clone()
        .unwrap_or_else(|| args.name.clone());
    let merchant = Merchant {
        city: args.city.clone(),
        country: args.country.clone(),
        mcc: args.mcc.clone(),
    };
    let working = format!("{} {}", args.role.as_str(), identity.email);
    let profile = store
        .create(&args.name, || {
            waiting(args.json, "register", &working, async {
                match args.role {
                    Role::Consumer => {
                        register_consumer(&gateway, &identity, &display_name, currency).await
                    }
                    Role::Merchant => {
                        register_merchant(&gateway, &identity, &display_name, currency, &merchant)
                            .await
                    }
                }
            })
        })
        .await?;
    let summary = json!({
        "profile": args.name,
        "role": profile.role,
        "email": profile.email,
        "display_name": profile.display_name,
        "id": profile.id,
        "account_id": profile.account_id,
        "currency": profile.currency,
        "profiles_file": store.path(),
    });
    print(args.json, &summary, || {
        format!(
            "registered {} '{}' as {} ({} {}); profile saved in {}",
            profile.role.as_str(),
            args.name,
            profile.email,
            match profile.role {
                Role::Consumer => "wallet",
                Role::Merchant => "account",
            },
            profile.account_id,
            store.path().display()
        )
    })
}

/// The login a registration makes: given, or generated.
pub struct Identity {
    pub email: String,
    pub password: String,
}

impl Identity {
    pub fn new(name: &str, email: Option<String>, password: Option<String>) -> Self {
        let mut rng = rand::thread_rng();
        let email = email.unwrap_or_else(|| {
            let local: String = name
                .to_ascii_lowercase()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect();
            let suffix = hex::encode(rng.gen::<[u8; EMAIL_SUFFIX_HEX_DIGITS / 2]>());
            format!("{local}-{suffix}@example.test")
        });
        let password = password.unwrap_or_else(|| {
            (0..GENERATED_PASSWORD_CHARS)
                .map(|_| char::from(rng.sample(rand::distributions::Alphanumeric)))
                .collect()
        });
        Self { email, password }
    }
}

pub struct Merchant {
    pub city: String,
    pub country: String,
    pub mcc: String,
}

/// POST /v1/consumers, then the first login.
pub async fn register_consumer(
    gateway: &Gateway,
    identity: &Identity,
    name: &str,
    currency: &str,
) -> anyhow::Result<Profile> {
    let answer = gateway
        .call(
            reqwest::Method::POST,
            &gateway.url(Host::Api, "/v1/consumers"),
            None,
            Some(&json!({
                "email": identity.email,
                "password": identity.password,
                "name": name,
                "currency": currency,
            })),
            None,
        )
        .await?;
    let tokens = gateway.login(&identity.email, &identity.password).await?;
    Ok(Profile {
        login: Login::Password,
        role: Role::Consumer,
        other_role: None,
        email: text(&answer["email"]),
        password: identity.password.clone(),
        display_name: name.to_string(),
        id: text(&answer["id"]),
        account_id: text(&answer["wallet"]["id"]),
        currency: answer["wallet"]["currency"]
            .as_str()
            .unwrap_or(currency)
            .to_string(),
        created_at: chrono::Utc::now(),
        tokens,
    })
}

/// POST /v1/merchants, then the first login.
pub async fn register_merchant(
    gateway: &Gateway,
    identity: &Identity,
    name: &str,
    currency: &str,
    merchant: &Merchant,
) -> anyhow::Result<Profile> {
    let answer = gateway
        .call(
            reqwest::Method::POST,
            &gateway.url(Host::Merchant, "/v1/merchants"),
            None,
            Some(&json!({
                "name": name,
                "city": merchant.city,
                "country": merchant.country,
                "mcc": merchant.mcc,
                "currency": currency,
                "email": identity.email,
                "password": identity.password,
            })),
            None,
        )
        .await?;
    let tokens = gateway.login(&identity.email, &identity.password).await?;
    Ok(Profile {
        login: Login::Password,
        role: Role::Merchant,
        other_role: None,
        email: answer["email"]
            .as_str()
            .unwrap_or(&identity.email)
            .to_string(),
        password: identity.password.clone(),
        display_name: name.to_string(),
        id: text(&answer["id"]),
        account_id: text(&answer["ledger_account_id"]),
        currency: answer["currency"].as_str().unwrap_or(currency).to_string(),
        created_at: chrono::Utc::now(),
        tokens,
    })
}

fn profiles_list(store: &Store, json: bool) -> anyhow::Result<i32> {
    let profiles = store.all()?;
    if json {
        let out: Vec<Value> = profiles
            .iter()
            .map(|(name, p)| {
                json!({
                    "profile": name,
                    "role": p.role,
                    "email": p.email,
                    "display_name": p.display_name,
                    "id": p.id,
                    "account_id": p.account_id,
                    "currency": p.currency,
                    "created_at": p.created_at,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(0);
    }
    if profiles.is_empty() {
        println!(
            "no profiles in {}: make one with `paytool pay register consumer NAME`",
            store.path().display()
        );
        return Ok(0);
    }
    println!("{:<20} {:<9} {:<4} EMAIL", "PROFILE", "ROLE", "CUR");
    for (name, p) in &profiles {
        println!(
            "{name:<20} {:<9} {:<4} {}",
            p.role.as_str(),
            p.currency,
            p.email
        );
    }
    Ok(0)
}

/// One line per entry: a consumer's wallet entries or a merchant's payments and refunds.
fn print_transactions(role: Role, page: &Value) {
    let items = page["items"].as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        println!("no transactions yet");
        return;
    }
    match role {
        Role::Consumer => {
            println!(
                "{:<23} {:<16} {:<4} {:<7} {:>16}  {:<36}  WITH",
                "WHEN (UTC)", "KIND", "DIR", "STATE", "AMOUNT", "OPERATION"
            );
            for item in &items {
                let with = match (&item["merchant"]["name"], &item["note"]) {
                    (Value::String(merchant), _) => merchant.clone(),
                    (_, Value::String(note)) => format!("\"{note}\""),
                    _ => String::new(),
                };
                println!(
                    "{:<23} {:<16} {:<4} {:<7} {:>16}  {:<36}  {with}",
                    clock(item["created_at"].as_str().unwrap_or("")).trim_end_matches(" UTC"),
                    text(&item["kind"]),
                    text(&item["direction"]),
                    text(&item["state"]),
                    display_json(&item["amount"]),
                    text(&item["operation_id"]),
                )
            }
        }
        Role::Merchant => {
            println!(
                "{:<19} {:<7} {:<7} {:<18} {:>14} {:>12} {:>14}  {:<36}  REFERENCE",
                "WHEN (UTC)", "KIND", "CHANNEL", "STATUS", "AMOUNT", "FEE", "REFUNDED", "ID"
            );
            for item in &items {
                println!(
                    "{:<19} {:<7} {:<7} {:<18} {:>14} {:>12} {:>14}  {:<36}  {}",
                    clock(item["created_at"].as_str().unwrap_or("")).trim_end_matches(" UTC"),
                    text(&item["kind"]),
                    text(&item["channel"]),
                    text(&item["status"]),
                    display_json(&item["amount"]),
                    display_json(&item["fee"]),
                    display_json(&item["refunded"]),
                    text(&item["id"]),
                    text(&item["reference"]),
                )
            }
        }
    }
    if page["next_cursor"].is_string() {
        println!("(more: raise --limit)");
    }
}

/// One event as a line for people.
pub fn describe_event(event: &Value) -> String {
    let data = &event["data"];
    let when = clock(event["occurred_at"].as_str().unwrap_or(""));
    match event["type"].as_str() {
        Some("payment.refunded") => format!(
            "#{} {when} payment.refunded  {} of payment {} (now {}, {} refunded)",
            event["id"],
            display_json(&data["refund"]["amount"]),
            text(&data["payment"]["id"]),
            text(&data["payment"]["status"]),
            display_json(&data["payment"]["refunded"]),
        ),
        Some(kind) => format!(
            "#{} {when} {kind}  {} by {} (fee {}) payment {}{}",
            event["id"],
            display_json(&data["amount"]),
            text(&data["channel"]),
            display_json(&data["fee"]),
            text(&data["id"]),
            data["reference"]
                .as_str()
                .map(|r| format!(" ref {r}"))
                .unwrap_or_default(),
        ),
        None => format!("#{} {event}", event["id"]),
    }
}

async fn watch(session: &mut Session, from_start: bool, json: bool) -> anyhow::Result<i32> {
    let after = from_start.then(|| "0".to_string());
    let stdout_closed = std::cell::Cell::new(false);
    let following = stream::watch(
        session,
        after,
        |event| {
            let parsed: Value = serde_json::from_str(&event.data).unwrap_or_else(
                |_| json!({ "id": event.id, "type": event.event, "data": event.data }),
            );
            let line = if json {
                parsed.to_string()
            } else {
                describe_event(&parsed)
            };
            // Flushed per event, so that a pipe sees it at once. A closed pipe (`| head -1`)
            // ends the watch instead of panicking.
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let printed = writeln!(out, "{line}").and_then(|()| out.flush());
            stdout_closed.set(printed.is_err());
            printed.is_ok()
        },
        |notice| match notice {
            stream::Notice::Connected {
                resumed_after: Some(id),
            } => eprintln!("connected; following the events after #{id} (Ctrl-C to stop)"),
            stream::Notice::Connected {
                resumed_after: None,
            } => eprintln!("connected; waiting for new events (Ctrl-C to stop)"),
            stream::Notice::Dropped {
                reason,
                retry_in_ms,
            } => eprintln!(
                "the stream dropped ({reason}); reconnecting in {:.1} s",
                retry_in_ms as f64 / 1000.0
            ),
        },
    );
    tokio::select! {
        outcome = following => {
            outcome?;
            // The watcher only stops on its own when stdout is gone.
            Ok(if stdout_closed.get() { 0 } else { Code::Failed as i32 })
        }
        _ = tokio::signal::ctrl_c() => Ok(Code::Interrupted as i32),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(role: Role, other: Option<Role>) -> Profile {
        Profile {
            login: Login::Device,
            role,
            other_role: other.map(|role| profiles::RoleAccount {
                role,
                id: "o".to_string(),
                account_id: "oa".to_string(),
                currency: "USD".to_string(),
            }),
            email: "me@example.test".to_string(),
            password: String::new(),
            display_name: "me".to_string(),
            id: "i".to_string(),
            account_id: "a".to_string(),
            currency: "JPY".to_string(),
            created_at: chrono::Utc::now(),
            tokens: profiles::Tokens {
                access_token: "t".to_string(),
                access_expires_at: chrono::Utc::now(),
                refresh_token: None,
                refresh_expires_at: None,
            },
        }
    }

    #[test]
    fn a_sign_in_with_one_role_acts_in_it_and_refuses_the_other() {
        let consumer = profile(Role::Consumer, None);
        let pick = |asked, needs| choose_role("me", &consumer, asked, needs);
        assert_eq!(pick(None, None).expect("one role"), Role::Consumer);
        assert_eq!(
            pick(None, Some(Role::Consumer)).expect("fits"),
            Role::Consumer
        );
        let wrong = pick(None, Some(Role::Merchant)).expect_err("not a merchant");
        assert_eq!(crate::support::exit::code_of(&wrong), 2);
        assert!(wrong.to_string().contains("--as PROFILE"), "{wrong}");
        assert!(pick(Some(Role::Merchant), None).is_err());
    }

    #[test]
    fn a_sign_in_with_both_roles_needs_role_only_where_the_command_does_not_decide() {
        let both = profile(Role::Consumer, Some(Role::Merchant));
        let pick = |asked, needs| choose_role("me", &both, asked, needs);
        let ambiguous = pick(None, None).expect_err("balance: which one?");
        assert!(ambiguous.to_string().contains("--role"), "{ambiguous}");
        assert_eq!(
            pick(Some(Role::Merchant), None).expect("asked"),
            Role::Merchant
        );
        assert_eq!(
            pick(None, Some(Role::Merchant)).expect("needed"),
            Role::Merchant
        );
        assert!(pick(Some(Role::Consumer), Some(Role::Merchant)).is_err());
    }
}
