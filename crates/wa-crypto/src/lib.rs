//! Cryptographic primitives shared by the Noise and Signal layers: Curve25519 with the DJB prefix, XEdDSA, HKDF, AES-GCM, AES-CBC, HMAC.
