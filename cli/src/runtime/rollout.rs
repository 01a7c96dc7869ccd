//! `paytool rollout SERVICE`: a rolling restart of one service's instances, `--max-unavailable`
//! at a time, each taken out of the gateway's upstream before it is drained and back in only
//! once its successor is ready. The supervisor carries it out (it owns the processes); this
//! command asks over a Unix socket in `run/` and shows the progress it streams back.
//!
//! A new binary after a rebuild (or `--binary PATH`) is staged as the service's next
//! generation; an instance whose new process is not ready within its bound goes back to the
//! previous generation, and so do the instances already replaced: the rollout is rolled back.
//!
//! The same socket restarts one instance with its clock put off the machine's (a chaos clock
//! skew, [`skew_clock`]): the same drain and restart, the same program.

use crate::runtime::components::services::Service;
use crate::runtime::components::{ComponentName, Ctx};
use crate::runtime::home::Home;
use crate::runtime::state::RuntimeState;
use crate::runtime::supervisor::{stage, Command, Restarted, SharedControl};
use crate::support::exit::{fail, Code};
use crate::support::ui::Ui;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

const SOCKET: &str = "control.sock";
/// A request is one short JSON line.
const REQUEST_BYTES_MAX: usize = 4_096;
/// The whole rollout, whatever happens: every instance's stop (10 s) and start (30 s) bounds
/// for the most instances a service may run, twice (a rollback), and some.
const ROLLOUT_TIMEOUT_MS: u64 = 10 * 60 * 1000;
const CONNECT_TIMEOUT_MS: u64 = 2_000;
/// One instance's drain (10 s), start (30 s) and some.
const SKEW_TIMEOUT_MS: u64 = 60_000;

pub fn socket_path(home: &Home) -> PathBuf {
    home.run_dir().join(SOCKET)
}

/// What the control socket is asked, one JSON line.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ControlRequest {
    Rollout(Request),
    /// One service instance restarted with its clock `offset_s` seconds off (0: the machine's).
    SkewClock {
        service: ComponentName,
        instance: u8,
        offset_s: i32,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    pub service: ComponentName,
    pub max_unavailable: u8,
    /// The binary to roll out; the service's binary beside paytool (a rebuild) when absent.
    pub binary: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Completed,
    RolledBack,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstanceReport {
    pub instance: u8,
    #[serde(flatten)]
    pub restarted: Option<Restarted>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub service: ComponentName,
    pub outcome: Outcome,
    pub program: PathBuf,
    pub instances: Vec<InstanceReport>,
    pub duration_ms: u64,
    pub message: Option<String>,
}

/// What the supervisor streams back, one JSON line each.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Progress {
    Replacing {
        instance: u8,
    },
    Replaced {
        instance: u8,
        ready_ms: u64,
    },
    Failed {
        instance: u8,
        error: String,
    },
    RollingBack {
        instance: u8,
    },
    Done {
        report: Report,
    },
    Refused {
        reason: String,
    },
    /// A clock skew's restart, done.
    Skewed {
        restarted: Restarted,
    },
}

// ---- the supervisor's side ----

/// Serves rollout requests on `run/control.sock` until shutdown, one rollout at a time.
pub async fn serve(
    ctx: Arc<Ctx>,
    state: Arc<Mutex<RuntimeState>>,
    control: SharedControl,
    mut shutdown: watch::Receiver<bool>,
) {
    let path = socket_path(&ctx.home);
    let _ = std::fs::remove_file(&path);
    let listener = match UnixListener::bind(&path) {
        Ok(listener) => listener,
        Err(error) => {
            crate::support::log::line(
                "supervisor",
                &format!(
                    "cannot listen on {}: {error}; rollouts are off",
                    path.display()
                ),
            );
            return;
        }
    };
    let busy = Arc::new(tokio::sync::Mutex::new(()));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let Ok((stream, _)) = accepted else { continue };
        let (ctx, state, control, busy) = (
            Arc::clone(&ctx),
            Arc::clone(&state),
            Arc::clone(&control),
            Arc::clone(&busy),
        );
        tokio::spawn(async move {
            let _ = handle(stream, &ctx, &state, &control, &busy).await;
        });
    }
    let _ = std::fs::remove_file(&path);
}

