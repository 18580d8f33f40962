//! Decoding a real 16-cell Pace 0x42 reply (capture P02), envelope and checksum included.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

const P02: &[u8] = include_bytes!("../../../fixtures/pace/esphome-pbmstools/002-analog-reply-16s.txt");

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("pace");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode_0x42_16_cells", |b| b.iter(|| pace_proto::Reply::parse(0x42, black_box(P02))));
    g.bench_function("envelope_only_0x42_16_cells", |b| {
        b.iter(|| ascii_envelope::Frame::parse(black_box(P02)))
    });
    let reply = pace_proto::Reply::parse(0x42, P02).expect("fixture decodes");
    let mut out = Vec::with_capacity(256);
    g.bench_function("encode_0x42_16_cells", |b| {
        b.iter(|| {
            out.clear();
            black_box(&reply).emit(&mut out)
        })
    });
    g.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
