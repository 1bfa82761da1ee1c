//! Reading `spin.toml` (Spin manifest v2) the way Spin does, for the parts this host uses.
//!
//! Only what the connector's deployment needs is understood: application variables, one
//! HTTP-triggered component, its `source`, `allowed_outbound_hosts`, `key_value_stores`,
//! component variables (templates over application variables) and its build command.
//! Anything the harness cannot honour is an error naming the key, never silently ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use serde::Deserialize;

/// An application variable declared under `[variables]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariableDecl {
    pub default: Option<String>,
    pub required: bool,
    pub secret: bool,
}

/// The component the HTTP trigger runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentDecl {
    pub id: String,
    /// Absolute path of the `.wasm` file.
    pub source: PathBuf,
    /// Entries as written, templates unexpanded.
    pub allowed_outbound_hosts: Vec<String>,
    pub key_value_stores: Vec<String>,
    /// Component variable name -> template over application variables.
    pub variables: BTreeMap<String, String>,
    pub build: Option<BuildDecl>,
}

/// `[component.<id>.build]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildDecl {
    pub command: String,
    /// Absolute working directory for the command.
    pub workdir: PathBuf,
}

/// The parts of a Spin manifest this host runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub path: PathBuf,
    pub app_name: String,
    pub variables: BTreeMap<String, VariableDecl>,
    pub route: String,
    pub component: ComponentDecl,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    spin_manifest_version: u32,
    application: RawApplication,
    #[serde(default)]
    variables: BTreeMap<String, RawVariable>,
    #[serde(default)]
    trigger: RawTriggers,
    #[serde(default)]
    component: BTreeMap<String, RawComponent>,
}

#[derive(Deserialize)]
struct RawApplication {
    name: String,
    #[serde(flatten)]
    _rest: toml::Table,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawVariable {
    default: Option<String>,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    secret: bool,
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawTriggers {
    #[serde(default)]
    http: Vec<RawHttpTrigger>,
    #[serde(flatten)]
    others: toml::Table,
}

#[derive(Deserialize)]
struct RawHttpTrigger {
    route: String,
    component: String,
    #[serde(flatten)]
    _rest: toml::Table,
}

#[derive(Deserialize)]
struct RawComponent {
    source: toml::Value,
    #[serde(default)]
    allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    key_value_stores: Vec<String>,
    #[serde(default)]
    variables: BTreeMap<String, String>,
    build: Option<RawBuild>,
    #[serde(flatten)]
    _rest: toml::Table,
}

#[derive(Deserialize)]
struct RawBuild {
    command: String,
    workdir: Option<String>,
    #[serde(flatten)]
    _rest: toml::Table,
}

impl Manifest {
    /// Reads and validates a manifest file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read manifest {}", path.display()))?;
        let dir = path
            .canonicalize()
            .with_context(|| format!("cannot resolve manifest path {}", path.display()))?
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        Self::parse(&text, &dir, path)
    }

    /// Parses manifest text; relative paths resolve against `dir`.
    pub fn parse(text: &str, dir: &Path, path: &Path) -> anyhow::Result<Self> {
        let raw: RawManifest = toml::from_str(text)
            .with_context(|| format!("{} is not a valid Spin manifest", path.display()))?;
        if raw.spin_manifest_version != 2 {
            bail!(
                "{}: spin_manifest_version = {} is not supported; use 2",
                path.display(),
                raw.spin_manifest_version
            );
        }
        if let Some(kind) = raw.trigger.others.keys().next() {
            bail!(
                "{}: trigger type `{kind}` is not supported by ml-harness (only http)",
                path.display()
            );
        }
        let [trigger] = raw.trigger.http.as_slice() else {
            bail!(
                "{}: expected exactly one [[trigger.http]], found {}",
                path.display(),
                raw.trigger.http.len()
            );
        };
        let mut variables = BTreeMap::new();
        for (name, v) in raw.variables {
            validate_variable_name(&name)?;
            if v.required && v.default.is_some() {
                bail!("variable `{name}`: `required` and `default` cannot both be set");
            }
            if !v.required && v.default.is_none() {
                bail!("variable `{name}`: set either `default` or `required = true`");
            }
            variables.insert(
                name,
                VariableDecl {
                    default: v.default,
                    required: v.required,
                    secret: v.secret,
                },
            );
        }
        let (id, comp) = raw
            .component
            .into_iter()
            .find(|(id, _)| *id == trigger.component)
            .ok_or_else(|| {
                anyhow!(
                    "trigger refers to component `{}`, which is not declared",
                    trigger.component
                )
            })?;
        let source = match &comp.source {
            toml::Value::String(s) => dir.join(s),
            _ => bail!("component `{id}`: only a local file `source` is supported by ml-harness"),
        };
        for (name, template) in &comp.variables {
            validate_variable_name(name)?;
            for referenced in template_references(template)? {
                if !variables.contains_key(&referenced) {
                    bail!(
                        "component `{id}` variable `{name}` refers to undeclared variable `{referenced}`"
                    );
                }
            }
        }
        for host in &comp.allowed_outbound_hosts {
            for referenced in template_references(host)? {
                if !variables.contains_key(&referenced) {
                    bail!(
                        "allowed_outbound_hosts entry `{host}` refers to undeclared variable `{referenced}`"
                    );
                }
            }
        }
        let build = comp.build.map(|b| BuildDecl {
            command: b.command,
            workdir: b
                .workdir
                .map(|w| dir.join(w))
                .unwrap_or_else(|| dir.to_path_buf()),
        });
        Ok(Manifest {
            path: path.to_path_buf(),
            app_name: raw.application.name,
            variables,
            route: trigger.route.clone(),
            component: ComponentDecl {
                id,
                source,
                allowed_outbound_hosts: comp.allowed_outbound_hosts,
                key_value_stores: comp.key_value_stores,
                variables: comp.variables,
                build,
            },
        })
    }
}

/// Spin's rule: lower-case letters, digits and underscores, starting with a letter.
fn validate_variable_name(name: &str) -> anyhow::Result<()> {
    let ok = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        bail!("invalid variable name `{name}`: use lower_snake_case")
    }
}