async fn handle(
    stream: UnixStream,
    ctx: &Ctx,
    state: &Mutex<RuntimeState>,
    control: &SharedControl,
    busy: &tokio::sync::Mutex<()>,
) -> anyhow::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read).take(REQUEST_BYTES_MAX as u64);
    reader.read_line(&mut line).await?;
    let send = |progress: Progress| {
        let mut text = serde_json::to_string(&progress).expect("progress serializes");
        text.push('\n');
        text
    };
    let request: ControlRequest = match serde_json::from_str(&line) {
        Ok(request) => request,
        Err(error) => {
            let text = send(Progress::Refused {
                reason: format!("not a control request: {error}"),
            });
            write.write_all(text.as_bytes()).await?;
            return Ok(());
        }
    };
    let Ok(_guard) = busy.try_lock() else {
        let text = send(Progress::Refused {
            reason: "another rollout or restart is in progress; wait for it to finish".into(),
        });
        write.write_all(text.as_bytes()).await?;
        return Ok(());
    };
    let request = match request {
        ControlRequest::Rollout(request) => request,
        ControlRequest::SkewClock {
            service,
            instance,
            offset_s,
        } => {
            let answer = match skew(control, service, instance, offset_s).await {
                Ok(restarted) => Progress::Skewed { restarted },
                Err(reason) => Progress::Refused { reason },
            };
            write.write_all(send(answer).as_bytes()).await?;
            return Ok(());
        }
    };
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<Progress>();
    let forward = async {
        while let Some(progress) = receiver.recv().await {
            // A client that went away does not stop the rollout: it is the supervisor's now.
            let _ = write.write_all(send(progress).as_bytes()).await;
        }
    };
    let work = async {
        let outcome = tokio::time::timeout(
            Duration::from_millis(ROLLOUT_TIMEOUT_MS),
            execute(ctx, state, control, &request, &sender),
        )
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "the rollout did not finish within {} minutes",
                ROLLOUT_TIMEOUT_MS / 60_000
            ))
        });
        if let Err(reason) = outcome {
            let _ = sender.send(Progress::Refused { reason });
        }
        drop(sender);
    };
    tokio::join!(forward, work);
    Ok(())
}

