//! The part of the Compose format kart supports, checked with line numbers
//! before the file is handed to the Compose model.
//!
//! The `docker-compose-types` model accepts the whole Compose specification
//! and silently keeps keys kart would ignore (`deploy`, `build`, `networks`,
//! …); a student would then wonder why a setting has no effect. So a
//! position-keeping YAML pass walks the file first and rejects any key
//! outside this subset with `file:line`.

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Top-level keys.
pub const TOP_LEVEL: &[&str] = &["name", "version", "services", "volumes"];
/// Keys of one service.
pub const SERVICE: &[&str] = &[
    "image",
    "container_name",
    "command",
    "entrypoint",
    "environment",
    "env_file",
    "ports",
    "volumes",
    "healthcheck",
    "depends_on",
    "profiles",
    "platform",
    "labels",
    "restart",
    "user",
    "working_dir",
    "hostname",
    "stop_grace_period",
    "pull_policy",
];
pub const HEALTHCHECK: &[&str] = &["test", "interval", "timeout", "retries", "start_period", "start_interval", "disable"];
pub const DEPENDS_ON: &[&str] = &["condition", "required", "restart"];
/// Keys of a top-level named volume (an empty entry is the usual form).
pub const VOLUME: &[&str] = &["name", "labels"];
/// Keys of a long-syntax port.
pub const PORT: &[&str] = &["target", "published", "host_ip", "protocol"];
/// Keys of a long-syntax mount.
pub const MOUNT: &[&str] = &["type", "source", "target", "read_only"];

/// A key outside the subset, or YAML kart cannot read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubsetError {
    /// 1-based.
    pub line: usize,
    pub message: String,
}

#[derive(Debug)]
enum Node {
    Map(Vec<(String, usize, Node)>),
    Seq(Vec<Node>),
    Scalar,
}

/// Builds a tree of keys with their lines from parser events.
#[derive(Default)]
struct TreeBuilder {
    stack: Vec<(Node, Option<(String, usize)>)>,
    /// A mapping's key waiting for its value.
    pending_key: Vec<Option<(String, usize)>>,
    root: Option<Node>,
}

impl TreeBuilder {
    fn push_value(&mut self, node: Node, mark: Marker) {
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some((Node::Seq(items), _)) => items.push(node),
            Some((Node::Map(entries), _)) => {
                let slot = self.pending_key.last_mut().expect("a key slot per open mapping");
                match slot.take() {
                    Some((key, line)) => entries.push((key, line, node)),
                    None => {
                        // This value is a key. Only scalar keys matter to kart.
                        let _ = mark;
                    }
                }
            }
            Some((Node::Scalar, _)) => {}
        }
    }
}

impl MarkedEventReceiver for TreeBuilder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        match event {
            Event::MappingStart(..) => {
                self.stack.push((Node::Map(Vec::new()), None));
                self.pending_key.push(None);
            }
            Event::SequenceStart(..) => self.stack.push((Node::Seq(Vec::new()), None)),
            Event::MappingEnd => {
                self.pending_key.pop();
                if let Some((node, _)) = self.stack.pop() {
                    self.push_value(node, mark);
                }
            }
            Event::SequenceEnd => {
                if let Some((node, _)) = self.stack.pop() {
                    self.push_value(node, mark);
                }
            }
            Event::Scalar(text, ..) => {
                let is_key = matches!(self.stack.last(), Some((Node::Map(_), _)))
                    && self.pending_key.last().is_some_and(|slot| slot.is_none());
                if is_key {
                    if let Some(slot) = self.pending_key.last_mut() {
                        *slot = Some((text, mark.line()));
                    }
                } else {
                    self.push_value(Node::Scalar, mark);
                }
            }
            Event::Alias(_) => self.push_value(Node::Scalar, mark),
            _ => {}
        }
    }
}

