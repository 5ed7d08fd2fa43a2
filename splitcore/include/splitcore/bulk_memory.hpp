// Large messages without page faults. glibc serves an allocation of 128 KiB or more with a fresh
// mmap and unmaps it when freed (adjusting that threshold only up to the first few sizes freed,
// and trimming the heap past twice it), so every 1 MiB frame that libzmq encrypts, decrypts or
// receives, and every 1 MiB bytes object a read() returns, is a new mapping whose pages fault in
// one by one: profiled, the page faults and the kernel's zeroing of those pages were the largest
// part of a 1 MiB chunked read (bench/face W5r). Serving up to `bulk_chunk` from the heap and
// keeping up to `bulk_keep` of freed memory there makes the next message reuse the pages.
#pragma once

#include <malloc.h>

#include <cstddef>

namespace splitcore {

inline constexpr std::size_t bulk_chunk = std::size_t(8) << 20;
inline constexpr std::size_t bulk_keep = std::size_t(32) << 20;

// Call once, early in a process (before threads start) that moves bulk data.
inline void keep_bulk_buffers() noexcept {
    (void)::mallopt(M_MMAP_THRESHOLD, static_cast<int>(bulk_chunk));
    (void)::mallopt(M_TRIM_THRESHOLD, static_cast<int>(bulk_keep));
}

}  // namespace splitcore
