//! What `sweep --launcher slurm` asks of Slurm: `sbatch` of the array job and its script,
//! `squeue` and `scontrol` about its tasks; each with a time limit, so that a controller that
//! never answers cannot hold the sweep.

use anyhow::{Context, Result, bail};
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::SLURM_DIR;
use crate::external::process::{output_within, shell_quote};
use crate::sweep::grid::Point;
use crate::sweep::progress::prepare;
use crate::sweep::state::SweepState;

/// How long an `sbatch`, `squeue` or `scontrol` may take before it counts as failed (a
/// controller that never answers must not hold the sweep).
const SLURM_TIMEOUT: Duration = Duration::from_secs(60);
/// `sbatch` gets longer: one killed after submitting leaves a job the sweep never recorded.
const SBATCH_TIMEOUT: Duration = Duration::from_secs(300);

/// Writes the array job's script and submits it for points `indices`; returns the job id.
pub(super) fn submit_array(
    state: &SweepState,
    points: &[Point],
    indices: &[usize],
    jobs: Option<usize>,
    sbatch_args: &[String],
) -> Result<String> {
    for &i in indices {
        prepare(state, &points[i])?;
    }
    let slurm = state.dir.join(SLURM_DIR);
    std::fs::create_dir_all(&slurm).with_context(|| format!("creating {}", slurm.display()))?;
    // The executable by its path: tasks start on other nodes, from a shared filesystem.
    let exe = std::env::current_exe().context("finding the selm-tui executable")?;
    let script = slurm.join("array.sh");
    crate::io::atomic_write(&script, job_script(&exe, &state.dir).as_bytes())?;
    let mut array = indices
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",");
    if let Some(n) = jobs {
        array.push_str(&format!("%{n}"));
    }
    // `%` in the directory would read as one of Slurm's patterns.
    let tasks_out = slurm.join("%A_%a.out");
    if slurm.display().to_string().contains('%') {
        bail!(
            "{}: Slurm's --output cannot name a path with `%`",
            slurm.display()
        );
    }
    let mut sbatch = Command::new("sbatch");
    sbatch
        .arg("--parsable")
        .arg(format!("--array={array}"))
        .arg("--output")
        .arg(&tasks_out)
        .args(sbatch_args)
        .arg(&script);
    let out = output_within(&mut sbatch, SBATCH_TIMEOUT)
        .context("running sbatch (is Slurm installed, and this a submit host?)")?;
    if !out.status.success() {
        bail!(
            "sbatch {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    // `--parsable` prints `JOBID` or `JOBID;CLUSTER`.
    let text = String::from_utf8_lossy(&out.stdout);
    let job = text.trim().split(';').next().unwrap_or_default();
    if job.is_empty() || !job.bytes().all(|b| b.is_ascii_digit()) {
        bail!("sbatch printed no job id: {text:?}");
    }
    Ok(job.to_string())
}

/// The array job's script: each task runs (or resumes) its point of the sweep.
fn job_script(exe: &Path, dir: &Path) -> String {
    let q = |p: &Path| shell_quote(&p.display().to_string());
    format!(
        "#!/bin/bash\n\
         # selm-tui sweep: task i of this array job runs grid point i of sweep.json, or resumes\n\
         # it when its run directory exists (an interrupted, cancelled or requeued task).\n\
         # sbatch gets --output=DIR/slurm/%A_%a.out on its command line.\n\
         #SBATCH --job-name=selm-sweep\n\
         #SBATCH --open-mode=append\n\
         set -euo pipefail\n\
         # Flex's threads follow the CPUs Slurm gave the task (--cpus-per-task), 1 by default.\n\
         export RAYON_NUM_THREADS=\"${{SLURM_CPUS_PER_TASK:-1}}\"\n\
         exec {exe} sweep-task {dir} \"$SLURM_ARRAY_TASK_ID\"\n",
        exe = q(exe),
        dir = q(dir),
    )
}

/// Task ids (`JOBID_INDEX`) of this user's queued and running array tasks, with their state.
pub(super) fn queued_tasks() -> Result<HashMap<String, String>> {
    let mut squeue = Command::new("squeue");
    squeue.args(["--me", "-h", "-r", "-o", "%i %T"]);
    let out = output_within(&mut squeue, SLURM_TIMEOUT)
        .context("running squeue (is Slurm installed?)")?;
    if !out.status.success() {
        bail!(
            "squeue {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(id, st)| (id.to_string(), st.trim().to_string()))
        .collect())
}

/// The task's final state as `scontrol` still knows it (`COMPLETED`, `CANCELLED`, ...);
/// None once Slurm has forgotten the job (MinJobAge).
pub(super) fn job_state(task: &str) -> Option<String> {
    let mut scontrol = Command::new("scontrol");
    scontrol.args(["show", "job", "-o", task]);
    let out = output_within(&mut scontrol, SLURM_TIMEOUT).ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let state = text
        .split_whitespace()
        .find_map(|f| f.strip_prefix("JobState="))?;
    // `CANCELLED by 0` is one field in `-o` output: the state is its first word.
    Some(state.split_whitespace().next()?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_runs_each_task_through_sweep_task() {
        let s = job_script(
            Path::new("/opt/selm tui/selm-tui"),
            Path::new("/scratch/sw"),
        );
        assert!(s.starts_with("#!/bin/bash\n"));
        assert!(s.contains(
            "exec '/opt/selm tui/selm-tui' sweep-task /scratch/sw \"$SLURM_ARRAY_TASK_ID\"\n"
        ));
    }
}
