//! Stage 2 with `generate.engine = "server"`: a decode batch is a batch of `/v1/completions`
//! requests, several in flight at once, to a server that serves pi_ref. The batch is the
//! resumable unit, as in-process: either all its requests succeed and it is recorded, or the
//! stage stops with the server's error and a resume asks for the same batch again (each
//! request carries a seed derived from the run seed, iteration, prompt and sample).

use anyhow::{Context, Result};
use burn::tensor::backend::AutodiffBackend;
use std::collections::HashMap;

use crate::config::{ServerApi, ServerSection};
use crate::engine::pipeline::Pipeline;
use crate::engine::{Event, LogLine};
use crate::external::concurrent;
use crate::external::http::{Completion, CompletionRequest};
use crate::external::server::Requester;
use crate::external::wait::Watch;
use crate::run::records::Candidate;

impl<B: AutodiffBackend> Pipeline<B> {
    /// One batch of `jobs` (prompt index, is y_ref), each row a request to the server.
    pub(in crate::engine) fn decode_on_server(
        &mut self,
        jobs: &[(usize, bool)],
        emit: &mut dyn FnMut(Event),
    ) -> Result<Vec<Candidate>> {
        let config = self.config.generate.server.clone().context(
            "key `generate.server`: `generate.engine = \"server\"` without a server section",
        )?;
        let requests = self.requests(jobs, &config)?;
        // pi_ref on disk: the starting model, then the checkpoint of the last sync (with
        // `train.sync_reference = false` that is the current policy, which is sampled then).
        let (checkpoint, starting) = match self.iteration {
            1 => (self.config.model_dir()?, true),
            n => (self.run.checkpoint_dir(n - 1), false),
        };
        let mut watch = self.watch(emit);
        let server = self
            .server
            .as_mut()
            .context("a server engine without its server")?;
        let since = std::time::Instant::now();
        server.serve(&checkpoint, starting, &mut watch)?;
        // A start or reload, reported apart from the generation that follows it.
        let ready_s = since.elapsed().as_secs_f64();
        // One row per choice, in the order of the jobs (a request's choices are its prompt's
        // consecutive rows).
        let completions: Vec<Completion> =
            complete_all(server.requester(), requests, config.concurrency, &mut watch)?
                .into_iter()
                .flatten()
                .collect();
        drop(watch);
        if ready_s >= 1.0 {
            emit(Event::Log(LogLine::info(format!(
                "generation server ready after {ready_s:.1} s"
            ))));
        }
        anyhow::ensure!(
            completions.len() == jobs.len(),
            "{} completions for {} rows",
            completions.len(),
            jobs.len()
        );
        let trust = config.raw_logprobs && self.config.train.sync_reference;
        jobs.iter()
            .zip(completions)
            .map(|((_, is_ref), c)| {
                let mut tokens = self.tokenizer.encode(&c.text)?;
                if c.finished {
                    tokens.push(self.tokenizer.eos);
                }
                // The server's log-probs stand for pi_ref's only when declared raw, and only
                // for a response whose text gives back as many tokens as it sampled.
                let reference_logps = c.logprobs.filter(|l| trust && l.len() == tokens.len());
                Ok(Candidate::generated(
                    c.text,
                    tokens,
                    *is_ref,
                    reference_logps,
                ))
            })
            .collect()
    }

    /// After generation: a managed server that cannot reload stops (it would hold memory
    /// the update needs, and the next pi_ref needs a restart anyway); one that stays up
    /// sleeps if asked to.
    pub(in crate::engine) fn release_server(&mut self, emit: &mut dyn FnMut(Event)) -> Result<()> {
        let mut watch = self.watch(emit);
        match self.server.as_mut() {
            Some(server) => server.release(&mut watch),
            None => Ok(()),
        }
    }

    /// Stops the servers this run started, the generation server's and the ranker's (after
    /// a failure: one that hangs is not waited on again; a retry starts it afresh).
    pub(crate) fn stop_server(&mut self) {
        if let Some(server) = self.server.as_mut() {
            server.stop();
        }
        self.ranker.reset();
    }

