//! The `pgoutput` logical decoding messages (protocol version 1), bytes in,
//! messages out, and a decoder that turns them into the order lines of
//! committed transactions. Pure: no I/O, never panics on any input.
//!
//! Only what the CDC job needs is decoded in full: Begin (the commit time),
//! Relation (column names and order), Insert (text tuple data) and Commit
//! (the LSN to confirm). Every other message is recognised by its tag and
//! skipped.

use std::collections::HashMap;
use std::fmt;

use crate::inventory::model::OrderLine;

/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01).
const PG_EPOCH_OFFSET_MS: i64 = 946_684_800_000;

/// PostgreSQL's timestamps (µs since 2000-01-01) as epoch milliseconds.
pub fn pg_micros_to_epoch_ms(micros: i64) -> i64 {
    micros.div_euclid(1000).saturating_add(PG_EPOCH_OFFSET_MS)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub flags: u8,
    pub name: String,
    pub type_oid: u32,
    pub type_modifier: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub id: u32,
    pub namespace: String,
    pub name: String,
    pub replica_identity: u8,
    pub columns: Vec<Column>,
}

/// One column of a row in tuple data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    /// An unchanged TOASTed value (updates only).
    Unchanged,
    Text(Vec<u8>),
    /// Binary format (protocol version 2+ with `binary`); never requested.
    Binary(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Begin { final_lsn: u64, commit_time: i64, xid: u32 },
    Commit { flags: u8, commit_lsn: u64, end_lsn: u64, commit_time: i64 },
    Relation(Relation),
    Insert { relation_id: u32, tuple: Vec<Value> },
    /// Any other message (Update, Delete, Truncate, Origin, Type, …), by tag.
    Other(u8),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], ParseError> {
        let end = self.at.checked_add(n).filter(|end| *end <= self.bytes.len()).ok_or_else(|| {
            ParseError(format!("message ends inside {what} (offset {}, {} bytes)", self.at, self.bytes.len()))
        })?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn u8(&mut self, what: &str) -> Result<u8, ParseError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16, ParseError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &str) -> Result<u32, ParseError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self, what: &str) -> Result<u64, ParseError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    fn i64(&mut self, what: &str) -> Result<i64, ParseError> {
        Ok(self.u64(what)? as i64)
    }

    fn cstring(&mut self, what: &str) -> Result<String, ParseError> {
        let rest = &self.bytes[self.at..];
        let len = rest.iter().position(|b| *b == 0).ok_or_else(|| ParseError(format!("{what} is not NUL-terminated")))?;
        let text = String::from_utf8_lossy(&rest[..len]).into_owned();
        self.at += len + 1;
        Ok(text)
    }
}

/// Parses one pgoutput message (one row of
/// `pg_logical_slot_peek_binary_changes`).
pub fn parse(bytes: &[u8]) -> Result<Message, ParseError> {
    let mut r = Reader { bytes, at: 0 };
    let tag = r.u8("the message tag")?;
    let message = match tag {
        b'B' => Message::Begin { final_lsn: r.u64("Begin")?, commit_time: r.i64("Begin")?, xid: r.u32("Begin")? },
        b'C' => Message::Commit {
            flags: r.u8("Commit")?,
            commit_lsn: r.u64("Commit")?,
            end_lsn: r.u64("Commit")?,
            commit_time: r.i64("Commit")?,
        },
        b'R' => {
            let id = r.u32("Relation")?;
            let namespace = r.cstring("the relation's namespace")?;
            let name = r.cstring("the relation's name")?;
            let replica_identity = r.u8("Relation")?;
            let count = r.u16("Relation")?;
            // Each column takes at least 10 bytes: no allocation beyond the input.
            let mut columns = Vec::with_capacity((count as usize).min(bytes.len() / 10));
            for _ in 0..count {
                columns.push(Column {
                    flags: r.u8("a column")?,
                    name: r.cstring("a column name")?,
                    type_oid: r.u32("a column")?,
                    type_modifier: r.u32("a column")? as i32,
                });
            }
            Message::Relation(Relation { id, namespace, name, replica_identity, columns })
        }
        b'I' => {
            let relation_id = r.u32("Insert")?;
            let kind = r.u8("Insert")?;
            if kind != b'N' {
                return Err(ParseError(format!("Insert carries tuple kind {:?}, expected 'N'", kind as char)));
            }
            Message::Insert { relation_id, tuple: tuple_data(&mut r)? }
        }
        other => Message::Other(other),
    };
    // Recognised messages must be used up exactly: trailing bytes mean the
    // format is not what we think it is.
    if !matches!(message, Message::Other(_)) && r.at != bytes.len() {
        return Err(ParseError(format!("{} unexpected trailing bytes after a {:?} message", bytes.len() - r.at, tag as char)));
    }
    Ok(message)
}

