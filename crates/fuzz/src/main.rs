//! `wsiseg-fuzz`: a seeded mutation fuzzer for the inputs wsiseg parses.
//!
//! Why this design: it runs on the stable toolchain with nothing to install
//! (cargo-fuzz needs nightly; cargo-afl needs AFL++ and an instrumented
//! build of OpenSlide and libjpeg to be worth it). Inputs are mutated from a
//! committed seed corpus (bit flips, interesting integers, truncation,
//! deletion, duplication, splicing; half of them aimed at the first 4 KiB,
//! where TIFF headers and directories live) with a seeded generator, so a
//! run is reproducible. Each input runs in a child process — OpenSlide and
//! libjpeg are C: a bug there aborts or segfaults, which a panic handler
//! cannot catch — under an address-space limit (a memory blow-up is an
//! allocation failure, a crash) and a per-input timeout (a hang). The child
//! serves many inputs (no process start per input); when it dies the input
//! it was given is saved and a new child started.
//!
//! Targets, by the seed corpus folder an input comes from:
//! - `slide/`: `wsiseg_slide::open`, reads at every level, the thumbnail;
//!   and for images up to 512² the TIFF writer's round trip: level 0
//!   written as a Deflate pyramid, read back, every pixel equal.
//! - `manifest/`: the model manifest parser (`Manifest::read`).
//!
//! ```text
//! wsiseg-fuzz run --corpus tests/fuzz/corpus --out /tmp/fuzz --seconds 3600 --seed 1
//! wsiseg-fuzz replay tests/fuzz/regressions
//! ```

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

mod targets;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("child") => Ok(targets::child()),
        Some("run") => fuzz(&args[1..]),
        Some("replay") => replay(&args[1..]),
        _ => {
            eprintln!(
                "usage: wsiseg-fuzz run --corpus DIR --out DIR [--seconds N] [--seed N] [--timeout-ms N] [--memory-mb N] [--max-execs N]\n       wsiseg-fuzz replay DIR…"
            );
            Ok(2)
        }
    };
    std::process::exit(result.unwrap_or_else(|e| {
        eprintln!("wsiseg-fuzz: {e}");
        2
    }));
}

/// Options of a run.
struct Options {
    corpus: PathBuf,
    out: PathBuf,
    seconds: f64,
    seed: u64,
    timeout: Duration,
    memory_mb: u64,
    max_execs: u64,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        corpus: PathBuf::from("tests/fuzz/corpus"),
        out: PathBuf::from("fuzz-out"),
        seconds: 60.0,
        seed: 1,
        timeout: Duration::from_millis(5000),
        memory_mb: 4096,
        max_execs: u64::MAX,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<f64>()
                .map_err(|_| format!("{flag} {value}: not a number"))
        };
        match flag.as_str() {
            "--corpus" => o.corpus = value.into(),
            "--out" => o.out = value.into(),
            "--seconds" => o.seconds = number()?,
            "--seed" => o.seed = number()? as u64,
            "--timeout-ms" => o.timeout = Duration::from_millis(number()? as u64),
            "--memory-mb" => o.memory_mb = number()? as u64,
            "--max-execs" => o.max_execs = number()? as u64,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(o)
}

/// xorshift64*: small, fast, and the same sequence for the same seed.
pub struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Values that tend to break parsers: edges of signed and unsigned widths.
const INTERESTING: [u32; 10] = [
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0xffff,
    0x7fff_ffff,
    0xffff_ffff,
    65_000,
    200_000,
];

