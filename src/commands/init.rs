//! `kart init`: write kart's default files into the project directory,
//! never overwriting anything.

use std::path::Path;

use serde_json::json;

use crate::context::Context;
use crate::exit::{KartError, Result};

/// The files `kart init` writes, with the content built into the binary.
pub const PROJECT_FILES: &[(&str, &str)] = &[
    ("compose-local.yml", include_str!("../../compose-local.yml")),
    ("compose-remote.yml", include_str!("../../compose-remote.yml")),
    (".env.local", include_str!("../../.env.local")),
    (".env.remote", include_str!("../../.env.remote")),
    ("licence.env.example", include_str!("../../licence.env.example")),
];

const GITIGNORE_ENTRY: &str = ".kart/";

pub fn run(ctx: &Context) -> Result<()> {
    let dir = &ctx.project_dir;
    let mut created = Vec::new();
    let mut skipped = Vec::new();
    for (name, content) in PROJECT_FILES {
        let path = dir.join(name);
        if write_new(&path, content)? {
            created.push(name.to_string());
        } else {
            skipped.push(name.to_string());
        }
    }
    let gitignore = dir.join(".gitignore");
    let existing = std::fs::read_to_string(&gitignore).unwrap_or_default();
    if existing.lines().any(|l| l.trim() == GITIGNORE_ENTRY || l.trim() == ".kart") {
        skipped.push(".gitignore".into());
    } else {
        let mut text = existing.clone();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str("# kart's job state, logs and native service data\n.kart/\n");
        std::fs::write(&gitignore, text)
            .map_err(|e| KartError::infra("io", format!("cannot write {}: {e}", gitignore.display())))?;
        created.push(if existing.is_empty() { ".gitignore".into() } else { ".gitignore (added .kart/)".to_string() });
    }
    let p = &ctx.printer;
    if p.is_json() {
        return p.json(json!({ "projectDir": dir.display().to_string(), "created": created, "skipped": skipped }));
    }
    for name in &created {
        p.status("Created", name);
    }
    for name in &skipped {
        p.status("Skipped", &format!("{name} (exists)"));
    }
    p.out(&format!("project files are in {}", dir.display()))
}

/// Creates `path` with `content` unless it exists; `Ok(false)` when it did.
fn write_new(path: &Path, content: &str) -> Result<bool> {
    use std::io::Write;
    match std::fs::OpenOptions::new().write(true).create_new(true).open(path) {
        Ok(mut file) => {
            file.write_all(content.as_bytes())
                .map_err(|e| KartError::infra("io", format!("cannot write {}: {e}", path.display())))?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(KartError::infra("io", format!("cannot create {}: {e}", path.display()))),
    }
}
