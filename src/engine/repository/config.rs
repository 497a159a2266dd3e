//! The repository `config` file: a Python ConfigParser-compatible INI reader and writer.
