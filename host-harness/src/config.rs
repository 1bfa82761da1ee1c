//! Variables: values from the environment as Spin takes them, and the `wasi:config/store` host.
//!
//! Spin resolves an application variable from `SPIN_VARIABLE_<UPPER_NAME>`, else its default;
//! a required variable with no value is an error *when it is read* (Spin's env provider may
//! always resolve, so startup succeeds). The component sees only its component-level
//! variables, each a template over application variables. We do the same, and additionally
//! warn at startup about required variables that have no value.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::manifest::{Manifest, TemplatePart, parse_template};

/// Resolved variables, shared by every instance.
#[derive(Clone, Default)]
pub struct Variables {
    /// Component variable -> its value, or why it has none.
    values: Arc<BTreeMap<String, Result<String, String>>>,
    secret_names: Arc<Vec<String>>,
}

impl std::fmt::Debug for Variables {
    // Values may be secrets: list names only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Variables")
            .field("names", &self.values.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Where application variable values come from.
pub trait VariableSource {
    fn get(&self, app_variable: &str) -> Option<String>;
}

/// Spin's convention: `SPIN_VARIABLE_<UPPER_NAME>` from the process environment.
#[derive(Debug, Default, Clone, Copy)]
pub struct EnvSource;

impl VariableSource for EnvSource {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(env_name(name)).ok()
    }
}

/// Explicit values first (tests, demo), then another source.
#[derive(Debug, Clone)]
pub struct Overrides<S> {
    pub values: BTreeMap<String, String>,
    pub fallback: S,
}

impl<S: VariableSource> VariableSource for Overrides<S> {
    fn get(&self, name: &str) -> Option<String> {
        self.values
            .get(name)
            .cloned()
            .or_else(|| self.fallback.get(name))
    }
}

/// The environment variable Spin reads for an application variable.
pub fn env_name(app_variable: &str) -> String {
    format!("SPIN_VARIABLE_{}", app_variable.to_ascii_uppercase())
}

/// Resolves one application variable: source, else default, else an error naming it.
pub fn resolve_app_variable(
    manifest: &Manifest,
    source: &dyn VariableSource,
    name: &str,
) -> Result<String, String> {
    let decl = manifest
        .variables
        .get(name)
        .ok_or_else(|| format!("variable `{name}` is not declared"))?;
    source
        .get(name)
        .or_else(|| decl.default.clone())
        .ok_or_else(|| {
            format!(
                "no provider resolved required variable \"{name}\": set {}",
                env_name(name)
            )
        })
}

/// Expands a `{{ var }}` template.
pub fn expand(
    manifest: &Manifest,
    source: &dyn VariableSource,
    template: &str,
) -> Result<String, String> {
    let parts = parse_template(template).map_err(|e| format!("{e:#}"))?;
    let mut out = String::new();
    for part in parts {
        match part {
            TemplatePart::Literal(l) => out.push_str(&l),
            TemplatePart::Variable(v) => out.push_str(&resolve_app_variable(manifest, source, &v)?),
        }
    }
    Ok(out)
}

impl Variables {
    /// Resolves every component variable of `manifest` once.
    pub fn resolve(manifest: &Manifest, source: &dyn VariableSource) -> Self {
        let values = manifest
            .component
            .variables
            .iter()
            .map(|(name, template)| (name.clone(), expand(manifest, source, template)))
            .collect();
        let secret_names = manifest
            .variables
            .iter()
            .filter(|(_, d)| d.secret)
            .map(|(n, _)| n.clone())
            .collect();
        Variables {
            values: Arc::new(values),
            secret_names: Arc::new(secret_names),
        }
    }

    /// What `wasi:config/store.get` returns: `Ok(None)` for an undefined variable, an error for a
    /// defined one that could not be resolved.
    pub fn get(&self, name: &str) -> Result<Option<String>, String> {
        match self.values.get(name) {
            None => Ok(None),
            Some(Ok(v)) => Ok(Some(v.clone())),
            Some(Err(e)) => Err(e.clone()),
        }
    }

    /// Every resolvable variable (what `get-all` returns).
    pub fn all(&self) -> Result<Vec<(String, String)>, String> {
        self.values
            .iter()
            .map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
            .collect()
    }

    /// Messages for variables that will fail when read.
    pub fn unresolved(&self) -> Vec<String> {
        self.values
            .values()
            .filter_map(|v| v.as_ref().err().cloned())
            .collect()
    }

    /// Names of application variables marked `secret = true`.
    pub fn secret_names(&self) -> &[String] {
        &self.secret_names
    }
}

/// Adds `wasi:config/store` to `linker`, reading each instance's [`Variables`] through `get`.
pub fn add_to_linker<T: 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    get: fn(&mut T) -> &mut Variables,
) -> wasmtime::Result<()> {
    crate::bindings::wasi::config::store::add_to_linker::<T, wasmtime::component::HasSelf<Variables>>(
        linker, get,
    )
}

mod host {
    //! The `wasi:config/store` host implementation.
    use super::Variables;
    use crate::bindings::wasi::config::store::{Error, Host};

    impl Host for Variables {
        fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<String>, Error>> {
            Ok(Variables::get(self, &key).map_err(Error::Upstream))
        }

        fn get_all(&mut self) -> wasmtime::Result<Result<Vec<(String, String)>, Error>> {
            Ok(self.all().map_err(Error::Upstream))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn manifest() -> Manifest {
        Manifest::parse(
            r#"
spin_manifest_version = 2
[application]
name = "t"
[variables]
base = { default = "http://x" }
token = { required = true, secret = true }
[[trigger.http]]
route = "/..."
component = "c"
[component.c]
source = "c.wasm"
[component.c.variables]
base = "{{ base }}/api"
token = "{{ token }}"
"#,
            Path::new("/"),
            Path::new("/spin.toml"),
        )
        .unwrap()
    }

    #[test]
    fn values_come_from_the_source_then_defaults_and_missing_required_ones_name_the_variable() {
        let m = manifest();
        let vars = Variables::resolve(
            &m,
            &Overrides {
                values: BTreeMap::new(),
                fallback: EnvSource,
            },
        );
        assert_eq!(vars.get("base").unwrap().as_deref(), Some("http://x/api"));
        let err = vars.get("token").unwrap_err();
        assert!(
            err.contains("\"token\"") && err.contains("SPIN_VARIABLE_TOKEN"),
            "{err}"
        );
        assert_eq!(vars.get("undefined").unwrap(), None);

        let set = Overrides {
            values: BTreeMap::from([("token".into(), "s3cret".into())]),
            fallback: EnvSource,
        };
        let vars = Variables::resolve(&m, &set);
        assert_eq!(vars.get("token").unwrap().as_deref(), Some("s3cret"));
        assert!(!format!("{vars:?}").contains("s3cret"));
    }
}
