//! `strata completions` and `strata man`: generated from the command line's definition,
//! accepted by the shell, and covering every subcommand.

use std::process::Command;

fn strata(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn bash_loads_the_completion_script_and_completes_subcommands_and_flags() {
    let script = strata(&["completions", "bash"]);
    assert!(script.status.success());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("strata.bash");
    std::fs::write(&path, &script.stdout).unwrap();
    // Load it as bash-completion would, then ask for completions as the shell does on TAB.
    let probe = format!(
        r#"set -e
source {script}
complete -p strata
COMP_WORDS=(strata ba); COMP_CWORD=1; COMP_LINE="strata ba"; COMP_POINT=9
_strata strata ba strata
echo "words: ${{COMPREPLY[*]}}"
COMP_WORDS=(strata verify --read); COMP_CWORD=2; COMP_LINE="strata verify --read"; COMP_POINT=20
_strata strata --read verify
echo "flags: ${{COMPREPLY[*]}}"
"#,
        script = path.display()
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &probe])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bash refused the script: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("-F _strata strata"), "{text}");
    assert!(
        text.contains("words: backup"),
        "subcommands complete: {text}"
    );
    assert!(
        text.contains("--read-data") && text.contains("--read-data-subset"),
        "flags complete: {text}"
    );
}

#[test]
fn every_shell_gets_a_script() {
    for shell in ["bash", "zsh", "fish"] {
        let out = strata(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("strata"),
            "{shell}"
        );
    }
    let out = strata(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2), "an unknown shell is bad usage");
}

#[test]
fn man_pages_cover_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let out = strata(&["man", dir.path().to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let main = std::fs::read_to_string(dir.path().join("strata.1")).unwrap();
    assert!(
        main.contains(".TH strata 1"),
        "{}",
        &main[..200.min(main.len())]
    );
    // One page per subcommand the help lists, with its own usage line.
    let help = String::from_utf8_lossy(&strata(&["--help"]).stdout).into_owned();
    let commands: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() > 20, "{commands:?}");
    for command in commands {
        let page = std::fs::read_to_string(dir.path().join(format!("strata-{command}.1")))
            .unwrap_or_else(|e| panic!("no page for {command}: {e}"));
        assert!(
            page.contains(&format!("strata {command}").replace('-', "\\-"))
                || page.contains(&format!("strata {command}")),
            "page of {command} has its usage line"
        );
    }
    assert!(
        dir.path().join("strata-tables-add.1").exists(),
        "nested subcommands too"
    );
}
