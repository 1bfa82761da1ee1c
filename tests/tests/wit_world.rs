//! Our hand-written WIT (`wit/`) against the published WASI 0.2.4 shapes: it resolves, world
//! `connector` has the intended imports/exports, the wasi:http/io/clocks packages match the
//! copy wasmtime-wasi-http ships (0.2.12, same stable 0.2.4 items), and the draft packages
//! expose what Spin implements.

use std::collections::BTreeSet;

use ml_e2e::wit_check::{
    WORLD_NAME, check_component_matches_world, function_signature, interface_items,
    load_repo_world, load_world, locate_wasmtime_wasi_http_wit, missing_or_different,
    world_interface_ids,
};
use wit_parser::{InterfaceId, Resolve, Stability};

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn interface(resolve: &Resolve, id: &str) -> InterfaceId {
    resolve
        .interfaces
        .iter()
        .find(|(iface, _)| resolve.id_of(*iface).as_deref() == Some(id))
        .map(|(iface, _)| iface)
        .unwrap_or_else(|| panic!("interface {id} not found in the resolve"))
}

#[test]
fn connector_world_imports_exactly_the_host_services_and_http() {
    let (resolve, world) = load_repo_world().unwrap();
    assert_eq!(resolve.worlds[world].name, WORLD_NAME);
    let (imports, exports) = world_interface_ids(&resolve, world);

    // Direct imports plus what they `use` (http types -> io, monotonic-clock).
    assert_eq!(
        imports,
        set(&[
            "wasi:keyvalue/store@0.2.0-draft2",
            "wasi:keyvalue/atomics@0.2.0-draft2",
            "wasi:keyvalue/batch@0.2.0-draft2",
            "wasi:config/store@0.2.0-draft-2024-09-27",
            "wasi:http/outgoing-handler@0.2.4",
            "wasi:http/types@0.2.4",
            "wasi:io/error@0.2.4",
            "wasi:io/poll@0.2.4",
            "wasi:io/streams@0.2.4",
            "wasi:clocks/monotonic-clock@0.2.4",
        ])
    );
    assert_eq!(exports, set(&["wasi:http/incoming-handler@0.2.4"]));
    // No free functions or types at world level: everything goes through interfaces.
    assert_eq!(resolve.worlds[world].imports.len(), imports.len());
    assert_eq!(resolve.worlds[world].exports.len(), exports.len());
}

/// Items a 0.2.12 package carries that 0.2.4 also had: stable since 0.2.4 or earlier.
/// (Unstable items are already dropped by the resolver, as no features are enabled.)
fn in_0_2_4(stability: &Stability) -> bool {
    match stability {
        Stability::Stable { since, .. } => (since.major, since.minor, since.patch) <= (0, 2, 4),
        Stability::Unstable { .. } => false,
        Stability::Unknown => true,
    }
}

#[test]
fn wasi_http_io_and_clocks_match_the_wit_shipped_with_wasmtime_wasi_http() {
    let Some(wasmtime_wit) = locate_wasmtime_wasi_http_wit() else {
        eprintln!(
            "SKIPPED: wasmtime-wasi-http 48.0.8 sources not found (neither via `cargo metadata` \
             nor under $CARGO_HOME/registry/src); run `cargo fetch` and re-run"
        );
        return;
    };
    let (theirs, _) = load_world(&wasmtime_wit, "bindings").unwrap();
    let (ours, _) = load_repo_world().unwrap();

    let mut compared = BTreeSet::new();
    let mut problems = Vec::new();
    for (our_iface, iface) in ours.interfaces.iter() {
        let Some(pkg) = iface.package else { continue };
        let name = &ours.packages[pkg].name;
        if name.namespace != "wasi" || !["http", "io", "clocks"].contains(&name.name.as_str()) {
            continue;
        }
        let canonical = ours.canonicalized_id_of(our_iface).unwrap();
        let their_iface = theirs
            .interfaces
            .iter()
            .find(|(id, _)| theirs.canonicalized_id_of(*id).as_deref() == Some(&canonical))
            .map(|(id, _)| id)
            .unwrap_or_else(|| panic!("wasmtime's WIT has no {canonical}"));

        let our_items = interface_items(&ours, our_iface, |_| true);
        let their_items = interface_items(&theirs, their_iface, in_0_2_4);
        for diff in missing_or_different(&their_items, &our_items) {
            problems.push(format!("{canonical}: {diff}"));
        }
        for extra in our_items.keys().filter(|k| !their_items.contains_key(*k)) {
            problems.push(format!("{canonical}: {extra} is not in WASI 0.2.4"));
        }
        compared.insert(canonical);
    }

    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(
        compared,
        set(&[
            "wasi:clocks/monotonic-clock@0.2",
            "wasi:http/incoming-handler@0.2",
            "wasi:http/outgoing-handler@0.2",
            "wasi:http/types@0.2",
            "wasi:io/error@0.2",
            "wasi:io/poll@0.2",
            "wasi:io/streams@0.2",
        ])
    );
}

