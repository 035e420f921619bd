//! Architecture invariants checked as tests (rust-analyzer's `tidy` habit):
//! the dependency directions that ARCHITECTURE.md promises, read from
//! `cargo metadata`, and the crate-level doc every library must open with.

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use serde_json::Value;

    use crate::{cargo, root};

    /// Package name → names of its normal (non-dev, non-build) dependencies,
    /// over the whole resolved graph.
    fn normal_graph() -> BTreeMap<String, BTreeSet<String>> {
        // Only the host's dependency graph: platform-specific crates of other
        // targets need not be downloaded.
        let host = std::process::Command::new("rustc")
            .arg("-vV")
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
            })
            .expect("rustc -vV names the host");
        let out = cargo()
            .args([
                "metadata",
                "--format-version",
                "1",
                "--filter-platform",
                &host,
            ])
            .output()
            .expect("cargo metadata runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
        let name_of: BTreeMap<&str, &str> = meta["packages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
            .collect();
        let mut graph = BTreeMap::new();
        for node in meta["resolve"]["nodes"].as_array().unwrap() {
            let deps: BTreeSet<String> = node["deps"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| {
                    d["dep_kinds"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|k| k["kind"].is_null())
                })
                .map(|d| name_of[d["pkg"].as_str().unwrap()].to_string())
                .collect();
            graph.insert(name_of[node["id"].as_str().unwrap()].to_string(), deps);
        }
        graph
    }

    fn closure(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_string()];
        while let Some(p) = stack.pop() {
            for d in graph.get(&p).into_iter().flatten() {
                if seen.insert(d.clone()) {
                    stack.push(d.clone());
                }
            }
        }
        seen
    }

    /// The Valor crates every library may use, each depending on no other
    /// Valor crate (checked below): atomic file writes (valor-fsio), and the
    /// small shared vocabulary of ids, SplitMix64, HTML escaping and CSV
    /// records (valor-base).
    const SHARED_LEAVES: [&str; 2] = ["valor-fsio", "valor-base"];

    fn assert_no_dep(graph: &BTreeMap<String, BTreeSet<String>>, krate: &str, prefixes: &[&str]) {
        assert_no_dep_but(graph, krate, prefixes, &[]);
    }

    /// [`assert_no_dep`], allowing the crates of `but` too.
    fn assert_no_dep_but(
        graph: &BTreeMap<String, BTreeSet<String>>,
        krate: &str,
        prefixes: &[&str],
        but: &[&str],
    ) {
        let bad: Vec<String> = closure(graph, krate)
            .into_iter()
            .filter(|d| !SHARED_LEAVES.contains(&d.as_str()) && !but.contains(&d.as_str()))
            .filter(|d| {
                prefixes
                    .iter()
                    .any(|p| d == p || d.starts_with(&format!("{p}-")))
            })
            .collect();
        assert!(
            bad.is_empty(),
            "{krate} must not depend on {prefixes:?}, but pulls in {bad:?}"
        );
    }

    #[test]
    fn dependency_directions_hold() {
        let g = normal_graph();
        // Leaves: an auditor's build is seconds.
        assert_no_dep(&g, "valor-fair", &["burn", "polars", "tokenizers", "valor"]);
        assert_no_dep(
            &g,
            "valor-values",
            &["burn", "polars", "tokenizers", "valor"],
        );
        // The shared leaves are leaves.
        for leaf in SHARED_LEAVES {
            assert_no_dep(&g, leaf, &["burn", "polars", "tokenizers", "valor"]);
            assert!(
                closure(&g, leaf).iter().all(|d| !d.starts_with("valor")),
                "{leaf} depends on another Valor crate"
            );
        }
        // The decision log is a leaf the server and the CLI share: std
        // threads, no async runtime, no tensors, no data frames.
        assert_no_dep(
            &g,
            "valor-ledger",
            &["burn", "polars", "tokenizers", "tokio", "valor"],
        );
        // Data owns polars and tokenizers, never tensors.
        assert_no_dep(&g, "valor-data", &["burn", "valor"]);
        // The model knows nothing of data files or fairness; its
        // low-precision kernels are a leaf of plain slices (no tensors).
        assert_no_dep_but(
            &g,
            "valor-bert",
            &["polars", "tokenizers", "valor"],
            &["valor-kernels"],
        );
        assert_no_dep(
            &g,
            "valor-kernels",
            &["burn", "polars", "tokenizers", "valor"],
        );
        // xtask shells out; it links no Valor crate.
        assert_no_dep(&g, "xtask", &["valor", "burn", "polars"]);
        // Serving is the top library: only valor-serve and valor-cli use the
        // async runtime and the HTTP stack directly, and no library below
        // valor-cli pulls in the server (polars' own use of tokio stays
        // inside polars).
        assert_no_dep(&g, "valor-fair", &["tokio", "axum", "hyper"]);
        assert_no_dep(&g, "valor-values", &["tokio", "axum", "hyper"]);
        for krate in g.keys().filter(|k| k.starts_with("valor-")) {
            if krate == "valor-serve" || krate == "valor-cli" {
                continue;
            }
            let direct: Vec<&String> = g[krate]
                .iter()
                .filter(|d| ["tokio", "axum", "hyper", "tower", "tower-http"].contains(&d.as_str()))
                .collect();
            assert!(
                direct.is_empty(),
                "{krate} depends directly on {direct:?}; only valor-serve and valor-cli may"
            );
            assert!(
                !closure(&g, krate).contains("valor-serve") && !closure(&g, krate).contains("axum"),
                "{krate} pulls in the server"
            );
        }
        // The testkit is dev-only: no library lists it as a normal dependency.
        for krate in [
            "valor-data",
            "valor-values",
            "valor-bert",
            "valor-train",
            "valor-fair",
            "valor-serve",
            "valor-cli",
        ] {
            for testkit in ["valor-testkit", "valor-testkit-macros"] {
                assert!(
                    !closure(&g, krate).contains(testkit),
                    "{krate} depends on {testkit}"
                );
            }
        }
    }

    #[test]
    fn every_library_says_what_it_does_not_know() {
        for krate in [
            "valor-data",
            "valor-values",
            "valor-bert",
            "valor-train",
            "valor-fair",
            "valor-testkit",
            "valor-testkit-macros",
            "valor-fsio",
            "valor-serve",
            "valor-ledger",
            "valor-kernels",
            "valor-spark",
        ] {
            let lib = root().join("crates").join(krate).join("src/lib.rs");
            let text = std::fs::read_to_string(&lib).unwrap();
            let doc: String = text
                .lines()
                .take_while(|l| l.starts_with("//!") || l.trim().is_empty() || l.starts_with("#!"))
                .collect::<Vec<_>>()
                .join("\n");
            assert!(
                doc.contains("//!"),
                "{} has no crate-level doc",
                lib.display()
            );
            assert!(
                doc.contains("Does not know about") || doc.contains("does not know about"),
                "{}: the crate doc must say what the crate does not know about",
                lib.display()
            );
        }
    }
}