/// One to eight stacked mutations of `data`; `other` is spliced from.
fn mutate(rng: &mut Rng, data: &[u8], other: &[u8]) -> Vec<u8> {
    let mut d = data.to_vec();
    for _ in 0..1 + rng.below(8) {
        if d.is_empty() {
            d.push(0);
        }
        // Half of the positions in the headers (TIFF directories, PNG/JPEG
        // headers, JSON keys), half anywhere.
        let pos = if rng.below(2) == 0 {
            rng.below(d.len().min(4096))
        } else {
            rng.below(d.len())
        };
        match rng.below(8) {
            0 => d[pos] ^= 1 << rng.below(8),
            1 => d[pos] = rng.next() as u8,
            2 => d[pos] = INTERESTING[rng.below(5)] as u8,
            3 => {
                let v = INTERESTING[rng.below(INTERESTING.len())];
                let bytes = if rng.below(2) == 0 {
                    v.to_le_bytes()
                } else {
                    v.to_be_bytes()
                };
                let width = [1, 2, 4][rng.below(3)];
                for (i, b) in bytes[..width].iter().enumerate() {
                    if let Some(x) = d.get_mut(pos + i) {
                        *x = *b;
                    }
                }
            }
            4 => d.truncate(pos.max(1)),
            5 => {
                let end = (pos + 1 + rng.below(256)).min(d.len());
                d.drain(pos..end);
            }
            6 => {
                let end = (pos + 1 + rng.below(256)).min(d.len());
                let copy = d[pos..end].to_vec();
                let at = rng.below(d.len());
                d.splice(at..at, copy);
            }
            _ => {
                if !other.is_empty() {
                    let at = pos.min(other.len() - 1);
                    let end = (at + 1 + rng.below(1024)).min(other.len());
                    let stop = (pos + end - at).min(d.len());
                    d[pos..stop].copy_from_slice(&other[at..at + stop - pos]);
                }
            }
        }
    }
    d
}

/// The seeds: every file under `corpus/<target>/`.
fn load_corpus(corpus: &Path) -> Result<Vec<(String, PathBuf, Vec<u8>)>, String> {
    let mut seeds = Vec::new();
    for target in targets::TARGETS {
        let dir = corpus.join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        files.sort();
        for f in files.into_iter().filter(|f| f.is_file()) {
            let bytes = std::fs::read(&f).map_err(|e| format!("{}: {e}", f.display()))?;
            seeds.push(((*target).to_string(), f, bytes));
        }
    }
    if seeds.is_empty() {
        return Err(format!(
            "{}: no seeds (expected files under slide/ and manifest/)",
            corpus.display()
        ));
    }
    Ok(seeds)
}

/// A child process serving inputs, with its answers on a channel.
struct Worker {
    child: Child,
    stdin: ChildStdin,
    answers: Receiver<String>,
}

