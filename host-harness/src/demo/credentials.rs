//! Whether the environment configures real credentials, and which variables the demo supplies
//! itself.

use crate::config::{VariableSource, env_name};
use crate::manifest::Manifest;

/// Variables the demo supplies itself; a value for them in the environment is ignored.
pub(super) const SIMULATED_VARIABLES: &[&str] = &[
    "bigcommerce_store_hash",
    "bigcommerce_access_token",
    "bigcommerce_api_base",
    "bigcommerce_webhook_secret",
    "bigcommerce_client_secret",
    "qbo_client_id",
    "qbo_client_secret",
    "qbo_realm_id",
    "qbo_refresh_token",
    "qbo_api_base",
    "qbo_oauth_base",
    "qbo_authorize_url",
    "qbo_redirect_uri",
    "encryption_key",
    "encryption_key_previous",
    "admin_token",
];

/// Whether the environment configures real credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// No required variable has a value: run the demo.
    None,
    /// Every required variable has a value: serve for real.
    Complete,
    /// Some are set, some are not: neither a real run nor a demo would be what the user meant.
    Partial {
        /// Environment variable names that are set.
        set: Vec<String>,
        /// Environment variable names still missing.
        missing: Vec<String>,
    },
}

impl Credentials {
    /// The error to show for [`Credentials::Partial`]: what is missing and the two ways out.
    pub fn partial_message(&self) -> Option<String> {
        match self {
            Credentials::Partial { set, missing } => Some(format!(
                "some credentials are configured ({}) but these are missing: {}. \
                 Set the missing ones to run against your real store and company, or unset all of them \
                 to run the simulated demo.",
                set.join(", "),
                missing.join(", ")
            )),
            _ => None,
        }
    }
}

/// Classifies the manifest's required variables (those with no default) by whether `source`
/// has a non-empty value for them.
pub fn credential_status(manifest: &Manifest, source: &dyn VariableSource) -> Credentials {
    let mut set = Vec::new();
    let mut missing = Vec::new();
    for (name, decl) in &manifest.variables {
        if !decl.required || decl.default.is_some() {
            continue;
        }
        // `export SPIN_VARIABLE_X=` is how people "unset" in a shell script; treat it as unset.
        if source.get(name).is_some_and(|v| !v.trim().is_empty()) {
            set.push(env_name(name));
        } else {
            missing.push(env_name(name));
        }
    }
    match (set.is_empty(), missing.is_empty()) {
        (true, _) => Credentials::None,
        (false, true) => Credentials::Complete,
        (false, false) => Credentials::Partial { set, missing },
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::*;

    fn manifest() -> Manifest {
        Manifest::parse(
            r#"
spin_manifest_version = 2
[application]
name = "t"
[variables]
store = { required = true }
token = { required = true, secret = true }
base = { default = "http://x" }
[[trigger.http]]
route = "/..."
component = "c"
[component.c]
source = "c.wasm"
[component.c.variables]
store = "{{ store }}"
token = "{{ token }}"
base = "{{ base }}"
"#,
            Path::new("/"),
            Path::new("/spin.toml"),
        )
        .unwrap()
    }

    struct Map(BTreeMap<String, String>);
    impl VariableSource for Map {
        fn get(&self, name: &str) -> Option<String> {
            self.0.get(name).cloned()
        }
    }
    fn source(pairs: &[(&str, &str)]) -> Map {
        Map(pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }

    #[test]
    fn no_required_variable_set_means_demo_even_when_optional_ones_are() {
        assert_eq!(
            credential_status(&manifest(), &source(&[("base", "http://y")])),
            Credentials::None
        );
        assert_eq!(
            credential_status(&manifest(), &source(&[("store", " ")])),
            Credentials::None
        );
    }

    #[test]
    fn every_required_variable_set_means_real_credentials() {
        let s = source(&[("store", "abc"), ("token", "t")]);
        assert_eq!(credential_status(&manifest(), &s), Credentials::Complete);
    }

    #[test]
    fn some_required_variables_set_names_the_missing_environment_variables() {
        let status = credential_status(&manifest(), &source(&[("store", "abc")]));
        assert_eq!(
            status,
            Credentials::Partial {
                set: vec!["SPIN_VARIABLE_STORE".into()],
                missing: vec!["SPIN_VARIABLE_TOKEN".into()]
            }
        );
        let msg = status.partial_message().unwrap();
        assert!(
            msg.contains("missing: SPIN_VARIABLE_TOKEN") && msg.contains("unset all of them"),
            "{msg}"
        );
        assert_eq!(Credentials::None.partial_message(), None);
    }
}
