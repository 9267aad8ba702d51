/*
 * Evicting a read buffer's cache lines before the device writes into it.
 *
 * Under a hypervisor that emulates the disk, the "DMA" into a read buffer is
 * a host thread copying from another core. When the guest CPU still holds
 * the buffer's lines (the server read them to copy the previous reply into a
 * socket), each of those host stores must first take the line back from the
 * guest core across the interconnect. On a 2-vCPU AMD EPYC guest with a
 * Firecracker virtio disk, reading each 4 KiB buffer after its read
 * completed cost the local load generator ~5% of the disk's IOPS, and
 * evicting the lines again won it back; the server gained ~5-8% remote IOPS
 * (README, "Why remote trails local"). Contents never change: dirty lines
 * are written back, not dropped.
 */
#ifndef REFLEX_CACHE_EVICT_H
#define REFLEX_CACHE_EVICT_H

#include <stddef.h>

/* 1 where this build can evict lines from user space (x86-64, AArch64), else 0. */
int cache_evict_supported(void);

/* Writes back and invalidates every cache line of [addr, addr + len);
 * returns once they are out (a fence after the weakly ordered flushes). */
void cache_evict(const void *addr, size_t len);

#endif
