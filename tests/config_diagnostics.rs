//! The broken-config corpus: every file in `tests/configs/bad/` must fail to compile with the
//! messages (and `file:line:col`) listed in its `.expected` file, and the binary must exit 1.

use garrison::compile::compile_path;
use std::path::{Path, PathBuf};

fn bad_configs() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configs/bad");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/configs/bad exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "kdl" || x == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 15, "the corpus has shrunk: {files:?}");
    files
}

#[test]
fn every_bad_config_reports_its_expected_diagnostics() {
    let mut failures = Vec::new();
    for path in bad_configs() {
        let expected_path = path.with_extension("expected");
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()));
        let rel = path
            .strip_prefix(env!("CARGO_MANIFEST_DIR"))
            .unwrap_or(&path);
        let output = match compile_path(Some(rel)) {
            Ok(_) => {
                failures.push(format!("{}: compiled, but must fail", rel.display()));
                continue;
            }
            Err(diags) => diags.to_string(),
        };
        for line in expected.lines().filter(|l| !l.trim().is_empty()) {
            if !output.contains(line) {
                failures.push(format!(
                    "{}: expected output to contain\n    {line}\n--- output ---\n{output}",
                    rel.display()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn check_exits_1_on_a_bad_config_and_prints_the_location() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_garrison"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["check", "--config", "tests/configs/bad/unknown-field.kdl"])
        .output()
        .expect("run garrison");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("tests/configs/bad/unknown-field.kdl:3:5"),
        "{stderr}"
    );
    assert!(stderr.contains("did you mean `log-level`?"), "{stderr}");
}

#[test]
fn a_missing_config_file_is_an_error_not_a_panic() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_garrison"))
        .args(["check", "--config", "/nonexistent/garrison.kdl"])
        .output()
        .expect("run garrison");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/garrison.kdl"));
}
