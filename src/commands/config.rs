//! `kart config`: the effective settings and where each came from.

use serde_json::{json, Value};

use crate::cli::ConfigArgs;
use crate::config::{is_secret, Source};
use crate::context::Context;
use crate::exit::Result;
use crate::printer::{OutputFormat, Table, Tone};

pub fn run(args: &ConfigArgs, ctx: &Context) -> Result<()> {
    let p = &ctx.printer;
    let settings = &ctx.settings;
    match p.format() {
        OutputFormat::Json => {
            let items: Vec<Value> = settings
                .iter()
                .map(|s| {
                    let (file, line) = match &s.source {
                        Source::File { path, line } => (Some(path.display().to_string()), Some(*line)),
                        _ => (None, None),
                    };
                    let shadows = match &s.source {
                        Source::Environment { shadows: Some(inner) } => Some(inner.describe()),
                        _ => None,
                    };
                    json!({
                        "name": s.name,
                        "value": s.display_value(),
                        "source": s.source.kind(),
                        "origin": s.source.describe(),
                        "file": file,
                        "line": line,
                        "shadows": shadows,
                        "secret": is_secret(&s.name),
                        "placeholder": s.is_placeholder(),
                    })
                })
                .collect();
            p.json(json!({
                "mode": ctx.mode,
                "projectDir": ctx.project_dir.display().to_string(),
                "envFiles": settings.files_read.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
                "settings": items,
                "warnings": settings.warnings,
            }))
        }
        OutputFormat::Env => {
            for s in settings.iter() {
                if is_secret(&s.name) && !args.show_secrets && !s.value.is_empty() {
                    p.out(&format!("# {} omitted (from {}); pass --show-secrets to print it", s.name, s.source.describe()))?;
                } else {
                    p.out(&format!("export {}=\"{}\"", s.name, s.value.replace('\\', "\\\\").replace('"', "\\\"")))?;
                }
            }
            Ok(())
        }
        OutputFormat::Text => {
            p.out(&format!("mode         {}", ctx.mode.as_str()))?;
            p.out(&format!("project dir  {}", ctx.project_dir.display()))?;
            let files: Vec<String> = settings.files_read.iter().map(|f| f.display().to_string()).collect();
            p.out(&format!("env files    {}", if files.is_empty() { "none (built-in defaults)".into() } else { files.join(", ") }))?;
            p.out("")?;
            let mut table = Table::new(["SETTING", "VALUE", "FROM"]);
            for s in settings.iter() {
                let value = if s.is_placeholder() { p.paint(&s.value, Tone::Bad) } else { s.display_value() };
                let origin = match &s.source {
                    Source::Environment { shadows: Some(_) } => p.paint(&s.source.describe(), Tone::Warn),
                    Source::Default { .. } => p.paint(&s.source.describe(), Tone::Dim),
                    _ => s.source.describe(),
                };
                table.row([s.name.clone(), value, origin]);
            }
            p.out(&table.render(p))?;
            let placeholders = settings.placeholders();
            if !placeholders.is_empty() {
                let names: Vec<&str> = placeholders.iter().map(|s| s.name.as_str()).collect();
                p.warn(&format!("{} still hold a [REPLACE_WITH_…] placeholder: {}", names.len(), names.join(", ")));
            }
            Ok(())
        }
    }
}
