//! Engine cost per 1400-byte packet (encapsulate at one engine + decapsulate at the other)
//! against boringtun's `Tunn` alone doing the same, measured in the same run.
//!
//! `cargo bench -p ember-engine --bench datapath`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ember_sim::app_packet;
use ember_sim::bench::{connected_engines, engine_round, tunn_pair, tunn_round};

const SIZE: usize = 1400;

fn datapath(c: &mut Criterion) {
    let packet = app_packet(7, SIZE);
    let mut group = c.benchmark_group("encapsulate+decapsulate 1400 B");
    group.throughput(Throughput::Bytes(SIZE as u64));

    let (mut a, mut b) = tunn_pair();
    let (mut buf_a, mut buf_b) = (vec![0u8; 2048], vec![0u8; 2048]);
    group.bench_function("boringtun Tunn alone", |bench| {
        bench.iter(|| tunn_round(&mut a, &mut b, black_box(&packet), &mut buf_a, &mut buf_b));
    });

    let (mut sim, ha, hb) = connected_engines();
    group.bench_function("ember Engine", |bench| {
        bench.iter(|| engine_round(&mut sim, ha, hb, black_box(&packet)));
    });
    group.finish();
}

criterion_group!(benches, datapath);
criterion_main!(benches);
