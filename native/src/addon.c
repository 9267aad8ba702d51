/*
 * Node-API surface of the io_uring addon.
 *
 *   probe() -> 0 | -errno
 *   alloc(len) -> [Buffer, id]          page-aligned, zeroed, freed on GC
 *   deviceInfo(fd) -> [isBlock, size, logicalBlockSize, dioMemAlign, dioOffsetAlign]
 *   new Ring(entries, desc: Float64Array, comp: Int32Array, onBatch)
 *     ring.sqEntries, ring.cqEntries
 *     ring.submit(count, foreign?: Array) -> descriptors taken | -errno
 *     ring.registerFiles(fds: Int32Array) -> 0 | -errno
 *     ring.reap(min, count?, foreign?) -> completions delivered (one batch) | -errno
 *     ring.notify(on: boolean) -> 0 | -errno
 *     ring.close()
 *   sleepUs(us)                         nanosleep, 1 µs timer slack
 *
 * Submission: JS writes `count` descriptors of DESC_STRIDE doubles into
 * `desc` and calls submit(count) once per batch. Completion: the ring's
 * eventfd is watched by a uv_poll_t on this thread's loop; when readable we
 * copy (tag, res) pairs into `comp` and call onBatch(n) once per batch.
 * reap() does the same synchronously, from inside the caller's JS call.
 * All state hangs off the Ring object or the environment's instance data,
 * so every worker thread gets independent rings and buffer tables.
 */
#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <node_api.h>
#include <uv.h>

#include <errno.h>
#include <sys/prctl.h>
#include <time.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buffers.h"
#include "cache-evict.h"
#include "ring.h"

/* Descriptor layout, shared with src/storage/uring-native.ts. */
enum { D_OP, D_FLAGS, D_FD, D_OFFSET, D_LENGTH, D_BUF_ID, D_BUF_OFF, D_TAG, DESC_STRIDE };
enum {
  OP_READ = 0,
  OP_WRITE = 1,
  OP_FSYNC = 2,
  OP_PUNCH_HOLE = 3,  /* fallocate(PUNCH_HOLE|KEEP_SIZE), async */
  OP_ZERO_RANGE = 4,  /* fallocate(ZERO_RANGE|KEEP_SIZE), async */
  OP_BLKDISCARD = 5,  /* ioctl, synchronous: no async discard in our headers */
  OP_BLKZEROOUT = 6,  /* ioctl, synchronous */
  OP_NOP = 7,
};
enum { F_FUA = 1, F_FIXED_FILE = 2, F_DATASYNC = 4, F_EVICT = 8 };
#define PAGE_ALIGN 4096

