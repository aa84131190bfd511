//! Broadcaster: a server that connects many WhatsApp accounts behind a REST API, live events, webhooks and a dashboard.
