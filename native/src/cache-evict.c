#include "cache-evict.h"

#include <stdint.h>

/* Smallest line size of the CPUs we build for; flushing at this stride
 * covers larger lines too (a line flushed twice costs little). */
#define LINE 64

#if defined(__x86_64__)

static int have_clflushopt = -1;

/* clflushopt: flushes of different lines may overlap, unlike clflush. */
__attribute__((target("clflushopt"))) static void evict_opt(uintptr_t p, uintptr_t end) {
  for (; p < end; p += LINE) __builtin_ia32_clflushopt((void *)p);
}

static void evict_plain(uintptr_t p, uintptr_t end) {
  for (; p < end; p += LINE) __builtin_ia32_clflush((void *)p);
}

int cache_evict_supported(void) {
  return 1; /* clflush is part of baseline x86-64 (SSE2) */
}

void cache_evict(const void *addr, size_t len) {
  if (have_clflushopt < 0) {
    __builtin_cpu_init();
    have_clflushopt = __builtin_cpu_supports("clflushopt") ? 1 : 0;
  }
  uintptr_t p = (uintptr_t)addr & ~(uintptr_t)(LINE - 1);
  uintptr_t end = (uintptr_t)addr + len;
  if (have_clflushopt) evict_opt(p, end);
  else evict_plain(p, end);
  __builtin_ia32_sfence();
}

#elif defined(__aarch64__)

int cache_evict_supported(void) {
  return 1; /* Linux lets user space clean and invalidate (SCTLR_EL1.UCI) */
}

void cache_evict(const void *addr, size_t len) {
  uintptr_t p = (uintptr_t)addr & ~(uintptr_t)(LINE - 1);
  uintptr_t end = (uintptr_t)addr + len;
  for (; p < end; p += LINE) __asm__ volatile("dc civac, %0" : : "r"(p) : "memory");
  __asm__ volatile("dsb ish" : : : "memory");
}

#else

int cache_evict_supported(void) {
  return 0;
}

void cache_evict(const void *addr, size_t len) {
  (void)addr;
  (void)len;
}

#endif