#define CHECK(env, call)                                  \
  do {                                                    \
    if ((call) != napi_ok) {                              \
      napi_throw_error((env), NULL, "napi call failed: " #call); \
      return NULL;                                        \
    }                                                     \
  } while (0)

struct addon {
  struct buf_table *bufs;
};

struct uring_obj {
  napi_env env;
  struct ring ring;
  int efd;
  uv_poll_t poll;
  struct buf_table *bufs; /* holds a table reference */
  napi_ref self_ref, cb_ref, desc_ref, comp_ref;
  napi_async_context actx;
  double *desc;
  uint32_t desc_cap; /* descriptors */
  int32_t *comp;
  uint32_t comp_cap; /* (tag, res) pairs */
  /* Completions produced without the kernel (validation errors, ioctls),
   * delivered through the same eventfd path so nothing completes inside
   * submit. */
  int32_t *synth;
  uint32_t synth_count, synth_cap;
  uint32_t inflight;
  int loop_ref;     /* poll handle keeps the loop alive only while busy */
  /* Registered while open so a worker torn down with a live ring waits
   * for our uv_close callback: the addon is unloaded right after. */
  napi_async_cleanup_hook_handle cleanup_hook;
  /* Set when the environment is tearing down: removed once closed. */
  napi_async_cleanup_hook_handle teardown_hook;
  int closed;
  int handle_live;  /* uv handle not yet closed */
  int wrapper_live; /* JS object not yet finalized */
};

/* ---- helpers ---------------------------------------------------------- */

static napi_value make_int(napi_env env, int64_t v) {
  napi_value out;
  napi_create_int64(env, v, &out);
  return out;
}

static void maybe_free(struct uring_obj *u) {
  if (!u->handle_live && !u->wrapper_live) {
    free(u->synth);
    free(u);
  }
}

static void set_loop_ref(struct uring_obj *u) {
  int want = u->inflight > 0;
  if (want == u->loop_ref || u->closed) return;
  if (want) uv_ref((uv_handle_t *)&u->poll);
  else uv_unref((uv_handle_t *)&u->poll);
  u->loop_ref = want;
}

static void push_synth(struct uring_obj *u, int32_t tag, int32_t res) {
  /* Capacity equals the SQ size and JS never has more than that in flight. */
  if (u->synth_count < u->synth_cap) {
    u->synth[2 * u->synth_count] = tag;
    u->synth[2 * u->synth_count + 1] = res;
    u->synth_count++;
  }
}

/* ---- module functions -------------------------------------------------- */

/* sleepUs(us): blocks this thread for `us` µs (at most 1 s), for receive
 * coalescing (src/dataplane/coalescing.ts). The thread's timer slack is
 * set to 1 µs on first use so the nap is the length asked for. */
static napi_value js_sleep_us(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  uint32_t us = 0;
  if (argc >= 1) napi_get_value_uint32(env, argv[0], &us);
  if (us > 999999) us = 999999;
  static __thread int slack_set;
  if (!slack_set) {
    prctl(PR_SET_TIMERSLACK, 1000UL);
    slack_set = 1;
  }
  struct timespec ts = {0, (long)us * 1000};
  nanosleep(&ts, NULL);
  return NULL;
}

static napi_value js_probe(napi_env env, napi_callback_info info) {
  (void)info;
  return make_int(env, ring_probe());
}

static napi_value js_cache_evict_supported(napi_env env, napi_callback_info info) {
  (void)info;
  return make_int(env, cache_evict_supported());
}

/* Finalizer hint: which table slot the external buffer owns. */
struct buf_owner {
  struct buf_table *table;
  uint32_t id;
};

static void finalize_buffer(napi_env env, void *data, void *hint) {
  (void)env;
  (void)data;
  struct buf_owner *o = hint;
  buf_table_release(o->table, o->id);
  free(o);
}

static napi_value js_alloc(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  double dlen = 0;
  if (argc < 1 || napi_get_value_double(env, argv[0], &dlen) != napi_ok || dlen < 0 ||
      dlen > (double)(1ull << 40)) {
    napi_throw_range_error(env, NULL, "alloc: bad length");
    return NULL;
  }
  struct addon *a;
  CHECK(env, napi_get_instance_data(env, (void **)&a));
  size_t len = (size_t)dlen;
  int64_t id = buf_table_alloc(a->bufs, len, PAGE_ALIGN);
  if (id < 0) {
    napi_throw_error(env, "ENOMEM", "alloc: out of memory");
    return NULL;
  }
  struct buf_owner *o = malloc(sizeof *o);
  napi_value buf;
  if (o) {
    o->table = a->bufs;
    o->id = (uint32_t)id;
  }
  if (!o || napi_create_external_buffer(env, len, a->bufs->slots[id].ptr, finalize_buffer, o,
                                        &buf) != napi_ok) {
    free(o);
    buf_table_release(a->bufs, (uint32_t)id);
    napi_throw_error(env, NULL, "alloc: cannot create external buffer");
    return NULL;
  }
  napi_value out;
  CHECK(env, napi_create_array_with_length(env, 2, &out));
  CHECK(env, napi_set_element(env, out, 0, buf));
  CHECK(env, napi_set_element(env, out, 1, make_int(env, id)));
  return out;
}

static napi_value js_device_info(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd = -1;
  if (argc < 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok) {
    napi_throw_type_error(env, NULL, "deviceInfo: fd expected");
    return NULL;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) return make_int(env, -errno);
  double is_block = S_ISBLK(st.st_mode) ? 1 : 0;
  double size = (double)st.st_size;
  double lbs = 0;
  if (is_block) {
    uint64_t bytes = 0;
    int ssz = 0;
    if (ioctl(fd, BLKGETSIZE64, &bytes) != 0) return make_int(env, -errno);
    if (ioctl(fd, BLKSSZGET, &ssz) != 0) return make_int(env, -errno);
    size = (double)bytes;
    lbs = ssz;
  }
  double mem_align = 0, off_align = 0;
#ifdef STATX_DIOALIGN
  struct statx stx;
  if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 && (stx.stx_mask & STATX_DIOALIGN)) {
    mem_align = stx.stx_dio_mem_align;
    off_align = stx.stx_dio_offset_align;
  }
#endif
  double vals[5] = {is_block, size, lbs, mem_align, off_align};
  napi_value out;
  CHECK(env, napi_create_array_with_length(env, 5, &out));
  for (uint32_t i = 0; i < 5; i++) {
    napi_value v;
    CHECK(env, napi_create_double(env, vals[i], &v));
    CHECK(env, napi_set_element(env, out, i, v));
  }
  return out;
}

