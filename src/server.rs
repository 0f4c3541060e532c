//! The HTTP server: health, metrics, API, webhooks, status page. Not built yet (issue 7).
