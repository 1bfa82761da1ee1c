//! Checks on the component's WIT: that our hand-written `wit/` resolves, that a built
//! component imports only what ARCHITECTURE.md decision 1 allows, and that every function
//! the component was compiled against exists in our WIT with the same signature.
//!
//! Signatures are compared as rendered strings ("shapes"): type aliases are followed, named
//! records/variants are spelled out field by field, and resources are named by their
//! interface's *canonicalized* id (`wasi:io/streams@0.2`). Two `Resolve`s never share
//! `TypeId`s, and a component built against `wasi:http@0.2.12` must still match our
//! `wasi:http@0.2.4`, which is exactly the semver compatibility hosts apply when linking.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use wit_parser::{
    FunctionKind, Handle, InterfaceId, Resolve, Stability, Type, TypeDefKind, TypeId, TypeOwner,
    WorldId, WorldItem,
};

/// Name of the world the component targets, declared in `wit/world.wit`.
pub const WORLD_NAME: &str = "connector";

/// Packages (or single interfaces) a built component may import, per ARCHITECTURE.md
/// decision 1.
///
/// An entry is `namespace:package@version` (any interface of the package) or
/// `namespace:package/interface@version` (that interface only). A two-part version such as
/// `0.2` admits every stable `0.2.x`; a full version, including pre-releases, must match
/// exactly. keyvalue `batch` is allowed: the connector reads several keys in one round trip
/// with `get-many`.
pub const ALLOWED_IMPORT_PACKAGES: &[&str] = &[
    "wasi:http@0.2",
    "wasi:keyvalue/store@0.2.0-draft2",
    "wasi:keyvalue/atomics@0.2.0-draft2",
    "wasi:keyvalue/batch@0.2.0-draft2",
    "wasi:config@0.2.0-draft-2024-09-27",
    "wasi:cli@0.2",
    "wasi:clocks@0.2",
    "wasi:random@0.2",
    "wasi:io@0.2",
];

/// The repository's `wit/` directory (this crate lives in `<repo>/tests`).
pub fn repo_wit_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit")
}

/// Parses `<repo>/wit` (with `wit/deps`) and selects world `connector`.
pub fn load_repo_world() -> anyhow::Result<(Resolve, WorldId)> {
    load_world(&repo_wit_dir(), WORLD_NAME)
}

/// Parses a WIT directory (with its `deps/`) and selects `world` from its main package.
pub fn load_world(dir: &Path, world: &str) -> anyhow::Result<(Resolve, WorldId)> {
    let mut resolve = Resolve::default();
    let (pkg, _) = resolve.push_dir(dir).with_context(|| {
        format!(
            "WIT in {} does not resolve; fix the reported file (every `use`d package must be in deps/)",
            dir.display()
        )
    })?;
    let world = resolve.select_world(&[pkg], Some(world)).with_context(|| {
        format!(
            "world `{world}` not found in {}; check world.wit",
            dir.display()
        )
    })?;
    Ok((resolve, world))
}

/// Names of the top-level imports of a component binary, e.g.
/// `wasi:keyvalue/store@0.2.0-draft2` (instances in practice), in binary order.
pub fn component_imports(wasm: &[u8]) -> anyhow::Result<Vec<String>> {
    top_level_names(wasm, Direction::Import)
}

/// Names of the top-level exports of a component binary, e.g.
/// `wasi:http/incoming-handler@0.2.4`, in binary order.
pub fn component_exports(wasm: &[u8]) -> anyhow::Result<Vec<String>> {
    top_level_names(wasm, Direction::Export)
}

#[derive(Clone, Copy, PartialEq)]
enum Direction {
    Import,
    Export,
}

fn top_level_names(wasm: &[u8], direction: Direction) -> anyhow::Result<Vec<String>> {
    use wasmparser::{Encoding, Parser, Payload};
    let mut names = Vec::new();
    // Nested core modules and components have their own import/export sections; only the
    // outermost component's sections describe what the host must provide.
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(wasm) {
        let payload =
            payload.context("the file is not valid WebAssembly; rebuild the component")?;
        match payload {
            Payload::Version { encoding, .. } if depth == 0 && encoding != Encoding::Component => {
                bail!("this is a core wasm module, not a component; build for wasm32-wasip2")
            }
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader)
                if depth == 0 && direction == Direction::Import =>
            {
                for import in reader {
                    let import = import.context("malformed component import section")?;
                    names.push(import.name.full_name().into_owned());
                }
            }
            Payload::ComponentExportSection(reader)
                if depth == 0 && direction == Direction::Export =>
            {
                for export in reader {
                    let export = export.context("malformed component export section")?;
                    names.push(export.name.full_name().into_owned());
                }
            }
            _ => {}
        }
    }
    Ok(names)
}

