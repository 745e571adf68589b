//! `kart doctor`: renders the checks of [`crate::doctor`]. A failed check
//! exits 1 (the fix is in the user's hands), after the whole report.

use crate::context::Context;
use crate::doctor::{self, Report, Status};
use crate::exit::{KartError, Result};
use crate::printer::Tone;

pub async fn run(ctx: &Context) -> Result<()> {
    let report = ctx
        .interruptible(async { Ok(doctor::run(ctx).await) })
        .await?;
    if ctx.printer.is_json() {
        let value = serde_json::to_value(&report)
            .map_err(|e| KartError::infra("internal", e.to_string()))?;
        ctx.printer.json(value)?;
    } else {
        print_text(ctx, &report)?;
    }
    let failed = report.failed();
    if failed.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = failed.iter().map(|c| c.name).collect();
    Err(KartError::user(
        "doctor-failed",
        format!("{} check(s) failed: {}", failed.len(), names.join(", ")),
    )
    .with_hint("apply the fixes shown, then run `kart doctor` again"))
}

fn print_text(ctx: &Context, report: &Report) -> Result<()> {
    let printer = &ctx.printer;
    let width = report
        .checks
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(0);
    for check in &report.checks {
        let tone = match check.status {
            Status::Ok => Tone::Good,
            Status::Warn => Tone::Warn,
            Status::Fail => Tone::Bad,
        };
        let status = printer.paint(&format!("{:<4}", check.status.as_str()), tone);
        printer.out(&format!(
            "{status}  {:<width$}  {}",
            check.name, check.message
        ))?;
        if let Some(fix) = &check.fix {
            let label = printer.paint("fix:", Tone::Info);
            printer.out(&format!("{:<4}  {:<width$}  {label} {fix}", "", ""))?;
        }
    }
    let (ok, warn, fail) = (
        report.count(Status::Ok),
        report.count(Status::Warn),
        report.count(Status::Fail),
    );
    let summary = format!(
        "{} checks: {ok} ok, {warn} warning(s), {fail} failed",
        report.checks.len()
    );
    let tone = if fail > 0 {
        Tone::Bad
    } else if warn > 0 {
        Tone::Warn
    } else {
        Tone::Good
    };
    printer.out("")?;
    printer.out(&printer.paint(&summary, tone))
}