/// A piece of a `{{ var }}` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePart {
    Literal(String),
    Variable(String),
}

/// Splits a template such as `https://{{ host }}/x` into literal and variable parts.
pub fn parse_template(template: &str) -> anyhow::Result<Vec<TemplatePart>> {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            parts.push(TemplatePart::Literal(rest[..start].to_string()));
        }
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| anyhow!("unterminated `{{{{` in template `{template}`"))?;
        let name = after[..end].trim();
        validate_variable_name(name).with_context(|| format!("in template `{template}`"))?;
        parts.push(TemplatePart::Variable(name.to_string()));
        rest = &after[end + 2..];
    }
    if !rest.is_empty() {
        parts.push(TemplatePart::Literal(rest.to_string()));
    }
    Ok(parts)
}

fn template_references(template: &str) -> anyhow::Result<Vec<String>> {
    Ok(parse_template(template)?
        .into_iter()
        .filter_map(|p| match p {
            TemplatePart::Variable(v) => Some(v),
            TemplatePart::Literal(_) => None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
spin_manifest_version = 2
[application]
name = "demo"
[variables]
api_base = { default = "https://api.example.com" }
token = { required = true, secret = true }
[[trigger.http]]
route = "/..."
component = "app"
[component.app]
source = "target/app.wasm"
allowed_outbound_hosts = ["{{ api_base }}"]
key_value_stores = ["default"]
[component.app.variables]
api_base = "{{ api_base }}"
token = "{{token}}"
[component.app.build]
command = "cargo build"
"#;

    #[test]
    fn a_valid_manifest_is_read_with_paths_resolved() {
        let m = Manifest::parse(SAMPLE, Path::new("/repo"), Path::new("/repo/spin.toml")).unwrap();
        assert_eq!(m.component.source, PathBuf::from("/repo/target/app.wasm"));
        assert_eq!(m.route, "/...");
        assert!(m.variables["token"].secret && m.variables["token"].required);
        assert_eq!(m.component.build.unwrap().workdir, PathBuf::from("/repo"));
    }

    #[test]
    fn a_template_referring_to_an_undeclared_variable_is_rejected() {
        let bad = SAMPLE.replace("token = \"{{token}}\"", "token = \"{{ nope }}\"");
        let err = Manifest::parse(&bad, Path::new("/r"), Path::new("/r/spin.toml")).unwrap_err();
        assert!(
            format!("{err:#}").contains("undeclared variable `nope`"),
            "{err:#}"
        );
    }

    #[test]
    fn templates_split_into_literals_and_variables() {
        assert_eq!(
            parse_template("a{{ b }}c{{d}}").unwrap(),
            vec![
                TemplatePart::Literal("a".into()),
                TemplatePart::Variable("b".into()),
                TemplatePart::Literal("c".into()),
                TemplatePart::Variable("d".into())
            ]
        );
        assert!(parse_template("{{ open").is_err());
        assert!(parse_template("{{ Bad }}").is_err());
    }
}
