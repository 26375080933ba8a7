//! Recycled byte buffers, so that a steady stream of packets allocates nothing.

/// Buffers the engine fills with datagrams and packets for its outputs. The driver gives the
/// payloads of `poll_transmit` and the packets of `poll_packet` back with `Engine::recycle`;
/// a buffer not given back costs one allocation, as without a pool.
#[derive(Debug, Default)]
pub(crate) struct BufferPool {
    free: Vec<Vec<u8>>,
}

impl BufferPool {
    /// A buffer from a miss is made this large at least, so that it fits any datagram of a
    /// 1500-byte path when it comes back.
    const MIN_CAPACITY: usize = 2048;
    /// Larger buffers are not kept (a rare jumbo packet should not pin its memory).
    const MAX_CAPACITY: usize = 1 << 16;
    /// At most this many buffers wait for reuse: more than a driver's batch in flight.
    const MAX_FREE: usize = 256;

    /// A buffer holding a copy of `bytes`.
    pub(crate) fn copy_of(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut buf = self
            .free
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(bytes.len().max(Self::MIN_CAPACITY)));
        buf.clear();
        buf.extend_from_slice(bytes);
        buf
    }

    /// Keeps `buf` for a later `copy_of`, unless the pool is full or the buffer too small or
    /// too large to be worth keeping.
    pub(crate) fn give_back(&mut self, buf: Vec<u8>) {
        let capacity = buf.capacity();
        if self.free.len() < Self::MAX_FREE
            && (Self::MIN_CAPACITY..=Self::MAX_CAPACITY).contains(&capacity)
        {
            self.free.push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_given_back_is_reused_for_the_next_copy() {
        let mut pool = BufferPool::default();
        let first = pool.copy_of(&[1, 2, 3]);
        let address = first.as_ptr();
        pool.give_back(first);
        let second = pool.copy_of(&[4; 1400]);
        assert_eq!(second.as_ptr(), address);
        assert_eq!(second, vec![4; 1400]);
    }

    #[test]
    fn small_buffers_and_buffers_beyond_the_bound_are_not_kept() {
        let mut pool = BufferPool::default();
        pool.give_back(vec![0; 10]);
        assert!(pool.free.is_empty(), "too small to hold a datagram");
        for _ in 0..BufferPool::MAX_FREE + 5 {
            pool.give_back(Vec::with_capacity(BufferPool::MIN_CAPACITY));
        }
        assert_eq!(pool.free.len(), BufferPool::MAX_FREE);
    }
}
