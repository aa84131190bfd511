//! Binary XML node codec, JIDs and token dictionaries of WhatsApp Web (sans-I/O).
