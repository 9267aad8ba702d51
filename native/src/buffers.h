/*
 * Page-aligned memory for O_DIRECT, handed to JS as external Buffers and
 * recorded in a per-environment table so a submission can name a buffer by
 * a small integer id instead of passing the Buffer object through N-API.
 * The table is reference counted: each live buffer holds a reference, so a
 * buffer finalizer that runs after the environment's instance data is torn
 * down still finds valid memory.
 */
#ifndef REFLEX_BUFFERS_H
#define REFLEX_BUFFERS_H

#include <stddef.h>
#include <stdint.h>

struct buf_slot {
  void *ptr;   /* NULL when the slot is free */
  size_t len;
};

struct buf_table {
  struct buf_slot *slots;
  uint32_t cap;
  uint32_t *free_ids; /* stack of free slot ids */
  uint32_t free_count;
  uint32_t refs;
  /* Kernel I/O in flight on any ring of this environment, and memory whose
   * Buffer was collected meanwhile. Normally JS keeps a buffer alive while
   * its request is in flight; but when a worker is torn down, finalizers
   * may run before the rings are closed, and the kernel must not DMA into
   * freed memory. So frees wait until no I/O is in flight. */
  uint64_t io_inflight;
  void **grave;
  uint32_t grave_count, grave_cap;
};

struct buf_table *buf_table_new(void);
/* Drops one reference; frees the table at zero. */
void buf_table_unref(struct buf_table *t);

/* Allocates `len` bytes aligned to `align`, zeroed. Returns the slot id or
 * -errno. Takes a table reference released by buf_table_release. */
int64_t buf_table_alloc(struct buf_table *t, size_t len, size_t align);
void buf_table_release(struct buf_table *t, uint32_t id);

void buf_table_io_begin(struct buf_table *t, uint32_t n);
void buf_table_io_end(struct buf_table *t, uint32_t n);

/* Pointer to [off, off+len) of buffer `id`, or NULL if the id is unknown or
 * the range does not fit. The bounds check is what keeps a JS bug from
 * turning into a kernel DMA into foreign memory. */
static inline void *buf_table_range(const struct buf_table *t, int64_t id, uint64_t off,
                                    uint64_t len) {
  if (id < 0 || (uint64_t)id >= t->cap) return NULL;
  const struct buf_slot *s = &t->slots[id];
  if (s->ptr == NULL || off > s->len || len > s->len - off) return NULL;
  return (char *)s->ptr + off;
}

#endif
