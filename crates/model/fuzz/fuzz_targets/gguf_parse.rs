//! Feeds arbitrary bytes to the GGUF reader. It must never panic, abort or allocate without
//! bound; on success every metadata value and every tensor's data range must be readable.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rill_model::gguf::{GgufFile, MetaValue};

fn touch(v: &MetaValue) -> u64 {
    match v {
        MetaValue::String(s) => s.len() as u64,
        MetaValue::Array(items) => items.iter().map(touch).fold(0, u64::wrapping_add),
        other => {
            // Exercise the conversions too; they must not panic on any value.
            let _ = (other.as_u64(), other.as_i64(), other.as_f64(), other.as_bool());
            other.type_name().len() as u64
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(file) = GgufFile::from_bytes(data.to_vec()) else { return };
    let mut sink = 0u64;
    for (key, value) in file.metadata() {
        sink = sink.wrapping_add(key.len() as u64).wrapping_add(touch(value));
        assert!(file.get(key).is_some());
        // Typed accessors answer Ok or a type error, never panic.
        let _ = (file.get_str(key), file.get_u64(key), file.get_f64(key), file.get_bool(key));
        let _ = (file.get_str_array(key), file.get_int_array(key));
    }
    for info in file.tensors() {
        assert_eq!(file.tensor_info(&info.name), Some(info));
        let data = file.tensor_data(info);
        assert_eq!(data.len() as u64, info.n_bytes);
        assert!(info.offset.is_multiple_of(file.alignment));
        sink = data.iter().fold(sink, |acc, &b| acc.wrapping_add(b.into()));
    }
    std::hint::black_box(sink);
});
