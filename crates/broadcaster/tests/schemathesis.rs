//! schemathesis (PyPI) against `/openapi.json`: generated requests to every documented operation
//! (examples, coverage and fuzzing phases, bounded) must never get a 5xx and every response must
//! match its documented schema (`not_a_server_error`, `response_schema_conformance`).
//!
//! The `st` CLI comes from `WA_SCHEMATHESIS_ST` (set by `scripts/services/50-schemathesis.sh`),
//! else the venv that script builds; missing, the test fails (it is never skipped).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/harness.rs"]
mod harness;

use std::path::PathBuf;
use std::time::Duration;

use harness::Running;

fn st_cli() -> PathBuf {
    let st = std::env::var_os("WA_SCHEMATHESIS_ST").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop/schemathesis/.venv/bin/st")
    });
    assert!(
        st.is_file(),
        "schemathesis is not installed at {} (run scripts/test, or source scripts/services/50-schemathesis.sh)",
        st.display()
    );
    st
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_has_no_server_errors_and_no_schema_violations() {
    let st = st_cli();
    let srv = Running::start(31).await;
    let key = srv.tenant("fuzz").await;
    let report = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(&st);
    cmd.arg("run")
        .arg(format!("http://{}/openapi.json", srv.addr))
        .args(["--checks", "not_a_server_error,response_schema_conformance"])
        .args(["--phases", "examples,coverage,fuzzing"])
        // One worker: schemathesis' workers are threads, and CPython 3.11's `ast.parse` (which
        // hypothesis calls to describe filters) shares its recursion counter between threads,
        // so two workers occasionally die with "AST constructor recursion depth mismatch"
        // (cpython#106905), an error in the tool, not in our API.
        .args(["--max-examples", "8", "--seed", "7", "--workers", "1"])
        .args(["--request-timeout", "30", "--no-color"])
        .arg("--header")
        .arg(format!("Authorization: Bearer {key}"))
        .args(["--generation-database", "none"])
        .arg("--report-dir")
        .arg(report.path())
        .current_dir(report.path())
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_HOOKS", "")
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(600), cmd.output())
        .await
        .expect("schemathesis finished within 10 minutes")
        .expect("schemathesis runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The run's summary, for the CI log.
    let lines: Vec<&str> = stdout.lines().collect();
    eprintln!("{}", lines[lines.len().saturating_sub(40)..].join("\n"));
    assert!(out.status.success(), "schemathesis found problems ({}):\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains("passed"), "no operation was tested:\n{stdout}\n{stderr}");
    srv.stop().await;
}
