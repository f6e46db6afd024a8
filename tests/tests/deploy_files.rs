//! The deployment files, checked without a Docker engine: the compose file
//! and the Dockerfile against the contract, the workspace and the README.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_norway::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

fn compose() -> Value {
    let mut value: Value =
        serde_norway::from_str(&read("docker-compose.yml")).expect("docker-compose.yml is YAML");
    value.apply_merge().expect("YAML merge keys resolve");
    // Merge keys inside services (`<<: *common-env`) need a second pass per service.
    if let Some(services) = value.get_mut("services").and_then(Value::as_mapping_mut) {
        for (_, service) in services.iter_mut() {
            service.apply_merge().unwrap();
            if let Some(env) = service.get_mut("environment") {
                env.apply_merge().unwrap();
            }
        }
    }
    value
}

/// Every `CALLSYNC_*` name in the README's configuration table.
fn documented_variables() -> BTreeSet<String> {
    let readme = read("README.md");
    let mut names = BTreeSet::new();
    for line in readme.lines().filter(|l| l.starts_with("| `CALLSYNC_")) {
        let first_cell = line.split('|').nth(1).unwrap();
        for part in first_cell.split('`').filter(|p| p.starts_with("CALLSYNC_")) {
            names.insert(part.to_owned());
        }
    }
    names
}

