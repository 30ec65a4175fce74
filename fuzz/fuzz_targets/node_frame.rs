//! Node ↔ master messages: `NodeToMaster` (what the master decodes from anyone who
//! reaches its nodes port) and `MasterToNode`, each decoded, re-encoded and compared.
#![no_main]

use centrum_fuzz::round_trip;
use centrum_protocol::{MasterToNode, NodeToMaster};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    round_trip::<NodeToMaster>(data);
    round_trip::<MasterToNode>(data);
});
