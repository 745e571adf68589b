//! kart's integration tests: one binary, real services (tansu, PostgreSQL).
//! `bash scripts/test.sh` starts what they need.

mod support;

mod cdc;
mod cli;
mod config;
mod db;
mod inventory;
mod products;
mod streams;
mod topics;