/// The rollout itself. `Err` is a refusal before anything changed (or the overall bound).
async fn execute(
    ctx: &Ctx,
    state: &Mutex<RuntimeState>,
    control: &SharedControl,
    request: &Request,
    progress: &tokio::sync::mpsc::UnboundedSender<Progress>,
) -> Result<(), String> {
    let began = Instant::now();
    let service = Service::of(request.service).ok_or_else(|| {
        format!(
            "{} is not a service: only services roll out",
            request.service
        )
    })?;
    let instances = service.replicas(&ctx.home);
    check_max_unavailable(service, instances, request.max_unavailable)?;
    {
        let guard = state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let not_ready: Vec<String> = guard
            .components
            .iter()
            .filter(|c| c.name == request.service)
            .filter(|c| c.state != crate::runtime::state::ComponentPhase::Ready)
            .map(|c| format!("{} is {:?}", c.id(), c.state).to_lowercase())
            .collect();
        if !not_ready.is_empty() {
            return Err(format!(
                "not every instance is ready ({}): a rollout would leave too few serving",
                not_ready.join(", ")
            ));
        }
    }
    let binary = request
        .binary
        .clone()
        .unwrap_or_else(|| ctx.bin_dir.join(service.as_str()));
    if !binary.is_file() {
        return Err(format!("{} is not a file", binary.display()));
    }
    let (previous, generation) = {
        let guard = control
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let previous = guard
            .programs
            .get(&request.service)
            .cloned()
            .ok_or("the supervisor has no program for this service")?;
        let generation = guard
            .generations
            .get(&request.service)
            .copied()
            .unwrap_or(1)
            + 1;
        (previous, generation)
    };
    let program = stage(ctx, service, &binary, generation).map_err(|e| format!("{e:#}"))?;
    let mut reports: Vec<InstanceReport> = Vec::new();
    let mut failure: Option<String> = None;
    let order: Vec<u8> = (0..instances).collect();
    for batch in order.chunks(usize::from(request.max_unavailable)) {
        let replies = batch.iter().map(|instance| {
            let _ = progress.send(Progress::Replacing {
                instance: *instance,
            });
            restart(control, request.service, *instance, program.clone(), None)
        });
        let outcomes = futures_util::future::join_all(replies).await;
        for (instance, outcome) in batch.iter().zip(outcomes) {
            match outcome {
                Ok(restarted) => {
                    let _ = progress.send(Progress::Replaced {
                        instance: *instance,
                        ready_ms: restarted.ready_ms,
                    });
                    reports.push(InstanceReport {
                        instance: *instance,
                        restarted: Some(restarted),
                        error: None,
                    });
                }
                Err(error) => {
                    let _ = progress.send(Progress::Failed {
                        instance: *instance,
                        error: error.clone(),
                    });
                    reports.push(InstanceReport {
                        instance: *instance,
                        restarted: None,
                        error: Some(error.clone()),
                    });
                    failure.get_or_insert(error);
                }
            }
        }
        if failure.is_some() {
            break;
        }
    }
    let outcome = if let Some(error) = &failure {
        // The failed instance went back on its own; the ones already replaced go back one
        // at a time, so that the others keep serving.
        for report in reports.iter().filter(|r| r.restarted.is_some()) {
            let _ = progress.send(Progress::RollingBack {
                instance: report.instance,
            });
            if let Err(again) = restart(
                control,
                request.service,
                report.instance,
                previous.clone(),
                None,
            )
            .await
            {
                let _ = progress.send(Progress::Failed {
                    instance: report.instance,
                    error: format!("rolling back: {again}"),
                });
            }
        }
        let _ = std::fs::remove_file(&program);
        crate::support::log::line(
            "supervisor",
            &format!("{}: rollout rolled back: {error}", request.service),
        );
        Outcome::RolledBack
    } else {
        let mut guard = control
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        guard.programs.insert(request.service, program.clone());
        guard.generations.insert(request.service, generation);
        drop(guard);
        // Generations before the previous one are no longer needed for a rollback.
        if generation > 2 {
            let _ = std::fs::remove_file(previous_generation(&program, generation - 2));
        }
        Outcome::Completed
    };
    let _ = progress.send(Progress::Done {
        report: Report {
            service: request.service,
            outcome,
            program,
            instances: reports,
            duration_ms: u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX),
            message: failure,
        },
    });
    Ok(())
}

fn previous_generation(program: &Path, generation: u32) -> PathBuf {
    let name = program
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.rsplit_once('.'))
        .map_or_else(String::new, |(stem, _)| format!("{stem}.{generation}"));
    program.with_file_name(name)
}

/// A rollout must leave an instance serving: fewer may be down at once than there are.
fn check_max_unavailable(
    service: Service,
    instances: u8,
    max_unavailable: u8,
) -> Result<(), String> {
    if max_unavailable == 0 {
        return Err("--max-unavailable must be at least 1".into());
    }
    if max_unavailable >= instances {
        return Err(format!(
            "{} runs {instances} instance{}: taking {max_unavailable} down at once would leave none serving; run more (`paytool down && paytool up --replicas {}`) or lower --max-unavailable",
            service.as_str(),
            if instances == 1 { "" } else { "s" },
            max_unavailable + 1
        ));
    }
    Ok(())
}

/// One service instance restarted on its current program with its clock `offset_s` off.
async fn skew(
    control: &SharedControl,
    name: ComponentName,
    instance: u8,
    offset_s: i32,
) -> Result<Restarted, String> {
    use crate::runtime::supervisor::{CLOCK_OFFSET_S_MAX, FAKETIME_LIBRARY};
    if Service::of(name).is_none() {
        return Err(format!(
            "{name} is not a service: only a service's clock is put off"
        ));
    }
    if offset_s.abs() > CLOCK_OFFSET_S_MAX {
        return Err(format!(
            "a clock offset of {offset_s} s is more than {CLOCK_OFFSET_S_MAX} s either way"
        ));
    }
    if offset_s != 0 && !Path::new(FAKETIME_LIBRARY).exists() {
        return Err(format!(
            "{FAKETIME_LIBRARY} is missing: `paytool setup` installs faketime"
        ));
    }
    let program = control
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .programs
        .get(&name)
        .cloned()
        .ok_or("the supervisor has no program for this service")?;
    restart(control, name, instance, program, Some(offset_s)).await
}

