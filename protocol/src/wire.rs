//! Hand-written MessagePack for the hot path (patches, full state, message prefixes),
//! where values are laid out by the schema rather than by serde.

use crate::Value;

// Writing to a Vec<u8> cannot fail; rmp's signatures are fallible only for other writers.
const VEC_WRITE: &str = "writing MessagePack to a Vec cannot fail";

pub(crate) fn uint(out: &mut Vec<u8>, v: u64) {
    rmp::encode::write_uint(out, v).expect(VEC_WRITE);
}

pub(crate) fn sint(out: &mut Vec<u8>, v: i64) {
    rmp::encode::write_sint(out, v).expect(VEC_WRITE);
}

pub(crate) fn str(out: &mut Vec<u8>, s: &str) {
    rmp::encode::write_str(out, s).expect(VEC_WRITE);
}

pub(crate) fn array_len(out: &mut Vec<u8>, len: usize) {
    // Lengths are bounded by the number of entities and fields, far below u32::MAX
    // for any state that fits a frame; saturate rather than wrap if one ever is not.
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    rmp::encode::write_array_len(out, len).expect(VEC_WRITE);
}

pub(crate) fn value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Bool(b) => rmp::encode::write_bool(out, *b).expect(VEC_WRITE),
        Value::Int(i) | Value::Fixed(i) => sint(out, *i),
        Value::Uint(u) => uint(out, *u),
        Value::F32(f) => rmp::encode::write_f32(out, *f).expect(VEC_WRITE),
        Value::F64(f) => rmp::encode::write_f64(out, *f).expect(VEC_WRITE),
        Value::Str(s) => str(out, s),
        Value::Bytes(b) => rmp::encode::write_bin(out, b).expect(VEC_WRITE),
    }
}