fn tuple_data(r: &mut Reader<'_>) -> Result<Vec<Value>, ParseError> {
    let count = r.u16("tuple data")?;
    let mut values = Vec::with_capacity((count as usize).min(r.bytes.len()));
    for _ in 0..count {
        let value = match r.u8("a tuple column")? {
            b'n' => Value::Null,
            b'u' => Value::Unchanged,
            b't' => {
                let len = r.u32("a text value's length")? as usize;
                Value::Text(r.take(len, "a text value")?.to_vec())
            }
            b'b' => {
                let len = r.u32("a binary value's length")? as usize;
                Value::Binary(r.take(len, "a binary value")?.to_vec())
            }
            other => return Err(ParseError(format!("unknown tuple column kind {other:#04x}"))),
        };
        values.push(value);
    }
    Ok(values)
}

/// A committed transaction: where it ends (the LSN to confirm once its lines
/// are published) and its `order_items` inserts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub end_lsn: u64,
    pub commit_ms: i64,
    pub lines: Vec<OrderLine>,
}

/// Turns a stream of messages into committed transactions. `schema` and
/// `table` name the table whose inserts become order lines.
#[derive(Debug, Default)]
pub struct Decoder {
    relations: HashMap<u32, Relation>,
    current: Option<(i64, Vec<OrderLine>)>,
}

impl Decoder {
    /// A new decoding session starts at a transaction boundary (each
    /// `pg_logical_slot_peek_binary_changes` call returns whole transactions).
    pub fn start_session(&mut self) {
        self.current = None;
    }

    pub fn feed(&mut self, message: Message) -> Result<Option<Transaction>, ParseError> {
        match message {
            Message::Begin { commit_time, .. } => {
                if self.current.is_some() {
                    return Err(ParseError("Begin inside a transaction".into()));
                }
                self.current = Some((pg_micros_to_epoch_ms(commit_time), Vec::new()));
                Ok(None)
            }
            Message::Commit { end_lsn, .. } => match self.current.take() {
                Some((commit_ms, lines)) => Ok(Some(Transaction { end_lsn, commit_ms, lines })),
                None => Err(ParseError("Commit without Begin".into())),
            },
            Message::Relation(relation) => {
                self.relations.insert(relation.id, relation);
                Ok(None)
            }
            Message::Insert { relation_id, tuple } => {
                let Some((commit_ms, lines)) = self.current.as_mut() else {
                    return Err(ParseError("Insert outside a transaction".into()));
                };
                let relation = self
                    .relations
                    .get(&relation_id)
                    .ok_or_else(|| ParseError(format!("Insert into relation {relation_id} before its Relation message")))?;
                if relation.namespace != "public" || relation.name != "order_items" {
                    return Ok(None);
                }
                lines.push(order_line(relation, &tuple, *commit_ms)?);
                Ok(None)
            }
            Message::Other(_) => Ok(None),
        }
    }
}

/// The workshop's order line from an `order_items` row (workshop spec §3.2:
/// quantity, product_id, order_id; timestamp = the commit time).
fn order_line(relation: &Relation, tuple: &[Value], commit_ms: i64) -> Result<OrderLine, ParseError> {
    if tuple.len() != relation.columns.len() {
        return Err(ParseError(format!(
            "order_items row has {} columns, its Relation message {}",
            tuple.len(),
            relation.columns.len()
        )));
    }
    let text = |name: &str| -> Result<String, ParseError> {
        let index = relation
            .columns
            .iter()
            .position(|c| c.name == name)
            .ok_or_else(|| ParseError(format!("order_items has no column {name}")))?;
        match &tuple[index] {
            Value::Text(bytes) => String::from_utf8(bytes.clone()).map_err(|_| ParseError(format!("order_items.{name} is not UTF-8"))),
            other => Err(ParseError(format!("order_items.{name} is {other:?}, expected a text value"))),
        }
    };
    let quantity_text = text("quantity")?;
    let quantity = quantity_text
        .trim()
        .parse::<i64>()
        .map_err(|_| ParseError(format!("order_items.quantity {quantity_text:?} is not an integer")))?;
    Ok(OrderLine { quantity, product_id: text("product_id")?, order_id: text("order_id")?, timestamp: commit_ms })
}

