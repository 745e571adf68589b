//! The actions behind `kart db`: every one of them can run again safely
//! (design §5).

use serde::Serialize;
use tokio_postgres::Client;

use super::{query_error, quote_ident, PgSettings};
use crate::exit::{KartError, Result};
use crate::inventory::model::Product;

pub const SCHEMA_SQL: &str = include_str!("schema.sql");

/// The workshop's tables, in the order teardown drops them.
pub const WORKSHOP_TABLES: &[&str] = &["product_views", "inventory", "order_items", "orders", "customers", "products"];

pub const PUBLICATION: &str = "workshop_cdc";

/// Serialises concurrent `kart db init` runs on one database.
const INIT_LOCK_KEY: i64 = 0x6b61_7274_0001; // "kart" + 1

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateDbReport {
    pub database: String,
    pub created: bool,
}

pub async fn create_db(pg: &PgSettings) -> Result<CreateDbReport> {
    let client = pg.connect_maintenance().await?;
    let exists = database_exists(&client, &pg.database).await?;
    if !exists {
        let sql = format!("CREATE DATABASE {}", quote_ident(&pg.database));
        if let Err(e) = client.batch_execute(&sql).await {
            // Two `kart db up` at once: the other one won.
            if e.code() != Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) {
                return Err(query_error(&format!("cannot create database {}", pg.database), e)
                    .with_hint("the user needs the CREATEDB privilege; on a managed server ask for the database to be created"));
            }
        }
    }
    Ok(CreateDbReport { database: pg.database.clone(), created: !exists })
}

async fn database_exists(client: &Client, name: &str) -> Result<bool> {
    let row = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .map_err(|e| query_error("cannot list databases", e))?;
    Ok(row.is_some())
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InitReport {
    pub database: String,
    pub already_initialised: bool,
    /// What was missing and has been created.
    pub applied: Vec<String>,
}

#[derive(Debug, Default)]
struct SchemaState {
    tables: Vec<String>,
    publication: bool,
    functions: i64,
    seeded_products: i64,
}

async fn schema_state(client: &Client, catalog: &[Product]) -> Result<SchemaState> {
    let ids: Vec<&str> = catalog.iter().map(|p| p.product_id.as_str()).collect();
    let tables: Vec<&str> = WORKSHOP_TABLES.to_vec();
    let row = client
        .query_one(
            "SELECT
               ARRAY(SELECT table_name::text FROM information_schema.tables
                     WHERE table_schema = 'public' AND table_name = ANY($1)),
               EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $2),
               (SELECT count(*) FROM pg_proc WHERE proname IN ('update_updated_at_column', 'update_last_updated_column'))",
            &[&tables, &PUBLICATION],
        )
        .await
        .map_err(|e| query_error("cannot inspect the schema", e))?;
    let mut state = SchemaState { tables: row.get(0), publication: row.get(1), functions: row.get(2), seeded_products: 0 };
    if state.tables.iter().any(|t| t == "products") {
        let row = client
            .query_one("SELECT count(*) FROM products WHERE product_id = ANY($1)", &[&ids])
            .await
            .map_err(|e| query_error("cannot count products", e))?;
        state.seeded_products = row.get(0);
    }
    Ok(state)
}

/// Creates what is missing of the schema, publication and seed rows.
pub async fn init(pg: &PgSettings, catalog: &[Product]) -> Result<InitReport> {
    let mut client = pg.connect().await?;
    let before = schema_state(&client, catalog).await?;
    let complete = before.tables.len() == WORKSHOP_TABLES.len()
        && before.publication
        && before.functions == 2
        && before.seeded_products == catalog.len() as i64;
    if complete {
        return Ok(InitReport { database: pg.database.clone(), already_initialised: true, applied: vec![] });
    }

    let tx = client.transaction().await.map_err(|e| query_error("cannot start a transaction", e))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&INIT_LOCK_KEY])
        .await
        .map_err(|e| query_error("cannot lock the schema", e))?;
    tx.batch_execute(SCHEMA_SQL).await.map_err(|e| {
        query_error("cannot apply the schema", e)
            .with_hint("the user needs CREATE on the database; CREATE PUBLICATION may need the owner or a superuser")
    })?;
    seed(&tx, catalog).await?;
    tx.commit().await.map_err(|e| query_error("cannot commit the schema", e))?;

    let mut applied = Vec::new();
    for table in WORKSHOP_TABLES.iter().rev() {
        if !before.tables.iter().any(|t| t == table) {
            applied.push(format!("table {table}"));
        }
    }
    if before.functions < 2 {
        applied.push("trigger functions".into());
    }
    if !before.publication {
        applied.push(format!("publication {PUBLICATION}"));
    }
    if before.seeded_products < catalog.len() as i64 {
        applied.push(format!("seed ({} products)", catalog.len() as i64 - before.seeded_products));
    }
    Ok(InitReport { database: pg.database.clone(), already_initialised: false, applied })
}

