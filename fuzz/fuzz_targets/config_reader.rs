//! The repository config reader: any `config` bytes give a config or a clean error; a parsed
//! config renders to text that parses to the same sections and values; the `[repository]`
//! validation and the nonce reader never panic.
#![no_main]

use borg_gate::engine::borg1::repository::config::{
    ConfigFile, RepositoryConfig, last_segment_checked, parse_nonce, repository_key,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let _ = parse_nonce(bytes);
    let Ok(config) = ConfigFile::parse_bytes(bytes) else {
        return;
    };
    let text = config.to_text();
    let again = ConfigFile::parse(&text).expect("our own rendering parses");
    let sections: Vec<&str> = config.sections().collect();
    assert_eq!(sections, again.sections().collect::<Vec<_>>());
    for section in sections {
        assert_eq!(config.options(section), again.options(section), "{text}");
    }
    let _ = RepositoryConfig::from_config(&config, None);
    let _ = RepositoryConfig::from_config(&config, Some(0));
    let _ = last_segment_checked(&config);
    let _ = repository_key(&config);
});