/// The variables named in the public contract.
const CONTRACT_VARIABLES: &[&str] = &[
    "CALLSYNC_AMQP_URL",
    "CALLSYNC_DATABASE_URL",
    "CALLSYNC_LOG",
    "CALLSYNC_LOG_FORMAT",
    "CALLSYNC_INGEST_ADDR",
    "CALLSYNC_MAX_BODY_BYTES",
    "CALLSYNC_VOICEDOCK_SECRET",
    "CALLSYNC_VOICEDOCK_TOKEN",
    "CALLSYNC_VOICEDOCK_TOLERANCE_SECS",
    "CALLSYNC_POSTCALL_TOKEN",
    "CALLSYNC_VOICEDOCK_ALLOW_UNAUTHENTICATED",
    "CALLSYNC_POSTCALL_ALLOW_UNAUTHENTICATED",
    "CALLSYNC_METRICS_ADDR",
    "CALLSYNC_CRM",
    "CALLSYNC_HUBSPOT_TOKEN",
    "CALLSYNC_HUBSPOT_BASE_URL",
    "CALLSYNC_PIPEDRIVE_TOKEN",
    "CALLSYNC_PIPEDRIVE_BASE_URL",
    "CALLSYNC_DEFAULT_REGION",
    "CALLSYNC_FOLLOW_UP_DUE",
    "CALLSYNC_PREFETCH",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `"CALLSYNC_..."` literal the services read, plus the per-source names.
fn variables_in_code() -> BTreeSet<String> {
    let mut files = Vec::new();
    for crate_dir in ["shared/src", "ingest/src", "worker/src"] {
        rust_files(&root().join(crate_dir), &mut files);
    }
    let mut names = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        // Unit tests use made-up names; only the code above them counts.
        let text = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (i, _) in text.match_indices("\"CALLSYNC_") {
            let name: String = text[i + 1..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            if name.len() > "CALLSYNC_".len() {
                names.insert(name);
            }
        }
    }
    for source in ["VOICEDOCK", "POSTCALL"] {
        names.insert(format!("CALLSYNC_{source}_TOKEN"));
        names.insert(format!("CALLSYNC_{source}_ALLOW_UNAUTHENTICATED"));
    }
    names.insert("CALLSYNC_VOICEDOCK_SECRET".to_owned());
    names.insert("CALLSYNC_VOICEDOCK_TOLERANCE_SECS".to_owned());
    names
}

#[test]
fn every_contract_variable_is_documented_in_the_readme() {
    let documented = documented_variables();
    let missing: Vec<_> = CONTRACT_VARIABLES
        .iter()
        .filter(|v| !documented.contains(**v))
        .collect();
    assert!(missing.is_empty(), "README lacks {missing:?}");
}

#[test]
fn every_variable_the_services_read_is_documented_in_the_readme() {
    let documented = documented_variables();
    let missing: Vec<_> = variables_in_code()
        .into_iter()
        .filter(|v| !documented.contains(v))
        .collect();
    assert!(missing.is_empty(), "README lacks {missing:?}");
}

#[test]
fn the_compose_file_runs_every_service_with_a_healthcheck() {
    let compose = compose();
    let services = compose["services"].as_mapping().expect("services");
    let names: BTreeSet<&str> = services.keys().filter_map(Value::as_str).collect();
    for required in ["rabbitmq", "postgres", "ingest", "worker", "crm-sim"] {
        assert!(names.contains(required), "compose lacks service {required}");
    }
    for (name, service) in services {
        let test = &service["healthcheck"]["test"];
        assert!(
            test.as_sequence().is_some_and(|t| !t.is_empty()),
            "{name:?} has no healthcheck"
        );
    }
}

#[test]
fn ingest_and_workers_wait_for_healthy_dependencies() {
    let compose = compose();
    for (service, dependencies) in [
        ("ingest", vec!["rabbitmq"]),
        ("worker", vec!["rabbitmq", "postgres"]),
    ] {
        for dependency in dependencies {
            assert_eq!(
                compose["services"][service]["depends_on"][dependency]["condition"].as_str(),
                Some("service_healthy"),
                "{service} must wait for a healthy {dependency}"
            );
        }
    }
}

#[test]
fn the_worker_runs_several_replicas_and_the_crm_is_chosen_by_environment() {
    let compose = compose();
    let worker = &compose["services"]["worker"];
    assert!(
        worker["deploy"]["replicas"]
            .as_u64()
            .is_some_and(|n| n >= 2)
    );
    let crm = worker["environment"]["CALLSYNC_CRM"].as_str().unwrap();
    assert!(
        crm.starts_with("${CALLSYNC_CRM"),
        "CALLSYNC_CRM comes from the operator's environment: {crm}"
    );
}

#[test]
fn every_variable_in_the_compose_file_is_documented() {
    let compose = compose();
    let documented = documented_variables();
    for (name, service) in compose["services"].as_mapping().unwrap() {
        let Some(env) = service["environment"].as_mapping() else {
            continue;
        };
        for key in env
            .keys()
            .filter_map(Value::as_str)
            .filter(|k| k.starts_with("CALLSYNC_"))
        {
            assert!(
                documented.contains(key),
                "{name:?} sets {key}, which the README does not document"
            );
        }
    }
}

#[test]
fn compose_commands_name_binaries_the_image_builds() {
    let dockerfile = read("deploy/Dockerfile");
    let compose = compose();
    for (name, service) in compose["services"].as_mapping().unwrap() {
        let Some(command) = service["command"].as_sequence() else {
            continue;
        };
        let binary = command[0].as_str().unwrap();
        assert!(
            dockerfile.contains(&format!("--bin {binary}")),
            "{name:?} runs {binary}, which deploy/Dockerfile does not build"
        );
        let check = service["healthcheck"]["test"].as_sequence().unwrap();
        if check[1].as_str() == Some(binary) {
            assert_eq!(check[2].as_str(), Some("healthcheck"));
        }
    }
}

#[test]
fn the_image_is_multi_stage_and_runs_as_a_non_root_user() {
    let dockerfile = read("deploy/Dockerfile");
    let stages = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .count();
    assert!(stages >= 2, "build and runtime stages");
    let user = dockerfile
        .lines()
        .rfind(|l| l.starts_with("USER "))
        .expect("a USER instruction");
    let name = user["USER ".len()..].split(':').next().unwrap().trim();
    assert!(
        name != "root" && name != "0",
        "the runtime user is root: {user}"
    );
    assert!(
        dockerfile.contains("--locked"),
        "the image builds from Cargo.lock"
    );
}