/// The `wasi` crate in Cargo.lock (0.14.7 -> wasip2 1.0.4) compiles against WASI 0.2.12, so
/// the real component imports `wasi:http/...@0.2.12`; a stub built from wasmtime's 0.2.12
/// proxy world must pass the same check the real component will face.
#[test]
fn a_component_built_against_wasi_0_2_12_matches_our_0_2_4_wit() {
    let Some(wasmtime_wit) = locate_wasmtime_wasi_http_wit() else {
        eprintln!("SKIPPED: wasmtime-wasi-http 48.0.8 sources not found; run `cargo fetch`");
        return;
    };
    let (theirs, world) = load_world(&wasmtime_wit, "bindings").unwrap();
    let mut module = wit_component::dummy_module(
        &theirs,
        world,
        wit_parser::ManglingAndAbi::Legacy(wit_parser::LiftLowerAbi::Sync),
    );
    wit_component::embed_component_metadata(
        &mut module,
        &theirs,
        world,
        wit_component::StringEncoding::UTF8,
        false,
    )
    .unwrap();
    let wasm = wit_component::ComponentEncoder::default()
        .module(&module)
        .unwrap()
        .encode()
        .unwrap();

    let (ours, our_world) = load_repo_world().unwrap();
    check_component_matches_world(&wasm, &ours, our_world).unwrap();
}

fn signatures(resolve: &Resolve, id: &str) -> Vec<(String, String)> {
    let iface = interface(resolve, id);
    resolve.interfaces[iface]
        .functions
        .values()
        .map(|f| (f.name.clone(), function_signature(resolve, f)))
        .collect()
}

fn names(sigs: &[(String, String)]) -> BTreeSet<String> {
    sigs.iter().map(|(n, _)| n.clone()).collect()
}

fn signature_of<'a>(sigs: &'a [(String, String)], name: &str) -> &'a str {
    &sigs.iter().find(|(n, _)| n == name).unwrap().1
}

#[test]
fn keyvalue_store_has_the_functions_spin_implements() {
    let (resolve, _) = load_repo_world().unwrap();
    let sigs = signatures(&resolve, "wasi:keyvalue/store@0.2.0-draft2");
    assert_eq!(
        names(&sigs),
        set(&[
            "open",
            "[method]bucket.get",
            "[method]bucket.set",
            "[method]bucket.delete",
            "[method]bucket.exists",
            "[method]bucket.list-keys",
        ])
    );
    let error = "wasi:keyvalue/store@0.2.0-draft2.error";
    let iface = interface(&resolve, "wasi:keyvalue/store@0.2.0-draft2");
    let items = interface_items(&resolve, iface, |_| true);
    assert_eq!(
        items["type error"],
        "variant {no-such-store, access-denied, other(string)}"
    );
    assert_eq!(
        items["type key-response"],
        "record {keys: list<string>, cursor: option<string>}"
    );
    assert_eq!(
        signature_of(&sigs, "open"),
        format!(
            "func (identifier: string) -> result<own<wasi:keyvalue/store@0.2.0-draft2.bucket>, {error}>"
        )
    );
    assert_eq!(
        signature_of(&sigs, "[method]bucket.get"),
        format!(
            "method of wasi:keyvalue/store@0.2.0-draft2.bucket (self: borrow<wasi:keyvalue/store@0.2.0-draft2.bucket>, key: string) -> result<option<list<u8>>, {error}>"
        )
    );
}

