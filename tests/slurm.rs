//! A real Slurm (issue 16): Debian's slurm-wlm and munge on this machine
//! (scripts/slurm/local-cluster.sh starts munged, slurmctld and slurmd for
//! localhost), scripts/slurm/submit.sh submits segment-array.sbatch as an
//! array of 3 tasks over 7 small synthetic slides and the merge after it.
//! Every slide is segmented exactly once, each task writes its shard's
//! summary, the merge lists 7 done; a second submission skips all 7. The
//! daemons are stopped at the end, pass or fail.
//!
//! Needs root (slurmd runs the jobs) and the packages (scripts/setup.sh
//! installs them; local-cluster.sh too when missing). `WSISEG_SKIP_SLURM=1`
//! skips it on a machine where neither is possible — CI never sets it.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{json, repo, run_ok, unet};

/// The local cluster; stopped when dropped (also when the test fails).
struct Cluster {
    state: PathBuf,
}

impl Cluster {
    fn start() -> Self {
        let state = std::env::temp_dir().join(format!("wsiseg-slurm-test-{}", std::process::id()));
        let o = Command::new("bash")
            .arg(repo("scripts/slurm/local-cluster.sh"))
            .arg("start")
            .env("WSISEG_SLURM_STATE", &state)
            .output()
            .expect("run local-cluster.sh");
        let cluster = Self { state };
        assert!(
            o.status.success(),
            "local Slurm did not start: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        eprintln!("{}", String::from_utf8_lossy(&o.stdout));
        cluster
    }

    /// A Slurm command against this cluster.
    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("SLURM_CONF", self.state.join("slurm.conf"));
        c
    }

    /// Waits until none of `jobs` is queued or running (at most `limit`).
    fn wait(&self, jobs: &str, limit: Duration) {
        let start = Instant::now();
        loop {
            let o = self
                .command("squeue")
                .args(["-h", "-j", jobs, "-o", "%i %T %r"])
                .output()
                .expect("squeue");
            let queued = String::from_utf8_lossy(&o.stdout).trim().to_string();
            if queued.is_empty() {
                return;
            }
            assert!(
                start.elapsed() < limit,
                "jobs {jobs} still queued after {limit:?}: {queued}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn logs(&self) -> String {
        ["log/slurmctld.log", "log/slurmd.log"]
            .iter()
            .map(|l| std::fs::read_to_string(self.state.join(l)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo("scripts/slurm/local-cluster.sh"))
            .arg("stop")
            .env("WSISEG_SLURM_STATE", &self.state)
            .status();
    }
}

/// Submits the array and the merge; returns "ARRAY,MERGE".
fn submit(cluster: &Cluster, d: &Path) -> String {
    let o = cluster
        .command("bash")
        .arg(repo("scripts/slurm/submit.sh"))
        .args(["in", "out", "3", "--device", "cpu", "--readers", "1"])
        .current_dir(d)
        .env("WSISEG", env!("CARGO_BIN_EXE_wsiseg"))
        .env("WSISEG_MODEL", unet())
        // A CPU-only test node: no GPU to ask for, 1 core and 2 GB a task.
        .env(
            "WSISEG_SBATCH_OPTIONS",
            "--gres=none --cpus-per-task=1 --mem=2G",
        )
        .output()
        .expect("submit.sh");
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // "array job A (3 tasks), merge job M (after all of them): …"
    let word = |after: &str| {
        out.split(after)
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    format!("{},{}", word("array job "), word("merge job "))
}

/// Each shard summary's slides as (file name, this_run).
fn shard_rows(out: &Path) -> BTreeMap<u32, Vec<(String, String)>> {
    (0..3)
        .map(|i| {
            let s = json(&out.join(format!("summary.shard-{i}-of-3.json")));
            let rows = s["slides"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    (
                        r["name"].as_str().unwrap().to_string(),
                        r["this_run"].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            (i, rows)
        })
        .collect()
}

#[test]
fn an_array_job_segments_every_slide_once_and_a_resubmission_skips_them() {
    if std::env::var_os("WSISEG_SKIP_SLURM").is_some_and(|v| v == "1") {
        eprintln!("WSISEG_SKIP_SLURM=1: the Slurm test is skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    run_ok(
        d,
        &[
            "synth", "--out", "in", "--count", "7", "--size", "1024x768", "--seed", "40",
        ],
    );
    let cluster = Cluster::start();
    let jobs = submit(&cluster, d);
    cluster.wait(&jobs, Duration::from_secs(600));

    // Every task found its shard in Slurm's environment.
    let array = jobs.split(',').next().unwrap();
    let mut tiles_lines = 0;
    for i in 0..3 {
        let log = std::fs::read_to_string(d.join(format!("wsiseg-{array}_{i}.log")))
            .unwrap_or_else(|e| panic!("task {i}'s log: {e}\n{}", cluster.logs()));
        assert!(
            log.contains(&format!(
                "shard {i} of 3 (0 to 2; from SLURM_ARRAY_TASK_ID={i} (tasks 0 to 2))"
            )),
            "{log}"
        );
        tiles_lines += log.matches(" tiles in ").count();
    }
    assert_eq!(tiles_lines, 7, "each slide segmented once across the tasks");
    // Three shard summaries, disjoint, covering the seven slides.
    let shards = shard_rows(&d.join("out"));
    let mut names: Vec<&String> = shards.values().flatten().map(|(n, _)| n).collect();
    assert!(
        shards.values().flatten().all(|(_, r)| r == "segmented"),
        "{shards:?}"
    );
    names.sort();
    assert_eq!(
        names,
        (40..47)
            .map(|s| format!("synth-{s}"))
            .collect::<Vec<_>>()
            .iter()
            .collect::<Vec<_>>()
    );
    // Each slide's run record names the slide it read (its fingerprint).
    let mut records = BTreeMap::new();
    for name in &names {
        let record = d.join(format!("out/{name}.run.json"));
        let r = json(&record);
        assert!(
            r["fingerprint"]["slide"]["path"]
                .as_str()
                .unwrap()
                .ends_with(&format!("in/{name}.svs")),
            "{r}"
        );
        records.insert(name.to_string(), std::fs::read(&record).unwrap());
    }
    // The merge job ran after the array: seven done.
    let merged = json(&d.join("out/summary.json"));
    assert_eq!(merged["counts"]["done"], 7, "{merged}");
    assert_eq!(merged["counts"]["slides"], 7, "{merged}");
    assert!(d.join("out/index.html").is_file());

    // The same submission again: all seven skipped, nothing rewritten.
    let jobs = submit(&cluster, d);
    cluster.wait(&jobs, Duration::from_secs(600));
    let shards = shard_rows(&d.join("out"));
    assert_eq!(shards.values().flatten().count(), 7);
    assert!(
        shards.values().flatten().all(|(_, r)| r == "skipped"),
        "{shards:?}"
    );
    for (name, bytes) in &records {
        assert_eq!(
            &std::fs::read(d.join(format!("out/{name}.run.json"))).unwrap(),
            bytes,
            "{name}'s record was rewritten"
        );
    }
    let merged = json(&d.join("out/summary.json"));
    assert_eq!(merged["counts"]["done"], 7, "{merged}");
}
