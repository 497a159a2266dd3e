//! Segment files: the `BORG_SEG` magic and the PUT/DELETE/COMMIT entry codec with its crc32.
