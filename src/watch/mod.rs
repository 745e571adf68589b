//! `kart watch`: a live table of the products, from `products`,
//! `inventory-events` and `inventory-alerts`.
//!
//! On a terminal the table is redrawn in place on the alternate screen (raw
//! mode, so `q` quits without Enter); the terminal is restored however the
//! command ends. Without a terminal, or with `-o json`, it prints the state
//! once caught up and then one line per change, which is what a script or a
//! log wants.
//!
//! The reading is `kart tail`'s ([`crate::kafka::tail::open_streams`]): from
//! the beginning, read_committed, no consumer group.

pub mod board;

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossterm::event::{self, Event as TermEvent, KeyCode, KeyEventKind, KeyModifiers};
use crossterm::{cursor, execute, queue, terminal};
use tokio_util::sync::CancellationToken;

use crate::exit::{KartError, Result};
use crate::kafka::tail::{now_ms, open_streams, stdout_closed, Event, Position, StreamOptions};
use crate::kafka::KafkaSettings;
use crate::printer::Printer;
use board::{Board, ALERTS_TOPIC, EVENTS_TOPIC, PRODUCTS_TOPIC};

/// Lines a caller shows under the live table while it runs (`kart demo`'s
/// progress); updated from any thread, drawn on the next frame.
pub type Caption = Arc<Mutex<Vec<String>>>;

/// Whether the table is drawn in place: a terminal on both ends and text
/// output. Otherwise `watch` prints one line per change.
pub fn draws_in_place(printer: &Printer) -> bool {
    std::io::stdout().is_terminal() && std::io::stdin().is_terminal() && !printer.is_json()
}

/// Runs until `q`, Ctrl-C (exit 130) or a failure.
pub async fn run(
    settings: &KafkaSettings,
    printer: &Printer,
    shutdown: &CancellationToken,
    fetch_wait: Duration,
) -> Result<()> {
    run_with_caption(settings, printer, shutdown, fetch_wait, Caption::default()).await
}

/// [`run`], with `caption` drawn under the live table.
pub async fn run_with_caption(
    settings: &KafkaSettings,
    printer: &Printer,
    shutdown: &CancellationToken,
    fetch_wait: Duration,
    caption: Caption,
) -> Result<()> {
    let (settings, printer, shutdown) = (settings.clone(), printer.clone(), shutdown.clone());
    tokio::task::spawn_blocking(move || run_blocking(&settings, &printer, &shutdown, fetch_wait, &caption))
        .await
        .map_err(|e| KartError::infra("internal", format!("watch task failed: {e}")))?
}

fn run_blocking(
    settings: &KafkaSettings,
    printer: &Printer,
    shutdown: &CancellationToken,
    fetch_wait: Duration,
    caption: &Caption,
) -> Result<()> {
    let topics: Vec<String> = [PRODUCTS_TOPIC, EVENTS_TOPIC, ALERTS_TOPIC]
        .map(String::from)
        .to_vec();
    let options = StreamOptions {
        from: Position::Beginning,
        until_end: false,
        group: None,
        from_explicit: true,
        fetch_wait,
        client_id: "kart-watch".into(),
    };
    let streams = open_streams(settings, printer, &topics, &options)?;
    let result = if draws_in_place(printer) {
        let screen = Screen::enter()?;
        let result = watch_live(&streams, printer, shutdown, &screen, caption);
        drop(screen);
        result
    } else {
        printer.status(
            "Watching",
            "products, inventory-events, inventory-alerts (one line per change; Ctrl-C stops)",
        );
        watch_lines(&streams, printer, shutdown)
    };
    streams.stop();
    match result {
        Err(e) if e.code == crate::printer::BROKEN_PIPE => Ok(()),
        other => other,
    }
}

/// The longest one `drain` keeps reading: while a long history is read, the
/// readers keep the channel full, and the caller must still get back to
/// its keys (`q`, Ctrl-C in raw mode), its shutdown check and its redraw.
const DRAIN_SLICE: Duration = Duration::from_millis(50);

