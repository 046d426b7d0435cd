//! `find-max`'s search for the highest rate that meets the SLOs, as a plain
//! state machine: it says which rate to try next and is told how that step
//! went. Running the steps is the command's job.
//!
//! The search grows the rate ×2 from the start until a step fails (or
//! halves it until one passes), bisects between the highest pass and the
//! lowest failure until they are within the precision, then runs the
//! answer once more to confirm it. A failed confirmation takes the next
//! lower pass, or searches down again.

/// How one step went.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    pub target: f64,
    /// Every SLO held and the achieved rate was ≥ 99 % of the target.
    pub ok: bool,
    /// The generator, not the server, was the limit (busy shards or
    /// schedule lag): no conclusion about the server can be drawn.
    pub generator_limited: bool,
}

/// What the search found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// The highest rate that held, confirmed.
    MaxRate(f64),
    /// Even the lowest rate tried failed.
    NonePasses { lowest: f64 },
    /// The generator could not keep up at `at` req/s; `passed` is the
    /// highest rate that held before.
    GeneratorLimited { at: f64, passed: Option<f64> },
    /// The step budget ran out; the best rate that held, if any.
    OutOfSteps { passed: Option<f64> },
}

impl Verdict {
    /// The verdict's name in find-max's JSON report.
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::MaxRate(_) => "max_rate",
            Verdict::NonePasses { .. } => "none_passes",
            Verdict::GeneratorLimited { .. } => "generator_limited",
            Verdict::OutOfSteps { .. } => "out_of_steps",
        }
    }

    /// The rate the report gives: the answer, or the highest rate that
    /// held before the search stopped.
    pub fn rate(&self) -> Option<f64> {
        match *self {
            Verdict::MaxRate(r) => Some(r),
            Verdict::NonePasses { .. } => None,
            Verdict::GeneratorLimited { passed, .. } | Verdict::OutOfSteps { passed } => passed,
        }
    }

    /// The command's exit status: 1 when no rate held at all (there is
    /// no answer, not even a lower bound), 0 when there is one.
    pub fn exit_code(&self) -> u8 {
        match self {
            Verdict::MaxRate(_) => 0,
            Verdict::NonePasses { .. } => 1,
            Verdict::GeneratorLimited { passed, .. } | Verdict::OutOfSteps { passed } => {
                u8::from(passed.is_none())
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Doubling (or halving) until both a pass and a failure are known.
    Bracket,
    Bisect,
    Confirm,
}

#[derive(Debug, Clone)]
pub struct Search {
    precision: f64,
    floor: f64,
    max_steps: usize,
    passes: Vec<f64>,
    fails: Vec<f64>,
    phase: Phase,
    next: Option<f64>,
    steps: usize,
    verdict: Option<Verdict>,
}

impl Search {
    /// Starts at `start` req/s; stops bisecting once the bracket is within
    /// `precision` (0.05: 5 %); never goes below `floor` req/s.
    pub fn new(start: f64, precision: f64, floor: f64, max_steps: usize) -> Search {
        Search {
            precision: precision.max(1e-3),
            floor: floor.max(1e-3),
            max_steps: max_steps.max(2),
            passes: Vec::new(),
            fails: Vec::new(),
            phase: Phase::Bracket,
            next: Some(start.max(floor)),
            steps: 0,
            verdict: None,
        }
    }

    /// The rate of the next step, or `None` once there is a verdict.
    pub fn next_rate(&self) -> Option<f64> {
        self.verdict.is_none().then_some(self.next).flatten()
    }

    pub fn verdict(&self) -> Option<Verdict> {
        self.verdict
    }

    fn best_pass(&self) -> Option<f64> {
        self.passes.iter().copied().reduce(f64::max)
    }

    fn lowest_fail(&self) -> Option<f64> {
        self.fails.iter().copied().reduce(f64::min)
    }

    fn done(&mut self, v: Verdict) {
        self.verdict = Some(v);
        self.next = None;
    }

    pub fn record(&mut self, s: Step) {
        if self.verdict.is_some() {
            return;
        }
        self.steps += 1;
        if s.generator_limited {
            return self.done(Verdict::GeneratorLimited {
                at: s.target,
                passed: self.best_pass(),
            });
        }
        if self.phase == Phase::Confirm {
            if s.ok {
                return self.done(Verdict::MaxRate(s.target));
            }
            // The answer did not hold a second time: it was luck. Drop it.
            self.passes.retain(|&p| p < s.target);
        }
        if s.ok {
            self.passes.push(s.target);
        } else {
            self.fails.push(s.target);
        }
        if self.steps >= self.max_steps {
            return self.done(Verdict::OutOfSteps {
                passed: self.best_pass(),
            });
        }
        let (pass, fail) = (self.best_pass(), self.lowest_fail());
        self.phase = Phase::Bracket;
        self.next = match (pass, fail) {
            (Some(p), None) => Some(p * 2.0),
            (None, Some(f)) => {
                let lower = f / 4.0;
                if f <= self.floor {
                    return self.done(Verdict::NonePasses { lowest: f });
                }
                Some(lower.max(self.floor))
            }
            (Some(p), Some(f)) if f <= p => {
                // A failure at or below a pass: the server is erratic.
                // Bisect below the failure.
                self.passes.retain(|&x| x < f);
                match self.best_pass() {
                    Some(p) => {
                        self.phase = Phase::Bisect;
                        Some((p + f) / 2.0)
                    }
                    None => Some((f / 4.0).max(self.floor)),
                }
            }
            (Some(p), Some(f)) => {
                if f / p - 1.0 <= self.precision {
                    self.phase = Phase::Confirm;
                    Some(p)
                } else {
                    self.phase = Phase::Bisect;
                    Some((p + f) / 2.0)
                }
            }
            (None, None) => None,
        };
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn no_rate_held_is_a_failure_exit() {
        use super::Verdict::*;
        assert_eq!(MaxRate(10.0).exit_code(), 0);
        assert_eq!(NonePasses { lowest: 1.0 }.exit_code(), 1);
        let limited = |passed| GeneratorLimited { at: 80.0, passed };
        assert_eq!(limited(None).exit_code(), 1);
        assert_eq!(limited(Some(40.0)).exit_code(), 0);
        assert_eq!(OutOfSteps { passed: None }.exit_code(), 1);
        assert_eq!(OutOfSteps { passed: Some(40.0) }.exit_code(), 0);
    }

    use super::*;

    /// Runs the search against a server that holds exactly up to `capacity`.
    fn against(capacity: f64, start: f64) -> (Verdict, Vec<f64>) {
        let mut s = Search::new(start, 0.05, 1.0, 40);
        let mut tried = Vec::new();
        while let Some(r) = s.next_rate() {
            tried.push(r);
            s.record(Step {
                target: r,
                ok: r <= capacity,
                generator_limited: false,
            });
        }
        (s.verdict().unwrap(), tried)
    }

    #[test]
    fn finds_the_capacity_within_the_precision_and_confirms_it() {
        for (capacity, start) in [(5000.0, 1000.0), (5000.0, 20000.0), (123.0, 1.0)] {
            let (v, tried) = against(capacity, start);
            let Verdict::MaxRate(r) = v else {
                panic!("{v:?}")
            };
            assert!(
                r <= capacity && r >= capacity / 1.05,
                "{capacity}: {r} {tried:?}"
            );
            // The answer was run twice: found, then confirmed last.
            assert_eq!(tried.iter().filter(|&&t| t == r).count(), 2, "{tried:?}");
            assert_eq!(tried.last(), Some(&r));
            assert!(tried.len() < 20, "{tried:?}");
        }
    }

    #[test]
    fn nothing_passing_stops_at_the_floor() {
        let (v, tried) = against(0.5, 100.0);
        assert!(
            matches!(v, Verdict::NonePasses { lowest } if lowest <= 1.0),
            "{v:?} {tried:?}"
        );
    }

    #[test]
    fn a_confirmation_that_fails_moves_down() {
        let mut s = Search::new(1000.0, 0.05, 1.0, 40);
        // 1000 passes, 2000 fails, bisect … until confirming some rate.
        let mut confirming = None;
        while let Some(r) = s.next_rate() {
            let again = confirming == Some(r);
            if s.phase == Phase::Confirm && confirming.is_none() {
                confirming = Some(r);
            }
            // The first confirmation fails; everything ≤ 1400 holds.
            let ok = r <= 1400.0 && !(s.phase == Phase::Confirm && !again && r > 1300.0);
            s.record(Step {
                target: r,
                ok,
                generator_limited: false,
            });
        }
        let Some(Verdict::MaxRate(r)) = s.verdict() else {
            panic!("{:?}", s.verdict())
        };
        assert!(r <= 1400.0, "{r}");
    }

    #[test]
    fn a_generator_limit_stops_the_search_and_keeps_what_passed() {
        let mut s = Search::new(1000.0, 0.05, 1.0, 40);
        s.record(Step {
            target: 1000.0,
            ok: true,
            generator_limited: false,
        });
        assert_eq!(s.next_rate(), Some(2000.0));
        s.record(Step {
            target: 2000.0,
            ok: false,
            generator_limited: true,
        });
        assert_eq!(
            s.verdict(),
            Some(Verdict::GeneratorLimited {
                at: 2000.0,
                passed: Some(1000.0)
            })
        );
        assert_eq!(s.next_rate(), None);
    }

    #[test]
    fn the_step_budget_is_kept() {
        let mut s = Search::new(1.0, 1e-9, 1.0, 5);
        let mut n = 0;
        while let Some(r) = s.next_rate() {
            n += 1;
            s.record(Step {
                target: r,
                ok: true,
                generator_limited: false,
            });
        }
        assert_eq!(n, 5);
        assert_eq!(
            s.verdict(),
            Some(Verdict::OutOfSteps { passed: Some(16.0) })
        );
    }

    /// The names are find-max's JSON interface; the rate is the answer or
    /// the lower bound the search got to.
    #[test]
    fn verdicts_name_themselves_and_their_rate() {
        let all = [
            (Verdict::MaxRate(900.0), "max_rate", Some(900.0)),
            (Verdict::NonePasses { lowest: 1.0 }, "none_passes", None),
            (
                Verdict::GeneratorLimited {
                    at: 8.0,
                    passed: Some(4.0),
                },
                "generator_limited",
                Some(4.0),
            ),
            (Verdict::OutOfSteps { passed: None }, "out_of_steps", None),
        ];
        for (v, name, rate) in all {
            assert_eq!((v.name(), v.rate()), (name, rate));
        }
    }
}
