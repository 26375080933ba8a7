//! The data path of an established connection allocates nothing per packet: a counting global
//! allocator watches two connected engines exchange packets both ways, with simulated time
//! passing and the engines' timers served, the way a driver runs them.
//!
//! A file of its own: the global allocator counts every allocation of this test binary.

// A global allocator is `unsafe` by definition; this one only counts and defers to `System`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ember_engine::{ConnectionState, Engine, PeerId};
use ember_sim::app_packet;
use ember_sim::bench::connected_engines;

struct CountingAllocator;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Only the measuring thread counts (the test harness has threads of its own).
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    if COUNTING.with(Cell::get) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every call is passed on unchanged to `System`, which upholds the contract.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's guarantees for `layout` are `System::alloc`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: `ptr` was allocated by this allocator, that is by `System`, with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as for `realloc`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Allocations made by `f` on this thread.
fn allocations_during(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

/// One packet from `from`'s TUN side to `to`'s, the way a driver moves it: every output
/// drained, every buffer given back, the next timeout asked for and served when due. Returns
/// how many timeouts were served.
fn one_packet(
    from: &mut Engine,
    to: &mut Engine,
    to_peer: PeerId,
    packet: &[u8],
    now: Instant,
) -> u32 {
    let mut timeouts = 0;
    from.handle_tun_packet(to_peer, packet, now);
    while let Some(t) = from.poll_transmit() {
        to.handle_network_packet(t.dst, t.src, &t.payload, now);
        from.recycle(t.payload);
    }
    for engine in [&mut *from, &mut *to] {
        while let Some(t) = engine.poll_transmit() {
            engine.recycle(t.payload);
        }
        while let Some((_, p)) = engine.poll_packet() {
            assert_eq!(p.len(), packet.len());
            engine.recycle(p);
        }
        while engine.poll_event().is_some() {}
        if engine.poll_timeout().is_some_and(|(at, _)| at <= now) {
            engine.handle_timeout(now);
            timeouts += 1;
        }
    }
    timeouts
}

#[test]
fn established_connection_moves_packets_both_ways_without_allocating() {
    const PACKETS: u32 = 10_000;
    // 2 000 packets per second each way: the measured window spans several of WireGuard's
    // 1 s timer ticks.
    const SPACING: Duration = Duration::from_micros(500);

    let (mut sim, a, b) = connected_engines();
    let mut now = sim.now;
    let [ha, hb] = sim
        .hosts
        .get_disjoint_mut([a.0, b.0])
        .expect("two distinct hosts");
    let (ea, eb) = (&mut ha.engine, &mut hb.engine);
    let packet = app_packet(1, 1400);

    let mut run = |rounds: u32, now: &mut Instant| {
        let mut timeouts = 0;
        for _ in 0..rounds {
            *now += SPACING;
            timeouts += one_packet(ea, eb, b.peer(), &packet, *now);
            timeouts += one_packet(eb, ea, a.peer(), &packet, *now);
        }
        timeouts
    };
    // Warm-up: queues and buffers grow to their working size once.
    run(2_000, &mut now);
    let mut timeouts = 0;
    let allocations = allocations_during(|| timeouts = run(PACKETS, &mut now));
    assert_eq!(
        allocations, 0,
        "{allocations} allocations for {PACKETS} packets each way"
    );
    assert!(timeouts > 0, "the window includes timers served");
    assert_eq!(ea.state(b.peer()), Some(ConnectionState::Active));
    assert_eq!(eb.state(a.peer()), Some(ConnectionState::Active));
    let stats = eb.stats(a.peer(), now).expect("a connection");
    assert!(stats.rx_packets >= u64::from(PACKETS));
}
