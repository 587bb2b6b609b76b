//! The commands every tool has, checked on a real binary.

use std::path::Path;

use crate::Cmd;

/// Checks `--help`, `--version`, `config show [--json]` with each settings layer, `completions`,
/// `man`, and the one-line errors for a bad flag and a bad config file.
///
/// # Panics
/// When the binary does not behave.
pub fn assert_common_commands(binary: &Path, tool: &str) {
    let run = |args: &[&str]| Cmd::new(binary).args(args.iter().copied()).run();

    let help = run(&["--help"]).success();
    assert!(
        help.stdout.contains("Usage:") && help.stdout.contains(tool),
        "{}",
        help.stdout
    );
    run(&["--version"])
        .success()
        .stdout_has(&format!("{tool} {}", env!("CARGO_PKG_VERSION")));

    let text = run(&["config", "show"]).success();
    assert!(
        text.stdout.lines().any(|l| l.starts_with("OPS_LOG_FORMAT")
            && l.contains("text")
            && l.contains("[default]")),
        "{}",
        text.stdout
    );

    // Each layer, and the precedence between them, as `config show --json` reports it.
    let tmp = tempfile::tempdir().unwrap();
    let envdir = tmp.path().join("env");
    std::fs::create_dir(&envdir).unwrap();
    std::fs::write(envdir.join("OPS_LOG_LEVEL"), "debug\n").unwrap();
    std::fs::write(envdir.join("OPS_LOG_FORMAT"), "json\n").unwrap();
    let config = tmp.path().join("config.toml");
    std::fs::write(&config, "OPS_LOG_LEVEL = \"warn\"\n").unwrap();
    let shown = Cmd::new(binary)
        .args(["config", "show", "--json", "--config"])
        .arg(&config)
        .arg("--envdir")
        .arg(&envdir)
        .env("OPS_LOG_FORMAT", "text")
        .run()
        .success();
    let json: serde_json::Value =
        serde_json::from_str(&shown.stdout).expect("config show --json is JSON");
    assert_eq!(
        json["OPS_LOG_LEVEL"],
        serde_json::json!({"value": "debug", "source": "envdir"}),
        "envdir beats file"
    );
    assert_eq!(
        json["OPS_LOG_FORMAT"],
        serde_json::json!({"value": "text", "source": "env"}),
        "env beats envdir"
    );
    let only_file = run(&[
        "config",
        "show",
        "--json",
        "--config",
        config.to_str().unwrap(),
    ])
    .success();
    let json: serde_json::Value = serde_json::from_str(&only_file.stdout).unwrap();
    assert_eq!(
        json["OPS_LOG_LEVEL"],
        serde_json::json!({"value": "warn", "source": "file"})
    );
    let flag = run(&["config", "show", "--json", "--log-format", "json"]).success();
    let json: serde_json::Value = serde_json::from_str(&flag.stdout).unwrap();
    assert_eq!(
        json["OPS_LOG_FORMAT"],
        serde_json::json!({"value": "json", "source": "flag"}),
        "the global --log-format flag is a setting like any other"
    );
    assert_eq!(json["OPS_LOG_LEVEL"]["source"], "default");
    assert!(
        json.as_object()
            .unwrap()
            .values()
            .all(|v| v["source"].is_string())
    );

    for shell in ["bash", "zsh", "fish"] {
        let out = run(&["completions", shell]).success();
        assert!(
            out.stdout.contains(tool),
            "{shell} completion mentions the tool"
        );
    }
    run(&["man"]).success().stdout_has(".TH");

    run(&["--no-such-flag"])
        .code(2)
        .one_line_error()
        .stderr_has("--no-such-flag");
    std::fs::write(&config, "OPS_LOG_LEVL = \"warn\"\n").unwrap();
    run(&["config", "show", "--config", config.to_str().unwrap()])
        .code(3)
        .one_line_error()
        .stderr_has("unknown setting OPS_LOG_LEVL");
}
