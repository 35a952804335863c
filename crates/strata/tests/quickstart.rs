//! The README's first command, `examples/quickstart.sh`, runs to the end, and runs so with
//! busy CPUs beside it: the scheduling that let a `| head` end before its writer, killing
//! the script with SIGPIPE (exit 141) under `set -o pipefail`, is what the load brings out.
//! And no shell the README or `examples/` hands a user pipes into a reader that may stop
//! before its input ends (`head`, `grep -q`, `sed 1q`, ...): checked on the text.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Whether `program` runs (`--version`).
fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Threads that keep `n` CPUs busy until dropped.
struct Busy {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<u64>>,
}

impl Busy {
    fn start(n: usize) -> Busy {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..n)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut spins = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        spins = std::hint::black_box(spins.wrapping_add(1));
                    }
                    spins
                })
            })
            .collect();
        Busy { stop, threads }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

#[test]
fn the_quickstart_runs_to_the_end_beside_busy_cpus() {
    if !have("python3") {
        if std::env::var_os("STRATA_REQUIRE_TOOLS").is_some() {
            panic!("the quickstart needs python3 (its sample data generator)");
        }
        eprintln!("SKIPPED: no python3 for the quickstart's sample data");
        return;
    }
    // The script as shipped, in a copy of its corner of the tree: it writes data/,
    // repo/, state/ and restored/ beside itself, which must not land in the checkout.
    let root = repo_root();
    let tree = tempfile::tempdir().unwrap();
    for file in [
        "examples/quickstart.sh",
        "examples/strata.toml",
        "bench/gen_dataset.py",
    ] {
        let to = tree.path().join(file);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(root.join(file), &to).unwrap();
    }
    let busy = Busy::start(2);
    let out = Command::new("bash")
        .arg(tree.path().join("examples/quickstart.sh"))
        .current_dir(tree.path())
        .env("STRATA_BIN", env!("CARGO_BIN_EXE_strata"))
        .env_remove("STRATA_CONFIG")
        .env_remove("STRATA_PASSWORD")
        .env_remove("STRATA_PASSWORD_FILE")
        .env_remove("STRATA_REPO")
        .env_remove("STRATA_SERVER")
        .output()
        .unwrap();
    drop(busy);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "quickstart: {:?}\n{stdout}\n{stderr}",
        out.status
    );
    for step in [
        "==> strata verify --read-data",
        "==> restored trees are identical to the sources",
        "==> losing data/db2/",
        "==> db2 is whole again: done",
    ] {
        assert!(stdout.contains(step), "{step}: {stdout}");
    }
    assert!(
        !stdout.contains("building strata"),
        "STRATA_BIN is used: {stdout}"
    );
}

/// A pipe into a reader that may stop before its input ends, found in shell text.
#[derive(Debug, PartialEq)]
struct EarlyReader {
    line: usize,
    reader: String,
}

