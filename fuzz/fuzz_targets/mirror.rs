//! A client's `Mirror` fed arbitrary bytes as a stream of messages (each a big-endian
//! u16 length, then a `FrontMsg`): states and patches that decode are applied. Errors
//! are fine; a refused state leaves the mirror as it was, and whatever is applied
//! leaves every entity with one value of the right type per field of its kind.
#![no_main]

use centrum_fuzz::LIMIT;
use centrum_protocol::{FrontMsg, Mirror, decode};
use libfuzzer_sys::fuzz_target;

fn check_typed(mirror: &Mirror) {
    for (id, entity) in mirror.entities() {
        let kind = mirror
            .schema()
            .kind_def(entity.kind)
            .unwrap_or_else(|| panic!("entity {id:?} of kind {} not in the schema", entity.kind));
        assert_eq!(kind.fields.len(), entity.values.len(), "entity {id:?}");
        for (def, value) in kind.fields.iter().zip(&entity.values) {
            assert!(def.accepts(value), "entity {id:?}: {value:?} in {def:?}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut mirror = Mirror::new();
    let mut rest = data;
    while let [hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        let (msg, tail) = tail.split_at(len);
        rest = tail;
        match decode::<FrontMsg>(msg, LIMIT) {
            Ok(FrontMsg::State(state)) => {
                let before = mirror.clone();
                match mirror.apply_state(&state) {
                    Ok(()) => assert_eq!(mirror.tick(), state.tick),
                    Err(_) => assert_eq!(mirror, before, "a refused state changed the mirror"),
                }
            }
            Ok(FrontMsg::Patch(patch)) => {
                let before = mirror.tick();
                if let Ok(()) = mirror.apply_patch(&patch) {
                    assert!(patch.tick.is_after(before));
                    assert_eq!(mirror.tick(), patch.tick);
                }
            }
            _ => {}
        }
        check_typed(&mirror);
    }
});
