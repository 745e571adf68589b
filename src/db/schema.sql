-- kart's schema for the KartShoppe workshop database.
-- The workshop's six tables, columns and types (workshop spec, appendix B),
-- written so that every statement can run again: `kart db init` applies
-- whatever is missing and changes nothing that exists.

CREATE TABLE IF NOT EXISTS products (
    product_id   VARCHAR(50) PRIMARY KEY,
    product_name VARCHAR(255) NOT NULL,
    category     VARCHAR(100) NOT NULL,
    subcategory  VARCHAR(100),
    brand        VARCHAR(100),
    price        DECIMAL(10, 2) NOT NULL,
    cost         DECIMAL(10, 2),
    description  TEXT,
    image_url    VARCHAR(500),
    is_active    BOOLEAN DEFAULT TRUE,
    created_at   TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    updated_at   TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS customers (
    customer_id       VARCHAR(50) PRIMARY KEY,
    email             VARCHAR(255) UNIQUE NOT NULL,
    first_name        VARCHAR(100),
    last_name         VARCHAR(100),
    phone             VARCHAR(20),
    address_line1     VARCHAR(255),
    address_line2     VARCHAR(255),
    city              VARCHAR(100),
    state             VARCHAR(50),
    postal_code       VARCHAR(20),
    country           VARCHAR(50) DEFAULT 'US',
    registration_date TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    last_login        TIMESTAMP,
    total_orders      INTEGER DEFAULT 0,
    lifetime_value    DECIMAL(12, 2) DEFAULT 0.00
);

CREATE TABLE IF NOT EXISTS orders (
    order_id         VARCHAR(50) PRIMARY KEY,
    customer_id      VARCHAR(50) NOT NULL,
    order_date       TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    status           VARCHAR(50) DEFAULT 'pending',
    subtotal         DECIMAL(10, 2) NOT NULL,
    tax              DECIMAL(10, 2) DEFAULT 0.00,
    shipping         DECIMAL(10, 2) DEFAULT 0.00,
    total            DECIMAL(10, 2) NOT NULL,
    payment_method   VARCHAR(50),
    shipping_address TEXT,
    tracking_number  VARCHAR(100),
    notes            TEXT
);

CREATE TABLE IF NOT EXISTS order_items (
    order_item_id BIGSERIAL PRIMARY KEY,
    order_id      VARCHAR(50) NOT NULL,
    product_id    VARCHAR(50) NOT NULL,
    quantity      INTEGER NOT NULL DEFAULT 1,
    unit_price    DECIMAL(10, 2) NOT NULL,
    discount      DECIMAL(10, 2) DEFAULT 0.00,
    line_total    DECIMAL(10, 2) NOT NULL
);

CREATE TABLE IF NOT EXISTS inventory (
    inventory_id       BIGSERIAL PRIMARY KEY,
    product_id         VARCHAR(50) NOT NULL UNIQUE,
    warehouse_location VARCHAR(100) DEFAULT 'MAIN',
    quantity_on_hand   INTEGER DEFAULT 0,
    quantity_reserved  INTEGER DEFAULT 0,
    quantity_available INTEGER GENERATED ALWAYS AS (quantity_on_hand - quantity_reserved) STORED,
    reorder_point      INTEGER DEFAULT 10,
    reorder_quantity   INTEGER DEFAULT 50,
    last_restock_date  TIMESTAMP,
    last_updated       TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS product_views (
    view_id        SERIAL PRIMARY KEY,
    product_id     VARCHAR(50) NOT NULL,
    customer_id    VARCHAR(50),
    session_id     VARCHAR(100),
    view_timestamp TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    source         VARCHAR(50),
    device_type    VARCHAR(50)
);

CREATE INDEX IF NOT EXISTS idx_products_category ON products (category);
CREATE INDEX IF NOT EXISTS idx_products_price ON products (price);
CREATE INDEX IF NOT EXISTS idx_orders_customer ON orders (customer_id);
CREATE INDEX IF NOT EXISTS idx_orders_date ON orders (order_date);
CREATE INDEX IF NOT EXISTS idx_order_items_order ON order_items (order_id);
CREATE INDEX IF NOT EXISTS idx_order_items_product ON order_items (product_id);
CREATE INDEX IF NOT EXISTS idx_inventory_product ON inventory (product_id);

-- The workshop uses one function for both tables and it sets `updated_at`,
-- which `inventory` does not have, so every UPDATE of inventory fails there.
-- kart gives each table a function that names its own column.
CREATE OR REPLACE FUNCTION update_updated_at_column() RETURNS TRIGGER AS $$
BEGIN
    NEW.updated_at = CURRENT_TIMESTAMP;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION update_last_updated_column() RETURNS TRIGGER AS $$
BEGIN
    NEW.last_updated = CURRENT_TIMESTAMP;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS update_products_updated_at ON products;
CREATE TRIGGER update_products_updated_at BEFORE UPDATE ON products
    FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();

DROP TRIGGER IF EXISTS update_inventory_updated_at ON inventory;
CREATE TRIGGER update_inventory_updated_at BEFORE UPDATE ON inventory
    FOR EACH ROW EXECUTE FUNCTION update_last_updated_column();

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'workshop_cdc') THEN
        CREATE PUBLICATION workshop_cdc
            FOR TABLE products, customers, orders, order_items, inventory, product_views;
    END IF;
END
$$;

INSERT INTO customers (customer_id, email, first_name, last_name, city, state, country) VALUES
    ('cust_001', 'ada.lovelace@example.com', 'Ada', 'Lovelace', 'Portland', 'OR', 'US'),
    ('cust_002', 'grace.hopper@example.com', 'Grace', 'Hopper', 'Arlington', 'VA', 'US'),
    ('cust_003', 'alan.kay@example.com', 'Alan', 'Kay', 'Los Angeles', 'CA', 'US'),
    ('cust_004', 'barbara.liskov@example.com', 'Barbara', 'Liskov', 'Cambridge', 'MA', 'US'),
    ('cust_005', 'edsger.dijkstra@example.com', 'Edsger', 'Dijkstra', 'Austin', 'TX', 'US')
ON CONFLICT DO NOTHING;
