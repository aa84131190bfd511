//! WhatsApp's Noise_XX_25519_AESGCM_SHA256 transport: frames, handshake, certificate chain (sans-I/O).
