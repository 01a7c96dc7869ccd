//! `paytool`: brings the payments platform up on this machine and drives it. Everything is in
//! the library (`paytool::app::run`); this only parses, starts the async runtime and exits.

use clap::Parser;
use paytool::args::Cli;
use paytool::support::exit::{self, Code};

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
    match runtime.block_on(paytool::app::run(cli)) {
        Ok(code) => std::process::exit(code),
        Err(error) => {
            // One line: what failed and what to do. `{:#}` folds the context chain into it.
            eprintln!("paytool: {error:#}");
            std::process::exit(exit::code_of(&error));
        }
    }
}
