//! Signal protocol v3 as WhatsApp uses it: X3DH, double ratchet, sender keys (sans-I/O).
