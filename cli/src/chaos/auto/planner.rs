//! The planners of `paytool chaos auto`, behind one interface: each proposes the next action
//! from the observation and learns from its outcome.
//!
//! - `random`: uniform over the action space (the baseline).
//! - `learned`: Thompson sampling over (fault, target) arms at the strongest intensity, each a
//!   Beta posterior (prior Beta(1, 3): most actions find nothing). A run that found nothing is
//!   a failure of its arm whatever its severity (the judge's verdict on an action hardly
//!   changes from run to run: the proofs find 10 of 10 or 0 of 10), and of its sibling on the
//!   same target (a cut and a reset peer, a latency and a timeout, behave alike); its severity
//!   (how close it came to a finding) is credited to the other faults on the same component
//!   (half) and on its neighbours in the call graph (a quarter): a component that bends under
//!   one fault is tried with the others. An arm whose run made a finding is pushed down, so
//!   that the search moves on.
//! - `llm`: a language model behind an OpenAI-compatible chat endpoint, asked for one action as
//!   JSON; an answer that is not one of the space's actions is refused and counted, and after
//!   [`LLM_TRIES_MAX`] refusals the step falls back to a random action (also counted).

use super::space::{self, Action, FaultKind, INTENSITY_MAX};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand_distr::{Beta, Distribution};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// Answers asked of the model before a step falls back to a random action.
pub const LLM_TRIES_MAX: u32 = 3;
/// One chat completion's bound (a 135M model on two cores answers in a few seconds).
const LLM_TIMEOUT_MS: u64 = 60_000;
/// The most tokens an answer may take: one small JSON object.
const LLM_ANSWER_TOKENS_MAX: u32 = 120;
/// Past steps shown to the model (its context is small).
const LLM_HISTORY_MAX: usize = 8;

pub use crate::args::PlannerKind;

impl PlannerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Random => "random",
            Self::Learned => "learned",
            Self::Llm => "llm",
        }
    }
}

/// What the planners see.
pub struct Observation<'a> {
    pub space: &'a [Action],
    /// Who calls whom (caller, callee), from the traces (or the routes when there are none).
    pub graph: &'a [(String, String)],
    pub history: &'a [Outcome],
    /// `broken@component` of each finding so far: found once is enough.
    pub found: &'a [String],
}

/// One past step, as the planners learn from it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outcome {
    pub action: Action,
    pub severity: f64,
    pub broken: Vec<String>,
    pub new_finding: bool,
}

/// What a planner proposes, with what it expected and (for the model) what was said.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Proposal {
    pub action: Action,
    /// What the planner expects to break (`latency`, `recovery`, `money`) and why.
    pub expect: Option<String>,
    /// The model's prompt and raw answers, refused ones included.
    pub prompt: Option<String>,
    pub answers: Vec<String>,
    pub refused: u32,
    /// The model gave no valid action: this one is random.
    pub fell_back: bool,
    pub tokens: u64,
}

impl Proposal {
    fn plain(action: Action) -> Self {
        Self {
            action,
            expect: None,
            prompt: None,
            answers: Vec::new(),
            refused: 0,
            fell_back: false,
            tokens: 0,
        }
    }
}

/// Where the model is.
#[derive(Debug, Clone)]
pub struct LlmEndpoint {
    /// Base URL of an OpenAI-compatible API (`http://127.0.0.1:31900/v1`).
    pub url: String,
    pub model: String,
}

pub enum Planner {
    Random,
    Learned(Thompson),
    Llm(LlmPlanner),
}

impl Planner {
    pub fn new(kind: PlannerKind, llm: Option<LlmEndpoint>) -> anyhow::Result<Self> {
        Ok(match kind {
            PlannerKind::Random => Self::Random,
            PlannerKind::Learned => Self::Learned(Thompson::default()),
            PlannerKind::Llm => Self::Llm(LlmPlanner::new(llm.ok_or_else(|| {
                anyhow::anyhow!("the llm planner needs --llm-url (an OpenAI-compatible endpoint; `scripts/llm-server.sh` starts one)")
            })?)?),
        })
    }

