#define _GNU_SOURCE
#include "buffers.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct buf_table *buf_table_new(void) {
  struct buf_table *t = calloc(1, sizeof *t);
  if (t) t->refs = 1;
  return t;
}

static void sweep(struct buf_table *t) {
  for (uint32_t i = 0; i < t->grave_count; i++) free(t->grave[i]);
  t->grave_count = 0;
}

static void buf_table_free(struct buf_table *t) {
  /* Only reached once every ring let go of the table (after waiting for its
   * I/O), so nothing can still target this memory. */
  sweep(t);
  free(t->grave);
  for (uint32_t i = 0; i < t->cap; i++) free(t->slots[i].ptr);
  free(t->slots);
  free(t->free_ids);
  free(t);
}

void buf_table_unref(struct buf_table *t) {
  if (--t->refs == 0) buf_table_free(t);
}

static int grow(struct buf_table *t) {
  uint32_t ncap = t->cap ? t->cap * 2 : 64;
  struct buf_slot *slots = realloc(t->slots, ncap * sizeof *slots);
  if (!slots) return -ENOMEM;
  t->slots = slots;
  uint32_t *ids = realloc(t->free_ids, ncap * sizeof *ids);
  if (!ids) return -ENOMEM;
  t->free_ids = ids;
  /* Push new ids high-to-low so low ids are handed out first. */
  for (uint32_t i = ncap; i > t->cap; i--) {
    t->slots[i - 1].ptr = NULL;
    t->slots[i - 1].len = 0;
    t->free_ids[t->free_count++] = i - 1;
  }
  t->cap = ncap;
  return 0;
}

int64_t buf_table_alloc(struct buf_table *t, size_t len, size_t align) {
  if (t->free_count == 0) {
    int rc = grow(t);
    if (rc) return rc;
  }
  void *p = NULL;
  /* posix_memalign refuses size 0 portably enough; keep a real allocation. */
  int rc = posix_memalign(&p, align, len ? len : align);
  if (rc) return -rc;
  memset(p, 0, len);
  uint32_t id = t->free_ids[--t->free_count];
  t->slots[id].ptr = p;
  t->slots[id].len = len;
  t->refs++;
  return id;
}

void buf_table_io_begin(struct buf_table *t, uint32_t n) { t->io_inflight += n; }

void buf_table_io_end(struct buf_table *t, uint32_t n) {
  t->io_inflight -= n < t->io_inflight ? n : t->io_inflight;
  if (t->io_inflight == 0 && t->grave_count) sweep(t);
}

/* Frees now, or later if the kernel may still be using some buffer. On
 * allocation failure of the grave list the memory leaks: safer than a
 * use-after-free by DMA. */
static void free_or_defer(struct buf_table *t, void *p) {
  if (t->io_inflight == 0) {
    free(p);
    return;
  }
  if (t->grave_count == t->grave_cap) {
    uint32_t ncap = t->grave_cap ? t->grave_cap * 2 : 16;
    void **g = realloc(t->grave, ncap * sizeof *g);
    if (!g) return;
    t->grave = g;
    t->grave_cap = ncap;
  }
  t->grave[t->grave_count++] = p;
}

void buf_table_release(struct buf_table *t, uint32_t id) {
  if (id < t->cap && t->slots[id].ptr) {
    free_or_defer(t, t->slots[id].ptr);
    t->slots[id].ptr = NULL;
    t->slots[id].len = 0;
    t->free_ids[t->free_count++] = id;
  }
  buf_table_unref(t);
}
