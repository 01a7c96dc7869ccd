//! `paytool logs COMPONENT [-f]`: a component's log from `.paytool/logs/`.

use crate::runtime::home::Home;
use crate::support::exit::{fail, Code};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

/// How often `--follow` looks for new lines.
const FOLLOW_POLL_MS: u64 = 250;
/// How much of the file the tail reads at most: enough for any sane number of lines.
const TAIL_WINDOW_BYTES: u64 = 4 * 1024 * 1024;

/// The last `count` lines of a file.
pub fn tail_lines(path: &Path, count: usize) -> anyhow::Result<Vec<String>> {
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(TAIL_WINDOW_BYTES)))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    Ok(lines[lines.len().saturating_sub(count)..]
        .iter()
        .map(|l| (*l).to_string())
        .collect())
}

pub async fn run(home: &Home, component: &str, lines: usize, follow: bool) -> anyhow::Result<()> {
    let known: Vec<&str> = crate::runtime::components::names()
        .map(|name| name.as_str())
        .chain(["supervisor"])
        .collect();
    if !known.contains(&component) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_is_the_last_lines_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.log");
        let text: String = (1..=50).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&path, text).expect("write");
        assert_eq!(
            tail_lines(&path, 3).expect("tail"),
            vec!["line 48", "line 49", "line 50"]
        );
        assert_eq!(tail_lines(&path, 500).expect("tail").len(), 50);
    }
}