    pub async fn propose(&mut self, observation: &Observation<'_>, rng: &mut StdRng) -> Proposal {
        match self {
            Self::Random => Proposal::plain(random(observation.space, rng)),
            Self::Learned(thompson) => Proposal::plain(thompson.propose(observation, rng)),
            Self::Llm(llm) => llm.propose(observation, rng).await,
        }
    }

    pub fn learn(&mut self, outcome: &Outcome, graph: &[(String, String)]) {
        if let Self::Learned(thompson) = self {
            thompson.learn(outcome, graph);
        }
    }
}

fn random(space: &[Action], rng: &mut StdRng) -> Action {
    space
        .choose(rng)
        .cloned()
        .expect("the action space is not empty")
}

/// Thompson sampling over (fault, target) arms.
#[derive(Debug, Default)]
pub struct Thompson {
    /// (α, β) of each arm's Beta posterior; absent: the Beta(1, 1) prior.
    arms: BTreeMap<(FaultKind, String), (f64, f64)>,
}

/// The prior of every arm: Beta(1, 3), a one-in-four expectation of a finding.
const PRIOR: (f64, f64) = (1.0, 3.0);
/// What a finding adds to its arm's failures: the same weakness is not worth finding twice.
const FOUND_PENALTY: f64 = 3.0;
/// The share of an outcome's weight given to the arms of the same component, and to those of
/// its neighbours in the call graph.
const SAME_COMPONENT_WEIGHT: f64 = 0.5;
const NEIGHBOUR_WEIGHT: f64 = 0.25;
/// The share of a run's severity its own arm keeps as a success: a near miss is a little more
/// likely to be a finding at the next try (a loaded machine, a different moment) but mostly not.
const OWN_SEVERITY_CREDIT: f64 = 0.25;
/// The share of an arm's outcome given to its sibling on the same target.
const SIBLING_WEIGHT: f64 = 0.75;

/// The fault that behaves like this one on the same target: a cut and a reset peer both refuse
/// the connection, a latency and a timeout both hold the answer back.
fn sibling(fault: FaultKind) -> Option<FaultKind> {
    match fault {
        FaultKind::Cut => Some(FaultKind::ResetPeer),
        FaultKind::ResetPeer => Some(FaultKind::Cut),
        FaultKind::Latency => Some(FaultKind::Timeout),
        FaultKind::Timeout => Some(FaultKind::Latency),
        FaultKind::Kill | FaultKind::Pause | FaultKind::CpuPressure | FaultKind::DiskFull => None,
    }
}

impl Thompson {
    fn posterior(&self, arm: &(FaultKind, String)) -> (f64, f64) {
        self.arms.get(arm).copied().unwrap_or(PRIOR)
    }

    fn propose(&self, observation: &Observation<'_>, rng: &mut StdRng) -> Action {
        let mut best: Option<(f64, &Action)> = None;
        // One candidate per arm, at its strongest intensity: the strongest fault is the likeliest
        // to show a weakness, and a finding is shrunk to the mildest that still shows it.
        for action in observation.space.iter().filter(|a| {
            a.intensity == INTENSITY_MAX || (a.fault == FaultKind::Kill && a.intensity == 1)
        }) {
            let (alpha, beta) = self.posterior(&(action.fault, action.target.clone()));
            let sample = Beta::new(alpha, beta).map_or(0.5, |d| d.sample(rng));
            if best.is_none_or(|(score, _)| sample > score) {
                best = Some((sample, action));
            }
        }
        best.map_or_else(|| random(observation.space, rng), |(_, a)| a.clone())
    }