/// Where `text` (shell) pipes into a reader that can exit before reading all its input:
/// the writer before it then dies of SIGPIPE, and under `set -o pipefail` (or `set -e` on
/// the writer's status) the whole script with it. Quotes, comments, here-documents and
/// `||` are not pipes; command substitutions are looked into.
fn early_readers(text: &str) -> Vec<EarlyReader> {
    #[derive(Clone, Copy, PartialEq)]
    enum Ctx {
        /// The script, or a `$( )` nested `n` parentheses deep.
        Code(u32),
        Single,
        Double,
    }
    let b = text.as_bytes();
    let line_of = |i: usize| 1 + b[..i].iter().filter(|c| **c == b'\n').count();
    let mut found = Vec::new();
    let mut stack = vec![Ctx::Code(0)];
    let mut heredocs: Vec<(String, bool)> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let ctx = *stack.last().unwrap();
        match ctx {
            Ctx::Single => {
                if c == b'\'' {
                    stack.pop();
                }
            }
            Ctx::Double => match c {
                b'\\' => i += 1,
                b'"' => {
                    stack.pop();
                }
                b'$' if b.get(i + 1) == Some(&b'(') => {
                    stack.push(Ctx::Code(0));
                    i += 1;
                }
                _ => {}
            },
            Ctx::Code(depth) => match c {
                b'\\' => i += 1,
                b'\'' => stack.push(Ctx::Single),
                b'"' => stack.push(Ctx::Double),
                b'#' if i == 0 || b" \t\n;&|(".contains(&b[i - 1]) => {
                    while i < b.len() && b[i] != b'\n' {
                        i += 1;
                    }
                    continue;
                }
                b'$' if b.get(i + 1) == Some(&b'(') => {
                    stack.push(Ctx::Code(0));
                    i += 1;
                }
                b'(' if stack.len() > 1 => *stack.last_mut().unwrap() = Ctx::Code(depth + 1),
                b')' if stack.len() > 1 => {
                    if depth == 0 {
                        stack.pop();
                    } else {
                        *stack.last_mut().unwrap() = Ctx::Code(depth - 1);
                    }
                }
                b'<' if b.get(i + 1) == Some(&b'<')
                    && b.get(i + 2) != Some(&b'<')
                    && (i == 0 || b[i - 1] != b'<') =>
                {
                    // A here-document: its body (after this line) is not shell.
                    i += 2;
                    let dash = b.get(i) == Some(&b'-');
                    if dash {
                        i += 1;
                    }
                    while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
                        i += 1;
                    }
                    let start = i;
                    while i < b.len() && !b" \t\n;&|<>()".contains(&b[i]) {
                        i += 1;
                    }
                    let word: String = text[start..i]
                        .chars()
                        .filter(|c| *c != '\'' && *c != '"' && *c != '\\')
                        .collect();
                    if !word.is_empty() {
                        heredocs.push((word, dash));
                    }
                    continue;
                }
                b'\n' if !heredocs.is_empty() => {
                    for (word, dash) in std::mem::take(&mut heredocs) {
                        loop {
                            i += 1;
                            let end = b[i.min(b.len())..]
                                .iter()
                                .position(|c| *c == b'\n')
                                .map_or(b.len(), |n| i + n);
                            if i >= b.len() {
                                break;
                            }
                            let line = &text[i..end];
                            let line = if dash {
                                line.trim_start_matches('\t')
                            } else {
                                line
                            };
                            i = end;
                            if line == word {
                                break;
                            }
                        }
                    }
                    continue;
                }
                b'|' => {
                    let or = b.get(i + 1) == Some(&b'|');
                    let clobber = i > 0 && b[i - 1] == b'>';
                    if or {
                        i += 2;
                        continue;
                    }
                    if !clobber {
                        let from = if b.get(i + 1) == Some(&b'&') {
                            i + 2
                        } else {
                            i + 1
                        };
                        let words = stage_words(&text[from..]);
                        if let Some(reader) = stops_early(&words) {
                            found.push(EarlyReader {
                                line: line_of(i),
                                reader,
                            });
                        }
                    }
                }
                _ => {}
            },
        }
        i += 1;
    }
    found
}

/// The words of the command that starts `text` (after a `|`), unquoted, up to the end
/// of that command.
fn stage_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') => {
                if let Some(n) = chars.next() {
                    word.push(n);
                }
            }
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, '\\') => match chars.next() {
                Some('\n') | None => {}
                Some(n) => {
                    word.push(n);
                    in_word = true;
                }
            },
            (None, ' ' | '\t') => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            // A pipe at the end of a line goes on with the next line's command.
            (None, '\n') if words.is_empty() && !in_word => {}
            (None, '\n' | ';' | '&' | '|' | ')' | '`') => break,
            (None, '#') if !in_word => break,
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// The reader `words` run, when it may exit before its input ends.
fn stops_early(words: &[String]) -> Option<String> {
    let mut rest = words.iter().map(String::as_str).skip_while(|w| {
        matches!(
            *w,
            "!" | "{" | "(" | "command" | "exec" | "builtin" | "time"
        ) || (w.contains('=') && !w.starts_with('-') && !w.starts_with('='))
    });
    let name = rest.next()?;
    let args: Vec<&str> = rest.collect();
    let program = name.rsplit('/').next().unwrap_or(name);
    let shown = || {
        format!("{program} {}", args.join(" "))
            .trim_end()
            .to_string()
    };
    let short_flag = |letters: &str| {
        args.iter().any(|a| {
            a.starts_with('-')
                && !a.starts_with("--")
                && a[1..].chars().any(|c| letters.contains(c))
        })
    };
    let early = match program {
        "head" | "read" | "true" | "false" | ":" | "cmp" => true,
        "grep" | "egrep" | "fgrep" | "rg" => {
            short_flag("qlLm")
                || args.iter().any(|a| {
                    ["--quiet", "--silent", "--max-count", "--files-with"]
                        .iter()
                        .any(|f| a.starts_with(f))
                })
        }
        "sed" | "gsed" => args.iter().any(|a| !a.starts_with('-') && sed_quits(a)),
        "awk" | "gawk" | "mawk" | "nawk" => args.iter().any(|a| {
            a.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                .any(|w| w == "exit")
        }),
        "dd" => args.iter().any(|a| a.starts_with("count=")),
        _ => false,
    };
    early.then(shown)
}

/// Whether a sed script has a `q` or `Q` command.
fn sed_quits(script: &str) -> bool {
    let s = script.as_bytes();
    (0..s.len()).any(|i| {
        (s[i] == b'q' || s[i] == b'Q')
            && (i == 0 || b";{} \t\n$/0123456789".contains(&s[i - 1]))
            && (i + 1 == s.len() || b";} \t\n0123456789".contains(&s[i + 1]))
    })
}