async fn seed(tx: &tokio_postgres::Transaction<'_>, catalog: &[Product]) -> Result<()> {
    let ids: Vec<&str> = catalog.iter().map(|p| p.product_id.as_str()).collect();
    let names: Vec<&str> = catalog.iter().map(|p| p.name.as_str()).collect();
    let categories: Vec<&str> = catalog.iter().map(|p| p.category.as_str()).collect();
    let brands: Vec<Option<&str>> = catalog.iter().map(|p| p.brand.as_deref()).collect();
    // DECIMAL has no binary binding in tokio-postgres; text casts exactly.
    let prices: Vec<String> = catalog.iter().map(|p| format!("{:.2}", p.price)).collect();
    let descriptions: Vec<&str> = catalog.iter().map(|p| p.description.as_str()).collect();
    let images: Vec<&str> = catalog.iter().map(|p| p.image_url.as_str()).collect();
    let stock: Vec<i32> = catalog.iter().map(|p| p.inventory.clamp(0, i32::MAX as i64) as i32).collect();
    tx.execute(
        "INSERT INTO products (product_id, product_name, category, brand, price, description, image_url, is_active)
         SELECT id, name, category, brand, price::numeric(10,2), description, image, TRUE
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
              AS t(id, name, category, brand, price, description, image)
         ON CONFLICT (product_id) DO NOTHING",
        &[&ids, &names, &categories, &brands, &prices, &descriptions, &images],
    )
    .await
    .map_err(|e| query_error("cannot seed products", e))?;
    tx.execute(
        "INSERT INTO inventory (product_id, quantity_on_hand, quantity_reserved, reorder_point, reorder_quantity)
         SELECT id, qty, 0, 10, 20 FROM UNNEST($1::text[], $2::int4[]) AS t(id, qty)
         ON CONFLICT (product_id) DO NOTHING",
        &[&ids, &stock],
    )
    .await
    .map_err(|e| query_error("cannot seed inventory", e))?;
    Ok(())
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TeardownReport {
    pub database: String,
    pub dropped: Vec<String>,
}

/// Drops the publication, tables and functions; nothing to drop is fine.
pub async fn teardown(pg: &PgSettings) -> Result<TeardownReport> {
    let mut client = pg.connect().await?;
    let tables: Vec<&str> = WORKSHOP_TABLES.to_vec();
    let row = client
        .query_one(
            "SELECT ARRAY(SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' AND table_name = ANY($1)),
                    EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $2)",
            &[&tables, &PUBLICATION],
        )
        .await
        .map_err(|e| query_error("cannot inspect the schema", e))?;
    let existing: Vec<String> = row.get(0);
    let publication: bool = row.get(1);
    let tx = client.transaction().await.map_err(|e| query_error("cannot start a transaction", e))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&INIT_LOCK_KEY]).await.map_err(|e| query_error("cannot lock the schema", e))?;
    let mut sql = format!("DROP PUBLICATION IF EXISTS {PUBLICATION};\n");
    for table in WORKSHOP_TABLES {
        sql.push_str(&format!("DROP TABLE IF EXISTS {table} CASCADE;\n"));
    }
    // kart's own outbox goes with the workshop's tables (it is not reported:
    // it is kart's bookkeeping, not part of the workshop's schema).
    sql.push_str("DROP TABLE IF EXISTS kart_order_outbox;\n");
    sql.push_str("DROP FUNCTION IF EXISTS update_updated_at_column() CASCADE;\nDROP FUNCTION IF EXISTS update_last_updated_column() CASCADE;\n");
    tx.batch_execute(&sql).await.map_err(|e| query_error("cannot tear down the schema", e))?;
    tx.commit().await.map_err(|e| query_error("cannot commit the teardown", e))?;
    let mut dropped = Vec::new();
    if publication {
        dropped.push(format!("publication {PUBLICATION}"));
    }
    for table in WORKSHOP_TABLES {
        if existing.iter().any(|t| t == table) {
            dropped.push(format!("table {table}"));
        }
    }
    Ok(TeardownReport { database: pg.database.clone(), dropped })
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DownReport {
    pub database: String,
    pub dropped: bool,
    /// Inactive replication slots of the database, dropped first.
    pub dropped_slots: Vec<String>,
}

