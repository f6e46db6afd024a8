//! The deployment files, checked without a Docker engine: the compose file
//! and the Dockerfile against the contract, the workspace and the operations
//! guide (`docs/operations.md`); and the documentation against the code: its
//! variable table and defaults, its links, and the claims a reader acts on.

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

/// The guide whose configuration table documents every variable.
const OPERATIONS_GUIDE: &str = "docs/operations.md";

/// Every `CALLSYNC_*` name in the operations guide's configuration table.
fn documented_variables() -> BTreeSet<String> {
    let guide = read(OPERATIONS_GUIDE);
    let mut names = BTreeSet::new();
    for line in guide.lines().filter(|l| l.starts_with("| `CALLSYNC_")) {
        let first_cell = line.split('|').nth(1).unwrap();
        for part in first_cell.split('`').filter(|p| p.starts_with("CALLSYNC_")) {
            // A row for `CALLSYNC_<SOURCE>_...` documents it for every
            // registered source.
            if part.contains("<SOURCE>") {
                for source in callsync_shared::Source::ALL {
                    let name = source.as_str().to_uppercase();
                    names.insert(part.replace("<SOURCE>", &name));
                }
            } else {
                names.insert(part.to_owned());
            }
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
    "CALLSYNC_CRM_SEARCH_RATE",
    "CALLSYNC_VAPI_SECRET",
    "CALLSYNC_VAPI_TOKEN",
    "CALLSYNC_RETELL_API_KEY",
    "CALLSYNC_ELEVENLABS_SECRET",
    "CALLSYNC_BLAND_SECRET",
    "CALLSYNC_BLAND_TOKEN",
    "CALLSYNC_VAPI_ALLOW_UNAUTHENTICATED",
    "CALLSYNC_RETELL_ALLOW_UNAUTHENTICATED",
    "CALLSYNC_ELEVENLABS_ALLOW_UNAUTHENTICATED",
    "CALLSYNC_BLAND_ALLOW_UNAUTHENTICATED",
    "CALLSYNC_VAPI_API_KEY",
    "CALLSYNC_ELEVENLABS_API_KEY",
    "CALLSYNC_BLAND_API_KEY",
    "CALLSYNC_VAPI_API_URL",
    "CALLSYNC_RETELL_API_URL",
    "CALLSYNC_ELEVENLABS_API_URL",
    "CALLSYNC_BLAND_API_URL",
    "CALLSYNC_RECONCILE_EVERY",
    "CALLSYNC_RECONCILE_LOOKBACK",
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

/// The text of every Rust file of the services (shared, ingest and
/// worker): where the variables they read and the metrics they export are
/// named.
fn service_sources() -> Vec<String> {
    let mut files = Vec::new();
    for crate_dir in ["shared/src", "ingest/src", "worker/src"] {
        rust_files(&root().join(crate_dir), &mut files);
    }
    files
        .iter()
        .map(|file| std::fs::read_to_string(file).unwrap())
        .collect()
}

/// Every `"CALLSYNC_..."` literal the services read, plus the per-source names.
fn variables_in_code() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for text in service_sources() {
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
    // Names the registry builds per source rather than spelling out: each
    // credential's variable, the replay window where the scheme has one.
    for source in callsync_shared::Source::ALL {
        let provider = source.provider();
        names.insert(source.var("ALLOW_UNAUTHENTICATED"));
        for credential in provider.credentials {
            names.insert(source.var(credential.suffix));
        }
        if provider.tolerance_secs.is_some() {
            names.insert(source.var("TOLERANCE_SECS"));
        }
    }
    // The options of Vapi's HMAC credential, named by their suffixes.
    for suffix in callsync_shared::sources::vapi::OPTION_SUFFIXES {
        names.insert(callsync_shared::Source::Vapi.var(suffix));
    }
    // Each CRM's own variables are named after it (`vars.secret("TOKEN")`
    // in its adapter reads `CALLSYNC_<NAME>_TOKEN`): the suffixes its
    // adapter file asks for, named the way the worker names them.
    let env = callsync_shared::config::Env::default();
    for spec in callsync_worker::crm::REGISTRY {
        let text = read(&format!("worker/src/crm/{}.rs", spec.name));
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        let vars = callsync_worker::crm::Vars::new(&env, spec.name);
        for (i, _) in code.match_indices("vars.") {
            // `vars.<method>("<SUFFIX>"`: a literal first argument.
            let call = &code[i + "vars.".len()..];
            let method = call.len()
                - call
                    .trim_start_matches(|c: char| c.is_ascii_lowercase() || c == '_')
                    .len();
            let Some(argument) = call[method..].strip_prefix("(\"") else {
                continue;
            };
            let suffix: String = argument
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            if !suffix.is_empty() && argument[suffix.len()..].starts_with('"') {
                names.insert(vars.name(&suffix));
            }
        }
    }
    for source in callsync_shared::Source::ALL {
        if callsync_worker::reconcile::api(source).is_some() {
            let source = source.as_str().to_uppercase();
            names.insert(format!("CALLSYNC_{source}_API_KEY"));
            names.insert(format!("CALLSYNC_{source}_API_URL"));
        }
    }
    names
}

#[test]
fn every_contract_variable_is_documented_in_the_operations_guide() {
    let documented = documented_variables();
    let missing: Vec<_> = CONTRACT_VARIABLES
        .iter()
        .filter(|v| !documented.contains(**v))
        .collect();
    assert!(missing.is_empty(), "{OPERATIONS_GUIDE} lacks {missing:?}");
}

#[test]
fn every_variable_the_services_read_is_documented_in_the_operations_guide() {
    let documented = documented_variables();
    let missing: Vec<_> = variables_in_code()
        .into_iter()
        .filter(|v| !documented.contains(v))
        .collect();
    assert!(missing.is_empty(), "{OPERATIONS_GUIDE} lacks {missing:?}");
}

#[test]
fn the_compose_file_follows_the_compose_specification() {
    // The same check `docker compose config` makes of the file's shape, done
    // with the specification's types because no Docker engine runs here.
    let typed: docker_compose_types::Compose =
        serde_norway::from_value(compose()).unwrap_or_else(|e| {
            panic!("docker-compose.yml does not follow the Compose Specification: {e}")
        });
    let services = &typed.services.0;
    assert!(services.contains_key("worker"));
    let worker = services["worker"].as_ref().unwrap();
    assert_eq!(worker.deploy.as_ref().and_then(|d| d.replicas), Some(3));
}

/// The Compose Specification's own JSON schema (vendored under
/// `tests/specs/compose`), which is what `docker compose config` validates
/// against before it interpolates anything.
fn compose_schema() -> jsonschema::Validator {
    let schema: serde_json::Value =
        serde_json::from_str(&read("tests/specs/compose/compose-spec.json"))
            .expect("the vendored compose schema is JSON");
    jsonschema::validator_for(&schema).expect("the compose schema compiles")
}

fn schema_errors(validator: &jsonschema::Validator, compose: &Value) -> Vec<String> {
    let instance = serde_json::to_value(compose).expect("the compose file maps to JSON");
    validator
        .iter_errors(&instance)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

#[test]
fn the_compose_file_is_valid_against_the_official_compose_schema() {
    let errors = schema_errors(&compose_schema(), &compose());
    assert!(
        errors.is_empty(),
        "docker-compose.yml breaks the Compose Specification schema:\n{}",
        errors.join("\n")
    );
}

#[test]
fn the_compose_schema_check_rejects_a_misspelt_key_and_an_unknown_condition() {
    // Guards the check above against passing vacuously.
    let validator = compose_schema();
    let mut misspelt = compose();
    misspelt["services"]["worker"]["healthcheck"]
        .as_mapping_mut()
        .unwrap()
        .insert("intervall".into(), "10s".into());
    assert!(!schema_errors(&validator, &misspelt).is_empty());
    let mut unknown_condition = compose();
    unknown_condition["services"]["worker"]["depends_on"]["postgres"]["condition"] =
        "service_ready".into();
    assert!(!schema_errors(&validator, &unknown_condition).is_empty());
}

#[test]
fn the_compose_file_runs_every_service_with_a_healthcheck() {
    let compose = compose();
    let services = compose["services"].as_mapping().expect("services");
    let names: BTreeSet<&str> = services.keys().filter_map(Value::as_str).collect();
    for required in [
        "rabbitmq", "postgres", "ingest", "worker", "console", "crm-sim",
    ] {
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
        ("console", vec!["rabbitmq", "postgres"]),
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

/// Each variable of the operations guide's configuration table with the
/// services its "used by" column names. A `CALLSYNC_<SOURCE>_...` row counts
/// for every source it can apply to: a replay window only where the source's
/// signature has a timestamp, a call-list key or URL only where its platform
/// has a call-list API (for the others the worker refuses one).
fn documented_readers() -> Vec<(String, Vec<&'static str>)> {
    let guide = read(OPERATIONS_GUIDE);
    let mut rows = Vec::new();
    for line in guide.lines().filter(|l| l.starts_with("| `CALLSYNC_")) {
        let cells: Vec<&str> = line.split('|').collect();
        let readers = match cells[3].trim() {
            "both" => vec!["ingest", "worker"],
            "ingest" => vec!["ingest"],
            "worker" => vec!["worker"],
            "console" => vec!["console"],
            other => panic!("{OPERATIONS_GUIDE}: unknown \"used by\" {other:?} in {line}"),
        };
        for part in cells[1].split('`').filter(|p| p.starts_with("CALLSYNC_")) {
            let Some(suffix) = part.strip_prefix("CALLSYNC_<SOURCE>_") else {
                rows.push((part.to_owned(), readers.clone()));
                continue;
            };
            for source in callsync_shared::Source::ALL {
                let applies = match suffix {
                    "TOLERANCE_SECS" => source.provider().tolerance_secs.is_some(),
                    "API_KEY" | "API_URL" => callsync_worker::reconcile::api(source).is_some(),
                    _ => true,
                };
                if applies {
                    rows.push((source.var(suffix), readers.clone()));
                }
            }
        }
    }
    rows
}

/// Set in the compose file itself, not from `.env`: the addresses and the
/// directory its port mappings and volume are written for.
const FIXED_BY_THE_COMPOSE_FILE: &[&str] = &[
    "CALLSYNC_CONSOLE_ADDR",
    "CALLSYNC_INGEST_ADDR",
    "CALLSYNC_METRICS_ADDR",
    "CALLSYNC_SPOOL_DIR",
];

#[test]
fn every_variable_a_service_reads_is_passed_through_from_dot_env() {
    // An operator configures `.env` and never edits the compose file: each
    // variable reaches the services that read it as `${NAME…}`.
    let compose = compose();
    let mut missing = Vec::new();
    for (name, readers) in documented_readers() {
        for service in readers {
            let value = &compose["services"][service]["environment"][name.as_str()];
            let passed = value.as_str().is_some_and(|v| {
                v.starts_with(&format!("${{{name}:-")) || v == format!("${{{name}}}")
            });
            let fixed = FIXED_BY_THE_COMPOSE_FILE.contains(&name.as_str()) && !value.is_null();
            if !passed && !fixed {
                missing.push(format!("{service}: {name} (is {value:?})"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docker-compose.yml does not pass these through from .env:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_pass_through_check_covers_the_variables_the_code_reads() {
    // Guards the check above: its list is the guide's table, which must hold
    // every variable the services read, and each for the right service.
    let readers = documented_readers();
    let listed: BTreeSet<&str> = readers.iter().map(|(name, _)| name.as_str()).collect();
    for name in [
        "CALLSYNC_SALESFORCE_INSTANCE_URL",
        "CALLSYNC_VAPI_SECRET",
        "CALLSYNC_BLAND_API_KEY",
        "CALLSYNC_ELEVENLABS_TOLERANCE_SECS",
    ] {
        assert!(
            listed.contains(name),
            "{name} is not in the pass-through check"
        );
    }
    assert!(!listed.contains("CALLSYNC_BLAND_TOLERANCE_SECS"));
    assert!(!listed.contains("CALLSYNC_VOICEDOCK_API_KEY"));
    let retell = readers
        .iter()
        .find(|(name, _)| name == "CALLSYNC_RETELL_API_KEY")
        .map(|(_, services)| services.clone());
    assert_eq!(retell, Some(vec!["ingest", "worker"]));
    let in_code = variables_in_code();
    for name in &in_code {
        assert!(
            listed.contains(name.as_str())
                || name.ends_with("_API_KEY")
                || name.ends_with("_API_URL")
                || name.ends_with("_TOLERANCE_SECS"),
            "{name} is read but not in the pass-through check"
        );
    }
}

#[test]
fn the_demo_lives_in_dot_env_and_the_compose_file_carries_no_crm_of_its_own() {
    // Replacing the demo block of `.env` is the whole switch to a real CRM:
    // nothing in the compose file would keep pointing the worker at crm-sim.
    let dotenv = read(".env");
    for line in [
        "CALLSYNC_CRM=hubspot",
        "CALLSYNC_HUBSPOT_BASE_URL=http://crm-sim:8090",
        "CALLSYNC_CRM_INDEX_LAG=0s",
    ] {
        assert!(
            dotenv.lines().any(|l| l.trim() == line),
            ".env lacks {line}"
        );
    }
    let compose = read("docker-compose.yml");
    assert!(
        !compose.contains("crm-sim:8090}"),
        "the compose file defaults a CRM URL to crm-sim"
    );
    assert!(
        !compose.contains("CALLSYNC_CRM_INDEX_LAG:-0s"),
        "the compose file defaults the index lag to 0s"
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
                "{name:?} sets {key}, which {OPERATIONS_GUIDE} does not document"
            );
        }
    }
}

#[test]
fn compose_commands_name_binaries_the_image_builds() {
    let dockerfile = read("deploy/Dockerfile");
    let compose = compose();
    for (name, service) in compose["services"].as_mapping().unwrap() {
        if service["image"].as_str() != Some("callsync:local") {
            continue;
        }
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

/// Every YAML document of every file under `deploy/k8s`.
fn kubernetes_documents() -> Vec<(String, Value)> {
    let mut documents = Vec::new();
    let dir = root().join("deploy/k8s");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for document in serde_norway::Deserializer::from_str(&text) {
            let value = <Value as serde::Deserialize>::deserialize(document)
                .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", file.display()));
            if !value.is_null() {
                documents.push((
                    file.file_name().unwrap().to_string_lossy().into_owned(),
                    value,
                ));
            }
        }
    }
    documents
}

fn of_kind(kind: &str) -> Vec<Value> {
    kubernetes_documents()
        .into_iter()
        .filter(|(_, d)| d["kind"].as_str() == Some(kind))
        .map(|(_, d)| d)
        .collect()
}

#[test]
fn every_kubernetes_document_parses_and_is_listed_in_the_kustomization() {
    let documents = kubernetes_documents();
    assert!(documents.len() >= 12, "found {} documents", documents.len());
    for (file, document) in &documents {
        assert!(
            document["kind"].as_str().is_some(),
            "{file}: a document without kind"
        );
        assert!(
            document["apiVersion"].as_str().is_some(),
            "{file}: a document without apiVersion"
        );
    }
    let kustomization = of_kind("Kustomization").pop().expect("kustomization.yaml");
    let listed: BTreeSet<&str> = kustomization["resources"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for (file, _) in &documents {
        assert!(
            file == "kustomization.yaml" || listed.contains(file.as_str()),
            "{file} is not in kustomization.yaml"
        );
    }
}

#[test]
fn kubernetes_workloads_probe_readyz_and_healthz_on_the_port_they_listen_on() {
    let mut workloads = of_kind("Deployment");
    workloads.extend(of_kind("StatefulSet"));
    assert_eq!(workloads.len(), 3, "ingest, worker and console");
    for workload in workloads {
        let name = workload["metadata"]["name"].as_str().unwrap().to_owned();
        let container = &workload["spec"]["template"]["spec"]["containers"][0];
        let port_name = container["readinessProbe"]["httpGet"]["port"]
            .as_str()
            .unwrap();
        assert_eq!(
            container["readinessProbe"]["httpGet"]["path"].as_str(),
            Some("/readyz"),
            "{name}"
        );
        assert_eq!(
            container["livenessProbe"]["httpGet"]["path"].as_str(),
            Some("/healthz"),
            "{name}"
        );
        let port =
            container["ports"]
                .as_sequence()
                .unwrap()
                .iter()
                .find(|p| p["name"].as_str() == Some(port_name))
                .unwrap_or_else(|| {
                    panic!("{name}: probe port {port_name} is not a container port")
                })["containerPort"]
                .as_u64()
                .unwrap();
        let addr_var = if name.contains("ingest") {
            "CALLSYNC_INGEST_ADDR"
        } else if name.contains("console") {
            "CALLSYNC_CONSOLE_ADDR"
        } else {
            "CALLSYNC_METRICS_ADDR"
        };
        let addr = container["env"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|e| e["name"].as_str() == Some(addr_var))
            .unwrap_or_else(|| panic!("{name} sets no {addr_var}"))["value"]
            .as_str()
            .unwrap();
        assert!(
            addr.ends_with(&format!(":{port}")),
            "{name}: {addr_var}={addr} but the probes use port {port}"
        );
        assert!(
            container["resources"]["requests"]["memory"]
                .as_str()
                .is_some(),
            "{name}: resources"
        );
        let grace = workload["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap();
        assert!(
            grace > 25,
            "{name}: the pod must outlive CALLSYNC_SHUTDOWN_GRACE"
        );
    }
}

#[test]
fn both_kubernetes_workloads_have_a_disruption_budget() {
    let budgets: BTreeSet<String> = of_kind("PodDisruptionBudget")
        .iter()
        .map(|p| {
            p["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        budgets,
        BTreeSet::from(["callsync-ingest".to_owned(), "callsync-worker".to_owned()])
    );
}

#[test]
fn every_callsync_variable_in_kubernetes_is_documented() {
    let documented = documented_variables();
    let mut names = Vec::new();
    for (_, document) in kubernetes_documents() {
        for section in ["data", "stringData"] {
            if let Some(map) = document[section].as_mapping() {
                names.extend(map.keys().filter_map(Value::as_str).map(str::to_owned));
            }
        }
        if let Some(containers) = document["spec"]["template"]["spec"]["containers"].as_sequence() {
            for container in containers {
                for env in container["env"].as_sequence().into_iter().flatten() {
                    names.push(env["name"].as_str().unwrap().to_owned());
                }
            }
        }
    }
    let undocumented: Vec<_> = names
        .iter()
        .filter(|n| n.starts_with("CALLSYNC_") && !documented.contains(*n))
        .collect();
    assert!(undocumented.is_empty(), "{undocumented:?}");
}

#[test]
fn keda_scales_the_worker_on_the_topologys_work_queue() {
    let scaled = of_kind("ScaledObject").pop().expect("a KEDA ScaledObject");
    let target = scaled["spec"]["scaleTargetRef"]["name"].as_str().unwrap();
    assert!(
        of_kind("Deployment")
            .iter()
            .any(|d| d["metadata"]["name"].as_str() == Some(target))
    );
    let trigger = &scaled["spec"]["triggers"][0];
    assert_eq!(trigger["type"].as_str(), Some("rabbitmq"));
    assert_eq!(
        trigger["metadata"]["queueName"].as_str(),
        Some(
            callsync_shared::topology::Topology::default()
                .calls_queue()
                .as_str()
        )
    );
    let auth = trigger["authenticationRef"]["name"].as_str().unwrap();
    assert!(
        of_kind("TriggerAuthentication")
            .iter()
            .any(|t| t["metadata"]["name"].as_str() == Some(auth))
    );
}

#[test]
fn rabbitmq_runs_as_a_three_node_cluster() {
    let cluster = of_kind("RabbitmqCluster").pop().expect("a RabbitmqCluster");
    assert_eq!(cluster["spec"]["replicas"].as_u64(), Some(3));
}

/// Metric names the services export, from the `metrics::` macros.
fn exported_metrics() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for text in service_sources() {
        for (i, _) in text.match_indices("!(\"callsync_") {
            let name: String = text[i + 3..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            names.insert(name);
        }
        for (i, _) in text.match_indices("!(\n") {
            let rest = text[i + 3..].trim_start();
            if let Some(rest) = rest.strip_prefix('"') {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if name.starts_with("callsync_") {
                    names.insert(name);
                }
            }
        }
    }
    names
}

/// `callsync_*` names in a PromQL text, without histogram suffixes.
fn metrics_in(promql: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (i, _) in promql.match_indices("callsync_") {
        let name: String = promql[i..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        let base = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(&name)
            .to_owned();
        found.push(base);
    }
    found
}

#[test]
fn the_dashboard_and_the_alerts_only_use_metrics_the_services_export() {
    let exported = exported_metrics();
    assert!(
        exported.contains("callsync_worker_messages_total"),
        "{exported:?}"
    );
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/dashboards/callsync.json")).unwrap();
    let mut used = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            used.extend(metrics_in(target["expr"].as_str().unwrap()));
        }
    }
    let alerts: Value = serde_norway::from_str(&read("deploy/prometheus/alerts.yml")).unwrap();
    let rules = alerts["groups"][0]["rules"].as_sequence().unwrap();
    let names: BTreeSet<&str> = rules.iter().filter_map(|r| r["alert"].as_str()).collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "CallsyncParkedMessages",
            "CallsyncWorkerPaused",
            "CallsyncSyncLagHigh",
            "CallsyncNotReady",
            "CallsyncCrmRateLimited",
            "CallsyncWebhooksLost",
            "CallsyncReconcileStalled"
        ])
    );
    for rule in rules {
        used.extend(metrics_in(rule["expr"].as_str().unwrap()));
    }
    let unknown: Vec<_> = used.iter().filter(|m| !exported.contains(*m)).collect();
    assert!(unknown.is_empty(), "used but not exported: {unknown:?}");
}

#[test]
fn prometheus_scrapes_both_services_and_loads_the_alert_rules() {
    let config: Value = serde_norway::from_str(&read("deploy/prometheus/prometheus.yml")).unwrap();
    assert_eq!(
        config["rule_files"][0].as_str(),
        Some("/etc/prometheus/alerts.yml")
    );
    let jobs: Vec<(String, u64)> = config["scrape_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|job| {
            let sd = &job["dns_sd_configs"][0];
            (
                sd["names"][0].as_str().unwrap().to_owned(),
                sd["port"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        jobs,
        vec![("ingest".to_owned(), 8080), ("worker".to_owned(), 9090)]
    );
    let compose = compose();
    for service in ["prometheus", "grafana"] {
        assert!(
            compose["services"][service].is_mapping(),
            "compose runs {service}"
        );
    }
}

#[test]
fn the_rabbitmq_definitions_create_the_user_and_vhost_the_services_use() {
    let definitions: serde_json::Value =
        serde_json::from_str(&read("deploy/rabbitmq/definitions.json")).unwrap();
    let compose = compose();
    let url = compose["services"]["worker"]["environment"]["CALLSYNC_AMQP_URL"]
        .as_str()
        .unwrap();
    let default = url
        .strip_prefix("${CALLSYNC_AMQP_URL:-")
        .and_then(|rest| rest.strip_suffix('}'))
        .expect("the AMQP URL defaults to the definitions' user");
    let uri: lapin::uri::AMQPUri = default.parse().unwrap();
    assert_eq!(
        definitions["users"][0]["name"].as_str(),
        Some(uri.authority.userinfo.username.as_str())
    );
    assert_eq!(
        definitions["vhosts"][0]["name"].as_str(),
        Some(uri.vhost.as_str())
    );
    assert_eq!(
        definitions["permissions"][0]["vhost"].as_str(),
        Some(uri.vhost.as_str())
    );
}

#[test]
fn docker_compose_up_runs_the_demo_crm_by_default() {
    let compose = compose();
    let profiles = compose["services"]["crm-sim"]["profiles"]
        .as_sequence()
        .unwrap();
    assert_eq!(profiles[0].as_str(), Some("crm-sim"));
    let dotenv = read(".env");
    assert!(
        dotenv
            .lines()
            .any(|l| l.trim() == "COMPOSE_PROFILES=crm-sim"),
        "{dotenv}"
    );
    assert_eq!(
        compose["services"]["worker"]["depends_on"]["crm-sim"]["required"].as_bool(),
        Some(false),
        "the worker also starts when the profile is off"
    );
}

/// The operations guide's default for `var`, per CRM: each backticked
/// value names the CRMs it applies to in the parentheses after it.
fn documented_defaults_per_crm(var: &str) -> Vec<(String, String)> {
    let guide = read(OPERATIONS_GUIDE);
    let row = guide
        .lines()
        .find(|l| l.starts_with(&format!("| `{var}` |")))
        .unwrap_or_else(|| panic!("{OPERATIONS_GUIDE} has no row for {var}"));
    let cell = row.split('|').nth(2).unwrap();
    let parts: Vec<&str> = cell.split('`').collect();
    let mut defaults = Vec::new();
    for pair in parts[1..].chunks(2) {
        let [value, after] = pair else { continue };
        let applies_to = after
            .trim_start()
            .strip_prefix('(')
            .and_then(|a| a.split(')').next())
            .unwrap_or_default()
            .to_lowercase();
        for spec in callsync_worker::crm::REGISTRY {
            if applies_to.contains(spec.name) {
                defaults.push((spec.name.to_owned(), (*value).to_owned()));
            }
        }
    }
    defaults
}

/// The operations guide's one default for `var` that names `crm`.
fn documented_default(var: &str, crm: &str) -> String {
    let stated: Vec<String> = documented_defaults_per_crm(var)
        .into_iter()
        .filter(|(named, _)| named == crm)
        .map(|(_, value)| value)
        .collect();
    assert_eq!(stated.len(), 1, "{var} for {crm}: {stated:?}");
    stated[0].clone()
}

#[test]
fn the_operations_guide_states_each_registered_crms_default_budgets_and_index_lag() {
    for spec in callsync_worker::crm::REGISTRY {
        assert_eq!(
            documented_default("CALLSYNC_CRM_RATE", spec.name),
            spec.default_rate,
            "{}",
            spec.name
        );
        assert_eq!(
            documented_default("CALLSYNC_CRM_SEARCH_RATE", spec.name),
            spec.default_search_rate,
            "{}",
            spec.name
        );
        let lag = documented_default("CALLSYNC_CRM_INDEX_LAG", spec.name);
        assert_eq!(
            callsync_shared::config::parse_duration(&lag).unwrap(),
            spec.default_index_lag,
            "{}",
            spec.name
        );
    }
}

/// The README and every guide under `docs/`.
fn documents() -> Vec<PathBuf> {
    fn markdown(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                markdown(&path, out);
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(path);
            }
        }
    }
    let mut files = vec![root().join("README.md")];
    markdown(&root().join("docs"), &mut files);
    files.sort();
    files
}

/// A document's lines outside fenced code blocks, where a `#` starts a
/// shell comment rather than a heading.
fn prose(text: &str) -> Vec<&str> {
    let mut in_code = false;
    text.lines()
        .filter(|line| {
            if line.trim_start().starts_with("```") {
                in_code = !in_code;
                return false;
            }
            !in_code
        })
        .collect()
}

/// The anchors a renderer gives a document's headings: lower case, spaces
/// as hyphens, punctuation dropped, a repeated one numbered.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut anchors = BTreeSet::new();
    for line in prose(text) {
        let Some(title) = line.strip_prefix('#').map(|t| t.trim_start_matches('#')) else {
            continue;
        };
        let slug: String = title
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let mut anchor = slug.clone();
        let mut n = 0;
        while anchors.contains(&anchor) {
            n += 1;
            anchor = format!("{slug}-{n}");
        }
        anchors.insert(anchor);
    }
    anchors
}

/// The targets of a document's Markdown links, code spans left out.
fn link_targets(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    for line in prose(text) {
        let without_code: String = line.split('`').step_by(2).collect();
        for (i, _) in without_code.match_indices("](") {
            let rest = &without_code[i + 2..];
            if let Some(end) = rest.find(')') {
                targets.push(rest[..end].to_owned());
            }
        }
    }
    targets
}

#[test]
fn every_relative_link_in_the_readme_and_the_guides_leads_somewhere() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in documents() {
        let text = std::fs::read_to_string(&file).unwrap();
        for target in link_targets(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let resolved = if path.is_empty() {
                file.clone()
            } else {
                file.parent().unwrap().join(path)
            };
            let name = file.strip_prefix(root()).unwrap().display().to_string();
            if !resolved.exists() {
                broken.push(format!("{name}: {target} (no such file)"));
            } else if !anchor.is_empty() {
                let heads = anchors(&std::fs::read_to_string(&resolved).unwrap());
                if !heads.contains(anchor) {
                    broken.push(format!("{name}: {target} (no such heading)"));
                }
            }
        }
    }
    assert!(
        checked > 50,
        "only {checked} links found: is the parser blind?"
    );
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_link_check_sees_a_missing_file_and_a_missing_heading() {
    // Guards the check above against passing vacuously.
    let text =
        "# Why `backon`, not backoff\n```sh\n# not a heading\n```\nSee [a](b.md#c), `[d](e)`.";
    assert_eq!(link_targets(text), vec!["b.md#c".to_owned()]);
    assert_eq!(
        anchors(text),
        BTreeSet::from(["why-backon-not-backoff".to_owned()])
    );
}

#[test]
fn every_registered_crm_has_a_set_up_guide_linked_from_the_readme() {
    let readme = read("README.md");
    for spec in callsync_worker::crm::REGISTRY {
        let guide = format!("docs/crm/{}.md", spec.name);
        assert!(root().join(&guide).is_file(), "{guide} is missing");
        assert!(
            readme.contains(&format!("]({guide})")),
            "the README's map does not link {guide}"
        );
    }
}

#[test]
fn the_readme_and_the_design_guide_say_why_retries_use_backon_and_not_backoff() {
    // The claims the text makes: backon is what the workspace uses,
    // backoff is not, and lapin already depends on backon.
    let manifest = read("Cargo.toml");
    assert!(
        manifest.lines().any(|l| l.starts_with("backon ")),
        "{manifest}"
    );
    assert!(!manifest.contains("backoff"), "{manifest}");
    let lock = read("Cargo.lock");
    let lapin = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"lapin\""))
        .expect("lapin in Cargo.lock");
    assert!(lapin.contains("\"backon\""), "{lapin}");
    for document in ["README.md", "docs/design.md"] {
        let text = read(document);
        for claim in ["`backon`", "`backoff`", "RUSTSEC-2025-0012"] {
            assert!(text.contains(claim), "{document} does not mention {claim}");
        }
    }
}

#[test]
fn the_readme_gives_the_test_command_ci_runs() {
    let ci = read(".ci/run");
    let readme = read("README.md");
    for command in ["scripts/services.sh", "cargo test --workspace"] {
        assert!(ci.lines().any(|l| l.trim() == command), "{ci}");
        assert!(
            readme.lines().any(|l| l.trim() == command),
            "the README does not give `{command}` on a line of its own"
        );
    }
}
