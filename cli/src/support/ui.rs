//! Progress output: one indicatif line per step or component on a terminal, plain lines
//! otherwise (CI logs, pipes), nothing at all for `--json` commands.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

#[derive(Clone)]
pub struct Ui {
    multi: Option<MultiProgress>,
    quiet: bool,
}

impl Ui {
    pub fn new(quiet: bool) -> Self {
        let multi = (!quiet && std::io::stderr().is_terminal())
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Self { multi, quiet }
    }

    pub fn step(&self, name: &str) -> Line {
        let bar = self.multi.as_ref().map(|multi| {
            let bar = multi.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("{spinner:.cyan} {prefix:<16} {msg} {elapsed:.dim}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_prefix(name.to_string());
            bar.set_message("waiting");
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Line {
            bar,
            name: name.to_string(),
            quiet: self.quiet,
            started: Instant::now(),
            last: std::cell::RefCell::new(String::new()),
        }
    }

    /// A line of text that does not disturb the progress lines.
    pub fn println(&self, text: &str) {
        if self.quiet {
            return;
        }
        match &self.multi {
            Some(multi) => {
                let _ = multi.println(text);
            }
            None => eprintln!("{text}"),
        }
    }
}

pub struct Line {
    bar: Option<ProgressBar>,
    name: String,
    quiet: bool,
    started: Instant,
    last: std::cell::RefCell<String>,
}

impl Line {
    pub fn working(&self, message: &str) {
        self.update(message, None);
    }

    pub fn done(&self, message: &str) {
        self.update(message, Some("✔"));
    }

    pub fn failed(&self, message: &str) {
        self.update(message, Some("✘"));
    }

    /// Removes the line: for a short wait whose outcome the command prints itself.
    pub fn clear(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    fn update(&self, message: &str, finished: Option<&str>) {
        // Polling callers report the same state many times; show each change once.
        let key = format!("{}{message}", finished.unwrap_or(""));
        if *self.last.borrow() == key {
            return;
        }
        *self.last.borrow_mut() = key;
        match &self.bar {
            Some(bar) => match finished {
                Some(mark) => {
                    bar.set_style(
                        ProgressStyle::with_template("{prefix:<18} {msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    bar.set_prefix(format!("{mark} {}", self.name));
                    bar.finish_with_message(message.to_string());
                }
                None => bar.set_message(message.to_string()),
            },
            None if !self.quiet => {
                let mark = finished.unwrap_or("…");
                eprintln!(
                    "{mark} {:<16} {message} ({:.1}s)",
                    self.name,
                    self.started.elapsed().as_secs_f64()
                );
            }
            None => {}
        }
    }
}