#[test]
fn keyvalue_atomics_has_cas_increment_and_swap() {
    let (resolve, _) = load_repo_world().unwrap();
    let sigs = signatures(&resolve, "wasi:keyvalue/atomics@0.2.0-draft2");
    assert_eq!(
        names(&sigs),
        set(&[
            "[static]cas.new",
            "[method]cas.current",
            "increment",
            "swap"
        ])
    );
    assert_eq!(
        signature_of(&sigs, "swap"),
        "func (cas: own<wasi:keyvalue/atomics@0.2.0-draft2.cas>, value: list<u8>) \
         -> result<_, wasi:keyvalue/atomics@0.2.0-draft2.cas-error>"
    );
    assert_eq!(
        signature_of(&sigs, "increment"),
        "func (bucket: borrow<wasi:keyvalue/store@0.2.0-draft2.bucket>, key: string, delta: s64) \
         -> result<s64, wasi:keyvalue/store@0.2.0-draft2.error>"
    );
    let iface = interface(&resolve, "wasi:keyvalue/atomics@0.2.0-draft2");
    assert_eq!(
        interface_items(&resolve, iface, |_| true)["type cas-error"],
        "variant {store-error(wasi:keyvalue/store@0.2.0-draft2.error), \
         cas-failed(own<wasi:keyvalue/atomics@0.2.0-draft2.cas>)}"
    );
}

/// `get-many` as Spin's host implements it: one `(key, value)` entry per key, `none` for a key
/// without value. (Earlier copies of the draft2 WIT return `list<option<tuple<string,
/// list<u8>>>>`; a component built against those would not link on Spin.)
#[test]
fn keyvalue_batch_has_get_many_as_spin_implements_it() {
    let (resolve, _) = load_repo_world().unwrap();
    let sigs = signatures(&resolve, "wasi:keyvalue/batch@0.2.0-draft2");
    assert_eq!(names(&sigs), set(&["get-many", "set-many", "delete-many"]));
    let bucket = "borrow<wasi:keyvalue/store@0.2.0-draft2.bucket>";
    let error = "wasi:keyvalue/store@0.2.0-draft2.error";
    assert_eq!(
        signature_of(&sigs, "get-many"),
        format!(
            "func (bucket: {bucket}, keys: list<string>) \
             -> result<list<tuple<string, option<list<u8>>>>, {error}>"
        )
    );
    assert_eq!(
        signature_of(&sigs, "set-many"),
        format!(
            "func (bucket: {bucket}, key-values: list<tuple<string, list<u8>>>) \
             -> result<_, {error}>"
        )
    );
    assert_eq!(
        signature_of(&sigs, "delete-many"),
        format!("func (bucket: {bucket}, keys: list<string>) -> result<_, {error}>")
    );
}

#[test]
fn config_store_has_get_and_get_all() {
    let (resolve, _) = load_repo_world().unwrap();
    let sigs = signatures(&resolve, "wasi:config/store@0.2.0-draft-2024-09-27");
    assert_eq!(names(&sigs), set(&["get", "get-all"]));
    let error = "wasi:config/store@0.2.0-draft-2024-09-27.error";
    let iface = interface(&resolve, "wasi:config/store@0.2.0-draft-2024-09-27");
    assert_eq!(
        interface_items(&resolve, iface, |_| true)["type error"],
        "variant {upstream(string), io(string)}"
    );
    assert_eq!(
        signature_of(&sigs, "get"),
        format!("func (key: string) -> result<option<string>, {error}>")
    );
    assert_eq!(
        signature_of(&sigs, "get-all"),
        format!("func () -> result<list<tuple<string, string>>, {error}>")
    );
}
