//! `paytool pay` against the running test platform, through its TLS gateway, as a person would
//! use it: the built binary, its exit codes, its JSON and its one-line errors.
//!
//! The platform is the one `scripts/test.sh` starts; `PAYTOOL_TEST_STATUS` names its
//! `status --json --show-secrets` document, whose `home` is the installation to pass as
//! `--home`. Profiles made here go into that installation's `pay/profiles.json`, each under a
//! name of its own.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const STATUS_ENV: &str = "PAYTOOL_TEST_STATUS";
/// How long the merchant's list (fed from Kafka) and the live feed may take to show a payment.
const CATCH_UP_TIMEOUT_MS: u64 = 15_000;

fn platform_home() -> String {
    let path = std::env::var(STATUS_ENV).unwrap_or_else(|_| {
        panic!("{STATUS_ENV} is not set: run the tests through scripts/test.sh, which starts a test platform")
    });
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    let status: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"));
    status["home"]
        .as_str()
        .expect("the status names the installation's home")
        .to_string()
}

/// `paytool --home <platform> ARGS`. Each test connects from a loopback address of its own
/// (`source`), so the gateway's per-address registration limit counts it apart from the
/// other tests and suites that share the platform.
fn command(source: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_paytool"));
    command
        .arg("--home")
        .arg(platform_home())
        .args(args)
        .env("PAYTOOL_PAY_SOURCE_ADDRESS", source);
    command
}