impl Worker {
    fn start(memory_mb: u64) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(exe);
        cmd.arg("child")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let limit = memory_mb << 20;
        // SAFETY: setrlimit is async-signal-safe; nothing else runs between
        // fork and exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                let r = libc::rlimit {
                    rlim_cur: limit,
                    rlim_max: limit,
                };
                if libc::setrlimit(libc::RLIMIT_AS, &r) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start the child: {e}"))?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let (tx, answers) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Self {
            child,
            stdin,
            answers,
        })
    }

    /// Runs `target` on `path`: the child's answer, or why there was none.
    fn exec(&mut self, target: &str, path: &Path, timeout: Duration) -> Outcome {
        if writeln!(self.stdin, "{target}\t{}", path.display()).is_err() {
            return Outcome::Crash(self.death());
        }
        match self.answers.recv_timeout(timeout) {
            Ok(line) if line.starts_with("ok") => Outcome::Ok,
            Ok(line) if line.starts_with("err") => Outcome::Rejected,
            Ok(line) => Outcome::Crash(line),
            Err(RecvTimeoutError::Timeout) => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                Outcome::Hang
            }
            Err(RecvTimeoutError::Disconnected) => Outcome::Crash(self.death()),
        }
    }

    /// How the child ended.
    fn death(&mut self) -> String {
        match self.child.wait() {
            Ok(status) => {
                use std::os::unix::process::ExitStatusExt;
                match status.signal() {
                    Some(libc::SIGABRT) => {
                        "aborted (SIGABRT: a failed allocation under the memory limit, or a C library's abort)".into()
                    }
                    Some(s) => format!("killed by signal {s}"),
                    None => format!("exited with {status}"),
                }
            }
            Err(e) => format!("lost: {e}"),
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one input did.
enum Outcome {
    /// Read, or refused with an error: both are fine.
    Ok,
    Rejected,
    /// A panic, an abort, a signal, a failed check.
    Crash(String),
    /// No answer within the timeout.
    Hang,
}

impl Outcome {
    /// What went wrong, for a crash or a hang.
    fn problem(self, timeout: Duration) -> Option<String> {
        match self {
            Self::Ok | Self::Rejected => None,
            Self::Crash(why) => Some(format!("crash: {why}")),
            Self::Hang => Some(format!("hang: no answer in {} ms", timeout.as_millis())),
        }
    }
}

/// Saves a problem input and what happened under `crashes/`.
fn save_problem(crashes: &Path, name: &str, data: &[u8], problem: &str, seed: &Path) {
    let saved = crashes.join(name);
    let _ = std::fs::write(&saved, data);
    let _ = std::fs::write(
        crashes.join(format!("{name}.txt")),
        format!("{problem}\nmutated from {}\n", seed.display()),
    );
    eprintln!("wsiseg-fuzz: {problem} — saved {}", saved.display());
}

/// The fuzzing loop; the exit code (1 when a problem was found).
fn fuzz(args: &[String]) -> Result<i32, String> {
    let o = parse(args)?;
    let seeds = load_corpus(&o.corpus)?;
    let crashes = o.out.join("crashes");
    std::fs::create_dir_all(&crashes).map_err(|e| format!("{}: {e}", crashes.display()))?;
    let input = o.out.join(format!("input-{}", std::process::id()));
    let mut rng = Rng::new(o.seed);
    let mut worker = Worker::start(o.memory_mb)?;
    let start = Instant::now();
    let (mut execs, mut rejected, mut found) = (0u64, 0u64, 0u64);
    let mut last_report = Instant::now();
    while start.elapsed().as_secs_f64() < o.seconds && execs < o.max_execs {
        let (target, seed_path, seed) = &seeds[rng.below(seeds.len())];
        let same_target: Vec<&Vec<u8>> = seeds
            .iter()
            .filter(|(t, ..)| t == target)
            .map(|(.., b)| b)
            .collect();
        let other = same_target[rng.below(same_target.len())];
        let data = mutate(&mut rng, seed, other);
        std::fs::write(&input, &data).map_err(|e| format!("{}: {e}", input.display()))?;
        let outcome = worker.exec(target, &input, o.timeout);
        execs += 1;
        rejected += u64::from(matches!(outcome, Outcome::Rejected));
        let problem = outcome.problem(o.timeout);
        if let Some(problem) = problem {
            save_problem(
                &crashes,
                &format!("{target}-{execs:08}"),
                &data,
                &problem,
                seed_path,
            );
            found += 1;
            worker = Worker::start(o.memory_mb)?;
        }
        if last_report.elapsed() > Duration::from_secs(60) {
            eprintln!(
                "wsiseg-fuzz: {execs} inputs in {:.0} s, {found} problem(s)",
                start.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
    }
    let _ = std::fs::remove_file(&input);
    let seconds = start.elapsed().as_secs_f64();
    let summary = serde_json::json!({
        "seed": o.seed,
        "seeds": seeds.len(),
        "executions": execs,
        "rejected": rejected,
        "problems": found,
        "seconds": seconds,
        "executions_per_second": execs as f64 / seconds.max(1e-9),
    });
    println!("{summary}");
    Ok(i32::from(found > 0))
}

/// Runs every file under each `DIR/<target>/` once; non-zero exit if any crashes or hangs.
fn replay(dirs: &[String]) -> Result<i32, String> {
    let timeout = Duration::from_secs(20);
    let mut failures = 0;
    let mut count = 0;
    for dir in dirs {
        let seeds = load_corpus(Path::new(dir))?;
        let mut worker = Worker::start(4096)?;
        for (target, path, _) in &seeds {
            count += 1;
            let Some(problem) = worker.exec(target, path, timeout).problem(timeout) else {
                continue;
            };
            eprintln!("wsiseg-fuzz: {}: {problem}", path.display());
            failures += 1;
            worker = Worker::start(4096)?;
        }
    }
    println!(
        "{}",
        serde_json::json!({"replayed": count, "problems": failures})
    );
    Ok(i32::from(failures > 0))
}