/// Returns every import that no entry of [`ALLOWED_IMPORT_PACKAGES`] admits.
pub fn check_imports_allowed(imports: &[String]) -> Result<(), Vec<String>> {
    let rejected: Vec<String> = imports
        .iter()
        .filter(|name| {
            !ALLOWED_IMPORT_PACKAGES
                .iter()
                .any(|entry| admits(entry, name))
        })
        .cloned()
        .collect();
    if rejected.is_empty() {
        Ok(())
    } else {
        Err(rejected)
    }
}

/// `ns:pkg/iface@version` split into its parts; `None` for a plain (non-interface) name.
fn split_interface_name(name: &str) -> Option<(&str, Option<&str>, Option<&str>)> {
    let (path, version) = match name.split_once('@') {
        Some((path, version)) => (path, Some(version)),
        None => (name, None),
    };
    let (package, interface) = match path.split_once('/') {
        Some((package, interface)) => (package, Some(interface)),
        None => (path, None),
    };
    package
        .contains(':')
        .then_some((package, interface, version))
}

fn admits(entry: &str, import: &str) -> bool {
    let (Some((e_pkg, e_iface, Some(e_ver))), Some((i_pkg, Some(i_iface), Some(i_ver)))) =
        (split_interface_name(entry), split_interface_name(import))
    else {
        return false;
    };
    if e_pkg != i_pkg || e_iface.is_some_and(|e| e != i_iface) {
        return false;
    }
    if e_ver == i_ver {
        return true;
    }
    // "0.2" stands for any stable 0.2.x.
    e_ver.split('.').count() == 2
        && i_ver
            .strip_prefix(e_ver)
            .and_then(|rest| rest.strip_prefix('.'))
            .is_some_and(|patch| !patch.is_empty() && patch.bytes().all(|b| b.is_ascii_digit()))
}

/// Verifies that each interface of world `connector` the component imports or exports is
/// declared in our WIT with identical functions and types, and that the component exports
/// everything the world exports.
///
/// Interfaces the component uses that our world does not mention (what Rust std pulls in,
/// such as `wasi:cli/environment`) are left to [`check_imports_allowed`].
pub fn check_component_matches_wit(wasm: &[u8]) -> anyhow::Result<()> {
    let (ours, our_world) = load_repo_world()?;
    check_component_matches_world(wasm, &ours, our_world)
}

/// [`check_component_matches_wit`] against any world (used by tests with altered WIT).
pub fn check_component_matches_world(
    wasm: &[u8],
    ours: &Resolve,
    our_world: WorldId,
) -> anyhow::Result<()> {
    let decoded = wit_component::decode(wasm).context(
        "cannot read the component's type information; is this a component built by wasm32-wasip2?",
    )?;
    let wit_parser::decoding::DecodedWasm::Component(theirs, their_world) = decoded else {
        bail!("the file is a WIT package, not a component; pass the built .wasm component");
    };

    let mut problems = Vec::new();
    for (their_items, our_items, what) in [
        (
            &theirs.worlds[their_world].imports,
            &ours.worlds[our_world].imports,
            "import",
        ),
        (
            &theirs.worlds[their_world].exports,
            &ours.worlds[our_world].exports,
            "export",
        ),
    ] {
        let our_ifaces = named_interfaces(ours, our_items.values());
        let their_ifaces = named_interfaces(&theirs, their_items.values());
        for (canonical, &their_iface) in &their_ifaces {
            let Some(&our_iface) = our_ifaces.get(canonical) else {
                continue;
            };
            let required = interface_items(&theirs, their_iface, |_| true);
            let available = interface_items(ours, our_iface, |_| true);
            for diff in missing_or_different(&required, &available) {
                problems.push(format!(
                    "{what} {}: {diff}",
                    theirs.id_of(their_iface).unwrap_or_default()
                ));
            }
        }
        if what == "export" {
            for (canonical, &our_iface) in &our_ifaces {
                if !their_ifaces.contains_key(canonical) {
                    problems.push(format!(
                        "the component does not export {} although world `{}` does; export it from the component",
                        ours.id_of(our_iface).unwrap_or_default(),
                        ours.worlds[our_world].name
                    ));
                }
            }
        }
    }

    if problems.is_empty() {
        Ok(())
    } else {
        bail!(
            "the component does not match our WIT in wit/ (fix wit/deps to the published interface, or the component's bindings):\n  {}",
            problems.join("\n  ")
        )
    }
}