/* ---- Ring -------------------------------------------------------------- */

static void on_handle_closed(uv_handle_t *h) {
  struct uring_obj *u = h->data;
  if (u->teardown_hook) napi_remove_async_cleanup_hook(u->teardown_hook);
  u->teardown_hook = NULL;
  u->handle_live = 0;
  maybe_free(u);
}

static void ring_close(struct uring_obj *u) {
  if (u->closed) return;
  u->closed = 1;
  napi_env env = u->env;
  if (u->cleanup_hook) napi_remove_async_cleanup_hook(u->cleanup_hook);
  u->cleanup_hook = NULL;
  uv_poll_stop(&u->poll);
  uv_close((uv_handle_t *)&u->poll, on_handle_closed);
  /* Normally the engine closes an idle ring. If I/O is still in the kernel
   * (a worker torn down mid-flight), wait for it here: the buffers it
   * targets may be freed by finalizers right after this returns. */
  uint32_t in_kernel = u->inflight > u->synth_count ? u->inflight - u->synth_count : 0;
  int32_t scratch[64];
  while (in_kernel > 0) {
    if (ring_wait(&u->ring, 1) < 0) break;
    unsigned n = ring_drain(&u->ring, scratch, 32);
    buf_table_io_end(u->bufs, n);
    in_kernel -= n < in_kernel ? n : in_kernel;
  }
  ring_destroy(&u->ring);
  close(u->efd);
  u->efd = -1;
  if (u->actx) napi_async_destroy(env, u->actx);
  u->actx = NULL;
  napi_delete_reference(env, u->cb_ref);
  napi_delete_reference(env, u->desc_ref);
  napi_delete_reference(env, u->comp_ref);
  u->cb_ref = u->desc_ref = u->comp_ref = NULL;
  /* Drop the self-reference that kept an open ring from being collected. */
  uint32_t rc;
  napi_reference_unref(env, u->self_ref, &rc);
  buf_table_unref(u->bufs);
  u->bufs = NULL;
}

static void on_env_teardown(napi_async_cleanup_hook_handle handle, void *arg) {
  struct uring_obj *u = arg;
  u->teardown_hook = handle;
  u->cleanup_hook = NULL; /* being run: removed by on_handle_closed */
  ring_close(u);
}

static unsigned collect(struct uring_obj *u) {
  unsigned n = 0;
  if (u->synth_count) {
    n = u->synth_count < u->comp_cap ? u->synth_count : u->comp_cap;
    memcpy(u->comp, u->synth, (size_t)n * 2 * sizeof(int32_t));
    memmove(u->synth, u->synth + 2 * n, (size_t)(u->synth_count - n) * 2 * sizeof(int32_t));
    u->synth_count -= n;
  }
  unsigned k = ring_drain(&u->ring, u->comp + 2 * n, u->comp_cap - n);
  buf_table_io_end(u->bufs, k);
  return n + k;
}

/* Deferred completions the kernel runs per pass of io_uring_enter (6.13+). */
#define KERNEL_TW_PASS_MAX 20

/* Batches one event-loop wakeup may deliver before yielding to the loop. */
#define DISPATCH_ROUNDS_MAX 16

