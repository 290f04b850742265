//! The documentation's shell examples run, the way doc-tests run Rust
//! examples: a wrong example fails CI.
//!
//! In `README.md` and `docs/*.md`, a fenced ```` ```sh ```` block directly
//! preceded by the line `<!-- runs-in-ci -->` is meant to run verbatim. The
//! marked blocks of one file, in order, become one `bash` script (`set -euo
//! pipefail`), run in a fresh empty directory with the freshly built
//! `upi-switch` first on `PATH` and no database URLs in the environment:
//! exactly what a newcomer pasting them into a shell would have. Every other
//! ```` ```sh ```` block must say why it is not run (`<!-- not-run-in-ci:
//! reason -->`), so a new example cannot slip in untested by accident.
//!
//! Whatever the script does, every deployment it started (a `deployment.env`
//! under its directory) is stopped with `upi-switch rig down --purge`
//! afterwards, and its databases dropped.

mod common;

use common::BIN;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The line that marks a block to run.
const RUNS: &str = "<!-- runs-in-ci -->";
/// The start of the line that says why a block is not run.
const NOT_RUN: &str = "<!-- not-run-in-ci:";
/// Longest a file's script may run.
const LIMIT: Duration = Duration::from_secs(300);

/// A shell block of a document.
#[derive(Debug)]
struct Block {
    /// 1-based line of its opening fence.
    line: usize,
    runs: bool,
    text: String,
}

/// The ```` ```sh ```` blocks of `text`; an error names a block that is
/// neither marked to run nor says why not, or a marker that marks nothing.
fn sh_blocks(name: &str, text: &str) -> Result<Vec<Block>, String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        if line == RUNS && lines.get(i + 1).map(|l| l.trim()) != Some("```sh") {
            return Err(format!(
                "{name}:{}: {RUNS} must be followed directly by a ```sh fence",
                i + 1
            ));
        }
        if !line.starts_with("```") || line == "```" {
            i += 1;
            continue;
        }
        // An opening fence: find its end.
        let open = i;
        let end = (open + 1..lines.len())
            .find(|&j| lines[j].trim() == "```")
            .ok_or_else(|| format!("{name}:{}: a ``` block is never closed", open + 1))?;
        if line == "```sh" || line == "```bash" || line == "```shell" {
            let before = open.checked_sub(1).map(|j| lines[j].trim()).unwrap_or("");
            let runs = before == RUNS;
            if !runs && !before.starts_with(NOT_RUN) {
                return Err(format!(
                    "{name}:{}: a shell block must be preceded by {RUNS} or by \
                     {NOT_RUN} <why> -->",
                    open + 1
                ));
            }
            blocks.push(Block {
                line: open + 1,
                runs,
                text: lines[open + 1..end].join("\n"),
            });
        }
        i = end + 1;
    }
    Ok(blocks)
}

/// One script of the file's marked blocks; each announces where it comes from.
fn script(name: &str, blocks: &[Block]) -> String {
    let mut out = String::from(
        "set -euo pipefail\n\
         trap 'echo \"readme-test: exit $? at script line $LINENO\" >&2' ERR\n",
    );
    for b in blocks.iter().filter(|b| b.runs) {
        out.push_str(&format!("echo '=== {name}:{}' >&2\n", b.line));
        out.push_str(&b.text);
        out.push('\n');
    }
    out
}

