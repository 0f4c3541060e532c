CREATE TABLE orders (
  order_id     STRING,
  customer_id  STRING,
  amount       DECIMAL(12, 2),
  currency     STRING,
  created_at   TIMESTAMP(3),
  proc_time AS PROCTIME(),
  WATERMARK FOR created_at AS created_at - INTERVAL '5' SECOND
) WITH (
  'connector' = 'dis',
  'region' = '${region}',
  'stream' = '${orders_stream}',
  'properties.group.id' = 'dli-order-enrichment',
  'scan.startup.mode' = 'group-offsets',
  'format' = 'json'
);

CREATE TABLE customers (
  customer_id  STRING,
  segment      STRING,
  country      STRING,
  PRIMARY KEY (customer_id) NOT ENFORCED
) WITH (
  'connector' = 'jdbc',
  'url' = 'jdbc:postgresql://${dws_host}:8000/crm',
  'table-name' = 'crm.customers',
  'username' = '${dws_user}',
  'lookup.cache.max-rows' = '100000',
  'lookup.cache.ttl' = '10min'
);

CREATE TABLE orders_enriched (
  order_id     STRING,
  customer_id  STRING,
  segment      STRING,
  country      STRING,
  amount       DECIMAL(12, 2),
  currency     STRING,
  created_at   TIMESTAMP(3)
) WITH (
  'connector' = 'kafka',
  'topic' = 'orders-enriched',
  'properties.bootstrap.servers' = '${kafka_brokers}',
  'format' = 'json'
);

INSERT INTO orders_enriched
SELECT o.order_id, o.customer_id, c.segment, c.country, o.amount, o.currency, o.created_at
FROM orders AS o
LEFT JOIN customers FOR SYSTEM_TIME AS OF o.proc_time AS c
  ON o.customer_id = c.customer_id;