/* Hands every available completion to JS, batch by batch; returns how many.
 * From the event loop (from_js 0) each batch is a napi_make_callback (async
 * context, microtask checkpoint); from inside a JS call (reap) a plain call,
 * and an exception stays pending for that call to throw. */
static uint32_t dispatch(struct uring_obj *u, int from_js) {
  napi_env env = u->env;
  uint32_t total = 0;
  unsigned rounds = 0;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return 0;
  while (!u->closed) {
    unsigned n = collect(u);
    if (n == 0) break;
    total += n;
    u->inflight -= n < u->inflight ? n : u->inflight;
    set_loop_ref(u);
    napi_value cb, recv, arg, result;
    napi_get_reference_value(env, u->cb_ref, &cb);
    napi_get_reference_value(env, u->self_ref, &recv);
    napi_create_uint32(env, n, &arg);
    napi_status st = from_js ? napi_call_function(env, recv, cb, 1, &arg, &result)
                             : napi_make_callback(env, u->actx, recv, cb, 1, &arg, &result);
    if (st == napi_pending_exception && from_js) break;
    /* reap delivers one batch per call and lets its caller loop: a handler
     * that submits at once (setSubmitEach) can refill the completion queue
     * faster than we drain it (buffered I/O completes inside the submit),
     * and the caller's own time checks must get a turn. */
    if (from_js) break;
    if (st == napi_pending_exception) {
      napi_value err;
      napi_get_and_clear_last_exception(env, &err);
      napi_fatal_exception(env, err);
      break;
    }
    /* A short batch does not mean the ring is drained: on a DEFER_TASKRUN
     * ring (6.13+) one io_uring_enter runs at most 20 deferred completions
     * per pass, and the rest wait for the next enter. Ask again until none
     * come, so a device's batch of 85 reaches JS in one wakeup rather than
     * in slices an epoll turn (~100 us) apart. Bounded, so that a device
     * that completes as fast as handlers refill it cannot hold the loop;
     * past the bound, wake our own poll handle to continue next turn. */
    if (u->closed) break; /* a handler closed the ring: its memory is gone */
    if (++rounds == DISPATCH_ROUNDS_MAX) {
      uint64_t one = 1;
      ssize_t wr = write(u->efd, &one, sizeof one);
      (void)wr;
      break;
    }
    /* Fewer than one pass's worth means the kernel ran out of work, not
     * into its limit: skip the extra enter (a syscall per wakeup at QD1). */
    if (n >= KERNEL_TW_PASS_MAX) ring_run_deferred(&u->ring);
    if (u->synth_count == 0 && !ring_cq_ready(&u->ring)) break;
  }
  napi_close_handle_scope(env, scope);
  return total;
}

static void on_readable(uv_poll_t *h, int status, int events) {
  (void)status;
  (void)events;
  struct uring_obj *u = h->data;
  if (u->closed) return;
  uint64_t counter;
  /* Clear the eventfd before draining: a CQE posted after this read
   * signals it again, so none is stranded. */
  ssize_t rd = read(u->efd, &counter, sizeof counter);
  (void)rd;
  ring_run_deferred(&u->ring);
  dispatch(u, 0);
}

static void finalize_ring(napi_env env, void *data, void *hint) {
  (void)hint;
  struct uring_obj *u = data;
  ring_close(u); /* no-op when already closed */
  napi_delete_reference(env, u->self_ref);
  u->wrapper_live = 0;
  maybe_free(u);
}

static int get_typed(napi_env env, napi_value v, napi_typedarray_type want, void **data,
                     size_t *len) {
  bool is;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return 0;
  napi_typedarray_type t;
  napi_value ab;
  size_t off;
  if (napi_get_typedarray_info(env, v, &t, len, data, &ab, &off) != napi_ok) return 0;
  return t == want;
}