/// Named interfaces among world items, keyed by canonicalized id (`wasi:http/types@0.2`).
fn named_interfaces<'a>(
    resolve: &Resolve,
    items: impl Iterator<Item = &'a WorldItem>,
) -> BTreeMap<String, InterfaceId> {
    items
        .filter_map(|item| match item {
            WorldItem::Interface { id, .. } => Some((resolve.canonicalized_id_of(*id)?, *id)),
            _ => None,
        })
        .collect()
}

/// Functions (`func <name>`) and named types (`type <name>`) of an interface, each with its
/// rendered shape, restricted to the items whose stability `keep` accepts.
pub fn interface_items(
    resolve: &Resolve,
    iface: InterfaceId,
    keep: impl Fn(&Stability) -> bool,
) -> BTreeMap<String, String> {
    let iface = &resolve.interfaces[iface];
    let types = iface
        .types
        .iter()
        .filter(|(_, id)| keep(&resolve.types[**id].stability))
        .map(|(name, id)| (format!("type {name}"), type_definition(resolve, *id)));
    let funcs = iface
        .functions
        .iter()
        .filter(|(_, f)| keep(&f.stability))
        .map(|(name, f)| (format!("func {name}"), function_signature(resolve, f)));
    types.chain(funcs).collect()
}

/// Describes each item of `required` that `available` lacks or declares differently.
pub fn missing_or_different(
    required: &BTreeMap<String, String>,
    available: &BTreeMap<String, String>,
) -> Vec<String> {
    required
        .iter()
        .filter_map(|(item, shape)| match available.get(item) {
            None => Some(format!("{item} is missing (expected `{shape}`)")),
            Some(ours) if ours != shape => {
                Some(format!("{item} differs: ours `{ours}`, expected `{shape}`"))
            }
            Some(_) => None,
        })
        .collect()
}

/// Canonicalized ids of the interfaces a world imports (after `use` elaboration) or exports.
pub fn world_interface_ids(
    resolve: &Resolve,
    world: WorldId,
) -> (BTreeSet<String>, BTreeSet<String>) {
    let ids = |items: &wit_parser::IndexMap<wit_parser::WorldKey, WorldItem>| {
        items
            .values()
            .filter_map(|item| match item {
                WorldItem::Interface { id, .. } => resolve.id_of(*id),
                _ => None,
            })
            .collect()
    };
    let world = &resolve.worlds[world];
    (ids(&world.imports), ids(&world.exports))
}

/// A function's kind, parameters and result as one comparable string.
pub fn function_signature(resolve: &Resolve, f: &wit_parser::Function) -> String {
    let kind = match &f.kind {
        FunctionKind::Freestanding => "func".to_string(),
        FunctionKind::AsyncFreestanding => "async func".to_string(),
        FunctionKind::Getter => "getter".to_string(),
        FunctionKind::Setter => "setter".to_string(),
        FunctionKind::Method(r) => format!("method of {}", resource_path(resolve, *r)),
        FunctionKind::AsyncMethod(r) => format!("async method of {}", resource_path(resolve, *r)),
        FunctionKind::MethodGetter(r) => format!("getter of {}", resource_path(resolve, *r)),
        FunctionKind::MethodSetter(r) => format!("setter of {}", resource_path(resolve, *r)),
        FunctionKind::Static(r) => format!("static of {}", resource_path(resolve, *r)),
        FunctionKind::AsyncStatic(r) => format!("async static of {}", resource_path(resolve, *r)),
        FunctionKind::StaticGetter(r) => format!("static getter of {}", resource_path(resolve, *r)),
        FunctionKind::StaticSetter(r) => format!("static setter of {}", resource_path(resolve, *r)),
        FunctionKind::Constructor(r) => format!("constructor of {}", resource_path(resolve, *r)),
    };
    let params: Vec<String> = f
        .params
        .iter()
        .map(|p| format!("{}: {}", p.name, type_shape(resolve, &p.ty)))
        .collect();
    let result = f
        .result
        .as_ref()
        .map_or_else(|| "()".to_string(), |t| type_shape(resolve, t));
    format!("{kind} ({}) -> {result}", params.join(", "))
}