    fn learn(&mut self, outcome: &Outcome, graph: &[(String, String)]) {
        // The severity is the success the other arms hear of: 1 for a new finding, how close
        // it came otherwise; a finding made before is worth nothing more.
        let success = if outcome.new_finding {
            1.0
        } else if outcome.broken.is_empty() {
            outcome.severity.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let arm = (outcome.action.fault, outcome.action.target.clone());
        // The arm itself: a run that made no new finding is a failure however close it came,
        // since the same action would come as close again (until 2026-12-07 the severity was
        // its success, and the bench saw one near miss tried four times in twenty steps).
        let (own_success, own_failure) = if outcome.new_finding {
            (1.0, FOUND_PENALTY)
        } else if outcome.broken.is_empty() {
            (OWN_SEVERITY_CREDIT * success, 1.0)
        } else {
            (0.0, 1.0 + FOUND_PENALTY)
        };
        let (alpha, beta) = self.posterior(&arm);
        self.arms
            .insert(arm.clone(), (alpha + own_success, beta + own_failure));
        if let Some(sibling) = sibling(outcome.action.fault) {
            let key = (sibling, outcome.action.target.clone());
            let (a, b) = self.posterior(&key);
            self.arms.insert(
                key,
                (
                    a + SIBLING_WEIGHT * own_success,
                    b + SIBLING_WEIGHT * own_failure,
                ),
            );
        }
        let component = space::component_of(&outcome.action);
        let neighbours: Vec<&str> = graph
            .iter()
            .filter_map(|(from, to)| {
                if *from == component {
                    Some(to.as_str())
                } else if *to == component {
                    Some(from.as_str())
                } else {
                    None
                }
            })
            .collect();
        let keys: Vec<(FaultKind, String)> = FaultKind::ALL
            .iter()
            .flat_map(|fault| {
                self.known_targets()
                    .into_iter()
                    .map(move |target| (*fault, target))
            })
            .collect();
        for key in keys {
            if key == arm || sibling(arm.0).is_some_and(|f| key == (f, arm.1.clone())) {
                continue;
            }
            let probe = Action {
                fault: key.0,
                target: key.1.clone(),
                intensity: 1,
            };
            let theirs = space::component_of(&probe);
            let weight = if theirs == component {
                SAME_COMPONENT_WEIGHT
            } else if neighbours.contains(&theirs.as_str()) {
                NEIGHBOUR_WEIGHT
            } else {
                continue;
            };
            let (a, b) = self.posterior(&key);
            self.arms
                .insert(key, (a + weight * success, b + weight * (1.0 - success)));
        }
    }

    fn known_targets(&self) -> Vec<String> {
        let mut targets: Vec<String> = self.arms.keys().map(|(_, t)| t.clone()).collect();
        targets.extend(
            space::PROCESS_TARGETS
                .iter()
                .map(|c| c.as_str().to_string()),
        );
        targets.extend(
            crate::runtime::components::toxiproxy::ROUTES
                .iter()
                .map(space::route_name),
        );
        targets.sort();
        targets.dedup();
        targets
    }
}

/// The model's planner.
pub struct LlmPlanner {
    endpoint: LlmEndpoint,
    http: reqwest::Client,
}

/// What the model must answer: one action, and what it expects.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Answer {
    fault: FaultKind,
    target: String,
    intensity: u8,
    #[serde(default)]
    expect: Option<String>,
}

impl LlmPlanner {
    fn new(endpoint: LlmEndpoint) -> anyhow::Result<Self> {
        Ok(Self {
            endpoint,
            http: reqwest::Client::builder()
                .timeout(Duration::from_millis(LLM_TIMEOUT_MS))
                .build()?,
        })
    }

    async fn propose(&self, observation: &Observation<'_>, rng: &mut StdRng) -> Proposal {
        use rand::Rng;
        let prompt = prompt(observation);
        let schema = answer_schema(observation.space);
        let mut proposal = Proposal::plain(random(observation.space, rng));
        proposal.prompt = Some(prompt.clone());
        for _ in 0..LLM_TRIES_MAX {
            // A seed per request: the server's own is the same at every start, and so would be
            // its answers.
            let seed: u32 = rng.gen();
            let (text, tokens) = match self.ask(&prompt, &schema, seed).await {
                Ok(answer) => answer,
                Err(error) => (format!("(no answer: {error:#})"), 0),
            };
            proposal.tokens += tokens;
            proposal.answers.push(text.clone());
            match parse_answer(&text, observation.space) {
                Ok((action, expect)) => {
                    proposal.action = action;
                    proposal.expect = expect;
                    return proposal;
                }
                Err(_) => proposal.refused += 1,
            }
        }
        proposal.fell_back = true;
        proposal
    }

