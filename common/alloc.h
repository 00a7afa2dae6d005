/*
 * alloc.h — rapport's one out-of-memory policy.
 *
 * Every allocation in the product goes through these wrappers.  When the
 * allocator fails they log one line naming the size and abort, as Redis's
 * zmalloc does (docs/DESIGN.md §6).  A daemon that cannot allocate a few
 * hundred bytes cannot make progress, and carrying an out-of-memory flag
 * through every layer only turns the crash into a retry loop that never
 * succeeds.  Nothing is lost by aborting: the next
 * start resumes from the offsets Redis holds (docs/SPEC.md §6).
 *
 * What keeps rapport from reaching that point is bounding what it holds,
 * not checking each malloc: batches are bounded by flush_backlog_mb,
 * messages by max_message_bytes, the prefetch by librdkafka's queue limit.
 *
 * Thread-safe.  Sizes of 0 are allocated as 1 so that NULL always means
 * failure.
 */
#ifndef RAPPORT_ALLOC_H
#define RAPPORT_ALLOC_H

#include <stdbool.h>
#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
/* n bytes of s and a terminating NUL. */
char *xstrndup(const char *s, size_t n);

/* Giving a peak back.  A catch-up batch can hold hundreds of megabytes for
 * a moment; once it is written, the modules that held it free what they
 * keep beyond a steady flush's needs and report the bytes here.  glibc
 * keeps freed heap memory in the process, so alloc_trim(), called between
 * batches, hands its free pages back to the kernel (malloc_trim) once at
 * least min_bytes were reported since the last trim, and returns true
 * when it did: ALLOC_TRIM_BYTES after a batch, 1 when rapport is idle.
 * Without glibc it only forgets the count. */
#define ALLOC_TRIM_BYTES ((size_t)16 << 20)
void alloc_released(size_t bytes);
bool alloc_trim(size_t min_bytes);

/* Called once at start-up, before any thread: with glibc, every block of
 * ALLOC_MMAP_BYTES or more gets pages of its own (M_MMAP_THRESHOLD).  By
 * default glibc raises that threshold each time such a block is freed,
 * after which a catch-up batch's large arrays land in the heap, where
 * growing them copies and freeing them leaves holes that only a trim
 * gives back.  Fixed, they grow with mremap and go back to the kernel
 * when freed; librdkafka's fetch buffers too. */
#define ALLOC_MMAP_BYTES ((size_t)256 << 10)
void alloc_init(void);

#endif
