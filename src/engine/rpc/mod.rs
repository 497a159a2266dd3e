//! borg 1.x msgpack RPC: framing of the byte stream, request decoding and reply encoding.
