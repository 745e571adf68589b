//! Env files in the workshop's syntax (`export KEY="value"`), read with
//! `dotenvy` and located line by line so that errors and `kart config` can
//! name the file and line a value came from.
//!
//! Quoting follows dotenvy (and so the shell): `$VAR` and `${VAR}` expand inside
//! double quotes and bare values, never inside single quotes. A password with a
//! `$` in it belongs in single quotes.

use std::path::{Path, PathBuf};

/// One assignment, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: String,
    /// 1-based line of the assignment.
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvFileError {
    pub path: PathBuf,
    pub line: usize,
    pub reason: String,
}

impl std::fmt::Display for EnvFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.path.display(), self.line, self.reason)
    }
}

/// Parses env-file text. `path` only labels errors.
pub fn parse(text: &str, path: &Path) -> Result<Vec<Entry>, EnvFileError> {
    let physical: Vec<&str> = text.lines().collect();
    let mut cursor = 0usize; // first physical line not yet attributed
    let mut entries = Vec::new();
    for item in dotenvy::from_read_iter(text.as_bytes()) {
        match item {
            Ok((key, value)) => {
                let line = find_assignment(&physical, cursor, &key).unwrap_or(cursor);
                cursor = line + 1;
                entries.push(Entry { key, value, line: line + 1 });
            }
            Err(err) => {
                let (line, reason) = describe_error(&physical, cursor, &err);
                return Err(EnvFileError { path: path.to_path_buf(), line: line + 1, reason });
            }
        }
    }
    Ok(entries)
}

/// Reads and parses a file.
pub fn read(path: &Path) -> Result<Vec<Entry>, EnvFileError> {
    let text = std::fs::read_to_string(path).map_err(|e| EnvFileError {
        path: path.to_path_buf(),
        line: 0,
        reason: format!("cannot read: {e}"),
    })?;
    parse(&text, path)
}

fn assignment_key(line: &str) -> Option<&str> {
    let rest = line.trim_start();
    let rest = match rest.strip_prefix("export") {
        Some(after) if after.starts_with(char::is_whitespace) => after.trim_start(),
        _ => rest,
    };
    let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))?;
    let (key, after) = rest.split_at(end);
    after.trim_start().starts_with('=').then_some(key)
}

fn find_assignment(lines: &[&str], from: usize, key: &str) -> Option<usize> {
    (from..lines.len()).find(|&i| assignment_key(lines[i]) == Some(key))
}

fn describe_error(lines: &[&str], from: usize, err: &dotenvy::Error) -> (usize, String) {
    match err {
        dotenvy::Error::LineParse(text, _index) => {
            let first = text.lines().next().unwrap_or("").trim();
            let line = (from..lines.len())
                .find(|&i| !first.is_empty() && lines[i].trim() == first)
                .or_else(|| (from..lines.len()).find(|&i| !lines[i].trim().is_empty() && !lines[i].trim_start().starts_with('#')))
                .unwrap_or(from.min(lines.len().saturating_sub(1)));
            let shown: String = first.chars().take(60).collect();
            let why = if text.contains('"') || text.contains('\'') {
                "unterminated quote or malformed value"
            } else {
                "expected `export KEY=\"value\"` or `KEY=value`"
            };
            (line, format!("{why}: `{shown}`"))
        }
        other => (from, other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(text: &str) -> Result<Vec<Entry>, EnvFileError> {
        parse(text, Path::new("test.env"))
    }

    #[test]
    fn reads_the_workshop_syntax_with_lines() {
        let entries = p("# comment\n\nexport KAFKA_USER=\"\"\nexport POSTGRES_PORT=\"5432\"\nPLAIN=yes\n").unwrap();
        assert_eq!(
            entries,
            vec![
                Entry { key: "KAFKA_USER".into(), value: "".into(), line: 3 },
                Entry { key: "POSTGRES_PORT".into(), value: "5432".into(), line: 4 },
                Entry { key: "PLAIN".into(), value: "yes".into(), line: 5 },
            ]
        );
    }

    #[test]
    fn single_quotes_keep_dollars() {
        let entries = p("export KAFKA_PASSWORD='pa$$word'\n").unwrap();
        assert_eq!(entries[0].value, "pa$$word");
    }

    #[test]
    fn malformed_line_names_its_line() {
        let err = p("export A=\"1\"\n# ok\nthis is not an assignment\nexport B=\"2\"\n").unwrap_err();
        assert_eq!(err.line, 3, "{err}");
        assert!(err.to_string().starts_with("test.env:3:"), "{err}");
    }

    #[test]
    fn unterminated_quote_is_an_error() {
        let err = p("export A=\"1\"\nexport B=\"open\n").unwrap_err();
        assert_eq!(err.line, 2, "{err}");
    }

    proptest! {
        #[test]
        fn never_panics(text in "\\PC{0,200}") {
            let _ = p(&text);
        }

        #[test]
        fn never_panics_on_env_like_text(text in "((export )?[A-Z_]{1,8}=(\"[^\"\n]{0,10}\"?|'[^'\n]{0,10}'?|[a-z$#{} ]{0,10})\n|#[^\n]{0,10}\n|\n){0,12}") {
            let _ = p(&text);
        }

        #[test]
        fn round_trips_export_lines(
            pairs in proptest::collection::vec(("[A-Z][A-Z0-9_]{0,15}", "[a-zA-Z0-9 .:/,_@\\[\\]-]{0,30}"), 0..12),
            blank_before in proptest::collection::vec(0usize..3, 12),
        ) {
            let mut text = String::new();
            let mut expected = Vec::new();
            let mut line = 0;
            for (i, (key, value)) in pairs.iter().enumerate() {
                for _ in 0..blank_before[i] { text.push_str("# filler\n"); line += 1; }
                text.push_str(&format!("export {key}=\"{value}\"\n"));
                line += 1;
                expected.push(Entry { key: key.clone(), value: value.clone(), line });
            }
            prop_assert_eq!(p(&text).unwrap(), expected);
        }
    }
}