    /// The batch's requests: the prompt as text, y_ref greedy, samples seeded per prompt
    /// and sample, every sampling parameter explicit (servers otherwise start from the
    /// checkpoint's generation_config.json). With `n`, a prompt's consecutive sample rows
    /// are one request whose choices are seeded base + k - 1 (vLLM's seed + k per choice).
    fn requests(
        &self,
        jobs: &[(usize, bool)],
        server: &ServerSection,
    ) -> Result<Vec<CompletionRequest>> {
        let g = &self.config.generate;
        // Which sample of its prompt each row is: count the prompt's sampled rows so far.
        let mut seen: HashMap<usize, u64> = HashMap::new();
        for &(i, is_ref) in self.state.jobs[..self.cursor].iter().flatten() {
            if !is_ref {
                *seen.entry(i).or_default() += 1;
            }
        }
        let mut requests: Vec<CompletionRequest> = vec![];
        let mut last: Option<usize> = None;
        for &(i, is_ref) in jobs {
            let sample = if is_ref {
                0
            } else {
                let k = seen.entry(i).or_default();
                *k += 1;
                *k
            };
            if server.n && !is_ref && last == Some(i) {
                let r = requests.last_mut().expect("the prompt's first sample");
                r.n = Some(r.n.unwrap_or(1) + 1);
                continue;
            }
            last = (!is_ref).then_some(i);
            let sampling = match is_ref {
                true => Sampling::GREEDY,
                false => Sampling {
                    temperature: g.temperature,
                    top_p: g.top_p,
                    top_k: g.top_k,
                },
            };
            let prompt = self.state.prompts[i].render(&self.tokenizer, self.config.prompts.chat)?;
            let seed = match server.n && !is_ref {
                // 30 bits, so that base + k - 1 stays in the 31 every server takes.
                true => {
                    (request_seed(self.config.run.seed, self.iteration, i, 1) >> 1) + sample - 1
                }
                false => request_seed(self.config.run.seed, self.iteration, i, sample),
            };
            let mut request = completion_request(
                server.api,
                prompt,
                g.max_new_tokens,
                sampling,
                seed,
                server.logprobs,
            );
            request.n = (server.n && !is_ref).then_some(1);
            requests.push(request);
        }
        Ok(requests)
    }
}

/// Temperature (0: greedy), top-p and top-k (0: off) of a request.
#[derive(Debug, Clone, Copy)]
pub(in crate::engine) struct Sampling {
    pub temperature: f32,
    pub top_p: f32,
    pub top_k: usize,
}

impl Sampling {
    pub const GREEDY: Self = Self {
        temperature: 0.0,
        top_p: 1.0,
        top_k: 0,
    };
}

/// One `/v1/completions` request for `prompt`, every sampling parameter explicit.
pub(in crate::engine) fn completion_request(
    api: ServerApi,
    prompt: String,
    max_tokens: usize,
    sampling: Sampling,
    seed: u64,
    logprobs: bool,
) -> CompletionRequest {
    let greedy = sampling.temperature == 0.0;
    // `transformers serve` samples only as its own generation_config field says.
    let generation_config = (api == ServerApi::Transformers).then(|| {
        let mut c = serde_json::json!({
            "do_sample": !greedy,
            "max_new_tokens": max_tokens,
        });
        if !greedy {
            c["temperature"] = sampling.temperature.into();
            c["top_p"] = sampling.top_p.into();
            c["top_k"] = sampling.top_k.into();
        }
        c.to_string()
    });
    CompletionRequest {
        model: String::new(),
        prompt,
        max_tokens,
        temperature: sampling.temperature,
        top_p: sampling.top_p,
        top_k: (sampling.top_k > 0).then_some(sampling.top_k),
        seed,
        n: None,
        logprobs: logprobs.then_some(1),
        generation_config,
    }
}

/// A request's seed from (run seed, iteration, prompt, sample): the same request after a
/// resume. 31 bits, which every server takes.
pub(in crate::engine) fn request_seed(
    run: u64,
    iteration: usize,
    prompt: usize,
    sample: u64,
) -> u64 {
    let mut x = run
        ^ (iteration as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ (prompt as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9)
        ^ sample.wrapping_mul(0x94d0_49bb_1331_11eb);
    // splitmix64's finalizer.
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (x ^ (x >> 31)) & 0x7fff_ffff
}

/// Every request answered, in order, with up to `concurrency` in flight
/// ([`concurrent::send_all`]).
pub(in crate::engine) fn complete_all(
    server: Requester,
    requests: Vec<CompletionRequest>,
    concurrency: usize,
    watch: &mut Watch,
) -> Result<Vec<Vec<Completion>>> {
    let url = server.url().to_string();
    concurrent::send_all(
        "server answering",
        requests,
        concurrency,
        watch,
        move |r| server.complete(r.clone()),
        |i| format!("generating on {url} (request {} of the batch)", i + 1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_seeds_differ_by_each_coordinate_and_repeat() {
        let base = request_seed(0, 1, 2, 3);
        assert_eq!(base, request_seed(0, 1, 2, 3));
        for other in [
            request_seed(1, 1, 2, 3),
            request_seed(0, 2, 2, 3),
            request_seed(0, 1, 3, 3),
            request_seed(0, 1, 2, 4),
        ] {
            assert_ne!(base, other);
        }
        assert!(base < 1 << 31);
    }
}