/// Asks the supervisor to restart one service instance with its clock `offset_s` seconds off
/// the machine's (0 puts it back); answers once the new process is ready.
pub async fn skew_clock(
    home: &Home,
    service: ComponentName,
    instance: u8,
    offset_s: i32,
) -> anyhow::Result<Restarted> {
    skew_clock_at(&socket_path(home), service, instance, offset_s).await
}

/// [`skew_clock`] through the socket at `path` (an undo keeps the path, not the home).
pub async fn skew_clock_at(
    path: &Path,
    service: ComponentName,
    instance: u8,
    offset_s: i32,
) -> anyhow::Result<Restarted> {
    let stream = tokio::time::timeout(
        Duration::from_millis(CONNECT_TIMEOUT_MS),
        UnixStream::connect(path),
    )
    .await
    .map_err(|_| anyhow::anyhow!("the supervisor did not answer on {}", path.display()))?
    .map_err(|error| {
        anyhow::anyhow!("cannot reach the supervisor at {}: {error}", path.display())
    })?;
    let (read, mut write) = stream.into_split();
    let mut text = serde_json::to_string(&ControlRequest::SkewClock {
        service,
        instance,
        offset_s,
    })?;
    text.push('\n');
    write.write_all(text.as_bytes()).await?;
    let mut lines = BufReader::new(read).lines();
    let line = tokio::time::timeout(Duration::from_millis(SKEW_TIMEOUT_MS), lines.next_line())
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "the supervisor did not restart {service}.{instance} within {} s",
                SKEW_TIMEOUT_MS / 1000
            )
        })??
        .ok_or_else(|| anyhow::anyhow!("the supervisor closed the connection without answering"))?;
    match serde_json::from_str::<Progress>(&line)? {
        Progress::Skewed { restarted } => Ok(restarted),
        Progress::Refused { reason } => Err(anyhow::anyhow!(reason)),
        other => Err(anyhow::anyhow!("unexpected answer: {other:?}")),
    }
}

async fn restart(
    control: &SharedControl,
    name: ComponentName,
    instance: u8,
    program: PathBuf,
    clock_offset_s: Option<i32>,
) -> Result<Restarted, String> {
    let sender = control
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .commands
        .get(&(name, instance))
        .cloned()
        .ok_or_else(|| format!("{name}.{instance} is not supervised"))?;
    let (reply, answer) = tokio::sync::oneshot::channel();
    sender
        .send(Command::Restart {
            program,
            clock_offset_s,
            reply,
        })
        .await
        .map_err(|_| format!("{name}.{instance}'s watcher is gone"))?;
    answer
        .await
        .map_err(|_| format!("{name}.{instance}'s watcher stopped before answering"))?
        .map_err(|error| format!("{error:#}"))
}

// ---- the command's side ----