/// Drops the database (and its inactive replication slots, which would
/// otherwise block the drop).
pub async fn down(pg: &PgSettings) -> Result<DownReport> {
    let client = pg.connect_maintenance().await?;
    if !database_exists(&client, &pg.database).await? {
        return Ok(DownReport { database: pg.database.clone(), dropped: false, dropped_slots: vec![] });
    }
    let slots = client
        .query("SELECT slot_name::text, active, active_pid FROM pg_replication_slots WHERE database = $1", &[&pg.database])
        .await
        .map_err(|e| query_error("cannot list replication slots", e))?;
    let mut dropped_slots = Vec::new();
    for slot in slots {
        let name: String = slot.get(0);
        let active: bool = slot.get(1);
        if active {
            let pid: Option<i32> = slot.get(2);
            return Err(KartError::user(
                "slot-in-use",
                format!("database {} has replication slot {name} in use by process {}", pg.database, pid.unwrap_or_default()),
            )
            .with_hint("stop the CDC job first (`kart job stop order-cdc`), then run `kart db down` again"));
        }
        client
            .execute("SELECT pg_drop_replication_slot($1)", &[&name])
            .await
            .map_err(|e| query_error(&format!("cannot drop replication slot {name}"), e))?;
        dropped_slots.push(name);
    }
    let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(&pg.database));
    client.batch_execute(&sql).await.map_err(|e| query_error(&format!("cannot drop database {}", pg.database), e))?;
    Ok(DownReport { database: pg.database.clone(), dropped: true, dropped_slots })
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CleanCdcReport {
    pub slot: String,
    pub dropped: bool,
}