static napi_value ring_ctor(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4], self;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, &self, NULL));
  uint32_t entries = 0;
  void *desc, *comp;
  size_t desc_len, comp_len;
  napi_valuetype cbt = napi_undefined;
  if (argc < 4 || napi_get_value_uint32(env, argv[0], &entries) != napi_ok || entries == 0 ||
      !get_typed(env, argv[1], napi_float64_array, &desc, &desc_len) ||
      !get_typed(env, argv[2], napi_int32_array, &comp, &comp_len) ||
      napi_typeof(env, argv[3], &cbt) != napi_ok || cbt != napi_function) {
    napi_throw_type_error(env, NULL,
                          "Ring(entries, desc: Float64Array, comp: Int32Array, onBatch)");
    return NULL;
  }
  struct addon *a;
  CHECK(env, napi_get_instance_data(env, (void **)&a));
  struct uring_obj *u = calloc(1, sizeof *u);
  if (!u) {
    napi_throw_error(env, "ENOMEM", "Ring: out of memory");
    return NULL;
  }
  u->env = env;
  u->efd = -1;
  int rc = ring_init(&u->ring, entries);
  if (rc < 0) {
    free(u);
    char msg[64];
    snprintf(msg, sizeof msg, "io_uring_setup failed: errno %d", -rc);
    napi_throw_error(env, NULL, msg);
    return NULL;
  }
  if (desc_len < (size_t)u->ring.sq_entries * DESC_STRIDE || comp_len < 2) {
    ring_destroy(&u->ring);
    free(u);
    napi_throw_range_error(env, NULL, "Ring: descriptor or completion array too small");
    return NULL;
  }
  u->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  rc = u->efd < 0 ? -errno : ring_register_eventfd(&u->ring, u->efd);
  uv_loop_t *loop = NULL;
  if (rc == 0 && napi_get_uv_event_loop(env, &loop) != napi_ok) rc = -EINVAL;
  if (rc == 0) rc = uv_poll_init(loop, &u->poll, u->efd);
  if (rc == 0) {
    u->poll.data = u;
    u->handle_live = 1;
    rc = uv_poll_start(&u->poll, UV_READABLE, on_readable);
  }
  u->synth_cap = u->ring.sq_entries;
  u->synth = calloc((size_t)u->synth_cap * 2, sizeof(int32_t));
  if (rc == 0 && !u->synth) rc = -ENOMEM;
  if (rc != 0) {
    ring_destroy(&u->ring);
    if (u->efd >= 0) close(u->efd);
    if (u->handle_live) {
      u->wrapper_live = 0;
      uv_close((uv_handle_t *)&u->poll, on_handle_closed); /* frees u */
    } else {
      free(u->synth);
      free(u);
    }
    char msg[64];
    snprintf(msg, sizeof msg, "Ring setup failed: %d", rc);
    napi_throw_error(env, NULL, msg);
    return NULL;
  }
  uv_unref((uv_handle_t *)&u->poll); /* idle ring does not hold the loop */
  u->desc = desc;
  u->desc_cap = (uint32_t)(desc_len / DESC_STRIDE);
  u->comp = comp;
  u->comp_cap = (uint32_t)(comp_len / 2);
  u->bufs = a->bufs;
  u->bufs->refs++;
  u->wrapper_live = 1;
  CHECK(env, napi_create_reference(env, argv[1], 1, &u->desc_ref));
  CHECK(env, napi_create_reference(env, argv[2], 1, &u->comp_ref));
  CHECK(env, napi_create_reference(env, argv[3], 1, &u->cb_ref));
  napi_value name;
  CHECK(env, napi_create_string_utf8(env, "reflex.uring", NAPI_AUTO_LENGTH, &name));
  CHECK(env, napi_async_init(env, self, name, &u->actx));
  CHECK(env, napi_wrap(env, self, u, finalize_ring, NULL, NULL));
  CHECK(env, napi_create_reference(env, self, 1, &u->self_ref));
  CHECK(env, napi_add_async_cleanup_hook(env, on_env_teardown, u, &u->cleanup_hook));
  napi_value v;
  CHECK(env, napi_create_uint32(env, u->ring.sq_entries, &v));
  CHECK(env, napi_set_named_property(env, self, "sqEntries", v));
  CHECK(env, napi_create_uint32(env, u->ring.cq_entries, &v));
  CHECK(env, napi_set_named_property(env, self, "cqEntries", v));
  return self;
}