/// Encodes messages the way PostgreSQL does: for tests of the parser.
#[cfg(test)]
pub fn encode(message: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    match message {
        Message::Begin { final_lsn, commit_time, xid } => {
            out.push(b'B');
            out.extend(final_lsn.to_be_bytes());
            out.extend(commit_time.to_be_bytes());
            out.extend(xid.to_be_bytes());
        }
        Message::Commit { flags, commit_lsn, end_lsn, commit_time } => {
            out.push(b'C');
            out.push(*flags);
            out.extend(commit_lsn.to_be_bytes());
            out.extend(end_lsn.to_be_bytes());
            out.extend(commit_time.to_be_bytes());
        }
        Message::Relation(r) => {
            out.push(b'R');
            out.extend(r.id.to_be_bytes());
            out.extend(r.namespace.as_bytes());
            out.push(0);
            out.extend(r.name.as_bytes());
            out.push(0);
            out.push(r.replica_identity);
            out.extend((r.columns.len() as u16).to_be_bytes());
            for c in &r.columns {
                out.push(c.flags);
                out.extend(c.name.as_bytes());
                out.push(0);
                out.extend(c.type_oid.to_be_bytes());
                out.extend(c.type_modifier.to_be_bytes());
            }
        }
        Message::Insert { relation_id, tuple } => {
            out.push(b'I');
            out.extend(relation_id.to_be_bytes());
            out.push(b'N');
            out.extend((tuple.len() as u16).to_be_bytes());
            for value in tuple {
                match value {
                    Value::Null => out.push(b'n'),
                    Value::Unchanged => out.push(b'u'),
                    Value::Text(bytes) | Value::Binary(bytes) => {
                        out.push(if matches!(value, Value::Text(_)) { b't' } else { b'b' });
                        out.extend((bytes.len() as u32).to_be_bytes());
                        out.extend(bytes);
                    }
                }
            }
        }
        Message::Other(tag) => out.push(*tag),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
    }

    /// Captured from PostgreSQL 15: `INSERT INTO t VALUES (1,'a'),(2,NULL)`
    /// on `t(id int primary key, s text)`.
    #[test]
    fn parses_what_postgres_sends() {
        let begin = parse(&hex("42000000000c8365f8000303d36b12f6e900000386")).unwrap();
        assert_eq!(begin, Message::Begin { final_lsn: 0x0c8365f8, commit_time: 0x0303d36b12f6e9, xid: 902 });
        let relation = parse(&hex("5200004f287075626c69630074006400020169640000000017ffffffff00730000000019ffffffff")).unwrap();
        let Message::Relation(relation) = relation else { panic!("{relation:?}") };
        assert_eq!((relation.namespace.as_str(), relation.name.as_str()), ("public", "t"));
        assert_eq!(relation.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["id", "s"]);
        assert_eq!(relation.columns[0].type_oid, 23);
        assert_eq!(relation.columns[0].type_modifier, -1);
        assert_eq!(
            parse(&hex("4900004f284e0002740000000131740000000161")).unwrap(),
            Message::Insert { relation_id: 0x4f28, tuple: vec![Value::Text(b"1".to_vec()), Value::Text(b"a".to_vec())] }
        );
        assert_eq!(
            parse(&hex("4900004f284e00027400000001326e")).unwrap(),
            Message::Insert { relation_id: 0x4f28, tuple: vec![Value::Text(b"2".to_vec()), Value::Null] }
        );
        let commit = parse(&hex("4300000000000c8365f8000000000c836628000303d36b12f6e9")).unwrap();
        assert_eq!(commit, Message::Commit { flags: 0, commit_lsn: 0x0c8365f8, end_lsn: 0x0c836628, commit_time: 0x0303d36b12f6e9 });
        // 2025-… in epoch ms: the PostgreSQL epoch is 2000-01-01.
        assert_eq!(pg_micros_to_epoch_ms(0), 946_684_800_000);
        assert_eq!(pg_micros_to_epoch_ms(0x0303d36b12f6e9), 946_684_800_000 + 0x0303d36b12f6e9 / 1000);
    }

    fn order_items_relation(id: u32) -> Relation {
        let column = |name: &str, oid: u32| Column { flags: 0, name: name.into(), type_oid: oid, type_modifier: -1 };
        Relation {
            id,
            namespace: "public".into(),
            name: "order_items".into(),
            replica_identity: b'd',
            columns: vec![
                column("order_item_id", 20),
                column("order_id", 1043),
                column("product_id", 1043),
                column("quantity", 23),
                column("unit_price", 1700),
                column("discount", 1700),
                column("line_total", 1700),
            ],
        }
    }

    fn row(order: &str, product: &str, quantity: &str) -> Vec<Value> {
        ["1", order, product, quantity, "9.99", "0.00", "9.99"].iter().map(|v| Value::Text(v.as_bytes().to_vec())).collect()
    }

    #[test]
    fn decoder_yields_order_lines_per_committed_transaction() {
        let mut decoder = Decoder::default();
        let other = Relation { id: 7, namespace: "public".into(), name: "orders".into(), replica_identity: b'd', columns: vec![] };
        let messages = vec![
            Message::Begin { final_lsn: 100, commit_time: 1_000_000, xid: 1 },
            Message::Relation(other),
            Message::Insert { relation_id: 7, tuple: vec![] },
            Message::Relation(order_items_relation(9)),
            Message::Insert { relation_id: 9, tuple: row("o-1", "PROD_0001", "2") },
            Message::Insert { relation_id: 9, tuple: row("o-1", "PROD_0002", "1") },
            Message::Other(b'U'),
        ];
        for m in messages {
            assert_eq!(decoder.feed(m).unwrap(), None);
        }
        let tx = decoder.feed(Message::Commit { flags: 0, commit_lsn: 100, end_lsn: 150, commit_time: 1_000_000 }).unwrap().unwrap();
        assert_eq!(tx.end_lsn, 150);
        assert_eq!(tx.lines.len(), 2);
        assert_eq!(
            serde_json::to_string(&tx.lines[0]).unwrap(),
            r#"{"quantity":2,"productId":"PROD_0001","orderId":"o-1","timestamp":946684801000}"#
        );
        // Errors, not panics, for streams out of order.
        assert!(decoder.feed(Message::Commit { flags: 0, commit_lsn: 1, end_lsn: 2, commit_time: 0 }).is_err());
        assert!(decoder.feed(Message::Insert { relation_id: 9, tuple: row("o", "p", "1") }).is_err());
        decoder.feed(Message::Begin { final_lsn: 1, commit_time: 0, xid: 2 }).unwrap();
        assert!(decoder.feed(Message::Insert { relation_id: 9, tuple: row("o", "p", "x") }).unwrap_err().0.contains("not an integer"));
        assert!(decoder.feed(Message::Insert { relation_id: 42, tuple: vec![] }).is_err());
    }

    #[test]
    fn truncated_and_trailing_bytes_are_errors() {
        let full = encode(&Message::Insert { relation_id: 9, tuple: row("o", "p", "1") });
        for len in 1..full.len() {
            assert!(parse(&full[..len]).is_err(), "prefix of {len} bytes parsed");
        }
        let mut longer = full.clone();
        longer.push(0);
        assert!(parse(&longer).is_err());
        assert!(parse(&[]).is_err());
        assert_eq!(parse(b"Yanything").unwrap(), Message::Other(b'Y'));
    }

    fn value_strategy() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            Just(Value::Unchanged),
            proptest::collection::vec(any::<u8>(), 0..20).prop_map(Value::Text),
            proptest::collection::vec(any::<u8>(), 0..20).prop_map(Value::Binary),
        ]
    }

    fn name_strategy() -> impl Strategy<Value = String> {
        "[a-z_]{0,12}"
    }

    fn message_strategy() -> impl Strategy<Value = Message> {
        prop_oneof![
            (any::<u64>(), any::<i64>(), any::<u32>()).prop_map(|(final_lsn, commit_time, xid)| Message::Begin { final_lsn, commit_time, xid }),
            (any::<u8>(), any::<u64>(), any::<u64>(), any::<i64>())
                .prop_map(|(flags, commit_lsn, end_lsn, commit_time)| Message::Commit { flags, commit_lsn, end_lsn, commit_time }),
            (
                any::<u32>(),
                name_strategy(),
                name_strategy(),
                any::<u8>(),
                proptest::collection::vec((any::<u8>(), name_strategy(), any::<u32>(), any::<i32>()), 0..8)
            )
                .prop_map(|(id, namespace, name, replica_identity, columns)| Message::Relation(Relation {
                    id,
                    namespace,
                    name,
                    replica_identity,
                    columns: columns
                        .into_iter()
                        .map(|(flags, name, type_oid, type_modifier)| Column { flags, name, type_oid, type_modifier })
                        .collect(),
                })),
            (any::<u32>(), proptest::collection::vec(value_strategy(), 0..8))
                .prop_map(|(relation_id, tuple)| Message::Insert { relation_id, tuple }),
        ]
    }

    proptest! {
        #[test]
        fn cdc_parser_never_panics_on_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn cdc_parser_never_panics_on_messages_with_a_known_tag(
            tag in prop_oneof![Just(b'B'), Just(b'C'), Just(b'R'), Just(b'I')],
            rest in proptest::collection::vec(any::<u8>(), 0..128),
        ) {
            let mut bytes = vec![tag];
            bytes.extend(rest);
            let _ = parse(&bytes);
        }

        #[test]
        fn cdc_parser_round_trips(message in message_strategy()) {
            prop_assert_eq!(parse(&encode(&message)).unwrap(), message);
        }

        #[test]
        fn cdc_decoder_never_panics(messages in proptest::collection::vec(message_strategy(), 0..24)) {
            let mut decoder = Decoder::default();
            decoder.relations.insert(9, order_items_relation(9));
            for message in messages {
                let _ = decoder.feed(message);
            }
        }
    }
}
