//! Protobuf types of WhatsApp Web, generated with prost from proto/ (no system protoc).