/// Receives what the readers have ready, for at most `DRAIN_SLICE` after
/// the first event.
fn drain(
    streams: &crate::kafka::tail::Streams,
    board: &mut Board,
    caught_up: &mut usize,
    wait: Duration,
    mut changed: impl FnMut(&Board, Vec<String>) -> Result<()>,
) -> Result<()> {
    let mut first = true;
    let mut until = None;
    loop {
        if until.is_some_and(|until| Instant::now() >= until) {
            return Ok(());
        }
        let event = if first {
            first = false;
            match streams.events.recv_timeout(wait) {
                Ok(event) => {
                    until = Some(Instant::now() + DRAIN_SLICE);
                    event
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => return Ok(()),
                Err(_) => return Err(KartError::infra("internal", "the reading threads stopped")),
            }
        } else {
            match streams.events.try_recv() {
                Ok(event) => event,
                Err(std::sync::mpsc::TryRecvError::Empty) => return Ok(()),
                Err(_) => return Err(KartError::infra("internal", "the reading threads stopped")),
            }
        };
        match event {
            Event::Records(records) => {
                for record in &records {
                    let ids = board.apply(record);
                    if !ids.is_empty() {
                        changed(board, ids)?;
                    }
                }
            }
            Event::CaughtUp(_) => {
                *caught_up += 1;
                if *caught_up == 3 {
                    board.mark_caught_up();
                }
            }
            Event::Finished(_) => {}
            Event::Failed(error) => return Err(error),
        }
    }
}

fn watch_lines(
    streams: &crate::kafka::tail::Streams,
    printer: &Printer,
    shutdown: &CancellationToken,
) -> Result<()> {
    let mut board = Board::new();
    let mut caught_up = 0;
    let mut announced = false;
    let mut last_check = Instant::now();
    loop {
        if shutdown.is_cancelled() {
            return Err(KartError::interrupted());
        }
        // `watch | head -1`: with nothing changing, no write would ever
        // fail, so the closed pipe is looked for.
        if last_check.elapsed() >= Duration::from_millis(200) {
            last_check = Instant::now();
            if stdout_closed() {
                return Ok(());
            }
        }
        let ready = caught_up >= 3;
        drain(
            streams,
            &mut board,
            &mut caught_up,
            Duration::from_millis(100),
            |board, ids| {
                // Before catching up, changes are history: the state is printed
                // once, when it is complete.
                if !ready {
                    return Ok(());
                }
                for id in ids {
                    if let Some(row) = board.row(&id) {
                        print_row(printer, row)?;
                    }
                }
                Ok(())
            },
        )?;
        if !announced && caught_up >= 3 {
            announced = true;
            for row in board.rows() {
                print_row(printer, row)?;
            }
            if board.is_empty() {
                printer.status("Waiting", "no products yet: the inventory job publishes them (`kart job deploy inventory`)");
            }
        }
    }
}

fn print_row(printer: &Printer, row: &board::Row) -> Result<()> {
    if printer.is_json() {
        printer.json_line(&row.to_json())
    } else {
        printer.out(&row.to_line())
    }
}

fn watch_live(
    streams: &crate::kafka::tail::Streams,
    printer: &Printer,
    shutdown: &CancellationToken,
    screen: &Screen,
    caption: &Caption,
) -> Result<()> {
    let mut board = Board::new();
    let mut caught_up = 0;
    let mut dirty = true;
    let mut drawn_caption: Vec<String> = Vec::new();
    let mut last_draw = Instant::now() - Duration::from_secs(1);
    let paint = |text: &str, tone| printer.paint(text, tone);
    loop {
        if shutdown.is_cancelled() {
            return Err(KartError::interrupted());
        }
        // Keys first: quitting must not wait behind a burst of records.
        while event::poll(Duration::ZERO).map_err(term_error)? {
            match event::read().map_err(term_error)? {
                TermEvent::Key(key) if key.kind != KeyEventKind::Release => match key.code {
                    KeyCode::Char('q') | KeyCode::Esc => return Ok(()),
                    // Raw mode turns Ctrl-C into a key: it means what it
                    // means elsewhere, interrupted (exit 130).
                    KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                        return Err(KartError::interrupted())
                    }
                    _ => {}
                },
                TermEvent::Resize(..) => dirty = true,
                _ => {}
            }
        }
        drain(
            streams,
            &mut board,
            &mut caught_up,
            Duration::from_millis(50),
            |_, _| {
                dirty = true;
                Ok(())
            },
        )?;
        let caption_now = caption.lock().map(|c| c.clone()).unwrap_or_default();
        if caption_now != drawn_caption {
            dirty = true;
        }
        // Redraw on change (at most 20 times a second) and every second for
        // the "ago" column.
        let due = last_draw.elapsed() >= Duration::from_secs(1)
            || (dirty && last_draw.elapsed() >= Duration::from_millis(50));
        if due {
            let (width, height) = screen_size();
            let below = if caption_now.is_empty() { 0 } else { caption_now.len() + 1 };
            let mut frame = if caught_up >= 3 {
                board.render(width as usize, (height as usize).saturating_sub(below).max(3), now_ms(), &paint)
            } else {
                vec![format!("kart watch · reading products, inventory-events, inventory-alerts ({} records so far)…", board.len())]
            };
            if !caption_now.is_empty() {
                frame.push(String::new());
                frame.extend(caption_now.iter().cloned());
            }
            drawn_caption = caption_now;
            screen.draw(&frame)?;
            last_draw = Instant::now();
            dirty = false;
        }
    }
}