/// Drops the CDC replication slot; a missing slot is not an error.
pub async fn clean_cdc(pg: &PgSettings) -> Result<CleanCdcReport> {
    if pg.slot.trim().is_empty() {
        return Err(KartError::user("missing-setting", "POSTGRES_REPLICATION_SLOT is empty"));
    }
    let client = pg.connect_maintenance().await?;
    let row = client
        .query_opt("SELECT active, active_pid FROM pg_replication_slots WHERE slot_name = $1", &[&pg.slot])
        .await
        .map_err(|e| query_error("cannot list replication slots", e))?;
    let Some(row) = row else {
        return Ok(CleanCdcReport { slot: pg.slot.clone(), dropped: false });
    };
    let active: bool = row.get(0);
    let holder = if active { row.get::<_, Option<i32>>(1) } else { super::cdc_slot_holder(&client, &pg.slot).await? };
    if active || holder.is_some() {
        return Err(KartError::user(
            "slot-in-use",
            format!("replication slot {} is in use by process {}", pg.slot, holder.unwrap_or_default()),
        )
        .with_hint("stop the CDC job first (`kart job stop order-cdc`)"));
    }
    match client.execute("SELECT pg_drop_replication_slot($1)", &[&pg.slot]).await {
        Ok(_) => Ok(CleanCdcReport { slot: pg.slot.clone(), dropped: true }),
        // Dropped by someone else in the meantime: the goal is reached.
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_OBJECT) => {
            Ok(CleanCdcReport { slot: pg.slot.clone(), dropped: false })
        }
        Err(e) => Err(query_error(&format!("cannot drop replication slot {}", pg.slot), e)),
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TableStatus {
    pub name: String,
    pub rows: i64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PublicationStatus {
    pub name: &'static str,
    pub exists: bool,
    pub tables: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SlotStatus {
    pub name: String,
    pub plugin: Option<String>,
    pub database: Option<String>,
    pub active: bool,
    pub active_pid: Option<i32>,
    pub confirmed_flush_lsn: Option<String>,
    /// WAL the server keeps for this slot.
    pub retained_wal_bytes: Option<i64>,
    /// Whether this is the slot POSTGRES_REPLICATION_SLOT names.
    pub configured: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DbStatus {
    pub database: String,
    pub endpoint: String,
    pub exists: bool,
    pub server_version: String,
    pub wal_level: String,
    pub tables: Vec<TableStatus>,
    pub missing_tables: Vec<String>,
    pub publication: PublicationStatus,
    pub slots: Vec<SlotStatus>,
}

pub async fn status(pg: &PgSettings) -> Result<DbStatus> {
    let maintenance = pg.connect_maintenance().await?;
    let exists = database_exists(&maintenance, &pg.database).await?;
    let client = if exists { pg.connect().await? } else { maintenance };
    let row = client
        .query_one("SELECT current_setting('wal_level'), current_setting('server_version')", &[])
        .await
        .map_err(|e| query_error("cannot read server settings", e))?;
    let wal_level: String = row.get(0);
    let server_version: String = row.get(1);

    let mut tables = Vec::new();
    let mut missing_tables = Vec::new();
    let mut publication = PublicationStatus { name: PUBLICATION, exists: false, tables: vec![] };
    if exists {
        let names: Vec<&str> = WORKSHOP_TABLES.to_vec();
        let present: Vec<String> = client
            .query_one(
                "SELECT ARRAY(SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' AND table_name = ANY($1))",
                &[&names],
            )
            .await
            .map_err(|e| query_error("cannot list tables", e))?
            .get(0);
        let mut ordered: Vec<&str> = WORKSHOP_TABLES.to_vec();
        ordered.reverse();
        for table in ordered {
            if present.iter().any(|t| t == table) {
                // Exact counts: these tables are small, and an estimate would
                // read 0 right after `db init`.
                let rows: i64 = client
                    .query_one(&format!("SELECT count(*) FROM {}", quote_ident(table)), &[])
                    .await
                    .map_err(|e| query_error(&format!("cannot count {table}"), e))?
                    .get(0);
                tables.push(TableStatus { name: table.to_string(), rows });
            } else {
                missing_tables.push(table.to_string());
            }
        }
        let pub_tables = client
            .query(
                "SELECT tablename::text FROM pg_publication_tables WHERE pubname = $1 ORDER BY tablename",
                &[&PUBLICATION],
            )
            .await
            .map_err(|e| query_error("cannot read the publication", e))?;
        let exists_row = client
            .query_one("SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)", &[&PUBLICATION])
            .await
            .map_err(|e| query_error("cannot read the publication", e))?;
        publication.exists = exists_row.get(0);
        publication.tables = pub_tables.iter().map(|r| r.get(0)).collect();
    } else {
        missing_tables = WORKSHOP_TABLES.iter().rev().map(|t| t.to_string()).collect();
    }

    let slot_rows = client
        .query(
            "SELECT slot_name::text, plugin::text, database::text, active, active_pid, confirmed_flush_lsn::text,
                    CASE WHEN restart_lsn IS NULL THEN NULL
                         ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::int8 END
             FROM pg_replication_slots
             WHERE database = $1 OR slot_name = $2
             ORDER BY slot_name",
            &[&pg.database, &pg.slot],
        )
        .await
        .map_err(|e| query_error("cannot list replication slots", e))?;
    let slots = slot_rows
        .iter()
        .map(|r| {
            let name: String = r.get(0);
            SlotStatus {
                configured: name == pg.slot,
                name,
                plugin: r.get(1),
                database: r.get(2),
                active: r.get(3),
                active_pid: r.get(4),
                confirmed_flush_lsn: r.get(5),
                retained_wal_bytes: r.get(6),
            }
        })
        .collect();
    Ok(DbStatus {
        database: pg.database.clone(),
        endpoint: pg.endpoint(),
        exists,
        server_version,
        wal_level,
        tables,
        missing_tables,
        publication,
        slots,
    })
}
