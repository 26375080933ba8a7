//! The engine's data-path cost relative to boringtun's `Tunn` alone, measured in alternating
//! rounds so that a busy machine slows both sides alike. Complements the criterion bench
//! (`cargo bench -p ember-engine --bench datapath`), which measures one after the other.
//!
//! `cargo run -p ember-engine --release --example datapath_ratio`

#![allow(clippy::print_stdout)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use ember_sim::app_packet;
use ember_sim::bench::{connected_engines, engine_round, tunn_pair, tunn_round};

const SIZE: usize = 1400;
const ROUNDS: usize = 41;
const PER_ROUND: u32 = 20_000;

fn main() {
    let packet = app_packet(7, SIZE);
    let (mut a, mut b) = tunn_pair();
    let (mut buf_a, mut buf_b) = (vec![0u8; 2048], vec![0u8; 2048]);
    let (mut sim, ha, hb) = connected_engines();
    let mut tunn = Vec::with_capacity(ROUNDS);
    let mut engine = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let start = Instant::now();
        for _ in 0..PER_ROUND {
            black_box(tunn_round(
                &mut a,
                &mut b,
                black_box(&packet),
                &mut buf_a,
                &mut buf_b,
            ));
        }
        tunn.push(start.elapsed() / PER_ROUND);
        let start = Instant::now();
        for _ in 0..PER_ROUND {
            black_box(engine_round(&mut sim, ha, hb, black_box(&packet)));
        }
        engine.push(start.elapsed() / PER_ROUND);
    }
    let (t, e) = (median(&mut tunn), median(&mut engine));
    println!("1400-byte packet, encapsulate + decapsulate, median of {ROUNDS} alternating rounds:");
    println!("  boringtun Tunn alone: {:.2} µs", micros(t));
    println!("  ember Engine:         {:.2} µs", micros(e));
    println!(
        "  ratio:                {:.2} × (goal ≤ 1.2 ×)",
        e.as_secs_f64() / t.as_secs_f64()
    );
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