/// The terminal's size; a pseudo-terminal nobody sized (`script`, some CI
/// runners) says 0×0, then COLUMNS and LINES or 100×30 stand in.
fn screen_size() -> (u16, u16) {
    match terminal::size() {
        Ok((width, height)) if width > 0 && height > 0 => (width, height),
        _ => {
            let env = |name: &str, default: u16| {
                std::env::var(name)
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .filter(|v| *v > 0)
                    .unwrap_or(default)
            };
            (env("COLUMNS", 100), env("LINES", 30))
        }
    }
}

/// The terminal in raw mode on the alternate screen; restored on drop,
/// which also runs when the command fails or panics.
struct Screen;

impl Screen {
    fn enter() -> Result<Screen> {
        terminal::enable_raw_mode().map_err(term_error)?;
        let screen = Screen;
        execute!(
            std::io::stdout(),
            terminal::EnterAlternateScreen,
            cursor::Hide
        )
        .map_err(term_error)?;
        Ok(screen)
    }

    fn draw(&self, lines: &[String]) -> Result<()> {
        let mut out = std::io::stdout().lock();
        queue!(out, cursor::MoveTo(0, 0)).map_err(term_error)?;
        for (row, line) in lines.iter().enumerate() {
            queue!(
                out,
                cursor::MoveTo(0, row as u16),
                terminal::Clear(terminal::ClearType::UntilNewLine)
            )
            .map_err(term_error)?;
            out.write_all(line.as_bytes()).map_err(term_error)?;
        }
        queue!(
            out,
            cursor::MoveTo(0, lines.len() as u16),
            terminal::Clear(terminal::ClearType::FromCursorDown)
        )
        .map_err(term_error)?;
        out.flush().map_err(term_error)
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let _ = execute!(
            std::io::stdout(),
            terminal::LeaveAlternateScreen,
            cursor::Show
        );
        let _ = terminal::disable_raw_mode();
    }
}

fn term_error(error: std::io::Error) -> KartError {
    if error.kind() == std::io::ErrorKind::BrokenPipe {
        return KartError::user(crate::printer::BROKEN_PIPE, "stdout closed");
    }
    KartError::infra("terminal", format!("cannot drive the terminal: {error}"))
}
