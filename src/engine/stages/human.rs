//! Stage 3 with `rank.ranker = "human"`: one prompt per unit, asked of the researcher with a
//! [`RankQuery`] event and answered with a [`Verdict`] command. Each answer is on disk
//! (candidates.jsonl, then state.json) before the next question, so quitting loses nothing
//! and a resume asks the first prompt not yet answered. After a hand-off the automatic
//! ranker (`rank.fallback`) scores the rest of the stage, still a prompt per unit.

use anyhow::{Context, Result, bail, ensure};
use burn::tensor::backend::AutodiffBackend;

use crate::config::RankerKind;
use crate::engine::messages::{Event, LogLine, RankQuery, Stage, Verdict};
use crate::engine::pipeline::{Pipeline, Progress};

/// The researcher's side of a human rank stage.
#[derive(Debug, Default)]
pub(in crate::engine) struct HumanDesk {
    /// The unit the researcher was last asked about.
    asked: Option<usize>,
    /// Their answer, applied by the next unit.
    verdict: Option<Verdict>,
    /// The rest of this stage is the fallback's.
    handed_off: bool,
}

impl<B: AutodiffBackend> Pipeline<B> {
    /// Whether the pipeline waits for the researcher: asked about this unit, no answer yet.
    pub fn awaiting_human(&self) -> bool {
        self.asked_about(self.cursor)
            && self
                .desk
                .as_ref()
                .is_some_and(|d| !d.handed_off && d.verdict.is_none())
    }

    /// Whether the researcher was asked about `unit` of this rank stage.
    pub(in crate::engine) fn asked_about(&self, unit: usize) -> bool {
        self.stage == Stage::Rank && self.desk.as_ref().is_some_and(|d| d.asked == Some(unit))
    }

    /// The question about the current unit, when the researcher owes one (asked only once).
    pub(in crate::engine) fn human_query(&mut self) -> Option<RankQuery> {
        let desk = self.desk.as_mut()?;
        if self.stage != Stage::Rank || desk.handed_off || desk.verdict.is_some() {
            return None;
        }
        desk.asked = Some(self.cursor);
        let i = self.cursor;
        Some(RankQuery {
            iteration: self.iteration,
            index: i,
            total: self.state.prompts.len(),
            prompt: self.state.prompts[i].text.clone(),
            candidates: self.state.candidates[i].clone(),
        })
    }

    /// Takes the researcher's answer; an order or skip is applied by the next unit.
    pub fn human_verdict(&mut self, verdict: Verdict, emit: &mut dyn FnMut(Event)) -> Result<()> {
        let (stage, cursor) = (self.stage, self.cursor);
        let total = self.state.prompts.len();
        let Some(desk) = self.desk.as_mut() else {
            bail!("this run's ranker is `{}`, not `human`", self.ranker.name());
        };
        ensure!(
            stage == Stage::Rank && !desk.handed_off,
            "no prompt is waiting for a ranking"
        );
        match verdict {
            Verdict::Order { index, .. } | Verdict::Skip { index } if index != cursor => bail!(
                "a ranking of prompt {} arrived while prompt {} is asked",
                index + 1,
                cursor + 1
            ),
            Verdict::Order { ref order, .. } => {
                order_scores(order, self.state.candidates[cursor].len())?;
                desk.verdict = Some(verdict);
            }
            Verdict::Skip { .. } => desk.verdict = Some(verdict),
            Verdict::Back if cursor == 0 => {
                emit(Event::Log(LogLine::info("already at the first prompt")))
            }
            Verdict::Back => {
                (desk.asked, desk.verdict) = (None, None);
                self.cursor -= 1;
                self.write_state()?;
                emit(Event::Progress {
                    iteration: self.iteration,
                    stage,
                    done: self.cursor,
                    total,
                });
            }
            Verdict::HandOff => {
                (desk.asked, desk.handed_off) = (None, true);
                emit(Event::Log(LogLine::info(format!(
                    "ranking handed off: `{}` ranks the rest of this stage ({} prompts)",
                    self.ranker.name(),
                    total - cursor
                ))));
            }
        }
        Ok(())
    }

    /// One prompt of a human rank stage: the researcher's verdict, or after a hand-off the
    /// automatic ranker's scores.
    pub(in crate::engine) fn rank_by_human(
        &mut self,
        emit: &mut dyn FnMut(Event),
    ) -> Result<Progress> {
        let (i, n) = (self.cursor, self.state.prompts.len());
        let desk = self
            .desk
            .as_mut()
            .context("a human rank stage without its desk")?;
        if desk.handed_off {
            self.rank_prompts(i..i + 1, emit)?;
        } else {
            let verdict = desk.verdict.take().context("no ranking for this prompt")?;
            desk.asked = None;
            let cands = &mut self.state.candidates[i];
            let scores = match verdict {
                Verdict::Order { order, .. } => order_scores(&order, cands.len())?
                    .into_iter()
                    .map(Some)
                    .collect(),
                _ => vec![None; cands.len()],
            };
            for (c, s) in cands.iter_mut().zip(scores) {
                c.score = s;
            }
            self.state.ranked_by[i] = Some(RankerKind::Human.name().into());
        }
        if i + 1 == n {
            if let Some(desk) = self.desk.as_mut() {
                *desk = HumanDesk::default();
            }
            self.write_candidates()?;
        }
        Ok((i + 1, n))
    }
}

/// Scores for candidates ordered best first: 1 for the best, falling evenly to 0 for the
/// worst. `order` must name each of the `n` candidates once.
pub fn order_scores(order: &[usize], n: usize) -> Result<Vec<f64>> {
    let mut seen = vec![false; n];
    for &c in order {
        ensure!(c < n, "candidate {c} does not exist (the prompt has {n})");
        ensure!(!seen[c], "candidate {c} is ordered twice");
        seen[c] = true;
    }
    ensure!(
        order.len() == n,
        "an order must rank all {n} candidates, got {}",
        order.len()
    );
    let mut scores = vec![1.0; n];
    for (pos, &c) in order.iter().enumerate() {
        scores[c] = 1.0 - pos as f64 / (n.max(2) - 1) as f64;
    }
    Ok(scores)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_become_even_scores() {
        assert_eq!(order_scores(&[2, 0, 1], 3).unwrap(), vec![0.5, 0.0, 1.0]);
        assert_eq!(order_scores(&[0], 1).unwrap(), vec![1.0]);
        assert!(order_scores(&[0, 0], 2).is_err());
        assert!(order_scores(&[0, 2], 2).is_err());
        assert!(order_scores(&[1], 2).is_err());
    }
}