/// `paytool rollout`: exit 0 when every instance runs the new program, 1 when it was rolled
/// back, 2 when refused (nothing changed), 7 when the platform is not running.
pub async fn run(home: &Home, request: Request, json: bool, ui: &Ui) -> anyhow::Result<i32> {
    crate::runtime::state::require_running(home)?;
    let path = socket_path(home);
    let stream = tokio::time::timeout(
        Duration::from_millis(CONNECT_TIMEOUT_MS),
        UnixStream::connect(&path),
    )
    .await
    .map_err(|_| anyhow::anyhow!("the supervisor did not answer on {}", path.display()))?
    .map_err(|error| {
        fail(
            Code::NotRunning,
            format!(
                "cannot reach the supervisor at {} ({error}): restart the platform with `paytool down && paytool up`",
                path.display()
            ),
        )
    })?;
    let (read, mut write) = stream.into_split();
    let mut text = serde_json::to_string(&ControlRequest::Rollout(request.clone()))?;
    text.push('\n');
    write.write_all(text.as_bytes()).await?;
    let mut lines = BufReader::new(read).lines();
    let deadline = Instant::now() + Duration::from_millis(ROLLOUT_TIMEOUT_MS + 30_000);
    let mut steps: std::collections::BTreeMap<u8, crate::support::ui::Line> = Default::default();
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let Ok(next) = tokio::time::timeout(remaining, lines.next_line()).await else {
            return Err(fail(
                Code::Failed,
                "the rollout did not report back in time; see `paytool logs supervisor`",
            ));
        };
        let Some(line) = next? else {
            return Err(fail(
                Code::Failed,
                "the supervisor closed the connection before the rollout finished; see `paytool logs supervisor`",
            ));
        };
        let progress: Progress = serde_json::from_str(&line)?;
        let id = |instance: u8| crate::runtime::components::instance_id(request.service, instance);
        match progress {
            Progress::Replacing { instance } => {
                let step = steps
                    .entry(instance)
                    .or_insert_with(|| ui.step(&id(instance)));
                step.working("out of the upstream, draining, starting the new program");
            }
            Progress::Replaced { instance, ready_ms } => {
                if let Some(step) = steps.get(&instance) {
                    step.done(&format!(
                        "replaced; ready in {:.1}s",
                        ready_ms as f64 / 1000.0
                    ));
                }
            }
            Progress::Failed { instance, error } => {
                if let Some(step) = steps.get(&instance) {
                    step.failed(&error);
                }
            }
            Progress::RollingBack { instance } => {
                if let Some(step) = steps.get(&instance) {
                    step.working("rolling back to the previous program");
                }
            }
            Progress::Refused { reason } => return Err(fail(Code::Usage, reason)),
            Progress::Skewed { .. } => {
                anyhow::bail!("the supervisor answered a rollout as a clock skew")
            }
            Progress::Done { report } => {
                drop(steps);
                if json {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                } else {
                    print_report(&report);
                }
                return Ok(match report.outcome {
                    Outcome::Completed => 0,
                    Outcome::RolledBack => Code::Failed as i32,
                });
            }
        }
    }
}

fn print_report(report: &Report) {
    match report.outcome {
        Outcome::Completed => println!(
            "{}: {} instance{} now run {} ({:.1}s)",
            report.service,
            report.instances.len(),
            if report.instances.len() == 1 { "" } else { "s" },
            report.program.display(),
            report.duration_ms as f64 / 1000.0
        ),
        Outcome::RolledBack => println!(
            "{}: rolled back, every instance runs the previous program: {}",
            report.service,
            report
                .message
                .as_deref()
                .unwrap_or("an instance was not ready")
        ),
    }
    for instance in &report.instances {
        if let Some(restarted) = &instance.restarted {
            println!(
                "  {}: pid {} → {}, ready in {} ms, out of the upstream for {} ms",
                crate::runtime::components::instance_id(report.service, instance.instance),
                restarted.old_pid.map_or("-".into(), |p| p.to_string()),
                restarted.new_pid.map_or("-".into(), |p| p.to_string()),
                restarted.ready_ms,
                restarted.replaced_ms
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rollout_that_would_leave_no_instance_serving_is_refused() {
        let refused = check_max_unavailable(Service::ConsumerApi, 1, 1).expect_err("refused");
        assert!(refused.contains("runs 1 instance:"), "{refused}");
        assert!(refused.contains("--replicas 2"), "{refused}");
        assert!(check_max_unavailable(Service::ConsumerApi, 3, 3).is_err());
        assert!(check_max_unavailable(Service::ConsumerApi, 2, 0).is_err());
        assert!(check_max_unavailable(Service::ConsumerApi, 2, 1).is_ok());
        assert!(check_max_unavailable(Service::ConsumerApi, 4, 3).is_ok());
    }

    #[test]
    fn the_generation_before_the_previous_one_is_found_by_name() {
        let program = Path::new("/x/run/bin/consumer-api.4");
        assert_eq!(
            previous_generation(program, 2),
            Path::new("/x/run/bin/consumer-api.2")
        );
    }

    #[test]
    fn progress_lines_read_back_as_they_were_written() {
        let line = serde_json::to_string(&Progress::Replaced {
            instance: 1,
            ready_ms: 420,
        })
        .expect("serializes");
        assert_eq!(line, r#"{"event":"replaced","instance":1,"ready_ms":420}"#);
        let Progress::Replaced { instance, ready_ms } =
            serde_json::from_str(&line).expect("parses")
        else {
            panic!("not read back: {line}");
        };
        assert_eq!((instance, ready_ms), (1, 420));
    }
}
