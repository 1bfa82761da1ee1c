//! The manifests in `deploy/` hang together: every file parses, the kinds are what the README
//! says, names and references line up (Secrets, keys, Services, namespace), every variable
//! the manifest requires is provided, and the runtime config in the Secret is the one in
//! `deploy/runtime-config.toml` and parses with the harness's own code.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ml_e2e::env::{manifest_path, workspace_root};
use ml_harness::manifest::Manifest;
use ml_harness::runtime_config::{RuntimeConfig, StoreConfig};
use serde::Deserialize;
use serde_json::Value;

const NAMESPACE: &str = "ml-connector";

fn deploy_dir() -> PathBuf {
    workspace_root().join("deploy")
}

/// Every YAML document of every file in `deploy/`, with the file it came from.
fn documents() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy_dir())
        .expect("deploy/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut docs = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        for doc in serde_norway::Deserializer::from_str(&text) {
            let value =
                Value::deserialize(doc).unwrap_or_else(|e| panic!("{name} is not valid YAML: {e}"));
            if !value.is_null() {
                docs.push((name.clone(), value));
            }
        }
    }
    docs
}

fn find<'a>(docs: &'a [(String, Value)], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .map(|(_, d)| d)
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} named {name} in deploy/"))
}

fn secret_keys(secret: &Value) -> BTreeMap<String, String> {
    secret["stringData"]
        .as_object()
        .expect("the example Secrets use stringData")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn every_manifest_parses_and_holds_the_kinds_the_readme_names() {
    let docs = documents();
    let mut kinds: Vec<String> = docs
        .iter()
        .map(|(_, d)| d["kind"].as_str().unwrap().to_string())
        .collect();
    kinds.sort();
    kinds.dedup();
    assert_eq!(
        kinds,
        [
            "CronJob",
            "Namespace",
            "Secret",
            "Service",
            "SpinApp",
            "StatefulSet"
        ]
    );
    for (file, d) in &docs {
        assert!(d["apiVersion"].is_string(), "{file}: apiVersion");
        if d["kind"] != "Namespace" {
            assert_eq!(
                d["metadata"]["namespace"], NAMESPACE,
                "{file}: {} {} is in the connector's namespace",
                d["kind"], d["metadata"]["name"]
            );
        }
    }
    find(&docs, "Namespace", NAMESPACE);
    let app = find(&docs, "SpinApp", "ml-connector");
    assert_eq!(app["apiVersion"], "core.spinkube.dev/v1alpha1");
    assert!(
        app["spec"]["replicas"].as_i64().unwrap() >= 2,
        "several replicas"
    );
    assert_eq!(
        app["spec"]["checks"]["readiness"]["httpGet"]["path"],
        "/health"
    );
}

#[test]
fn the_spinapp_gets_every_required_variable_from_the_variables_secret() {
    let docs = documents();
    let app = find(&docs, "SpinApp", "ml-connector");
    let secret = secret_keys(find(&docs, "Secret", "ml-connector-variables"));
    let manifest = Manifest::load(&manifest_path()).unwrap();
    let mut provided = Vec::new();
    for var in app["spec"]["variables"].as_array().unwrap() {
        let name = var["name"].as_str().unwrap();
        assert!(
            manifest.variables.contains_key(name),
            "`{name}` is not a variable of spin.toml"
        );
        let r = &var["valueFrom"]["secretKeyRef"];
        assert_eq!(r["name"], "ml-connector-variables", "{name}");
        let key = r["key"].as_str().unwrap();
        assert!(secret.contains_key(key), "the Secret has no key `{key}`");
        provided.push(name.to_string());
    }
    for (name, decl) in &manifest.variables {
        if decl.required {
            assert!(
                provided.contains(name),
                "required variable `{name}` is not set by the SpinApp"
            );
        }
    }
}

#[test]
fn the_runtime_config_secret_is_deploy_runtime_config_and_points_at_the_redis_service() {
    let docs = documents();
    let app = find(&docs, "SpinApp", "ml-connector");
    let name = app["spec"]["runtimeConfig"]["loadFromSecret"]
        .as_str()
        .unwrap();
    let secret = secret_keys(find(&docs, "Secret", name));
    let in_secret = secret
        .get("runtime-config.toml")
        .expect("SpinKube reads the key runtime-config.toml");
    let file = deploy_dir().join("runtime-config.toml");
    let config = RuntimeConfig::load(&file).unwrap();
    let from_secret =
        RuntimeConfig::parse(in_secret, Path::new("/"), Path::new("the Secret")).unwrap();
    assert_eq!(
        config, from_secret,
        "the Secret holds deploy/runtime-config.toml"
    );
    let manifest = Manifest::load(&manifest_path()).unwrap();
    config
        .check_labels(&manifest.component.key_value_stores)
        .unwrap();
    let Some(StoreConfig::Redis { url }) = config.stores.get("default") else {
        panic!("the default store is Redis: {config:?}")
    };
    let url = url::Url::parse(url).unwrap();
    let service = find(&docs, "Service", "ml-connector-redis");
    assert_eq!(
        url.host_str(),
        Some("ml-connector-redis.ml-connector.svc.cluster.local")
    );
    assert_eq!(
        url.port(),
        service["spec"]["ports"][0]["port"]
            .as_u64()
            .map(|p| p as u16)
    );
    let set = find(&docs, "StatefulSet", "ml-connector-redis");
    assert_eq!(
        set["spec"]["template"]["metadata"]["labels"]["app"],
        service["spec"]["selector"]["app"]
    );
    let args: Vec<&str> = set["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        args.windows(2).any(|w| w == ["--appendfsync", "always"]),
        "every write on disk before Redis answers: {args:?}"
    );
}

#[test]
fn the_cronjob_calls_retry_due_on_the_spinapp_service_with_the_admin_token() {
    let docs = documents();
    let job = find(&docs, "CronJob", "ml-connector-retry-due");
    let container = &job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
    let token = &container["env"][0];
    assert_eq!(token["name"], "ADMIN_TOKEN");
    assert_eq!(
        token["valueFrom"]["secretKeyRef"]["name"],
        "ml-connector-variables"
    );
    assert_eq!(token["valueFrom"]["secretKeyRef"]["key"], "admin_token");
    let command = container["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        command.contains("-X POST")
            && command.contains("Bearer $ADMIN_TOKEN")
            && command
                .contains("http://ml-connector.ml-connector.svc.cluster.local/admin/retry-due"),
        "{command}"
    );
    assert_eq!(job["spec"]["concurrencyPolicy"], "Forbid");
}
