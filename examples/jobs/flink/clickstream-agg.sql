-- Per-minute page view and unique visitor counts per page and channel.
-- Passwords never live in git: the DWS password comes from the DLI datasource
-- authentication configured for the queue's enhanced datasource connection.
CREATE TABLE clicks (
  user_id     STRING,
  session_id  STRING,
  page_url    STRING,
  channel     STRING,
  event_type  STRING,
  event_time  TIMESTAMP(3),
  WATERMARK FOR event_time AS event_time - INTERVAL '10' SECOND
) WITH (
  'connector' = 'kafka',
  'topic' = 'web-clickstream',
  'properties.bootstrap.servers' = '${kafka_brokers}',
  'properties.group.id' = 'dli-clickstream-agg',
  'scan.startup.mode' = 'group-offsets',
  'format' = 'json',
  'json.ignore-parse-errors' = 'true'
);

CREATE TABLE page_minute_stats (
  window_start TIMESTAMP(3),
  window_end   TIMESTAMP(3),
  page_url     STRING,
  channel      STRING,
  page_views   BIGINT,
  visitors     BIGINT,
  PRIMARY KEY (window_start, page_url, channel) NOT ENFORCED
) WITH (
  'connector' = 'gaussdb',
  'url' = 'jdbc:gaussdb://${dws_host}:8000/analytics',
  'table-name' = 'web.page_minute_stats',
  'username' = '${dws_user}',
  'write.mode' = 'upsert',
  'sink.buffer-flush.max-rows' = '1000',
  'sink.buffer-flush.interval' = '2s'
);

INSERT INTO page_minute_stats
SELECT
  window_start,
  window_end,
  page_url,
  channel,
  COUNT(*)                 AS page_views,
  COUNT(DISTINCT user_id)  AS visitors
FROM TABLE(
  TUMBLE(TABLE clicks, DESCRIPTOR(event_time), INTERVAL '1' MINUTE)
)
WHERE event_type = 'page_view'
GROUP BY window_start, window_end, page_url, channel;
