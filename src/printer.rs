//! The one place that writes to the terminal.
//!
//! Data goes to stdout (text for people, one JSON value for scripts); progress,
//! warnings and errors go to stderr, so `kart … -o json | jq` always sees clean
//! JSON. Colour is used only when the stream it is written to is a terminal and
//! neither `--no-color` nor `NO_COLOR` is set.

use std::io::{self, IsTerminal, Write};

use console::Style;
use serde_json::{Map, Value};

use crate::exit::{KartError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Human-readable text.
    Text,
    /// One JSON value on stdout (one object per line for streaming commands).
    Json,
    /// `export KEY="value"` lines (only where a command lists it).
    Env,
}

/// Code of the error that stands for "the reader went away" (`kart … | head`).
/// It is not a failure: main exits 0 without a message.
pub const BROKEN_PIPE: &str = "broken-pipe";

#[derive(Debug, Clone)]
pub struct Printer {
    format: OutputFormat,
    quiet: bool,
    verbose: bool,
    color_out: bool,
    color_err: bool,
}

impl Printer {
    pub fn new(format: OutputFormat, quiet: bool, verbose: bool, no_color: bool) -> Self {
        let colour_allowed = !no_color && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        Self {
            format,
            quiet,
            verbose,
            color_out: colour_allowed && io::stdout().is_terminal(),
            color_err: colour_allowed && io::stderr().is_terminal(),
        }
    }

    /// A printer for tests and benchmarks: no colour, nothing assumed about terminals.
    pub fn plain(format: OutputFormat) -> Self {
        Self { format, quiet: false, verbose: false, color_out: false, color_err: false }
    }

    pub fn format(&self) -> OutputFormat {
        self.format
    }

    pub fn is_json(&self) -> bool {
        self.format == OutputFormat::Json
    }

    pub fn verbose(&self) -> bool {
        self.verbose
    }

    /// Prints the command's one JSON result, adding `schemaVersion: 1`.
    pub fn json(&self, value: Value) -> Result<()> {
        let value = with_schema_version(value);
        let text = serde_json::to_string(&value)
            .map_err(|e| KartError::infra("internal", format!("cannot encode JSON: {e}")))?;
        self.stdout_line(&text)
    }

    /// Prints one record of a streaming command as a JSON line, as given.
    pub fn json_line(&self, value: &Value) -> Result<()> {
        let text = serde_json::to_string(value)
            .map_err(|e| KartError::infra("internal", format!("cannot encode JSON: {e}")))?;
        self.stdout_line(&text)
    }

    /// Prints a line of data for people.
    pub fn out(&self, text: &str) -> Result<()> {
        self.stdout_line(text)
    }

    /// Writes bytes to stdout as they are (the caller ends its lines):
    /// streaming commands hand over many lines in one write.
    pub fn out_bytes(&self, bytes: &[u8]) -> Result<()> {
        let mut out = io::stdout().lock();
        match out.write_all(bytes).and_then(|_| out.flush()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(KartError::user(BROKEN_PIPE, "stdout closed")),
            Err(e) => Err(KartError::infra("io", format!("cannot write to stdout: {e}"))),
        }
    }

    /// Whether stdout gets colour (a terminal, colour allowed).
    pub fn colors_stdout(&self) -> bool {
        self.color_out
    }

