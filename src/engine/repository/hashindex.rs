//! NSIndex: borg's open-addressing hash table (id -> segment, offset) and its `index.N` file format.
