//! A faithful emulator of WhatsApp's servers with simulated phones, for tests and offline use.
