//! kart's integration tests: one binary, real services (tansu, PostgreSQL,
//! a Flink session cluster).
//! `bash scripts/test.sh` starts what they need.

mod support;

mod cdc;
mod cdc_job;
mod cli;
mod config;
mod db;
mod demo;
mod doctor;
mod flink;
mod inventory;
mod orders;
mod platform;
mod products;
mod streams;
mod tail;
mod topics;