static struct uring_obj *unwrap_open(napi_env env, napi_value self) {
  struct uring_obj *u = NULL;
  if (napi_unwrap(env, self, (void **)&u) != napi_ok || !u) {
    napi_throw_type_error(env, NULL, "not a Ring");
    return NULL;
  }
  if (u->closed) {
    napi_throw_error(env, "EBADF", "Ring is closed");
    return NULL;
  }
  return u;
}

/* Address of a buffer given by a negative id: index into the optional
 * array of foreign buffers (not from alloc); used rarely, so the N-API
 * calls here are off the fast path. */
static void *foreign_range(napi_env env, napi_value foreign, int64_t id, uint64_t off, uint64_t len) {
  if (!foreign) return NULL;
  napi_value v;
  if (napi_get_element(env, foreign, (uint32_t)(-2 - id), &v) != napi_ok) return NULL;
  void *data;
  size_t blen;
  bool is = false;
  if (napi_is_buffer(env, v, &is) == napi_ok && is) {
    if (napi_get_buffer_info(env, v, &data, &blen) != napi_ok) return NULL;
  } else if (!get_typed(env, v, napi_uint8_array, &data, &blen)) {
    return NULL;
  }
  if (off > blen || len > blen - off) return NULL;
  return (char *)data + off;
}

static int prep_one(struct uring_obj *u, napi_env env, napi_value foreign, const double *d) {
  int op = (int)d[D_OP];
  int flags = (int)d[D_FLAGS];
  int fd = (int)d[D_FD];
  uint64_t off = (uint64_t)d[D_OFFSET];
  uint64_t len = (uint64_t)d[D_LENGTH];
  int64_t bid = (int64_t)d[D_BUF_ID];
  uint64_t boff = (uint64_t)d[D_BUF_OFF];
  int32_t tag = (int32_t)d[D_TAG];

  if (op == OP_BLKDISCARD || op == OP_BLKZEROOUT) {
    uint64_t range[2] = {off, len};
    int rc = ioctl(fd, op == OP_BLKDISCARD ? BLKDISCARD : BLKZEROOUT, range);
    push_synth(u, tag, rc == 0 ? 0 : -errno);
    return 1;
  }
  void *addr = NULL;
  if (op == OP_READ || op == OP_WRITE) {
    if (len > 0x7ffff000u) {
      push_synth(u, tag, -EINVAL);
      return 1;
    }
    addr = bid >= 0 ? buf_table_range(u->bufs, bid, boff, len)
                    : foreign_range(env, foreign, bid, boff, len);
    if (!addr) {
      push_synth(u, tag, -EFAULT);
      return 1;
    }
    /* Before the SQE exists: the device may start on it once it does. */
    if (op == OP_READ && (flags & F_EVICT)) cache_evict(addr, len);
  } else if (op > OP_NOP || op < 0) {
    push_synth(u, tag, -EINVAL);
    return 1;
  }
  struct io_uring_sqe *sqe = ring_get_sqe(&u->ring);
  if (!sqe) return 0; /* SQ full: caller stops the batch */
  sqe->fd = fd;
  sqe->user_data = (uint32_t)tag;
  if (flags & F_FIXED_FILE) sqe->flags |= IOSQE_FIXED_FILE;
  switch (op) {
    case OP_READ:
    case OP_WRITE:
      sqe->opcode = op == OP_READ ? IORING_OP_READ : IORING_OP_WRITE;
      sqe->off = off;
      sqe->addr = (uint64_t)(uintptr_t)addr;
      sqe->len = (uint32_t)len;
      if (op == OP_WRITE && (flags & F_FUA)) sqe->rw_flags = RWF_DSYNC;
      break;
    case OP_FSYNC:
      sqe->opcode = IORING_OP_FSYNC;
      if (flags & F_DATASYNC) sqe->fsync_flags = IORING_FSYNC_DATASYNC;
      break;
    case OP_PUNCH_HOLE:
    case OP_ZERO_RANGE:
      sqe->opcode = IORING_OP_FALLOCATE;
      sqe->off = off;
      sqe->addr = len; /* fallocate takes the length in addr */
      sqe->len = FALLOC_FL_KEEP_SIZE |
                 (op == OP_PUNCH_HOLE ? FALLOC_FL_PUNCH_HOLE : FALLOC_FL_ZERO_RANGE);
      break;
    case OP_NOP:
      sqe->opcode = IORING_OP_NOP;
      break;
  }
  return 1;
}

