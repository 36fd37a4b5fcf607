//! Fuzz the human-edited inputs: roster files (TOML) and claim files (JSON and TOML).
//! Run: `cd protocol && RUSTC_BOOTSTRAP=1 cargo fuzz run roster_and_claim_files`.
#![no_main]

use attrib_protocol::{Claim, Roster};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(roster) = Roster::from_toml(text) {
        // A checked roster re-serialises to a roster with the same network id.
        let again = Roster::from_toml(&roster.to_toml()).expect("canonical roster reparses");
        assert_eq!(again.network_id(), roster.network_id());
    }
    let _ = serde_json::from_str::<Claim>(text);
    let _ = toml::from_str::<Claim>(text);
});
