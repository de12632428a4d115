//! `provisio plugin new NAME`: a connector crate made from the template connector (`connectors/example`),
//! whose files are embedded in the binary. The crate is a workspace of its own and depends on the SDK by
//! path or by git, so it builds wherever it is created.

use std::path::{Path, PathBuf};

/// The template's files, as `(path in the new crate, contents)`.
const TEMPLATE: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../../../connectors/example/Cargo.toml")),
    ("src/lib.rs", include_str!("../../../connectors/example/src/lib.rs")),
    ("src/tests.rs", include_str!("../../../connectors/example/src/tests.rs")),
    (
        "transformations/read.json",
        include_str!("../../../connectors/example/transformations/read.json"),
    ),
    (
        "transformations/write.json",
        include_str!("../../../connectors/example/transformations/write.json"),
    ),
    (
        "recordings/users.json",
        include_str!("../../../connectors/example/recordings/users.json"),
    ),
];

/// The template's dependency on the SDK, replaced in the new crate.
const TEMPLATE_SDK: &str = r#"provisio-sdk = { path = "../../sdk" }"#;

/// The SDK folder of the source tree this binary was built from (there only on the machine that built it).
const BUILT_FROM_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../sdk");

/// Where the new crate takes the SDK from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sdk {
    /// A local checkout's `sdk/` folder.
    Path(PathBuf),
    /// The Provisio repository (`git = URL`), optionally at a branch, tag or commit (`rev`).
    Git {
        /// The repository URL.
        url: String,
        /// A commit, tag or branch name.
        rev: Option<String>,
    },
}

impl Sdk {
    /// The SDK the binary was built from, when that folder exists on this machine.
    pub fn built_from() -> Option<Sdk> {
        let path = Path::new(BUILT_FROM_SDK);
        path.join("Cargo.toml").is_file().then(|| Sdk::Path(path.to_path_buf()))
    }

    /// The dependency line of `Cargo.toml`.
    fn dependency(&self) -> Result<String, String> {
        match self {
            Sdk::Path(path) => {
                let absolute = std::fs::canonicalize(path)
                    .map_err(|e| format!("the SDK folder {} cannot be used: {e}", path.display()))?;
                if !absolute.join("Cargo.toml").is_file() {
                    return Err(format!(
                        "{} is not the SDK folder (it has no Cargo.toml); give the sdk/ folder of a Provisio checkout",
                        absolute.display()
                    ));
                }
                let text = absolute.to_string_lossy();
                Ok(format!("provisio-sdk = {{ path = {} }}", toml_string(&text)))
            }
            Sdk::Git { url, rev } => Ok(match rev {
                Some(rev) => format!(
                    "provisio-sdk = {{ git = {}, rev = {} }}",
                    toml_string(url),
                    toml_string(rev)
                ),
                None => format!("provisio-sdk = {{ git = {} }}", toml_string(url)),
            }),
        }
    }
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Checks a connector name: 1–64 of `a-z 0-9 - _`, as the host requires of a plugin's name.
pub fn check_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "the connector name {name:?} must be 1 to 64 characters of a-z, 0-9, - and _"
        ))
    }
}

/// The Rust type name of a connector name: `my-api` → `MyApi`.
fn type_name(name: &str) -> String {
    let mut out = String::new();
    for part in name.split(['-', '_']).filter(|p| !p.is_empty()) {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            out.push(first.to_ascii_uppercase());
            out.extend(chars);
        }
    }
    if !out.starts_with(|c: char| c.is_ascii_alphabetic()) {
        out.insert(0, 'C');
    }
    out
}

