// Workspace memory: std::vector storage that starts on a 64-byte cache line. The GEMMs store
// whole 64-byte vectors, and an output that starts mid-line makes each row store straddle two
// cache lines (measured: 100x784·(128x784)ᵀ into a 16-byte-aligned C ran 8-20% slower on 2
// threads). The flat parameter store is aligned the same way on the Python side
// (fastnn/parameter.py, aligned_zeros).
#pragma once
#include <cstddef>
#include <new>
#include <vector>

namespace fastnn {

template <class T>
struct CacheLineAlloc {
  using value_type = T;
  CacheLineAlloc() = default;
  template <class U> CacheLineAlloc(const CacheLineAlloc<U>&) {}
  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(64))); }
  void deallocate(T* p, size_t) { ::operator delete(p, std::align_val_t(64)); }
  template <class U> bool operator==(const CacheLineAlloc<U>&) const { return true; }
  template <class U> bool operator!=(const CacheLineAlloc<U>&) const { return false; }
};

template <class T>
using Buf = std::vector<T, CacheLineAlloc<T>>;

}  // namespace fastnn
