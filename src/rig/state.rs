//! The state directory of a detached rig, in the format `chaos/lib.sh` reads:
//! `deployment.env` (`KEY=value` lines, shell-quoted, which bash `source`s),
//! `run/NAME.cmd` and `run/NAME.env` (NUL-separated argv and environment, so
//! a fault script restarts a service exactly), `run/NAME.pid`, `logs/NAME.log`.
//! Quoting and parsing are pure; the rest is small file I/O.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The file names inside a state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    pub dir: PathBuf,
}

impl StateDir {
    /// `dir`, made absolute (restarts may run from another directory).
    pub fn new(dir: &Path) -> StateDir {
        let dir = if dir.is_absolute() {
            dir.to_path_buf()
        } else {
            std::env::current_dir()
                .map(|cwd| cwd.join(dir))
                .unwrap_or_else(|_| dir.to_path_buf())
        };
        StateDir { dir }
    }
    pub fn env_file(&self) -> PathBuf {
        self.dir.join("deployment.env")
    }
    pub fn run(&self) -> PathBuf {
        self.dir.join("run")
    }
    pub fn logs(&self) -> PathBuf {
        self.dir.join("logs")
    }
    pub fn cmd_file(&self, name: &str) -> PathBuf {
        self.run().join(format!("{name}.cmd"))
    }
    pub fn pid_file(&self, name: &str) -> PathBuf {
        self.run().join(format!("{name}.pid"))
    }
    pub fn log_file(&self, name: &str) -> PathBuf {
        self.logs().join(format!("{name}.log"))
    }

    /// The recorded pid of `name`, if its pid file holds one.
    pub fn pid(&self, name: &str) -> Option<u32> {
        std::fs::read_to_string(self.pid_file(name))
            .ok()
            .and_then(|t| t.trim().parse().ok())
    }

    /// Reads `deployment.env`.
    pub fn read_env(&self) -> std::io::Result<BTreeMap<String, String>> {
        Ok(parse_env(&std::fs::read_to_string(self.env_file())?))
    }
}

/// `text` as one shell word: bare when it is made of safe characters, else
/// single-quoted (a `'` inside becomes `'\''`).
pub fn shell_quote(text: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_./:@%+,=-".contains(c);
    if !text.is_empty() && text.chars().all(safe) {
        return text.to_string();
    }
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// One `KEY=value` line per entry, values shell-quoted, after a comment line.
pub fn render_env(comment: &str, vars: &[(&str, String)]) -> String {
    let mut out = format!("# {comment}\n");
    for (key, value) in vars {
        out.push_str(&format!("{key}={}\n", shell_quote(value)));
    }
    out
}

/// The `KEY=value` lines of a file [`render_env`] wrote (comments and blank
/// lines skipped; a value is bare words, single-quoted parts and `\x` escapes).
pub fn parse_env(text: &str) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, raw)) = line.split_once('=') else {
            continue;
        };
        vars.insert(key.to_string(), unquote(raw));
    }
    vars
}

fn unquote(raw: &str) -> String {
    let mut out = String::new();
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    out.push(q);
                }
            }
            '\\' => {
                if let Some(next) = chars.next() {
                    out.push(next);
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// Words separated by NUL, each ended by one (`printf '%s\0'`, `/proc/PID/cmdline`).
pub fn nul_joined(words: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for w in words {
        out.extend_from_slice(w.as_bytes());
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_survive_quoting_and_parsing() {
        let vars = [
            ("PLAIN", "postgres://postgres@127.0.0.1:5432/db".to_string()),
            ("SPACES", "http://a:1 http://b:2".to_string()),
            ("QUOTE", "it's $HOME `x`".to_string()),
            ("EMPTY", String::new()),
        ];
        let text = render_env("test", &vars);
        assert!(text.contains("PLAIN=postgres://postgres@127.0.0.1:5432/db\n"));
        assert!(text.contains("SPACES='http://a:1 http://b:2'\n"));
        assert!(text.contains("QUOTE='it'\\''s $HOME `x`'\n"));
        assert!(text.contains("EMPTY=''\n"));
        let back = parse_env(&text);
        for (k, v) in &vars {
            assert_eq!(back.get(*k), Some(v), "{k}");
        }
        assert_eq!(back.len(), vars.len());
    }

    #[test]
    fn argv_is_nul_separated_like_proc_cmdline() {
        let words = vec!["/bin/x".to_string(), "serve".into(), "".into()];
        assert_eq!(nul_joined(&words), b"/bin/x\0serve\0\0");
    }
}