    fn stdout_line(&self, text: &str) -> Result<()> {
        let mut out = io::stdout().lock();
        let written = out.write_all(text.as_bytes()).and_then(|_| out.write_all(b"\n"));
        match written {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                Err(KartError::user(BROKEN_PIPE, "stdout closed"))
            }
            Err(e) => Err(KartError::infra("io", format!("cannot write to stdout: {e}"))),
        }
    }

    /// Progress for people, cargo-style: a right-aligned verb and a message.
    pub fn status(&self, verb: &str, message: &str) {
        if self.quiet {
            return;
        }
        let verb = format!("{verb:>12}");
        let verb = if self.color_err { Style::new().green().bold().apply_to(verb).to_string() } else { verb };
        eprintln_safe(&format!("{verb} {message}"));
    }

    /// Details only shown with `-v`.
    pub fn debug(&self, message: &str) {
        if self.verbose && !self.quiet {
            eprintln_safe(&self.paint_err(&format!("debug: {message}"), Style::new().dim()));
        }
    }

    pub fn warn(&self, message: &str) {
        let prefix = self.paint_err("warning:", Style::new().yellow().bold());
        eprintln_safe(&format!("{prefix} {message}"));
    }

    /// Prints a failure: text with a hint for people, one JSON line for scripts.
    pub fn error(&self, error: &KartError) {
        if self.is_json() {
            let mut body = Map::new();
            body.insert("code".into(), Value::from(error.code));
            body.insert("message".into(), Value::from(error.message.clone()));
            body.insert("hint".into(), error.hint.clone().map(Value::from).unwrap_or(Value::Null));
            let line = serde_json::json!({ "error": body });
            eprintln_safe(&line.to_string());
            return;
        }
        let prefix = self.paint_err("error:", Style::new().red().bold());
        eprintln_safe(&format!("{prefix} {}", error.message));
        if let Some(hint) = &error.hint {
            let prefix = self.paint_err("hint:", Style::new().cyan().bold());
            eprintln_safe(&format!("  {prefix} {hint}"));
        }
    }

    /// Whether a one-line live display makes sense: stderr is a terminal.
    pub fn is_live(&self) -> bool {
        !self.quiet && io::stderr().is_terminal()
    }

    /// Redraws the one live status line on stderr (a terminal only).
    pub fn live(&self, text: &str) {
        if self.is_live() {
            let width = console::Term::stderr().size().1 as usize;
            let text = console::truncate_str(text, width.saturating_sub(1).max(20), "…");
            let mut err = io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K{text}");
            let _ = err.flush();
        }
    }

    /// A byte progress bar on stderr (a terminal only; `None` otherwise, so
    /// that CI logs get plain lines instead of redraw spam). Bars made at
    /// the same time share one display, so concurrent pulls stack.
    pub fn progress_bar(&self, label: &str) -> Option<indicatif::ProgressBar> {
        static BARS: std::sync::OnceLock<indicatif::MultiProgress> = std::sync::OnceLock::new();
        if !self.is_live() || self.is_json() {
            return None;
        }
        let style = indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> ");
        let bar = BARS.get_or_init(indicatif::MultiProgress::new).add(indicatif::ProgressBar::new(1));
        bar.set_style(style);
        bar.set_message(label.to_string());
        Some(bar)
    }

    /// Removes the live line so the next message starts on a clean line.
    pub fn live_clear(&self) {
        if self.is_live() {
            let mut err = io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }

    fn paint_err(&self, text: &str, style: Style) -> String {
        if self.color_err { style.apply_to(text).to_string() } else { text.to_string() }
    }

    /// Styles for stdout text: applied only when stdout is a terminal.
    pub fn paint(&self, text: &str, tone: Tone) -> String {
        if !self.color_out {
            return text.to_string();
        }
        let style = match tone {
            Tone::Good => Style::new().green(),
            Tone::Warn => Style::new().yellow(),
            Tone::Bad => Style::new().red().bold(),
            Tone::Dim => Style::new().dim(),
            Tone::Strong => Style::new().bold(),
            Tone::Info => Style::new().cyan(),
            Tone::Topic(n) => match n % 5 {
                0 => Style::new().blue(),
                1 => Style::new().magenta(),
                2 => Style::new().cyan(),
                3 => Style::new().green(),
                _ => Style::new().yellow(),
            },
        };
        style.apply_to(text).to_string()
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Tone {
    Good,
    Warn,
    Bad,
    Dim,
    Strong,
    /// Neutral news (an added product, an INFO alert).
    Info,
    /// One colour per topic of a multi-topic tail.
    Topic(usize),
}

fn eprintln_safe(text: &str) {
    // stderr going away is not worth a panic or a second error.
    let mut err = io::stderr().lock();
    let _ = err.write_all(text.as_bytes()).and_then(|_| err.write_all(b"\n"));
}

fn with_schema_version(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut out = Map::with_capacity(map.len() + 1);
            out.insert("schemaVersion".into(), Value::from(1));
            out.extend(map.into_iter().filter(|(k, _)| k != "schemaVersion"));
            Value::Object(out)
        }
        other => other,
    }
}

/// A plain text table whose columns fit their widest cell.
#[derive(Debug, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(header: I) -> Self {
        Self { header: header.into_iter().map(Into::into).collect(), rows: Vec::new() }
    }

    pub fn row<I: IntoIterator<Item = S>, S: Into<String>>(&mut self, cells: I) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Renders the table; `paint_header` styles the header row.
    pub fn render(&self, printer: &Printer) -> String {
        let columns = self.header.len();
        let mut widths = vec![0usize; columns];
        for row in std::iter::once(&self.header).chain(&self.rows) {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(console::measure_text_width(cell));
            }
        }
        let mut out = String::new();
        for (n, row) in std::iter::once(&self.header).chain(&self.rows).enumerate() {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate().take(columns) {
                let last = i + 1 == columns;
                let pad = widths[i].saturating_sub(console::measure_text_width(cell));
                let cell = if n == 0 { printer.paint(cell, Tone::Strong) } else { cell.clone() };
                line.push_str(&cell);
                if !last {
                    line.push_str(&" ".repeat(pad + 2));
                }
            }
            out.push_str(line.trim_end());
            if n + 1 < self.rows.len() + 1 {
                out.push('\n');
            }
        }
        out
    }
}
