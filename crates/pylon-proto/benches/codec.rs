//! Decoding a 4-module Pylontech 0x42 reply and encoding a 0x61 reply.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pylon_proto::{Dialect, Reply, Response, SystemAnalog, SystemCurrent, TempStats};
use std::hint::black_box;
use units::{CentiAmps, DeciKelvin, Millivolts, Percent};

/// Capture Y05 (3 × US2000) plus a copy of its first module: a 4-module group reply.
fn four_modules() -> Vec<u8> {
    let y05 = include_bytes!("../../../fixtures/pylon/python-pylontech/002-analog-reply-3-modules.txt");
    let mut reply = Reply::parse(0x42, y05, Dialect::default()).expect("fixture decodes");
    if let Ok(Response::Analog(a)) = &mut reply.outcome {
        a.modules.push(a.modules[0].clone());
        a.command = 4;
    }
    let mut out = Vec::new();
    reply.emit(&mut out).expect("encodes");
    out
}

fn system_analog() -> Reply {
    let t = |dc| DeciKelvin::from_deci_celsius(dc);
    let stats = TempStats { average: t(231), max: t(250), max_id: 0x0304, min: t(220), min_id: 0x0101 };
    Reply::ok(
        2,
        Response::SystemAnalog(SystemAnalog {
            voltage: Millivolts::from_raw(26_650),
            current: SystemCurrent::Centi(CentiAmps::from_raw(-1234)),
            soc: Percent::from_raw(67),
            average_cycles: 140,
            max_cycles: 152,
            average_soh: Percent::from_raw(98),
            min_soh: Percent::from_raw(96),
            cell_max: Millivolts::from_raw(3340),
            cell_max_id: 0x0507,
            cell_min: Millivolts::from_raw(3310),
            cell_min_id: 0x0C01,
            cell_temp: stats,
            mosfet_temp: stats,
            bms_temp: stats,
        }),
    )
}

fn codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("pylon");
    g.throughput(Throughput::Elements(1));
    let frame = four_modules();
    g.bench_function("decode_0x42_4_modules", |b| {
        b.iter(|| Reply::parse(0x42, black_box(&frame), Dialect::default()))
    });
    let reply = system_analog();
    let mut out = Vec::with_capacity(256);
    g.bench_function("encode_0x61", |b| {
        b.iter(|| {
            out.clear();
            black_box(&reply).emit(&mut out)
        })
    });
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
