//! High-level async WhatsApp Web client with a typed event stream.
