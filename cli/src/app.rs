//! One function from a parsed command line to an exit code: the only place that knows every
//! room, so that the rooms need not know each other to be reached.

use crate::args::{
    BenchArgs, BenchCommand, Cli, Command, DbCommand, LedgerCommand, QrCommand, RuntimeKind,
    ServiceName, TlsCommand,
};
use crate::runtime::components::services::Service;
use crate::support::exit::{fail, Code};
use crate::{chaos, delivery, kube, observe, pay, perf, runtime, scaffold, support};

fn service(name: ServiceName) -> Service {
    Service::from(name)
}

/// Runs one command; `Ok` carries the exit code, `Err` the one-line failure.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    let project = runtime::project::project_root()?;
    let home_dir = runtime::project::state_dir(cli.home.as_deref(), &project);
    let cache = runtime::project::cache_dir();
    let setup = |no_hosts: bool| {
        runtime::setup::Setup::new(&project, &cache, runtime::setup::Options { no_hosts })
    };
    match cli.command {
        Command::Setup(args) => {
            let ui = support::ui::Ui::new(false);
            let setup = setup(args.no_hosts);
            setup.run(&ui)?;
            Ok(0)
        }
        Command::Up(args) if args.runtime == RuntimeKind::Kind => {
            kube::kind::up(&project, args.dry_run, args.output, args.json)
        }
        Command::Up(args) => {
            if args.dry_run || args.output.is_some() || args.json {
                return Err(fail(
                    Code::Usage,
                    "--dry-run, --output and --json go with --runtime kind (the local runtime starts for real)",
                ));
            }
            let ui = support::ui::Ui::new(false);
            let setup = setup(args.setup.no_hosts);
            let replicas: Vec<(Option<Service>, u8)> = args
                .replicas
                .iter()
                .map(|setting| (setting.service.map(service), setting.count))
                .collect();
            let chaos = match (args.chaos, args.no_chaos) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            };
            let delivery = match (args.delivery, args.no_delivery) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            };
            let asked = runtime::up::Asked {
                replicas,
                ha: args.ha,
                kafka_brokers: args.kafka_brokers,
                chaos,
                delivery,
                trace_sample_percent: args.trace_sample_percent,
            };
            runtime::up::run(&home_dir, &project, &setup, &asked, &ui).await?;
            Ok(0)
        }
        Command::Db(DbCommand::Failover { json }) => {
            let home = runtime::home::existing(&home_dir, &project)?;
            runtime::db::failover(&home, json).await
        }
        Command::Rollout(args) => {
            let home = runtime::home::existing(&home_dir, &project)?;
            let request = runtime::rollout::Request {
                service: service(args.service).component_name(),
                max_unavailable: args.max_unavailable,
                binary: args
                    .binary
                    .map(|path| std::path::absolute(&path).unwrap_or(path)),
            };
            let ui = support::ui::Ui::new(args.json);
            runtime::rollout::run(&home, request, args.json, &ui).await
        }
        Command::Images(command) => {
            let home = runtime::home::existing(&home_dir, &project)?;
            delivery::run(&home, command).await
        }
        Command::Ci(args) => {
            let home = runtime::home::existing(&home_dir, &project)?;
            let ui = support::ui::Ui::new(args.json);
            let ran = delivery::ci::run(&home, args.step, &args.service, args.source, &ui).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&ran)?);
            }
            Ok(0)
        }
        Command::Kube(command) => kube::run(&project, command).await,
        Command::Git(command) => {
            let home = runtime::home::existing(&home_dir, &project)?;
            delivery::run_git(&home, &project, command).await
        }
        Command::Down {
            runtime: RuntimeKind::Kind,
            ..
        } => kube::kind::down(),
        Command::Status {
            runtime: RuntimeKind::Kind,
            ..
        } => kube::kind::status(),
        Command::Down { purge, .. } => {
            runtime::down::run(&home_dir, &project, purge, &support::ui::Ui::new(false)).await?;
            Ok(0)
        }
        Command::Status {
            json, show_secrets, ..
        } => {
            let home = runtime::home::existing(&home_dir, &project)?;
            let status = runtime::status::collect(&home, show_secrets).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                status.print_table();
            }
            Ok(if !status.running {
                Code::NotRunning as i32
            } else if status.all_healthy() {
                0
            } else {
                Code::Failed as i32
            })
        }
        Command::Logs {
            component,
            follow,
            lines,
            query,
            trace,
            since,
            limit,
            wait_ms,
            json,
        } => {
            let home = runtime::home::existing(&home_dir, &project)?;
            if query.is_some() || trace.is_some() {
                let search = observe::logs::Search {
                    query,
                    component,
                    trace_id: trace,
                    since,
                    limit,
                };
                return observe::logs::run(&home, &search, json, wait_ms).await;
            }
            let component = component.expect("clap asks for a component without --query");
            runtime::logs::run(&home, &component, lines, follow).await?;
            Ok(0)
        }
        Command::Tls(TlsCommand::Init { trust, force }) => {
            let home = runtime::home::Home::open_or_create(&home_dir, &project)?;
            let files = runtime::tls::TlsFiles::of(&home);
            if runtime::tls::init(&home, force)? {
                println!(
                    "created the CA {} and the certificate {}",
                    files.ca_cert.display(),
                    files.cert.display()
                );
            } else {
                println!(
                    "kept the existing CA {} (--force replaces it)",
                    files.ca_cert.display()
                );
            }
            if trust {
                let path = runtime::tls::trust(&home)?;
                println!("the CA is trusted system-wide ({})", path.display());
            }
            Ok(0)
        }
        Command::Ledger(LedgerCommand::Verify { json }) => {
            let home = runtime::home::existing(&home_dir, &project)?;
            pay::ledger::verify(&home, json).await
        }
        Command::Qr(QrCommand::Decode { payload }) => pay::qr::decode(&payload),
        Command::Qr(QrCommand::Encode(args)) => pay::qr::encode(&args),
        Command::Bench(BenchArgs {
            command: Some(BenchCommand::Ledger(args)),
            ..
        }) => {
            let home = runtime::home::existing(&home_dir, &project)?;
            let setup = setup(false);
            let ui = support::ui::Ui::new(args.json);
            perf::bench::ledger::ledger(&home, &setup.tools()?.pg_bin, &args, &ui).await
        }
        Command::Bench(BenchArgs {
            command: Some(BenchCommand::Stream(args)),
            ..
        }) => {
            let home = runtime::home::existing(&home_dir, &project)?;
            perf::bench::stream::run(&home, &args, &support::ui::Ui::new(args.json)).await
        }
        Command::Bench(BenchArgs { command: None, all }) => {
            let home = runtime::home::existing(&home_dir, &project)?;
            let setup = setup(false);
            perf::bench::run(&home, &setup.tools()?.pg_bin, &project, &all).await
        }
        Command::Pay(command) => {
            let home = runtime::home::existing(&home_dir, &project)?;
            pay::run(&home, command).await
        }
        Command::Login(args) => {
            let home = runtime::home::existing(&home_dir, &project)?;
            pay::printing_refusals(pay::login::login(&home, &args)).await
        }
        Command::Logout { json } => {
            let home = runtime::home::existing(&home_dir, &project)?;
            pay::printing_refusals(pay::login::logout(&home, json)).await
        }
        Command::Load(args) => {
            let home = runtime::home::existing(&home_dir, &project)?;
            perf::load::run(&home, &project, &args).await
        }
        Command::Trace {
            payment_id,
            json,
            wait_ms,
        } => {
            let home = runtime::home::existing(&home_dir, &project)?;
            observe::trace::run(&home, payment_id, json, wait_ms).await
        }
        Command::Alerts {
            firing,
            limit,
            json,
        } => {
            let home = runtime::home::existing(&home_dir, &project)?;
            observe::alerts::run(&home, firing, limit, json)
        }
        Command::Slo { json } => {
            let home = runtime::home::existing(&home_dir, &project)?;
            observe::slo::run(&home, &project, json).await
        }
        Command::Chaos(command) => chaos::run(&home_dir, &project, command).await,
        Command::Scaffold(command) => scaffold::run(&project, command),
        Command::Agent {
            listen,
            spans_udp,
            otlp_endpoint,
            store,
            traces_listen,
            jaeger_url,
        } => {
            observe::agent::run(observe::agent::AgentArgs {
                listen,
                spans_udp,
                otlp_endpoint,
                store_dir: store,
                traces_listen,
                jaeger_url,
            })
            .await?;
            Ok(0)
        }
        Command::Supervise => {
            let home = runtime::home::Home::open(&home_dir, &project)?.ok_or_else(|| {
                fail(
                    Code::StateDir,
                    format!("no installation at {}", home_dir.display()),
                )
            })?;
            let setup = setup(false);
            let ctx = runtime::components::Ctx {
                secrets: home.secrets()?,
                home,
                project: project.clone(),
                tools: setup.tools()?,
                bin_dir: runtime::project::bin_dir()?,
            };
            runtime::supervisor::run(ctx).await?;
            Ok(0)
        }
    }
}
