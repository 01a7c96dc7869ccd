//! `paytool logs COMPONENT [-f]`: a component's log from `.paytool/logs/`.

use crate::runtime::home::Home;
use crate::support::exit::{fail, Code};
use crate::support::files::tail_lines;
use std::io::{Read, Seek, SeekFrom, Write};
use std::time::Duration;

/// How often `--follow` looks for new lines.
const FOLLOW_POLL_MS: u64 = 250;
pub async fn run(home: &Home, component: &str, lines: usize, follow: bool) -> anyhow::Result<()> {
    // Every instance by its id (`consumer-api.1` for a service's second), and the supervisor.
    let known: Vec<String> = crate::runtime::components::instances(home)
        .map(|(name, instance)| crate::runtime::components::instance_id(name, instance))
        .chain(["supervisor".to_string()])
        .collect();
    if !known.iter().any(|id| id == component) {
        return Err(fail(
            Code::Failed,
            format!(
                "no component named {component}; known: {}",
                known.join(", ")
            ),
        ));
    }
    let path = home.log_path(component);
    if !path.exists() {
        return Err(fail(
            Code::NotRunning,
            format!(
                "{component} has no log yet ({}): start the platform with `paytool up`",
                path.display()
            ),
        ));
    }
    let mut stdout = std::io::stdout().lock();
    for line in tail_lines(&path, lines)? {
        writeln!(stdout, "{line}")?;
    }
    stdout.flush()?;
    if !follow {
        return Ok(());
    }
    let mut position = std::fs::metadata(&path)?.len();
    loop {
        tokio::time::sleep(Duration::from_millis(FOLLOW_POLL_MS)).await;
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if len < position {
            // Truncated (a purge, a rotation): start from the top.
            position = 0;
        }
        if len > position {
            let mut file = std::fs::File::open(&path)?;
            file.seek(SeekFrom::Start(position))?;
            let mut chunk = Vec::new();
            file.take(len - position).read_to_end(&mut chunk)?;
            stdout.write_all(&chunk)?;
            stdout.flush()?;
            position = len;
        }
    }
}
