//! Client ↔ front messages: `ClientMsg` (what a front decodes from any client) and
//! `FrontMsg` (what a client SDK decodes), each decoded, re-encoded and compared.
#![no_main]

use centrum_fuzz::round_trip;
use centrum_protocol::{ClientMsg, FrontMsg};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    round_trip::<ClientMsg>(data);
    round_trip::<FrontMsg>(data);
});