/// A named type's definition: aliases followed, then records, variants, enums and flags
/// spelled out one level (their members are rendered with [`type_shape`]).
pub fn type_definition(resolve: &Resolve, id: TypeId) -> String {
    let id = dealias(resolve, id);
    expand(resolve, id)
}

/// A type as it appears in a signature: aliases followed, anonymous types spelled out, and
/// named types (records, variants, enums, flags, resources) referred to by owner and name
/// (`wasi:http/types@0.2.error-code`); their definitions are compared as `type` items.
pub fn type_shape(resolve: &Resolve, ty: &Type) -> String {
    let id = match ty {
        Type::Bool => return "bool".into(),
        Type::U8 => return "u8".into(),
        Type::U16 => return "u16".into(),
        Type::U32 => return "u32".into(),
        Type::U64 => return "u64".into(),
        Type::S8 => return "s8".into(),
        Type::S16 => return "s16".into(),
        Type::S32 => return "s32".into(),
        Type::S64 => return "s64".into(),
        Type::F32 => return "f32".into(),
        Type::F64 => return "f64".into(),
        Type::Char => return "char".into(),
        Type::String => return "string".into(),
        Type::ErrorContext => return "error-context".into(),
        Type::Id(id) => dealias(resolve, *id),
    };
    let def = &resolve.types[id];
    let named_aggregate = matches!(
        def.kind,
        TypeDefKind::Record(_)
            | TypeDefKind::Variant(_)
            | TypeDefKind::Enum(_)
            | TypeDefKind::Flags(_)
    );
    if named_aggregate && def.name.is_some() {
        return resource_path(resolve, id);
    }
    expand(resolve, id)
}

fn dealias(resolve: &Resolve, mut id: TypeId) -> TypeId {
    while let TypeDefKind::Type(Type::Id(next)) = resolve.types[id].kind {
        id = next;
    }
    id
}

fn expand(resolve: &Resolve, id: TypeId) -> String {
    let opt = |t: &Option<Type>| {
        t.as_ref()
            .map_or_else(|| "_".to_string(), |t| type_shape(resolve, t))
    };
    match &resolve.types[id].kind {
        TypeDefKind::Type(inner) => type_shape(resolve, inner),
        TypeDefKind::Resource => format!("resource {}", resource_path(resolve, id)),
        TypeDefKind::Handle(Handle::Own(r)) => format!("own<{}>", resource_path(resolve, *r)),
        TypeDefKind::Handle(Handle::Borrow(r)) => format!("borrow<{}>", resource_path(resolve, *r)),
        TypeDefKind::Record(r) => {
            let fields: Vec<String> = r
                .fields
                .iter()
                .map(|f| format!("{}: {}", f.name, type_shape(resolve, &f.ty)))
                .collect();
            format!("record {{{}}}", fields.join(", "))
        }
        TypeDefKind::Variant(v) => {
            let cases: Vec<String> = v
                .cases
                .iter()
                .map(|c| match &c.ty {
                    Some(t) => format!("{}({})", c.name, type_shape(resolve, t)),
                    None => c.name.clone(),
                })
                .collect();
            format!("variant {{{}}}", cases.join(", "))
        }
        TypeDefKind::Enum(e) => {
            let cases: Vec<&str> = e.cases.iter().map(|c| c.name.as_str()).collect();
            format!("enum {{{}}}", cases.join(", "))
        }
        TypeDefKind::Flags(f) => {
            let flags: Vec<&str> = f.flags.iter().map(|f| f.name.as_str()).collect();
            format!("flags {{{}}}", flags.join(", "))
        }
        TypeDefKind::Tuple(t) => {
            let types: Vec<String> = t.types.iter().map(|t| type_shape(resolve, t)).collect();
            format!("tuple<{}>", types.join(", "))
        }
        TypeDefKind::Option(t) => format!("option<{}>", type_shape(resolve, t)),
        TypeDefKind::Result(r) => format!("result<{}, {}>", opt(&r.ok), opt(&r.err)),
        TypeDefKind::List(t) => format!("list<{}>", type_shape(resolve, t)),
        TypeDefKind::Map(k, v) => {
            format!(
                "map<{}, {}>",
                type_shape(resolve, k),
                type_shape(resolve, v)
            )
        }
        TypeDefKind::FixedLengthList(t, n) => format!("list<{}, {n}>", type_shape(resolve, t)),
        TypeDefKind::Future(t) => format!("future<{}>", opt(t)),
        TypeDefKind::Stream(t) => format!("stream<{}>", opt(t)),
        TypeDefKind::Unknown => "unknown".into(),
    }
}