    async fn ask(&self, prompt: &str, schema: &Value, seed: u32) -> anyhow::Result<(String, u64)> {
        let body = json!({
            "seed": seed,
            "model": self.endpoint.model,
            "messages": [
                { "role": "system", "content": SYSTEM_PROMPT },
                { "role": "user", "content": prompt },
            ],
            "temperature": 0.7,
            "max_tokens": LLM_ANSWER_TOKENS_MAX,
            "response_format": { "type": "json_object", "schema": schema },
        });
        let url = format!(
            "{}/chat/completions",
            self.endpoint.url.trim_end_matches('/')
        );
        let answer: Value = self
            .http
            .post(url)
            .json(&body)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let text = answer["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let tokens = answer["usage"]["total_tokens"].as_u64().unwrap_or(0);
        Ok((text, tokens))
    }
}

// No example answer: a small model copies it (measured: 8 of 10 answers were the example).
const SYSTEM_PROMPT: &str = "You plan chaos experiments on a payments platform to find its weaknesses. \
Answer with one JSON object: the fault, its target, its intensity (1 mild to 3 strong), and what you expect to break \
(money, latency or recovery). Pick a target the fault allows. Prefer what has not been tried and what came close to breaking.";

/// The JSON Schema the model's answer is held to (llama.cpp's server turns it into a grammar,
/// with `"type": "json_object"`; it refuses OpenAI's `json_schema` type): one branch per fault
/// (`anyOf`), each listing the targets and intensities that fault takes, so that the grammar
/// itself keeps the answer inside the space. Values are listed (`enum`) because the grammar
/// ignores `minimum` and `maximum`. Measured with the 135M model: 10 of 10 answers valid with
/// the branches; with one list of every target for every fault, all 3 answers of a step were
/// refused (cpu-pressure on a route); with no schema, 0 of 10 were even JSON.
fn answer_schema(space: &[Action]) -> Value {
    let mut branches: BTreeMap<&str, (Vec<&str>, Vec<u8>)> = BTreeMap::new();
    for action in space {
        let (targets, intensities) = branches.entry(action.fault.as_str()).or_default();
        if !targets.contains(&action.target.as_str()) {
            targets.push(action.target.as_str());
        }
        if !intensities.contains(&action.intensity) {
            intensities.push(action.intensity);
        }
    }
    let any_of: Vec<Value> = branches
        .into_iter()
        .map(|(fault, (targets, intensities))| {
            json!({
                "type": "object",
                "properties": {
                    "fault": { "type": "string", "enum": [fault] },
                    "target": { "type": "string", "enum": targets },
                    "intensity": { "type": "integer", "enum": intensities },
                    "expect": { "type": "string", "enum": ["money", "latency", "recovery", "availability"] },
                },
                "required": ["fault", "target", "intensity", "expect"],
                "additionalProperties": false,
            })
        })
        .collect();
    json!({ "anyOf": any_of })
}

/// The observation, said shortly (the model's context is small).
fn prompt(observation: &Observation<'_>) -> String {
    let mut targets: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for action in observation.space {
        let list = targets.entry(action.fault.as_str()).or_default();
        if !list.contains(&action.target.as_str()) {
            list.push(action.target.as_str());
        }
    }
    let mut text = String::from("Calls between components: ");
    text.push_str(
        &observation
            .graph
            .iter()
            .map(|(from, to)| format!("{from}->{to}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    text.push_str("\nAllowed faults and targets:\n");
    for (fault, list) in &targets {
        text.push_str(&format!("- {fault}: {}\n", list.join(", ")));
    }
    let start = observation.history.len().saturating_sub(LLM_HISTORY_MAX);
    if !observation.history[start..].is_empty() {
        text.push_str("Tried so far (severity 0 = fine, 1 = broke):\n");
        for outcome in &observation.history[start..] {
            text.push_str(&format!(
                "- {} -> severity {:.2}{}\n",
                outcome.action,
                outcome.severity,
                if outcome.broken.is_empty() {
                    String::new()
                } else {
                    format!(", broke {}", outcome.broken.join("+"))
                }
            ));
        }
    }
    if !observation.found.is_empty() {
        text.push_str(&format!(
            "Already found (do not repeat): {}\n",
            observation.found.join(", ")
        ));
    }
    text.push_str("Your next experiment, as JSON:");
    text
}

/// The model's answer as an action of the space, or why it is refused.
pub fn parse_answer(text: &str, space: &[Action]) -> Result<(Action, Option<String>), String> {
    let start = text.find('{').ok_or("no JSON object")?;
    let end = text.rfind('}').ok_or("no JSON object")?;
    let answer: Answer =
        serde_json::from_str(&text[start..=end]).map_err(|e| format!("not an action: {e}"))?;
    let action = Action {
        fault: answer.fault,
        target: answer.target.trim().to_string(),
        intensity: answer.intensity,
    };
    if !space.contains(&action) {
        return Err(format!("{action} is not in the action space"));
    }
    Ok((action, answer.expect))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::auto::space::{all, Offer};
    use rand::SeedableRng;

    fn graph() -> Vec<(String, String)> {
        vec![
            ("consumer-api".into(), "orchestrator".into()),
            ("merchant-api".into(), "orchestrator".into()),
            ("orchestrator".into(), "postgres".into()),
        ]
    }

    #[test]
    fn the_models_answer_is_taken_only_when_it_is_an_action_of_the_space() {
        let space = all(Offer { chaos: true });
        let good = r#"Sure. {"fault": "timeout", "target": "consumer-api->orchestrator", "intensity": 3, "expect": "hangs"}"#;
        let (action, expect) = parse_answer(good, &space).expect("taken");
        assert_eq!(action.fault, FaultKind::Timeout);
        assert_eq!(expect.as_deref(), Some("hangs"));
        for bad in [
            "no json here",
            r#"{"fault": "explode", "target": "orchestrator", "intensity": 1}"#,
            r#"{"fault": "kill", "target": "gateway", "intensity": 1}"#,
            r#"{"fault": "pause", "target": "kafka", "intensity": 9}"#,
            r#"{"fault": "pause", "target": "kafka", "intensity": 2, "rm": "-rf"}"#,
        ] {
            assert!(parse_answer(bad, &space).is_err(), "{bad} was taken");
        }
    }

    #[test]
    fn the_prompt_names_every_allowed_fault_and_what_was_found() {
        let space = all(Offer { chaos: true });
        let found = vec!["latency@consumer-api".to_string()];
        let text = prompt(&Observation {
            space: &space,
            graph: &graph(),
            history: &[],
            found: &found,
        });
        for fault in FaultKind::ALL {
            assert!(text.contains(fault.as_str()), "{fault:?}");
        }
        assert!(text.contains("latency@consumer-api"));
        assert!(text.contains("consumer-api->orchestrator"));
    }

    /// How often, in `draws` proposals, the planner picks an action `which` accepts, against
    /// the share of the arms it accepts.
    fn pick_ratio(
        thompson: &Thompson,
        which: impl Fn(&Action) -> bool,
        draws: usize,
        rng: &mut StdRng,
    ) -> f64 {
        let space = all(Offer { chaos: true });
        let graph = graph();
        let observation = Observation {
            space: &space,
            graph: &graph,
            history: &[],
            found: &[],
        };
        let arms: Vec<&Action> = space
            .iter()
            .filter(|a| a.intensity == INTENSITY_MAX || a.fault == FaultKind::Kill)
            .collect();
        let share = arms.iter().filter(|a| which(a)).count() as f64 / arms.len() as f64;
        assert!(share > 0.0);
        let picks = (0..draws)
            .filter(|_| which(&thompson.propose(&observation, rng)))
            .count();
        picks as f64 / draws as f64 / share
    }

    fn outcome(action: &Action, severity: f64, broken: &[&str], new_finding: bool) -> Outcome {
        Outcome {
            action: action.clone(),
            severity,
            broken: broken.iter().map(|b| b.to_string()).collect(),
            new_finding,
        }
    }

    #[test]
    fn after_a_near_miss_the_learned_planner_tries_other_faults_on_the_same_component() {
        let graph = graph();
        let mut thompson = Thompson::default();
        let bent = Action {
            fault: FaultKind::Timeout,
            target: "consumer-api->orchestrator".into(),
            intensity: INTENSITY_MAX,
        };
        thompson.learn(&outcome(&bent, 0.95, &[], false), &graph);
        let mut rng = StdRng::seed_from_u64(7);
        let same_component =
            |a: &Action| space::component_of(a) == "consumer-api" && a.target != bent.target;
        let ratio = pick_ratio(&thompson, same_component, 400, &mut rng);
        assert!(
            ratio > 1.3,
            "other arms of consumer-api picked {ratio:.2}× their share"
        );
        // The arm itself and its sibling (a latency on the same route) came as close as they
        // will: tried less than their share.
        let same_route = |a: &Action| {
            a.target == bent.target && matches!(a.fault, FaultKind::Timeout | FaultKind::Latency)
        };
        let ratio = pick_ratio(&thompson, same_route, 400, &mut rng);
        assert!(
            ratio < 1.0,
            "the near miss and its sibling picked {ratio:.2}× their share"
        );
    }

    #[test]
    fn an_arm_that_broke_nothing_is_left_with_its_sibling() {
        let graph = graph();
        let mut thompson = Thompson::default();
        let cut = Action {
            fault: FaultKind::Cut,
            target: "merchant-api->keycloak".into(),
            intensity: INTENSITY_MAX,
        };
        thompson.learn(&outcome(&cut, 0.0, &[], false), &graph);
        let mut rng = StdRng::seed_from_u64(11);
        let refused = |a: &Action| {
            a.target == cut.target && matches!(a.fault, FaultKind::Cut | FaultKind::ResetPeer)
        };
        let ratio = pick_ratio(&thompson, refused, 600, &mut rng);
        assert!(
            ratio < 0.6,
            "a cut that broke nothing and its reset-peer sibling picked {ratio:.2}× their share"
        );
    }

    #[test]
    fn a_finding_pushes_its_arm_down_so_that_the_search_moves_on() {
        let graph = graph();
        let mut thompson = Thompson::default();
        let found = Action {
            fault: FaultKind::Cut,
            target: "consumer-api->keycloak".into(),
            intensity: INTENSITY_MAX,
        };
        thompson.learn(&outcome(&found, 1.0, &["availability"], true), &graph);
        let mut rng = StdRng::seed_from_u64(3);
        let ratio = pick_ratio(&thompson, |a| *a == found, 600, &mut rng);
        assert!(ratio < 0.6, "the found arm picked {ratio:.2}× its share");
        // The component that broke is worth trying with the other faults.
        let others =
            |a: &Action| space::component_of(a) == "consumer-api" && a.target != found.target;
        let ratio = pick_ratio(&thompson, others, 600, &mut rng);
        assert!(
            ratio > 1.3,
            "consumer-api's other arms picked {ratio:.2}× their share"
        );
    }

    #[test]
    fn every_answer_the_schema_allows_is_an_action_of_the_space() {
        let space = all(Offer { chaos: true });
        let schema = answer_schema(&space);
        let branches = schema["anyOf"].as_array().expect("branches");
        assert_eq!(branches.len(), FaultKind::ALL.len());
        for branch in branches {
            let fault = branch["properties"]["fault"]["enum"][0]
                .as_str()
                .expect("a fault");
            for target in branch["properties"]["target"]["enum"]
                .as_array()
                .expect("targets")
            {
                for intensity in branch["properties"]["intensity"]["enum"]
                    .as_array()
                    .expect("intensities")
                {
                    let text = json!({ "fault": fault, "target": target, "intensity": intensity, "expect": "latency" }).to_string();
                    assert!(parse_answer(&text, &space).is_ok(), "{text}");
                }
            }
        }
    }

    #[test]
    fn the_random_planner_stays_in_the_space() {
        let space = all(Offer { chaos: false });
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..100 {
            assert!(space.contains(&random(&space, &mut rng)));
        }
    }
}