/* Turns `count` descriptors into SQEs (or synthetic completions); returns
 * how many were taken. The caller enters the kernel. */
static uint32_t take_batch(struct uring_obj *u, napi_env env, napi_value foreign, uint32_t count) {
  uint32_t synth_before = u->synth_count;
  uint32_t taken = 0;
  for (; taken < count; taken++) {
    if (!prep_one(u, env, foreign, u->desc + (size_t)taken * DESC_STRIDE)) break;
  }
  u->inflight += taken;
  /* Everything not completed synthetically went into the SQ. */
  buf_table_io_begin(u->bufs, taken - (u->synth_count - synth_before));
  set_loop_ref(u);
  return taken;
}

/* Reads (count, foreign?) from argv[first..]; false after throwing. */
static int batch_args(napi_env env, struct uring_obj *u, size_t argc, napi_value *argv, size_t first,
                      uint32_t *count, napi_value *foreign) {
  *count = 0;
  *foreign = NULL;
  if (argc > first && napi_get_value_uint32(env, argv[first], count) != napi_ok) *count = UINT32_MAX;
  if (*count > u->desc_cap) {
    napi_throw_range_error(env, NULL, "bad descriptor count");
    return 0;
  }
  if (argc > first + 1) {
    napi_valuetype t;
    if (napi_typeof(env, argv[first + 1], &t) == napi_ok && t == napi_object) *foreign = argv[first + 1];
  }
  return 1;
}

static napi_value ring_submit_js(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], self;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, &self, NULL));
  struct uring_obj *u = unwrap_open(env, self);
  if (!u) return NULL;
  uint32_t count;
  napi_value foreign;
  if (argc < 1 || !batch_args(env, u, argc, argv, 0, &count, &foreign)) {
    if (argc < 1) napi_throw_range_error(env, NULL, "submit: bad count");
    return NULL;
  }
  uint32_t synth_before = u->synth_count;
  uint32_t taken = take_batch(u, env, foreign, count);
  int rc = ring_submit(&u->ring);
  if (u->synth_count != synth_before) {
    /* Wake our own poll handle so these complete on a later tick. */
    uint64_t one = 1;
    ssize_t wr = write(u->efd, &one, sizeof one);
    (void)wr;
  }
  /* A failed io_uring_enter leaves SQEs in the ring; the next submit retries
   * them. Report the error only if nothing at all was taken. */
  return make_int(env, rc < 0 && taken == 0 ? rc : (int64_t)taken);
}

/* reap(min, count?, foreign?): submits `count` new descriptors and waits in
 * the same io_uring_enter until `min` completions are ready (fewer if fewer
 * are in flight), then delivers one batch of them (at most the completion
 * array's capacity) through the batch callback before returning the count;
 * call again for the rest. For a caller with nothing else to do (the
 * local load generator in closed loop), as fio waits: no event-loop turn,
 * no eventfd. reap(0) delivers what is ready without waiting. */
static napi_value ring_reap_js(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], self;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, &self, NULL));
  struct uring_obj *u = unwrap_open(env, self);
  if (!u) return NULL;
  uint32_t min = 0, count;
  napi_value foreign;
  if (argc >= 1) napi_get_value_uint32(env, argv[0], &min);
  if (!batch_args(env, u, argc, argv, 1, &count, &foreign)) return NULL;
  /* New descriptors go in with the same io_uring_enter that waits. The SQ
   * holds at least as many entries as the engine ever places, so a short
   * take is a broken invariant: submit what was taken, then fail loudly. */
  if (count > 0 && take_batch(u, env, foreign, count) != count) {
    ring_submit(&u->ring);
    napi_throw_error(env, NULL, "reap: submission queue full");
    return NULL;
  }
  uint32_t in_kernel = u->inflight > u->synth_count ? u->inflight - u->synth_count : 0;
  if (min > in_kernel) min = in_kernel;
  if (u->synth_count > 0) min = 0; /* something is ready already */
  int rc = ring_submit_wait(&u->ring, min);
  if (rc < 0 && rc != -ETIME && rc != -EINTR) return make_int(env, rc);
  uint32_t got = dispatch(u, 1);
  bool pending = false;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending) return NULL;
  return make_int(env, got);
}

