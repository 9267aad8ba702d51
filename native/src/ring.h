/*
 * Minimal io_uring over raw syscalls (<linux/io_uring.h>): setup, SQE
 * reservation, submission and CQ draining. No Node-API here, no policy.
 * One ring is used by one thread only (the JS thread that created it), so
 * the only cross-party ordering is with the kernel, via acquire/release on
 * the shared head/tail indices.
 */
#ifndef REFLEX_RING_H
#define REFLEX_RING_H

#include <linux/io_uring.h>
#include <stdint.h>
#include <stddef.h>

struct ring {
  int fd;
  unsigned sq_entries;
  unsigned cq_entries;
  unsigned features;
  unsigned setup_flags; /* IORING_SETUP_* the kernel accepted */
  /* Submission queue (shared with the kernel). */
  unsigned *sq_head, *sq_tail, *sq_mask, *sq_array;
  struct io_uring_sqe *sqes;
  unsigned sq_local_tail; /* SQEs reserved by us, not yet published */
  /* Completion queue (shared with the kernel). */
  unsigned *cq_head, *cq_tail, *cq_mask;
  unsigned *cq_flags; /* NULL before Linux 5.8 */
  struct io_uring_cqe *cqes;
  /* Mappings, for teardown. */
  void *sq_map, *cq_map;
  size_t sq_map_len, cq_map_len, sqes_map_len;
};

/* Returns 0 or -errno. On failure the struct is left closed (fd == -1). */
int ring_init(struct ring *r, unsigned entries);
void ring_destroy(struct ring *r);

/* A zeroed SQE, or NULL when the SQ is full. Not visible to the kernel
 * until ring_submit. */
struct io_uring_sqe *ring_get_sqe(struct ring *r);

/* Publishes reserved SQEs and enters the kernel once. Returns the number
 * the kernel consumed or -errno. */
int ring_submit(struct ring *r);

/* With DEFER_TASKRUN, runs queued completion work so its CQEs become
 * visible; a no-op otherwise. Returns 0 or -errno. */
int ring_run_deferred(struct ring *r);
/* Whether the completion queue holds entries not yet drained. */
int ring_cq_ready(const struct ring *r);

/* Publishes reserved SQEs and, in the same io_uring_enter, waits for
 * min_complete CQEs (0: does not wait; with DEFER_TASKRUN it still runs
 * queued completion work). Returns the number submitted or -errno. */
int ring_submit_wait(struct ring *r, unsigned min_complete);

/* Blocks until at least min_complete CQEs are available (running deferred
 * completion work). Returns 0 or -errno. */
int ring_wait(struct ring *r, unsigned min_complete);

/* Copies up to `cap` completions as (user_data, res) int32 pairs into out
 * and returns how many. */
unsigned ring_drain(struct ring *r, int32_t *out, unsigned cap);

int ring_register_eventfd(struct ring *r, int efd);
/* Turns eventfd signalling on or off (IORING_CQ_EVENTFD_DISABLED); 0 or -ENOTSUP. */
int ring_set_eventfd_enabled(struct ring *r, int on);
int ring_register_files(struct ring *r, const int *fds, unsigned n);

/* io_uring_setup(1) then close: 0 when io_uring is usable, else -errno
 * (ENOSYS: no kernel support; EPERM: kernel.io_uring_disabled). */
int ring_probe(void);

#endif
