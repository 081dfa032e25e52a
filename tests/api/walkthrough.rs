//! The README read from the top on a fresh database: the "Try it" block and the rollout
//! walk-through's first steps run as written (bash, curl, the `flux-inputs` binary on PATH),
//! and their answers are the ones the README prints.

use std::process::Command;

use crate::process::{BINARY, free_port};

const README: &str = include_str!("../../README.md");

/// The first ```sh block after `heading`.
fn block_after(heading: &str) -> String {
    let start = README
        .find(heading)
        .unwrap_or_else(|| panic!("{heading} in README"));
    let rest = &README[start..];
    let open = rest.find("```sh\n").unwrap() + 6;
    let close = rest[open..].find("```").unwrap();
    rest[open..open + close].to_owned()
}

#[test]
fn the_readme_walk_through_runs_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(BINARY, bin.join("flux-inputs")).unwrap();
    let port = free_port();

    // "Try it", with the server started from the built binary instead of `cargo run`.
    let try_it = block_after("## Try it");
    let (start, rest) = try_it.split_once('\n').unwrap();
    assert!(start.contains("cargo run --release &"), "{start}");
    let start = start.replace("cargo run --release", "flux-inputs");
    let rest = rest.replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"));
    // The rollout walk-through up to its plan (the rest waits for bakes and reports).
    let rollout = block_after("**Walk-through on the demo fleet**");
    let plan_end = rollout
        .find("curl -s -H \"$W\" -H \"$J\" -X POST $U/rollouts -d")
        .unwrap();
    let script = format!(
        "set -u\nexport LISTEN_ADDR=127.0.0.1:{port}\n{start}\ntrap 'kill %1' EXIT\n\
         until curl -sf http://127.0.0.1:{port}/ready >/dev/null; do sleep 0.1; done\n{rest}\n\
         echo\necho '== rollout'\n{}",
        &rollout[..plan_end]
    );
    let output = Command::new("bash")
        .arg("-c")
        .arg(&script)
        // From the repository (the walk-through names its example files), on a fresh
        // database of its own.
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("DATABASE_PATH", dir.path().join("flux-inputs.db"))
        .env(
            "PATH",
            format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
        )
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&output.stdout);
    let (try_it, rollout) = printed.split_once("== rollout").unwrap();
    assert!(try_it.starts_with(r#"{"status":"ok"}"#), "{printed}");
    // Every write of "Try it" succeeds, but the delete it shows refused.
    let errors: Vec<&str> = try_it.matches(r#"{"error":""#).collect();
    assert_eq!(
        errors.len(),
        1,
        "only the refused delete is an error:\n{try_it}"
    );
    assert!(try_it.contains(r#"{"error":"conflict","message":"platform component 'cert-manager' is still referenced by cluster(s)"#), "{try_it}");
    // The new cluster's feed has the new component.
    assert!(try_it.contains(r#""id":"kyverno""#), "{try_it}");
    // The plan is the one the README prints.
    // curl prints no newline: the plan is the JSON that starts at the rollout's id.
    let at = rollout
        .rfind(r#"{"id":"cert-manager-v1-17""#)
        .unwrap_or_else(|| panic!("a plan in:\n{rollout}"));
    let plan: serde_json::Value = serde_json::Deserializer::from_str(&rollout[at..])
        .into_iter()
        .next()
        .unwrap()
        .unwrap();
    let steps: Vec<Vec<&str>> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            s["clusters"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["id"].as_str().unwrap())
                .collect()
        })
        .collect();
    assert_eq!(
        steps,
        [["lab-dev-01"], ["edge-prod-02"], ["edge-qa-01"]],
        "{plan}"
    );
    let aside: Vec<(&str, &str)> = plan["not_in_steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["id"].as_str().unwrap(), c["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        aside,
        [("edge-prod-01", "pinned"), ("edge-uat-01", "unselected")],
        "{plan}"
    );
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("/ui/"),
        "the start-up log names the console"
    );
}