/// `wasi:io/streams@0.2.input-stream`: the named type behind `id` (aliases followed), named
/// by its interface's canonicalized id so 0.2.4 and 0.2.12 agree.
fn resource_path(resolve: &Resolve, id: TypeId) -> String {
    let id = dealias(resolve, id);
    let def = &resolve.types[id];
    let name = def.name.as_deref().unwrap_or("<anonymous>");
    match def.owner {
        TypeOwner::Interface(iface) => format!(
            "{}.{name}",
            resolve
                .canonicalized_id_of(iface)
                .unwrap_or_else(|| "<anonymous interface>".into())
        ),
        TypeOwner::World(world) => format!("world {}.{name}", resolve.worlds[world].name),
        TypeOwner::None => name.to_string(),
    }
}

/// Where the WIT shipped inside the `wasmtime-wasi-http` crate (48.0.8) lives on this
/// machine: from `cargo metadata`, else from `$CARGO_HOME/registry/src/*/`.
pub fn locate_wasmtime_wasi_http_wit() -> Option<PathBuf> {
    const CRATE: &str = "wasmtime-wasi-http";
    const VERSION: &str = "48.0.8";
    let from_metadata = || -> Option<PathBuf> {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut command = std::process::Command::new(cargo);
        command
            .args([
                "metadata",
                "--format-version",
                "1",
                "--offline",
                "--manifest-path",
            ])
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml"));
        // Offline metadata for all platforms would need crates (e.g. Windows-only ones) that
        // were never downloaded; limiting it to the host avoids that.
        if let Some(host) = host_triple() {
            command.args(["--filter-platform", &host]);
        }
        let output = command.output().ok()?;
        let meta: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
        meta["packages"].as_array()?.iter().find_map(|p| {
            (p["name"] == CRATE && p["version"] == VERSION)
                .then(|| {
                    Path::new(p["manifest_path"].as_str()?)
                        .parent()
                        .map(|d| d.join("wit"))
                })
                .flatten()
        })
    };
    let from_registry = || -> Option<PathBuf> {
        let home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))?;
        std::fs::read_dir(home.join("registry/src"))
            .ok()?
            .filter_map(Result::ok)
            .map(|index| index.path().join(format!("{CRATE}-{VERSION}/wit")))
            .find(|wit| wit.is_dir())
    };
    from_metadata()
        .filter(|p| p.is_dir())
        .or_else(from_registry)
}