/// Checks `text` against the subset; every offending key, in file order.
pub fn check(text: &str) -> Result<(), Vec<SubsetError>> {
    let mut builder = TreeBuilder::default();
    let mut parser = Parser::new_from_str(text);
    if let Err(e) = parser.load(&mut builder, false) {
        return Err(vec![SubsetError { line: e.marker().line(), message: format!("not valid YAML: {}", e.info()) }]);
    }
    let mut errors = Vec::new();
    let Some(Node::Map(top)) = builder.root else {
        return Err(vec![SubsetError { line: 1, message: "expected a mapping with `services:` at the top".into() }]);
    };
    for (key, line, value) in &top {
        if is_extension(key) {
            continue;
        }
        if !TOP_LEVEL.contains(&key.as_str()) {
            errors.push(unsupported(*line, key, TOP_LEVEL));
            continue;
        }
        match (key.as_str(), value) {
            ("services", Node::Map(services)) => {
                for (service, _, body) in services {
                    check_service(service, body, &mut errors);
                }
            }
            ("volumes", Node::Map(volumes)) => {
                for (volume, _, body) in volumes {
                    check_keys(&format!("volumes.{volume}"), body, VOLUME, &mut errors);
                }
            }
            _ => {}
        }
    }
    if !top.iter().any(|(k, _, _)| k == "services") {
        errors.push(SubsetError { line: 1, message: "no `services:` section".into() });
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn check_service(service: &str, body: &Node, errors: &mut Vec<SubsetError>) {
    let Node::Map(entries) = body else { return };
    for (key, line, value) in entries {
        let path = format!("services.{service}.{key}");
        if is_extension(key) {
            continue;
        }
        if !SERVICE.contains(&key.as_str()) {
            errors.push(unsupported(*line, &path, SERVICE));
            continue;
        }
        match key.as_str() {
            "healthcheck" => check_keys(&path, value, HEALTHCHECK, errors),
            "depends_on" => {
                if let Node::Map(deps) = value {
                    for (dep, _, condition) in deps {
                        check_keys(&format!("{path}.{dep}"), condition, DEPENDS_ON, errors);
                    }
                }
            }
            "ports" => check_items(&path, value, PORT, errors),
            "volumes" => check_items(&path, value, MOUNT, errors),
            _ => {}
        }
    }
}

fn check_items(path: &str, value: &Node, allowed: &[&str], errors: &mut Vec<SubsetError>) {
    if let Node::Seq(items) = value {
        for item in items {
            check_keys(path, item, allowed, errors);
        }
    }
}

fn check_keys(path: &str, value: &Node, allowed: &[&str], errors: &mut Vec<SubsetError>) {
    if let Node::Map(entries) = value {
        for (key, line, _) in entries {
            if !is_extension(key) && !allowed.contains(&key.as_str()) {
                errors.push(unsupported(*line, &format!("{path}.{key}"), allowed));
            }
        }
    }
}

fn is_extension(key: &str) -> bool {
    key.starts_with("x-")
}

fn unsupported(line: usize, path: &str, allowed: &[&str]) -> SubsetError {
    SubsetError { line, message: format!("unsupported key `{path}` (kart supports here: {})", allowed.join(", ")) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn kart_s_own_compose_files_are_inside_the_subset() {
        check(include_str!("../../compose-local.yml")).unwrap();
        check(include_str!("../../compose-remote.yml")).unwrap();
    }

    #[test]
    fn unsupported_keys_are_named_with_their_line() {
        let text = "name: x\nservices:\n  db:\n    image: postgres\n    deploy:\n      replicas: 2\n    healthcheck:\n      test: [\"CMD\", \"true\"]\n      bogus: 1\nnetworks:\n  n: {}\n";
        let errors = check(text).unwrap_err();
        let summary: Vec<(usize, String)> = errors.iter().map(|e| (e.line, e.message.split(' ').nth(2).unwrap().to_string())).collect();
        assert_eq!(
            summary,
            vec![
                (5, "`services.db.deploy`".to_string()),
                (9, "`services.db.healthcheck.bogus`".to_string()),
                (10, "`networks`".to_string())
            ]
        );
    }

    #[test]
    fn extensions_and_long_syntax_are_accepted() {
        let text = "x-common: &c {a: 1}\nservices:\n  s:\n    image: i\n    x-note: hi\n    ports:\n      - target: 80\n        published: 8080\n    volumes:\n      - type: volume\n        source: v\n        target: /data\n    depends_on:\n      t:\n        condition: service_healthy\n  t:\n    image: i\nvolumes:\n  v:\n";
        check(text).unwrap();
    }

    #[test]
    fn invalid_yaml_reports_a_line() {
        let errors = check("services:\n  s:\n    image: [unclosed\n").unwrap_err();
        assert!(errors[0].message.starts_with("not valid YAML"), "{errors:?}");
        assert!(errors[0].line >= 3, "{errors:?}");
    }

    proptest! {
        /// Whatever the bytes, the check answers and never panics.
        #[test]
        fn never_panics(text in "\\PC{0,200}") {
            let _ = check(&text);
        }

        /// Any unknown service key is reported on the line it is written.
        #[test]
        fn unknown_service_keys_are_found(key in "[a-w][a-z_]{2,12}") {
            prop_assume!(!SERVICE.contains(&key.as_str()));
            let text = format!("services:\n  s:\n    image: i\n    {key}: 1\n");
            let errors = check(&text).unwrap_err();
            prop_assert_eq!(errors.len(), 1);
            prop_assert_eq!(errors[0].line, 4);
        }
    }
}