/// The shell blocks of a Markdown file (```sh, ```bash, ```shell, ```console), joined,
/// with blank lines keeping the file's line numbers.
fn shell_blocks(markdown: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in markdown.lines() {
        let fence = line.trim_start().strip_prefix("```");
        match (inside, fence) {
            (false, Some(lang)) => {
                inside = matches!(lang.trim(), "sh" | "bash" | "shell" | "console" | "zsh");
                out.push('\n');
            }
            (true, Some(_)) => {
                inside = false;
                out.push('\n');
            }
            (true, None) => {
                out.push_str(line.trim_start_matches("$ "));
                out.push('\n');
            }
            (false, None) => out.push('\n'),
        }
    }
    out
}

#[test]
fn no_example_or_readme_command_pipes_into_a_reader_that_stops_early() {
    let root = repo_root();
    let mut sources: Vec<(String, String)> = Vec::new();
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(root.join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sh"))
        .collect();
    scripts.sort();
    assert!(
        scripts.iter().any(|p| p.ends_with("quickstart.sh")),
        "{scripts:?}"
    );
    for script in scripts {
        let text = std::fs::read_to_string(&script).unwrap();
        sources.push((script.display().to_string(), text));
    }
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let blocks = shell_blocks(&readme);
    assert!(blocks.contains("examples/quickstart.sh"), "{blocks}");
    sources.push(("README.md".into(), blocks));
    let mut bad = Vec::new();
    for (name, text) in &sources {
        for found in early_readers(text) {
            bad.push(format!("{name}:{}: | {}", found.line, found.reader));
        }
    }
    assert!(
        bad.is_empty(),
        "pipes into readers that may stop before their input ends (the writer dies of \
         SIGPIPE; under pipefail, the script): read everything instead (`sed -n 1p`, \
         `awk 'NR == 1'`, `grep ... >/dev/null`):\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_pipe_check_finds_early_readers_and_nothing_else() {
    let lines = |text: &str| {
        early_readers(text)
            .into_iter()
            .map(|f| (f.line, f.reader))
            .collect::<Vec<_>>()
    };
    let one = |line: usize, reader: &str| vec![(line, reader.to_string())];
    // The bug of the quickstart, and its kin.
    assert_eq!(
        lines("set -euo pipefail\nlost=$(find data/db2 -type f | sort | head -n 1)\n"),
        one(2, "head -n 1")
    );
    assert_eq!(
        lines("x=\"$(ls | head -1)\""),
        one(1, "head -1"),
        "inside quotes, a command substitution is still code"
    );
    assert_eq!(lines("ps ax | grep -q strata"), one(1, "grep -q strata"));
    assert_eq!(lines("ps ax | grep -cqE x"), one(1, "grep -cqE x"));
    assert_eq!(
        lines("ls | grep --max-count=1 x"),
        one(1, "grep --max-count=1 x")
    );
    assert_eq!(lines("ls | sed 1q"), one(1, "sed 1q"));
    assert_eq!(lines("ls | sed -n '/x/{p;q}'"), one(1, "sed -n /x/{p;q}"));
    assert_eq!(
        lines("ls | awk '{print; exit}'"),
        one(1, "awk {print; exit}")
    );
    assert_eq!(lines("ls |\n  head"), one(1, "head"));
    assert_eq!(lines("ls | LC_ALL=C /usr/bin/head -n2"), one(1, "head -n2"));
    assert_eq!(lines("yes |& head"), one(1, "head"));
    assert_eq!(lines("ls | read first"), one(1, "read first"));
    // Readers that read everything, and what only looks like a pipe.
    for fine in [
        "lost=$(find data/db2 -type f | sort | sed -n 1p)",
        "ls | awk 'NR == 1'",
        "ls | grep x >/dev/null",
        "ls | grep -v x | wc -l",
        "ls | sed 's/q/Q/'",
        "ls | tail -n 1",
        "ls | while read -r f; do echo \"$f\"; done",
        "kill \"$pid\" 2>/dev/null || true",
        "a || head -n 1 file",
        "echo 'a | head' \"b | head\" # c | head",
        "# ls | head\n",
        "echo x >| file",
        "echo ${#x} | cat",
        "cat > f <<EOF\nls | head\nEOF\necho done",
        "cat > f <<-'END'\n\tls | head\n\tEND\n",
        "sql \"SELECT 'a' || g FROM t\"",
        "tr a b <<< \"x | head\"",
    ] {
        assert_eq!(lines(fine), vec![], "{fine}");
    }
    // Here-documents end, and the code after them is checked.
    assert_eq!(
        lines("cat <<EOF\nx | head\nEOF\nls | head\n"),
        one(4, "head")
    );
    // README blocks keep their line numbers; prose is not shell.
    let md = "text | head\n```sh\nls | head\n```\n```toml\nx = \"| head\"\n```\n";
    assert_eq!(lines(&shell_blocks(md)), one(3, "head"));
}
