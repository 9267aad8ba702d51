#define _GNU_SOURCE
#include "ring.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

static int sys_setup(unsigned entries, struct io_uring_params *p) {
  long rc = syscall(__NR_io_uring_setup, entries, p);
  return rc < 0 ? -errno : (int)rc;
}

static int sys_enter(int fd, unsigned to_submit, unsigned min_complete, unsigned flags) {
  long rc = syscall(__NR_io_uring_enter, fd, to_submit, min_complete, flags, NULL, 0);
  return rc < 0 ? -errno : (int)rc;
}

static int sys_register(int fd, unsigned opcode, const void *arg, unsigned nr) {
  long rc = syscall(__NR_io_uring_register, fd, opcode, arg, nr);
  return rc < 0 ? -errno : (int)rc;
}

int ring_probe(void) {
  struct io_uring_params p;
  memset(&p, 0, sizeof p);
  int fd = sys_setup(1, &p);
  if (fd < 0) return fd;
  close(fd);
  return 0;
}

static void *ptr_at(void *base, unsigned off) { return (char *)base + off; }

int ring_init(struct ring *r, unsigned entries) {
  memset(r, 0, sizeof *r);
  r->fd = -1;
  struct io_uring_params p;
  /* SUBMIT_ALL keeps a bad SQE from stalling the rest of a batch (it gets
   * its own error CQE); SINGLE_ISSUER lets the kernel skip locking since a
   * ring belongs to one JS thread. DEFER_TASKRUN queues completion work
   * until we ask for it (ring_run_deferred) and signals the eventfd when
   * the first item arrives; measured on a virtio disk it breaks the
   * lock-step "whole queue completes, then resubmit" pattern that the
   * default signal-based task work falls into at QD 32 (+10-15% IOPS).
   * Older kernels reject unknown flags with EINVAL, so step down. Never
   * COOP_TASKRUN without DEFER_TASKRUN: completion work would then wait
   * for our next syscall while we sleep in epoll on the eventfd. */
  static const unsigned flag_sets[] = {
    IORING_SETUP_CLAMP | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER |
        IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_COOP_TASKRUN,
    IORING_SETUP_CLAMP | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER,
    IORING_SETUP_CLAMP | IORING_SETUP_SUBMIT_ALL,
    IORING_SETUP_CLAMP,
  };
  int fd = -EINVAL;
  for (size_t i = 0; i < sizeof flag_sets / sizeof flag_sets[0]; i++) {
    memset(&p, 0, sizeof p);
    p.flags = flag_sets[i];
    fd = sys_setup(entries, &p);
    if (fd != -EINVAL) break;
  }
  if (fd < 0) return fd;
  r->fd = fd;
  r->sq_entries = p.sq_entries;
  r->cq_entries = p.cq_entries;
  r->features = p.features;
  r->setup_flags = p.flags;

  r->sq_map_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
  r->cq_map_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
  if (p.features & IORING_FEAT_SINGLE_MMAP) {
    if (r->cq_map_len > r->sq_map_len) r->sq_map_len = r->cq_map_len;
    r->cq_map_len = r->sq_map_len;
  }
  r->sq_map = mmap(NULL, r->sq_map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
                   IORING_OFF_SQ_RING);
  if (r->sq_map == MAP_FAILED) goto fail;
  if (p.features & IORING_FEAT_SINGLE_MMAP) {
    r->cq_map = r->sq_map;
  } else {
    r->cq_map = mmap(NULL, r->cq_map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
                     IORING_OFF_CQ_RING);
    if (r->cq_map == MAP_FAILED) { r->cq_map = NULL; goto fail; }
  }
  r->sqes_map_len = p.sq_entries * sizeof(struct io_uring_sqe);
  r->sqes = mmap(NULL, r->sqes_map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
                 IORING_OFF_SQES);
  if (r->sqes == MAP_FAILED) { r->sqes = NULL; goto fail; }

  r->sq_head = ptr_at(r->sq_map, p.sq_off.head);
  r->sq_tail = ptr_at(r->sq_map, p.sq_off.tail);
  r->sq_mask = ptr_at(r->sq_map, p.sq_off.ring_mask);
  r->sq_array = ptr_at(r->sq_map, p.sq_off.array);
  r->cq_head = ptr_at(r->cq_map, p.cq_off.head);
  r->cq_tail = ptr_at(r->cq_map, p.cq_off.tail);
  r->cq_mask = ptr_at(r->cq_map, p.cq_off.ring_mask);
  r->cqes = ptr_at(r->cq_map, p.cq_off.cqes);
  r->cq_flags = p.cq_off.flags ? ptr_at(r->cq_map, p.cq_off.flags) : NULL;
  /* SQ slot i always names SQE i: set the indirection array once. */
  for (unsigned i = 0; i < r->sq_entries; i++) r->sq_array[i] = i;
  r->sq_local_tail = *r->sq_tail;
  return 0;

fail: {
    int err = -errno;
    ring_destroy(r);
    return err;
  }
}