/// Stops every deployment recorded under `dir` (`*/deployment.env`, or
/// `dir/deployment.env`); says what it did.
fn stop_deployments(dir: &Path) -> String {
    let mut found: Vec<PathBuf> = Vec::new();
    if dir.join("deployment.env").exists() {
        found.push(dir.to_path_buf());
    }
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.join("deployment.env").exists() {
            found.push(path);
        }
    }
    let mut said = String::new();
    for d in found {
        let out = Command::new(BIN)
            .args(["rig", "down", "--purge", "--dir"])
            .arg(&d)
            .stdin(Stdio::null())
            .output()
            .expect("rig down");
        said.push_str(&format!(
            "left running, stopped by the test: {} ({})\n{}",
            d.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    said
}

/// Runs `script` in a fresh directory; `Err` holds the numbered script and its output.
fn run_script(name: &str, script: &str) -> Result<String, String> {
    let dir = std::env::temp_dir().join(format!(
        "upi-readme-{}-{}",
        name.replace(['/', '.'], "-"),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    std::fs::create_dir_all(&dir).expect("script dir");
    let bin_dir = Path::new(BIN).parent().expect("bin dir");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(&dir)
        .env("PATH", path)
        .env_remove("DATABASE_URL")
        .env_remove("BANK_DATABASE_URL")
        .env_remove("CHAOS_DIR")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("spawn bash");
    let (mut out, mut err) = (
        child.stdout.take().expect("stdout"),
        child.stderr.take().expect("stderr"),
    );
    let readers = (
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        }),
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        }),
    );
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if started.elapsed() > LIMIT {
            // The whole group: bash and whatever it started in the foreground.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = readers.0.join().unwrap_or_default();
    let stderr = readers.1.join().unwrap_or_default();
    let stopped = stop_deployments(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    let output = format!("--- stdout\n{stdout}\n--- stderr\n{stderr}\n{stopped}");
    match status {
        Some(s) if s.success() => Ok(output),
        other => {
            let numbered: String = script
                .lines()
                .enumerate()
                .map(|(i, l)| format!("{:4} {l}\n", i + 1))
                .collect();
            let how = match other {
                Some(s) => format!("ended with {s}"),
                None => format!("did not end within {} s", LIMIT.as_secs()),
            };
            Err(format!(
                "the shell examples of {name} {how}\n--- script\n{numbered}{output}"
            ))
        }
    }
}

/// README.md and every docs/*.md.
fn documents() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut names = vec!["README.md".to_string()];
    let mut docs: Vec<String> = std::fs::read_dir(root.join("docs"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    docs.sort();
    names.extend(docs);
    names
        .into_iter()
        .map(|n| {
            let text = std::fs::read_to_string(root.join(&n)).expect("read document");
            (n, text)
        })
        .collect()
}

#[test]
fn every_shell_block_is_marked_to_run_or_says_why_not() {
    let mut wrong = Vec::new();
    for (name, text) in documents() {
        if let Err(e) = sh_blocks(&name, &text) {
            wrong.push(e);
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_marked_shell_examples_run_as_written() {
    let mut ran = 0;
    for (name, text) in documents() {
        let blocks = sh_blocks(&name, &text).unwrap_or_else(|e| panic!("{e}"));
        if !blocks.iter().any(|b| b.runs) {
            continue;
        }
        match run_script(&name, &script(&name, &blocks)) {
            Ok(output) => {
                ran += 1;
                println!("=== {name}\n{output}"); // seen with --nocapture
                // A deployment left running is a broken example too.
                assert!(
                    !output.contains("left running, stopped by the test"),
                    "the examples of {name} leave a deployment running:\n{output}"
                );
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(ran >= 1, "README.md has no shell block marked {RUNS}");
}

#[test]
fn the_parser_sees_marks_and_refuses_unmarked_blocks() {
    let good = "text\n<!-- runs-in-ci -->\n```sh\necho a\n```\n\n<!-- not-run-in-ci: long -->\n```sh\nsleep 9\n```\n```\noutput\n```\n";
    let blocks = sh_blocks("good", good).expect("parses");
    assert_eq!(blocks.len(), 2);
    assert!(blocks[0].runs && !blocks[1].runs);
    assert_eq!((blocks[0].line, blocks[0].text.as_str()), (3, "echo a"));
    let s = script("good", &blocks);
    assert!(s.contains("echo a") && !s.contains("sleep 9"), "{s}");

    let unmarked = "```sh\necho a\n```\n";
    assert!(sh_blocks("u", unmarked).unwrap_err().contains("u:1"));
    let dangling = "<!-- runs-in-ci -->\n\n```sh\necho a\n```\n";
    assert!(sh_blocks("d", dangling).is_err());
    let unclosed = "```sh\necho a\n";
    assert!(sh_blocks("c", unclosed).is_err());
}

#[test]
fn a_failing_example_fails_and_says_where() {
    let blocks = sh_blocks(
        "doc",
        "<!-- runs-in-ci -->\n```sh\ntrue\n```\n<!-- runs-in-ci -->\n```sh\nfalse\necho never\n```\n",
    )
    .expect("parses");
    let err = run_script("doc", &script("doc", &blocks)).expect_err("must fail");
    assert!(err.contains("=== doc:6"), "{err}");
    assert!(!err.contains("\nnever\n"), "{err}");
}
