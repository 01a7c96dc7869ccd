//! `paytool`: brings the payments platform up on this machine and drives it.

mod agent;
mod alerts;
mod bench;
mod bench_all;
mod bench_chart;
mod bench_stream;
mod cli;
mod components;
mod down;
mod exit;
mod home;
mod ledger;
mod load;
mod logs;
mod pay;
mod ports;
mod probe;
mod project;
mod qr;
mod setup;
mod slo;
mod slo_report;
mod state;
mod status;
mod supervisor;
mod tls;
mod trace;
mod ui;
mod up;

use clap::Parser;
use cli::{BenchArgs, BenchCommand, Cli, Command, LedgerCommand, QrCommand, TlsCommand};
use exit::{fail, Code};

fn main() {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("paytool: cannot start the async runtime: {error}");
            std::process::exit(Code::Failed as i32);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => std::process::exit(code),
        Err(error) => {
            // One line: what failed and what to do. `{:#}` folds the context chain into it.
            eprintln!("paytool: {error:#}");
            std::process::exit(exit::code_of(&error));
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<i32> {
    let project = project::project_root()?;
    let home_dir = project::state_dir(cli.home.as_deref(), &project);
    let cache = project::cache_dir();
    match cli.command {
        Command::Setup(args) => {
            let ui = ui::Ui::new(false);
            let setup = setup::Setup::new(
                &project,
                &cache,
                setup::Options {
                    no_hosts: args.no_hosts,
                },
            );
            setup.run(&ui)?;
            Ok(0)
        }
        Command::Up(args) => {
            let ui = ui::Ui::new(false);
            let setup = setup::Setup::new(
                &project,
                &cache,
                setup::Options {
                    no_hosts: args.no_hosts,
                },
            );
            up::run(&home_dir, &project, &setup, &ui).await?;
            Ok(0)
        }
        Command::Down { purge } => {
            down::run(&home_dir, &project, purge, &ui::Ui::new(false)).await?;
            Ok(0)
        }
        Command::Status { json, show_secrets } => {
            let home = existing_home(&home_dir, &project)?;
            let status = status::collect(&home, show_secrets).await?;
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
        } => {
            let home = existing_home(&home_dir, &project)?;
            logs::run(&home, &component, lines, follow).await?;
            Ok(0)
        }
        Command::Tls(TlsCommand::Init { trust, force }) => {
            let home = home::Home::open_or_create(&home_dir, &project)?;
            let files = tls::TlsFiles::of(&home);
            if tls::init(&home, force)? {
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
                let path = tls::trust(&home)?;
                println!("the CA is trusted system-wide ({})", path.display());
            }
            Ok(0)
        }
        Command::Ledger(LedgerCommand::Verify { json }) => {
            let home = existing_home(&home_dir, &project)?;
            ledger::verify(&home, json).await
        }
        Command::Qr(QrCommand::Decode { payload }) => qr::decode(&payload),
        Command::Qr(QrCommand::Encode(args)) => qr::encode(&args),
        Command::Bench(BenchArgs {
            command: Some(BenchCommand::Ledger(args)),
            ..
        }) => {
            let home = existing_home(&home_dir, &project)?;
            let setup = setup::Setup::new(&project, &cache, setup::Options::default());
            let ui = ui::Ui::new(args.json);
            bench::ledger(&home, &setup.tools()?.pg_bin, &args, &ui).await
        }
        Command::Bench(BenchArgs {
            command: Some(BenchCommand::Stream(args)),
            ..
        }) => {
            let home = existing_home(&home_dir, &project)?;
            bench_stream::run(&home, &args, &ui::Ui::new(args.json)).await
        }
        Command::Bench(BenchArgs { command: None, all }) => {
            let home = existing_home(&home_dir, &project)?;
            let setup = setup::Setup::new(&project, &cache, setup::Options::default());
            bench_all::run(&home, &setup.tools()?.pg_bin, &project, &all).await
        }
        Command::Pay(command) => {
            let home = existing_home(&home_dir, &project)?;
            pay::run(&home, command).await
        }
        Command::Login(args) => {
            let home = existing_home(&home_dir, &project)?;
            pay::printing_refusals(pay::login::login(&home, &args)).await
        }
        Command::Logout { json } => {
            let home = existing_home(&home_dir, &project)?;
            pay::printing_refusals(pay::login::logout(&home, json)).await
        }
        Command::Load(args) => {
            let home = existing_home(&home_dir, &project)?;
            load::run(&home, &project, &args).await
        }
        Command::Trace {
            payment_id,
            json,
            wait_ms,
        } => {
            let home = existing_home(&home_dir, &project)?;
            trace::run(&home, payment_id, json, wait_ms).await
        }
        Command::Alerts {
            firing,
            limit,
            json,
        } => {
            let home = existing_home(&home_dir, &project)?;
            alerts::run(&home, firing, limit, json)
        }
        Command::Slo { json } => {
            let home = existing_home(&home_dir, &project)?;
            slo_report::run(&home, &project, json).await
        }
        Command::Agent {
            listen,
            spans_udp,
            otlp_endpoint,
            store,
        } => {
            agent::run(agent::AgentArgs {
                listen,
                spans_udp,
                otlp_endpoint,
                store_dir: store,
            })
            .await?;
            Ok(0)
        }
        Command::Supervise => {
            let home = home::Home::open(&home_dir, &project)?.ok_or_else(|| {
                fail(
                    Code::StateDir,
                    format!("no installation at {}", home_dir.display()),
                )
            })?;
            let setup = setup::Setup::new(&project, &cache, setup::Options::default());
            let ctx = components::Ctx {
                secrets: home.secrets()?,
                home,
                project: project.clone(),
                tools: setup.tools()?,
                bin_dir: project::bin_dir()?,
            };
            supervisor::run(ctx).await?;
            Ok(0)
        }
    }
}

/// The installation for commands that need one to exist already.
fn existing_home(
    home_dir: &std::path::Path,
    project: &std::path::Path,
) -> anyhow::Result<home::Home> {
    home::Home::open(home_dir, project)?.ok_or_else(|| {
        fail(
            Code::NotRunning,
            format!(
                "no installation at {}: start one with `paytool up`",
                home_dir.display()
            ),
        )
    })
}