void ring_destroy(struct ring *r) {
  if (r->sqes) munmap(r->sqes, r->sqes_map_len);
  if (r->cq_map && r->cq_map != r->sq_map) munmap(r->cq_map, r->cq_map_len);
  if (r->sq_map && r->sq_map != MAP_FAILED) munmap(r->sq_map, r->sq_map_len);
  if (r->fd >= 0) close(r->fd);
  memset(r, 0, sizeof *r);
  r->fd = -1;
}

struct io_uring_sqe *ring_get_sqe(struct ring *r) {
  unsigned head = __atomic_load_n(r->sq_head, __ATOMIC_ACQUIRE);
  if (r->sq_local_tail - head >= r->sq_entries) return NULL;
  struct io_uring_sqe *sqe = &r->sqes[r->sq_local_tail & *r->sq_mask];
  r->sq_local_tail++;
  memset(sqe, 0, sizeof *sqe);
  return sqe;
}

int ring_submit(struct ring *r) {
  __atomic_store_n(r->sq_tail, r->sq_local_tail, __ATOMIC_RELEASE);
  /* Everything published and not yet consumed, including leftovers from a
   * previous short submit. */
  unsigned pending = r->sq_local_tail - __atomic_load_n(r->sq_head, __ATOMIC_ACQUIRE);
  if (pending == 0) return 0;
  int rc;
  do {
    rc = sys_enter(r->fd, pending, 0, 0);
  } while (rc == -EINTR);
  return rc;
}

int ring_submit_wait(struct ring *r, unsigned min_complete) {
  __atomic_store_n(r->sq_tail, r->sq_local_tail, __ATOMIC_RELEASE);
  unsigned pending = r->sq_local_tail - __atomic_load_n(r->sq_head, __ATOMIC_ACQUIRE);
  int defer = (r->setup_flags & IORING_SETUP_DEFER_TASKRUN) != 0;
  if (pending == 0 && min_complete == 0 && !defer) return 0;
  unsigned flags = min_complete > 0 || defer ? IORING_ENTER_GETEVENTS : 0;
  int rc;
  do {
    rc = sys_enter(r->fd, pending, min_complete, flags);
  } while (rc == -EINTR);
  return rc;
}

int ring_run_deferred(struct ring *r) {
  if (!(r->setup_flags & IORING_SETUP_DEFER_TASKRUN)) return 0;
  int rc;
  do {
    rc = sys_enter(r->fd, 0, 0, IORING_ENTER_GETEVENTS);
  } while (rc == -EINTR);
  return rc;
}

int ring_wait(struct ring *r, unsigned min_complete) {
  int rc;
  do {
    rc = sys_enter(r->fd, 0, min_complete, IORING_ENTER_GETEVENTS);
  } while (rc == -EINTR);
  return rc;
}

int ring_cq_ready(const struct ring *r) {
  return *r->cq_head != __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE);
}

unsigned ring_drain(struct ring *r, int32_t *out, unsigned cap) {
  unsigned head = *r->cq_head; /* only we write the CQ head */
  unsigned tail = __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE);
  unsigned mask = *r->cq_mask;
  unsigned n = 0;
  while (head != tail && n < cap) {
    const struct io_uring_cqe *cqe = &r->cqes[head & mask];
    out[2 * n] = (int32_t)cqe->user_data;
    out[2 * n + 1] = cqe->res;
    n++;
    head++;
  }
  __atomic_store_n(r->cq_head, head, __ATOMIC_RELEASE);
  return n;
}

int ring_register_eventfd(struct ring *r, int efd) {
  return sys_register(r->fd, IORING_REGISTER_EVENTFD, &efd, 1);
}

int ring_set_eventfd_enabled(struct ring *r, int on) {
#ifdef IORING_CQ_EVENTFD_DISABLED
  if (!r->cq_flags) return -ENOTSUP;
  unsigned f = __atomic_load_n(r->cq_flags, __ATOMIC_RELAXED);
  f = on ? f & ~IORING_CQ_EVENTFD_DISABLED : f | IORING_CQ_EVENTFD_DISABLED;
  __atomic_store_n(r->cq_flags, f, __ATOMIC_RELEASE);
  return 0;
#else
  (void)r;
  (void)on;
  return -ENOTSUP;
#endif
}

int ring_register_files(struct ring *r, const int *fds, unsigned n) {
  return sys_register(r->fd, IORING_REGISTER_FILES, fds, n);
}
