//! Repository locking compatible with borg 1.x: the `lock.exclusive` mutex directory and the `lock.roster` JSON file.