/* notify(on): whether CQEs signal the eventfd (IORING_CQ_EVENTFD_DISABLED).
 * Off while a caller reaps by itself, so the event loop does not wake for
 * completions it has already taken. */
static napi_value ring_notify_js(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], self;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, &self, NULL));
  struct uring_obj *u = unwrap_open(env, self);
  if (!u) return NULL;
  bool on = true;
  if (argc >= 1) napi_get_value_bool(env, argv[0], &on);
  return make_int(env, ring_set_eventfd_enabled(&u->ring, on));
}

static napi_value ring_register_files_js(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], self;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, &self, NULL));
  struct uring_obj *u = unwrap_open(env, self);
  if (!u) return NULL;
  void *fds;
  size_t n;
  if (argc < 1 || !get_typed(env, argv[0], napi_int32_array, &fds, &n) || n == 0) {
    napi_throw_type_error(env, NULL, "registerFiles(fds: Int32Array)");
    return NULL;
  }
  return make_int(env, ring_register_files(&u->ring, fds, (unsigned)n));
}

static napi_value ring_close_js(napi_env env, napi_callback_info info) {
  napi_value self;
  size_t argc = 0;
  CHECK(env, napi_get_cb_info(env, info, &argc, NULL, &self, NULL));
  struct uring_obj *u = NULL;
  if (napi_unwrap(env, self, (void **)&u) == napi_ok && u) ring_close(u);
  return NULL;
}

/* ---- module init ------------------------------------------------------- */

static void finalize_addon(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  struct addon *a = data;
  buf_table_unref(a->bufs);
  free(a);
}

static napi_value init(napi_env env, napi_value exports) {
  struct addon *a = calloc(1, sizeof *a);
  if (!a || !(a->bufs = buf_table_new())) {
    free(a);
    napi_throw_error(env, "ENOMEM", "reflex_uring: out of memory");
    return NULL;
  }
  CHECK(env, napi_set_instance_data(env, a, finalize_addon, NULL));

  napi_property_descriptor ring_props[] = {
    {"submit", NULL, ring_submit_js, NULL, NULL, NULL, napi_default, NULL},
    {"registerFiles", NULL, ring_register_files_js, NULL, NULL, NULL, napi_default, NULL},
    {"reap", NULL, ring_reap_js, NULL, NULL, NULL, napi_default, NULL},
    {"notify", NULL, ring_notify_js, NULL, NULL, NULL, napi_default, NULL},
    {"close", NULL, ring_close_js, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_value ring_class;
  CHECK(env, napi_define_class(env, "Ring", NAPI_AUTO_LENGTH, ring_ctor, NULL,
                               sizeof ring_props / sizeof ring_props[0], ring_props, &ring_class));
  napi_property_descriptor props[] = {
    {"probe", NULL, js_probe, NULL, NULL, NULL, napi_enumerable, NULL},
    {"cacheEvictSupported", NULL, js_cache_evict_supported, NULL, NULL, NULL, napi_enumerable, NULL},
    {"sleepUs", NULL, js_sleep_us, NULL, NULL, NULL, napi_enumerable, NULL},
    {"alloc", NULL, js_alloc, NULL, NULL, NULL, napi_enumerable, NULL},
    {"deviceInfo", NULL, js_device_info, NULL, NULL, NULL, napi_enumerable, NULL},
    {"Ring", NULL, NULL, NULL, NULL, ring_class, napi_enumerable, NULL},
    {"descStride", NULL, NULL, NULL, NULL, make_int(env, DESC_STRIDE), napi_enumerable, NULL},
  };
  CHECK(env, napi_define_properties(env, exports, sizeof props / sizeof props[0], props));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
