//! Compose-style variable interpolation in string values:
//! `$VAR`, `${VAR}`, `${VAR:-default}` (unset or empty), `${VAR-default}`
//! (unset), `${VAR:?message}` / `${VAR?message}` (required) and `$$` for a
//! literal `$`. Values come from kart's resolved configuration, so a compose
//! file sees exactly what `kart config` shows.
//!
//! Hand-written rather than taken from a shell-expansion crate because
//! compose's rules differ from a shell's (`$$`, `?` errors, no command
//! substitution) and the whole grammar is this small.

/// Why a value could not be interpolated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterpolateError {
    /// `${VAR:?message}` with VAR unset (or empty).
    Required { name: String, message: String },
    /// `${` without its `}`, or a name that is not a variable name.
    Syntax(String),
}

impl std::fmt::Display for InterpolateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InterpolateError::Required { name, message } if message.is_empty() => write!(f, "{name} must be set"),
            InterpolateError::Required { name, message } => write!(f, "{name}: {message}"),
            InterpolateError::Syntax(why) => f.write_str(why),
        }
    }
}

/// Replaces every reference in `text`; `lookup` answers a variable's value
/// (`None` = unset). Names of unset variables without a default are pushed
/// to `unset` (compose warns and substitutes an empty string).
pub fn interpolate(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    unset: &mut Vec<String>,
) -> Result<String, InterpolateError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(braced) = after.strip_prefix('{') {
            let end = closing_brace(braced)
                .ok_or_else(|| InterpolateError::Syntax(format!("`${{` without a closing `}}` in {text:?}")))?;
            out.push_str(&expand(&braced[..end], lookup, unset)?);
            rest = &braced[end + 1..];
        } else {
            let len = name_len(after);
            if len == 0 {
                // A lone `$` (e.g. in a regex) stays as it is, like compose.
                out.push('$');
                rest = after;
            } else {
                out.push_str(&value_or_unset(&after[..len], lookup, unset));
                rest = &after[len..];
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The index of the `}` that closes a `${`, allowing nested `${…}` in the
/// default value.
fn closing_brace(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

fn name_len(text: &str) -> usize {
    let mut chars = text.char_indices();
    match chars.next() {
        Some((_, c)) if c == '_' || c.is_ascii_alphabetic() => {}
        _ => return 0,
    }
    chars.find(|(_, c)| !(*c == '_' || c.is_ascii_alphanumeric())).map(|(i, _)| i).unwrap_or(text.len())
}

fn value_or_unset(name: &str, lookup: &dyn Fn(&str) -> Option<String>, unset: &mut Vec<String>) -> String {
    lookup(name).unwrap_or_else(|| {
        if !unset.iter().any(|n| n == name) {
            unset.push(name.to_string());
        }
        String::new()
    })
}

fn expand(inner: &str, lookup: &dyn Fn(&str) -> Option<String>, unset: &mut Vec<String>) -> Result<String, InterpolateError> {
    let len = name_len(inner);
    if len == 0 {
        return Err(InterpolateError::Syntax(format!("`${{{inner}}}` does not start with a variable name")));
    }
    let (name, modifier) = inner.split_at(len);
    if modifier.is_empty() {
        return Ok(value_or_unset(name, lookup, unset));
    }
    let value = lookup(name);
    let (empty_counts_as_unset, op, arg) = match modifier.strip_prefix(':') {
        Some(m) => (true, m.chars().next(), m.get(1..).unwrap_or("")),
        None => (false, modifier.chars().next(), modifier.get(1..).unwrap_or("")),
    };
    let missing = match &value {
        None => true,
        Some(v) => empty_counts_as_unset && v.is_empty(),
    };
    match op {
        Some('-') if missing => interpolate(arg, lookup, unset),
        Some('-') => Ok(value.unwrap_or_default()),
        Some('?') if missing => Err(InterpolateError::Required { name: name.to_string(), message: arg.to_string() }),
        Some('?') => Ok(value.unwrap_or_default()),
        Some('+') if missing => Ok(String::new()),
        Some('+') => interpolate(arg, lookup, unset),
        _ => Err(InterpolateError::Syntax(format!("`${{{inner}}}`: unsupported modifier (kart supports :- - :? ? :+ +)"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "USER" => Some("alice".into()),
            "EMPTY" => Some(String::new()),
            "PORT" => Some("5432".into()),
            _ => None,
        }
    }

    fn run(text: &str) -> (Result<String, InterpolateError>, Vec<String>) {
        let mut unset = Vec::new();
        (interpolate(text, &env, &mut unset), unset)
    }

    #[test]
    fn the_forms_compose_files_use() {
        assert_eq!(run("${USER}").0.unwrap(), "alice");
        assert_eq!(run("$USER@host").0.unwrap(), "alice@host");
        assert_eq!(run("${MISSING:-postgres}").0.unwrap(), "postgres");
        assert_eq!(run("${EMPTY:-fallback}").0.unwrap(), "fallback");
        assert_eq!(run("${EMPTY-fallback}").0.unwrap(), "");
        assert_eq!(run("${MISSING-fallback}").0.unwrap(), "fallback");
        assert_eq!(run("pg_isready -U ${USER:-postgres} -p ${PORT}").0.unwrap(), "pg_isready -U alice -p 5432");
        assert_eq!(run("cost $$5 and $").0.unwrap(), "cost $5 and $");
        assert_eq!(run("${MISSING:-${USER}}").0.unwrap(), "alice");
        assert_eq!(run("${USER:+set}${MISSING:+set}").0.unwrap(), "set");
    }

    #[test]
    fn unset_variables_become_empty_and_are_reported_once() {
        let (value, unset) = run("${NOPE}/$NOPE/${ALSO}");
        assert_eq!(value.unwrap(), "//");
        assert_eq!(unset, vec!["NOPE".to_string(), "ALSO".to_string()]);
    }

    #[test]
    fn required_and_malformed_references_are_errors() {
        assert_eq!(
            run("${MISSING:?set it in .env}").0,
            Err(InterpolateError::Required { name: "MISSING".into(), message: "set it in .env".into() })
        );
        assert!(matches!(run("${USER").0, Err(InterpolateError::Syntax(_))));
        assert!(matches!(run("${1X}").0, Err(InterpolateError::Syntax(_))));
        assert!(matches!(run("${USER/x/y}").0, Err(InterpolateError::Syntax(_))));
    }

    proptest! {
        /// Text without `$` is returned unchanged.
        #[test]
        fn text_without_dollars_is_unchanged(text in "[^$]{0,64}") {
            prop_assert_eq!(run(&text).0.unwrap(), text);
        }

        /// Any input either interpolates or fails with a message; never panics.
        #[test]
        fn never_panics(text in "\\PC{0,64}") {
            let _ = run(&text);
        }

        /// `$$` always yields exactly one `$`.
        #[test]
        fn escaped_dollars_survive(parts in proptest::collection::vec("[a-z ]{0,8}", 1..6)) {
            let text = parts.join("$$");
            prop_assert_eq!(run(&text).0.unwrap(), parts.join("$"));
        }
    }
}