/// The template's files made into the connector `name`, depending on `sdk`.
pub fn files(name: &str, sdk: &Sdk) -> Result<Vec<(&'static str, String)>, String> {
    check_name(name)?;
    let dependency = sdk.dependency()?;
    let package = format!("provisio-connector-{name}");
    let type_name = type_name(name);
    let mut out = Vec::new();
    for (path, text) in TEMPLATE {
        let text = match *path {
            "Cargo.toml" => {
                if !text.contains(TEMPLATE_SDK) {
                    return Err("internal error: the template's SDK dependency line changed".into());
                }
                let text = text
                    .replace("provisio-connector-example", &package)
                    .replace(
                        "Template connector: a simple REST user API. Copy it to start your own.",
                        &format!("Provisio connector {name}."),
                    )
                    .replace("version = \"1.0.0\"", "version = \"0.1.0\"")
                    .replace(TEMPLATE_SDK, &dependency);
                format!(
                    "{text}\n# A workspace of its own, so that it builds wherever it is. Remove this table to make the\n# connector a member of an existing workspace.\n[workspace]\n"
                )
            }
            "src/lib.rs" | "src/tests.rs" => text
                .replace("Descriptor::new(\"example\"", &format!("Descriptor::new({name:?}"))
                .replace("Example", &type_name)
                .replace("-p provisio-connector-example ", ""),
            _ => text.to_string(),
        };
        out.push((*path, text));
    }
    out.push((".gitignore", "/target\n".to_string()));
    Ok(out)
}

/// Writes the connector `name` into `dir`, which must not exist yet; answers what to do next.
pub fn create(name: &str, dir: &Path, sdk: &Sdk) -> Result<String, String> {
    let files = files(name, sdk)?;
    if dir.exists() {
        return Err(format!(
            "{} exists already; choose another --dir or remove it",
            dir.display()
        ));
    }
    for (path, text) in &files {
        let file = dir.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        std::fs::write(&file, text).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    }
    let artifact = format!("provisio_connector_{}.wasm", name.replace('-', "_"));
    Ok(format!(
        "created the connector {name} in {dir}\n\
         next:\n  cd {dir}\n  cargo test\n  cargo build --release --target wasm32-wasip2\n  provisio plugin check target/wasm32-wasip2/release/{artifact}\n  provisio plugin add target/wasm32-wasip2/release/{artifact}",
        dir = dir.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_types_and_dependencies() {
        assert!(check_name("my-api_2").is_ok());
        for bad in ["", "My", "a b", "ü", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(type_name("my-api_2"), "MyApi2");
        assert_eq!(type_name("9lives"), "C9lives");
        let git = Sdk::Git {
            url: "https://example.com/provisio.git".into(),
            rev: Some("v1".into()),
        };
        assert_eq!(
            git.dependency().as_deref(),
            Ok(r#"provisio-sdk = { git = "https://example.com/provisio.git", rev = "v1" }"#)
        );
        assert_eq!(toml_string(r#"C:\a"b"#), r#""C:\\a\"b""#);
    }

    #[test]
    fn the_scaffold_is_the_template_renamed() {
        let sdk = Sdk::built_from().expect("the sdk/ folder of this checkout");
        let files = files("my-api", &sdk).expect("files");
        let get = |p: &str| {
            files
                .iter()
                .find(|(path, _)| *path == p)
                .map(|(_, t)| t.clone())
                .expect(p)
        };
        let manifest = get("Cargo.toml");
        assert!(manifest.contains("name = \"provisio-connector-my-api\""), "{manifest}");
        assert!(manifest.contains("provisio-sdk = { path = \"/"), "{manifest}");
        assert!(manifest.contains("serde_json = \"1\"") && manifest.contains("edition = \"2024\""));
        assert!(
            manifest.contains("\n[workspace]\n") && !manifest.contains(".workspace"),
            "{manifest}"
        );
        let lib = get("src/lib.rs");
        assert!(lib.contains("Descriptor::new(\"my-api\"") && lib.contains("impl Connector for MyApi {"));
        assert!(!lib.contains("Example") && get("src/tests.rs").contains("MyApi::read"));
        assert!(get("recordings/users.json").contains("users"));
        let dir = std::env::temp_dir().join(format!("provisio-scaffold-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let next = create("my-api", &dir, &sdk).expect("created");
        assert!(next.contains("provisio_connector_my_api.wasm"), "{next}");
        assert!(dir.join("transformations/write.json").is_file());
        assert!(create("my-api", &dir, &sdk).is_err_and(|e| e.contains("exists already")));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