fn paytool(source: &str, args: &[&str]) -> Output {
    command(source, args).output().expect("paytool runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs a command that must succeed and print JSON.
fn json(source: &str, args: &[&str]) -> Value {
    let output = paytool(source, args);
    assert_eq!(
        output.status.code(),
        Some(0),
        "paytool {args:?} failed: {}",
        stderr(&output)
    );
    serde_json::from_str(&stdout(&output)).unwrap_or_else(|e| {
        panic!(
            "paytool {args:?} printed no JSON ({e}): {}",
            stdout(&output)
        )
    })
}

/// A profile name no other run has used.
fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

fn money(value: i64, currency: &str) -> Value {
    serde_json::json!({ "value": value, "currency": currency })
}

/// Asserts a refusal: the exit code, and exactly one line on stderr that starts as given.
fn assert_refused(output: &Output, code: i32, starts_with: &str) {
    let err = stderr(output);
    assert_eq!(output.status.code(), Some(code), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line on stderr: {err:?}");
    assert!(err.starts_with(starts_with), "stderr: {err:?}");
    assert!(
        stdout(output).is_empty(),
        "nothing on stdout: {}",
        stdout(output)
    );
}

/// Polls `page` until `done` holds for it, within [`CATCH_UP_TIMEOUT_MS`].
fn eventually(mut page: impl FnMut() -> Value, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_millis(CATCH_UP_TIMEOUT_MS);
    loop {
        let value = page();
        if done(&value) {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "not there after {CATCH_UP_TIMEOUT_MS} ms: {value}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn has_item(page: &Value, id: &Value) -> bool {
    page["items"]
        .as_array()
        .is_some_and(|items| items.iter().any(|item| item["id"] == *id))
}

#[test]
fn the_demo_runs_every_step_and_the_merchant_receives_the_payment_the_charge_and_the_refund_live() {
    let source = "127.0.0.21";
    let report = json(source, &["pay", "demo", "--json"]);
    assert_eq!(report["ok"], true, "{report:#}");
    let steps = report["steps"].as_array().expect("steps");
    let names: Vec<&str> = steps.iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(
        names,
        [
            "new consumer",
            "new merchant",
            "new friend",
            "live stream",
            "top-up",
            "dynamic qr",
            "pay qr",
            "payment code",
            "charge code",
            "send p2p",
            "refund",
            "events arrived",
            "merchant list",
            "balances",
            "ledger verify"
        ]
    );
    for step in steps {
        assert_eq!(step["ok"], true, "{step}");
        assert!(step["ms"].is_u64(), "{step}");
    }
    // 10000 topped up, 1200 paid by QR, 800 charged, 500 sent, 300 refunded.
    assert_eq!(report["balances"]["consumer"], money(7_800, "JPY"));
    assert_eq!(report["balances"]["friend"], money(500, "JPY"));
    assert_eq!(report["events_complete"], true);
    let ids = &report["ids"];
    let events = report["events"].as_array().expect("events");
    let arrived = |kind: &str, id: &Value, field: &dyn Fn(&Value) -> Value| {
        events
            .iter()
            .any(|e| e["event"]["type"] == kind && field(&e["event"]["data"]) == *id)
    };
    assert!(arrived("payment.completed", &ids["payment"], &|d| d["id"].clone()));
    assert!(arrived("payment.completed", &ids["charge"], &|d| d["id"].clone()));
    assert!(arrived("payment.refunded", &ids["refund"], &|d| d
        ["refund"]["id"]
        .clone()));
    let listed: Vec<&Value> = report["transactions"]
        .as_array()
        .expect("the merchant's list")
        .iter()
        .map(|t| &t["id"])
        .collect();
    for id in ["payment", "charge", "refund"] {
        assert!(listed.contains(&&ids[id]), "{id} listed: {listed:?}");
    }
    assert_eq!(report["ledger_ok"], true);
    assert_eq!(report["ledger"]["ok"], true);
}

#[test]
fn a_consumer_registered_by_hand_tops_up_and_pays_a_merchant_s_qr_to_the_exact_yen() {
    let source = "127.0.0.22";
    let shopper = unique("shopper");
    let shop = unique("shop");
    let registered = json(source, &["pay", "register", "consumer", &shopper, "--json"]);
    assert_eq!(registered["role"], "consumer");
    assert_eq!(registered["currency"], "JPY");
    assert!(registered["email"]
        .as_str()
        .is_some_and(|e| e.starts_with(&format!("{shopper}-")) && e.ends_with("@example.test")));
    let merchant = json(
        source,
        &[
            "pay",
            "register",
            "merchant",
            &shop,
            "--display-name",
            "Hand Ramen",
            "--city",
            "Kyoto",
            "--json",
        ],
    );
    assert_eq!(merchant["role"], "merchant");

    // The profiles hold passwords and tokens: only the owner may read them.
    use std::os::unix::fs::PermissionsExt;
    let file = std::path::PathBuf::from(registered["profiles_file"].as_str().expect("path"));
    let mode = |path: &std::path::Path| {
        std::fs::metadata(path)
            .expect("exists")
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(file.parent().expect("the pay directory")), 0o700);

    let topped = json(
        source,
        &["pay", "topup", "--as", &shopper, "5000 JPY", "--json"],
    );
    assert_eq!(topped["amount"], money(5_000, "JPY"));
    assert_eq!(topped["wallet"]["available"], money(5_000, "JPY"));

    let request = json(
        source,
        &[
            "pay",
            "qr",
            "--as",
            &shop,
            "--amount",
            "1200",
            "--reference",
            "HAND-1",
            "--json",
        ],
    );
    assert_eq!(request["kind"], "dynamic");
    assert_eq!(request["amount"], money(1_200, "JPY"));
    let payload = request["payload"].as_str().expect("payload").to_string();

    let key = uuid::Uuid::new_v4().to_string();
    let paid = json(
        source,
        &[
            "pay",
            "pay",
            "--as",
            &shopper,
            &payload,
            "--idempotency-key",
            &key,
            "--json",
        ],
    );
    assert_eq!(paid["amount"], money(1_200, "JPY"));
    assert_eq!(paid["merchant"]["name"], "Hand Ramen");
    assert_eq!(paid["wallet"]["available"], money(3_800, "JPY"));
    // The same key again is the same payment, not a second one.
    let replayed = json(
        source,
        &[
            "pay",
            "pay",
            "--as",
            &shopper,
            &payload,
            "--idempotency-key",
            &key,
            "--json",
        ],
    );
    assert_eq!(replayed["id"], paid["id"]);
    // Another attempt at the paid code is refused, and nothing moves.
    let again = paytool(source, &["pay", "pay", "--as", &shopper, &payload]);
    assert_refused(&again, 9, "error: Already paid: ");
    let wallet = json(source, &["pay", "balance", "--as", &shopper, "--json"]);
    assert_eq!(wallet["available"], money(3_800, "JPY"));

    let mine = json(source, &["pay", "txns", "--as", &shopper, "--json"]);
    let entries = mine["items"].as_array().expect("items");
    assert!(entries.iter().any(|e| e["kind"] == "top_up"
        && e["direction"] == "in"
        && e["amount"] == money(5_000, "JPY")));
    assert!(entries.iter().any(|e| e["kind"] == "payment"
        && e["direction"] == "out"
        && e["operation_id"] == paid["id"]
        && e["amount"] == money(1_200, "JPY")));

    // The merchant's list is built from Kafka events: it shows the payment a moment later.
    let theirs = eventually(
        || {
            json(
                source,
                &["pay", "txns", "--as", &shop, "--limit", "5", "--json"],
            )
        },
        |page| has_item(page, &paid["id"]),
    );
    let item = theirs["items"]
        .as_array()
        .and_then(|items| items.iter().find(|i| i["id"] == paid["id"]))
        .expect("the payment");
    assert_eq!(item["amount"], money(1_200, "JPY"));
    assert_eq!(item["channel"], "qr");
    assert_eq!(item["reference"], "HAND-1");
    let fee = item["fee"]["value"].as_i64().expect("a fee");
    assert_eq!(item["net"], money(1_200 - fee, "JPY"));
    let till = json(source, &["pay", "balance", "--as", &shop, "--json"]);
    assert_eq!(till["balance"], money(1_200 - fee, "JPY"));

    // More than the wallet holds is declined (exit 10), in one line.
    let big = json(
        source,
        &["pay", "qr", "--as", &shop, "--amount", "100000", "--json"],
    );
    let declined = paytool(
        source,
        &[
            "pay",
            "pay",
            "--as",
            &shopper,
            big["payload"].as_str().expect("payload"),
        ],
    );
    assert_refused(&declined, 10, "error: Insufficient funds: ");
}

#[test]
fn amounts_in_a_currency_with_cents_are_exact_minor_units() {
    let source = "127.0.0.23";
    let traveller = unique("traveller");
    let registered = json(
        source,
        &[
            "pay",
            "register",
            "consumer",
            &traveller,
            "--currency",
            "USD",
            "--json",
        ],
    );
    assert_eq!(registered["currency"], "USD");
    let first = json(
        source,
        &["pay", "topup", "--as", &traveller, "12.5", "--json"],
    );
    assert_eq!(first["amount"], money(1_250, "USD"));
    let second = json(
        source,
        &["pay", "topup", "--as", &traveller, "0.05", "USD", "--json"],
    );
    assert_eq!(second["amount"], money(5, "USD"));
    assert_eq!(second["wallet"]["available"], money(1_255, "USD"));
    // 0.1 + 0.2 in floats is 0.30000000000000004; in minor units it is 30.
    let third = json(
        source,
        &["pay", "topup", "--as", &traveller, "USD 0.10", "--json"],
    );
    let fourth = json(
        source,
        &["pay", "topup", "--as", &traveller, "0.20USD", "--json"],
    );
    assert_eq!(third["amount"], money(10, "USD"));
    assert_eq!(fourth["wallet"]["available"], money(1_285, "USD"));
    // A cent fraction is refused before anything is sent.
    let fraction = paytool(source, &["pay", "topup", "--as", &traveller, "0.005"]);
    assert_refused(&fraction, 2, "paytool: bad amount '0.005': ");
}

#[test]
fn charges_transfers_between_profiles_and_refunds_move_exact_amounts() {
    let source = "127.0.0.24";
    let payer = unique("payer");
    let friend = unique("friend");
    let till = unique("till");
    json(source, &["pay", "register", "consumer", &payer, "--json"]);
    let friend_profile = json(source, &["pay", "register", "consumer", &friend, "--json"]);
    json(source, &["pay", "register", "merchant", &till, "--json"]);
    json(source, &["pay", "topup", "--as", &payer, "3000", "--json"]);

    let code = json(source, &["pay", "code", "--as", &payer, "--json"]);
    let digits = code["code"].as_str().expect("a code").to_string();
    assert_eq!(digits.len(), 18);
    assert!(digits.starts_with("28") && digits.bytes().all(|b| b.is_ascii_digit()));
    // Without --json the code alone is on stdout, so that `$(paytool pay code)` is the code.
    let plain = paytool(source, &["pay", "code", "--as", &payer]);
    assert_eq!(plain.status.code(), Some(0), "{}", stderr(&plain));
    let plain_code = stdout(&plain);
    assert_eq!(plain_code.trim().len(), 18, "{plain_code:?}");

    let charge = json(
        source,
        &[
            "pay",
            "charge",
            "--as",
            &till,
            &digits,
            "800",
            "--reference",
            "TILL-1",
            "--json",
        ],
    );
    assert_eq!(charge["amount"], money(800, "JPY"));
    assert_eq!(charge["channel"], "code");
    let used = paytool(source, &["pay", "charge", "--as", &till, &digits, "800"]);
    assert_refused(&used, 9, "error: ");

    let sent = json(
        source,
        &[
            "pay",
            "send",
            "--as",
            &payer,
            "--to",
            &friend,
            "500",
            "--note",
            "for the tickets",
            "--json",
        ],
    );
    assert_eq!(sent["to"]["consumer_id"], friend_profile["id"]);
    assert_eq!(sent["wallet"]["available"], money(1_700, "JPY"));
    let received = json(source, &["pay", "balance", "--as", &friend, "--json"]);
    assert_eq!(received["available"], money(500, "JPY"));

    let refund = json(
        source,
        &[
            "pay",
            "refund",
            "--as",
            &till,
            charge["id"].as_str().expect("id"),
            "300",
            "--json",
        ],
    );
    assert_eq!(refund["amount"], money(300, "JPY"));
    assert_eq!(refund["payment_id"], charge["id"]);
    let after = json(source, &["pay", "balance", "--as", &payer, "--json"]);
    assert_eq!(after["available"], money(2_000, "JPY"));
    // Never more than is left of the payment.
    let too_much = paytool(
        source,
        &[
            "pay",
            "refund",
            "--as",
            &till,
            charge["id"].as_str().expect("id"),
            "501",
        ],
    );
    assert_refused(&too_much, 9, "error: ");
    // A profile of the wrong role is a usage error, before anything is sent.
    let wrong = paytool(source, &["pay", "refund", "--as", &payer, "x", "1"]);
    assert_refused(&wrong, 2, "paytool: profile '");
}

#[test]
fn a_malformed_amount_exits_2_with_one_line_on_stderr_and_sends_nothing() {
    let source = "127.0.0.25";
    for amount in ["12.5.0", "-5", "1e3", "1,200", "0", "1200.5 JPY", "12 XYZ"] {
        let output = paytool(source, &["pay", "topup", "--as", "nobody-at-all", amount]);
        assert_refused(&output, 2, "paytool: ");
        assert!(
            stderr(&output).contains("amount") || stderr(&output).contains("currency"),
            "{amount}: {}",
            stderr(&output)
        );
    }
    let unknown = paytool(source, &["pay", "topup", "--as", "nobody-at-all", "100"]);
    assert_refused(&unknown, 2, "paytool: no profile named 'nobody-at-all'");
}

#[test]
fn pay_and_each_of_its_subcommands_explain_themselves_with_an_example() {
    let source = "127.0.0.26";
    let subcommands = [
        "register", "topup", "qr", "pay", "code", "charge", "send", "refund", "txns", "balance",
        "watch", "profiles", "demo",
    ];
    let help = paytool(source, &["pay", "--help"]);
    assert_eq!(help.status.code(), Some(0));
    let text = stdout(&help);
    assert!(text.contains("Example"), "{text}");
    for subcommand in subcommands {
        assert!(text.contains(subcommand), "pay --help lists {subcommand}");
        let help = paytool(source, &["pay", subcommand, "--help"]);
        assert_eq!(help.status.code(), Some(0), "{subcommand}");
        let text = stdout(&help);
        assert!(
            text.contains("Example") && text.contains(&format!("paytool pay {subcommand}")),
            "pay {subcommand} --help: {text}"
        );
    }
}

/// Reads a child's output lines in a thread, so that a test can wait for one with a bound.
fn lines(reader: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                return;
            }
        }
    });
    receiver
}

fn wait_for(lines: &mpsc::Receiver<String>, what: &str, found: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_millis(CATCH_UP_TIMEOUT_MS);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if found(&line) => return line,
            Ok(_) => {}
            Err(_) => panic!("no {what} within {CATCH_UP_TIMEOUT_MS} ms"),
        }
    }
}

