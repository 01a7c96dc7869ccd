//! Reading files the way every room needs: the tail of a log.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

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
