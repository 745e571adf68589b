//! kart's integration tests: one binary, real services (tansu, PostgreSQL).
//! `bash scripts/test.sh` starts what they need.

mod support;

mod cdc;
mod cdc_job;
mod cli;
mod config;
mod db;
mod inventory;
mod orders;
mod products;
mod streams;
mod tail;
mod topics;
