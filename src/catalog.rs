//! kart's product catalog: `data/initial-products.json`, compiled into the
//! binary. The database seed and the inventory job's bootstrap both come from
//! this one file (or from `INITIAL_PRODUCTS_FILE`).

use std::path::Path;

use crate::config::Settings;
use crate::exit::{KartError, Result};
use crate::inventory::model::Product;
use crate::inventory::parse::parse_products;

pub const BUILTIN_CATALOG: &str = include_str!("../data/initial-products.json");

/// kart's own catalog.
pub fn builtin() -> Vec<Product> {
    // The file is part of the binary and pinned by a unit test, so it parses.
    parse_products(BUILTIN_CATALOG.as_bytes()).unwrap_or_default()
}

/// Where the catalog came from, for messages.
#[derive(Debug, Clone)]
pub enum CatalogSource {
    Builtin,
    File(String),
}

impl std::fmt::Display for CatalogSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CatalogSource::Builtin => f.write_str("kart's built-in catalog"),
            CatalogSource::File(p) => f.write_str(p),
        }
    }
}

/// The catalog named by `INITIAL_PRODUCTS_FILE`, else the built-in one.
pub fn configured(settings: &Settings) -> Result<(Vec<Product>, CatalogSource)> {
    let path = settings.get("INITIAL_PRODUCTS_FILE")?.trim();
    if path.is_empty() {
        return Ok((builtin(), CatalogSource::Builtin));
    }
    let products = from_file(Path::new(path)).map_err(|e| {
        let place = settings.setting("INITIAL_PRODUCTS_FILE").map(|s| s.source.location()).unwrap_or_default();
        e.with_hint(format!("INITIAL_PRODUCTS_FILE comes from {place}; leave it empty to use kart's built-in catalog"))
    })?;
    Ok((products, CatalogSource::File(path.to_string())))
}

/// A catalog file in the workshop's format: a JSON array of Products.
pub fn from_file(path: &Path) -> Result<Vec<Product>> {
    let bytes = std::fs::read(path)
        .map_err(|e| KartError::user("catalog-unreadable", format!("cannot read the catalog {}: {e}", path.display())))?;
    let products = parse_products(&bytes)
        .map_err(|e| KartError::user("catalog-invalid", format!("the catalog {} is not a valid product list: {e}", path.display())))?;
    if products.is_empty() {
        return Err(KartError::user("catalog-empty", format!("the catalog {} holds no products", path.display())));
    }
    Ok(products)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_meets_the_workshop_contract() {
        let products = parse_products(BUILTIN_CATALOG.as_bytes()).expect("built-in catalog parses");
        assert_eq!(products.len(), 16);
        for (i, p) in products.iter().enumerate() {
            assert_eq!(p.product_id, format!("PROD_{:04}", i + 1));
            assert!(!p.name.is_empty() && !p.description.is_empty() && p.tags.len() == 5);
            assert!(p.price > 0.0);
        }
        let categories: std::collections::BTreeSet<_> = products.iter().map(|p| p.category.as_str()).collect();
        assert_eq!(categories.len(), 8);
        assert_eq!(products[0].inventory, 10, "the workshop's walk-through quotes PROD_0001 with 10 units");
        assert!(products.iter().filter(|p| p.inventory > 0 && p.inventory < 10).count() >= 2, "some products start low");
    }
}
