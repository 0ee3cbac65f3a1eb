//! Primitive readers and writers: variable byte integer, two-byte integer, UTF-8 string,
//! binary data. Each rejects over-long lengths and truncated input in one place.