fn interrupt(child: &mut std::process::Child) -> Option<i32> {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("a pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("signalled");
    child.wait().expect("it ends").code()
}

#[test]
fn watching_a_merchant_prints_each_payment_as_it_happens_and_ctrl_c_ends_it_with_130() {
    let source = "127.0.0.27";
    let buyer = unique("buyer");
    let stall = unique("stall");
    json(source, &["pay", "register", "consumer", &buyer, "--json"]);
    json(source, &["pay", "register", "merchant", &stall, "--json"]);
    json(source, &["pay", "topup", "--as", &buyer, "1000", "--json"]);

    let mut watcher = command(source, &["pay", "watch", "--as", &stall, "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the watcher starts");
    let events = lines(watcher.stdout.take().expect("stdout"));
    let notices = lines(watcher.stderr.take().expect("stderr"));
    // Without --from-start only new events come: pay once the stream is open.
    wait_for(&notices, "connection", |l| l.starts_with("connected"));

    let request = json(
        source,
        &["pay", "qr", "--as", &stall, "--amount", "250", "--json"],
    );
    let paid = json(
        source,
        &[
            "pay",
            "pay",
            "--as",
            &buyer,
            request["payload"].as_str().expect("payload"),
            "--json",
        ],
    );
    let line = wait_for(&events, "event", |_| true);
    let event: Value = serde_json::from_str(&line).expect("one JSON event per line");
    assert_eq!(event["type"], "payment.completed");
    assert_eq!(event["data"]["id"], paid["id"]);
    assert_eq!(event["data"]["amount"], money(250, "JPY"));
    assert_eq!(interrupt(&mut watcher), Some(130));

    // From the start, the same event again, in a line for people.
    let mut replay = command(source, &["pay", "watch", "--as", &stall, "--from-start"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the watcher starts");
    let replayed = lines(replay.stdout.take().expect("stdout"));
    let line = wait_for(&replayed, "replayed event", |_| true);
    let id = paid["id"].as_str().expect("id");
    assert!(
        line.starts_with("#1 ") && line.contains("payment.completed") && line.contains(id),
        "{line}"
    );
    assert_eq!(interrupt(&mut replay), Some(130));
}

/// The QR code drawn with half blocks, as a greyscale PGM (4 pixels a module) for zbarimg:
/// a block is a light half, a space a dark one (the drawing is inverted for dark terminals).
fn drawing_to_pgm(drawing: &[&str]) -> String {
    const SCALE: usize = 4;
    let mut rows: Vec<Vec<u8>> = Vec::new();
    for line in drawing {
        let (mut top, mut bottom) = (Vec::new(), Vec::new());
        for c in line.chars() {
            let (t, b) = match c {
                '█' => (1, 1),
                '▀' => (1, 0),
                '▄' => (0, 1),
                _ => (0, 0),
            };
            top.push(t);
            bottom.push(b);
        }
        rows.push(top);
        rows.push(bottom);
    }
    let width = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut pgm = format!("P2\n{} {}\n1\n", width * SCALE, rows.len() * SCALE);
    for row in &rows {
        let line: Vec<String> = (0..width * SCALE)
            .map(|x| row.get(x / SCALE).copied().unwrap_or(0).to_string())
            .collect();
        for _ in 0..SCALE {
            pgm.push_str(&line.join(" "));
            pgm.push('\n');
        }
    }
    pgm
}

#[test]
fn the_qr_code_drawn_in_the_terminal_scans_back_to_the_printed_payload() {
    let source = "127.0.0.28";
    let kiosk = unique("kiosk");
    json(source, &["pay", "register", "merchant", &kiosk, "--json"]);
    let output = paytool(
        source,
        &[
            "pay",
            "qr",
            "--as",
            &kiosk,
            "--amount",
            "480",
            "--reference",
            "K-1",
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    let payload = text.lines().last().expect("the payload last").to_string();
    let decoded = emvco::decode(&payload).expect("a valid EMVCo payload");
    assert_eq!(decoded.amount.and_then(|a| a.minor_units), Some(480));
    let drawing: Vec<&str> = text
        .lines()
        .filter(|l| !l.is_empty() && l.chars().all(|c| matches!(c, '█' | '▀' | '▄' | ' ')))
        .collect();
    assert!(drawing.len() > 10, "a drawing: {text}");
    let dir = tempfile::tempdir().expect("tempdir");
    let image = dir.path().join("qr.pgm");
    std::fs::write(&image, drawing_to_pgm(&drawing)).expect("written");
    let scanned = Command::new("zbarimg")
        .args(["-q", "--raw"])
        .arg(&image)
        .output()
        .expect("zbarimg runs (paytool setup installs zbar-tools)");
    assert!(
        scanned.status.success(),
        "zbarimg found no code: {scanned:?}"
    );
    assert_eq!(String::from_utf8_lossy(&scanned.stdout).trim(), payload);
}

#[test]
fn the_stream_benchmark_sees_every_payment_on_the_merchant_feed_exactly_once() {
    // What is checked is completeness, not speed: the figures are the benchmark's to report.
    let report = json(
        "127.0.0.19",
        &[
            "bench",
            "stream",
            "--rate-per-s",
            "10",
            "--duration-s",
            "2",
            "--json",
        ],
    );
    assert_eq!(report["payments"], 20);
    assert_eq!(report["failed"], 0);
    assert_eq!(report["lost"], 0);
    assert_eq!(report["duplicates"], 0);
    assert_eq!(report["commit_to_feed_ms"]["count"], 20);
    assert!(
        report["commit_to_feed_ms"]["p50"]
            .as_f64()
            .is_some_and(|p50| p50 >= 0.0),
        "the feed cannot deliver before the commit: {report}"
    );
}