fn host_triple() -> Option<String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let output = std::process::Command::new(rustc).arg("-vV").output().ok()?;
    String::from_utf8(output.stdout)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wit_component::{ComponentEncoder, StringEncoding, dummy_module, embed_component_metadata};
    use wit_parser::{LiftLowerAbi, ManglingAndAbi};

    /// A component whose core module is a stub importing and exporting everything `world`
    /// declares: what a real build produces, minus the code.
    pub(crate) fn stub_component(resolve: &Resolve, world: WorldId) -> Vec<u8> {
        let mut module = dummy_module(resolve, world, ManglingAndAbi::Legacy(LiftLowerAbi::Sync));
        embed_component_metadata(&mut module, resolve, world, StringEncoding::UTF8, false).unwrap();
        ComponentEncoder::default()
            .module(&module)
            .unwrap()
            .validate(true)
            .encode()
            .unwrap()
    }

    fn strings(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn stub_of_our_world_imports_its_interfaces_and_exports_the_handler() {
        let (resolve, world) = load_repo_world().unwrap();
        let wasm = stub_component(&resolve, world);

        let imports: BTreeSet<String> = component_imports(&wasm).unwrap().into_iter().collect();
        for expected in [
            "wasi:keyvalue/store@0.2.0-draft2",
            "wasi:keyvalue/atomics@0.2.0-draft2",
            "wasi:keyvalue/batch@0.2.0-draft2",
            "wasi:config/store@0.2.0-draft-2024-09-27",
            "wasi:http/outgoing-handler@0.2.4",
            "wasi:http/types@0.2.4",
            "wasi:io/streams@0.2.4",
        ] {
            assert!(
                imports.contains(expected),
                "{expected} missing from {imports:?}"
            );
        }
        assert_eq!(
            component_exports(&wasm).unwrap(),
            vec!["wasi:http/incoming-handler@0.2.4".to_string()]
        );
        assert_eq!(
            check_imports_allowed(&imports.into_iter().collect::<Vec<_>>()),
            Ok(())
        );
    }

    #[test]
    fn stub_of_our_world_matches_our_wit() {
        let (resolve, world) = load_repo_world().unwrap();
        check_component_matches_wit(&stub_component(&resolve, world)).unwrap();
    }

    #[test]
    fn a_core_module_is_not_taken_for_a_component() {
        let (resolve, world) = load_repo_world().unwrap();
        let module = dummy_module(&resolve, world, ManglingAndAbi::Legacy(LiftLowerAbi::Sync));
        let err = component_imports(&module).unwrap_err().to_string();
        assert!(err.contains("not a component"), "{err}");
    }

    /// WIT that claims to be `wasi:keyvalue@0.2.0-draft2` but changes `bucket.get`, plus an
    /// export-less world: both must be reported.
    const ALTERED: &str = r#"
        package test:altered;

        world altered {
          import wasi:keyvalue/store@0.2.0-draft2;
        }

        package wasi:keyvalue@0.2.0-draft2 {
          interface store {
            variant error { no-such-store, access-denied, other(string) }
            record key-response { keys: list<string>, cursor: option<string> }
            open: func(identifier: string) -> result<bucket, error>;
            resource bucket {
              get: func(key: string) -> result<list<u8>, error>;
            }
          }
        }
    "#;

    #[test]
    fn a_component_built_against_a_different_signature_is_rejected() {
        let mut altered = Resolve::default();
        let pkg = altered.push_str("altered.wit", ALTERED).unwrap();
        let world = altered.select_world(&[pkg], Some("altered")).unwrap();
        let wasm = stub_component(&altered, world);

        let err = check_component_matches_wit(&wasm).unwrap_err().to_string();
        assert!(err.contains("func [method]bucket.get differs"), "{err}");
        assert!(
            err.contains("-> result<list<u8>, wasi:keyvalue/store@0.2.0-draft2.error>`"),
            "{err}"
        );
        assert!(
            err.contains("does not export wasi:http/incoming-handler@0.2.4"),
            "{err}"
        );
        // `open` is identical, so it must not be reported.
        assert!(!err.contains("func open"), "{err}");
    }

    #[test]
    fn wasmtime_wasi_http_wit_is_found_from_this_workspace() {
        let wit = locate_wasmtime_wasi_http_wit().expect("wasmtime-wasi-http 48.0.8 sources");
        assert!(wit.join("deps/http.wit").is_file(), "{}", wit.display());
    }

    #[test]
    fn allow_list_admits_std_and_pinned_drafts() {
        let ok = strings(&[
            "wasi:http/types@0.2.4",
            "wasi:http/outgoing-handler@0.2.12",
            "wasi:io/streams@0.2.0",
            "wasi:cli/environment@0.2.6",
            "wasi:clocks/wall-clock@0.2.4",
            "wasi:random/random@0.2.4",
            "wasi:keyvalue/store@0.2.0-draft2",
            "wasi:keyvalue/atomics@0.2.0-draft2",
            "wasi:keyvalue/batch@0.2.0-draft2",
            "wasi:config/store@0.2.0-draft-2024-09-27",
        ]);
        assert_eq!(check_imports_allowed(&ok), Ok(()));
    }

    #[test]
    fn allow_list_rejects_other_packages_versions_and_unused_interfaces() {
        let bad = strings(&[
            "wasi:filesystem/types@0.2.4",
            "wasi:keyvalue/watcher@0.2.0-draft2",
            "wasi:keyvalue/batch@0.2.0-draft",
            "wasi:keyvalue/store@0.2.0-draft",
            "wasi:http/types@0.3.0",
            "wasi:http/types@0.2.0-rc-2023-12-05",
            "wasi:config/store@0.2.0-rc.1",
            "spin:key-value/key-value@2.0.0",
            "wasi:io/streams",
            "log",
        ]);
        let mut input = bad.clone();
        input.push("wasi:io/poll@0.2.4".into());
        assert_eq!(check_imports_allowed(&input), Err(bad));
    }
}
