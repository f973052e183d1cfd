// Loops shared among threads: each thread takes its own items from the front and, once they are done, the others'
// from the back (`Threading.parallelItems`, `parallelWork`).
#include "kernels.h"
#include <stdatomic.h>
#include <stdlib.h>

// Per thread, the items left as one word (front in the low half, end in the high), so that the owner's front and a
// thief's back are taken by one compare-and-swap each.
struct ck_items {
    long threads;
    _Atomic uint64_t range[];
};

ck_items *ck_items_create(long n, long threads) {
    ck_items *w = malloc(sizeof(ck_items) + sizeof(_Atomic uint64_t) * (size_t)threads);
    if (!w) return NULL;
    w->threads = threads;
    for (long t = 0; t < threads; t++) {
        const uint64_t start = (uint64_t)(n * t / threads), end = (uint64_t)(n * (t + 1) / threads);
        atomic_init(&w->range[t], start | end << 32);
    }
    return w;
}

void ck_items_free(ck_items *w) { free(w); }

// The front item of thread t's range (back: its last), or -1 when the range is empty.
static long take(ck_items *w, long t, int back) {
    uint64_t v = atomic_load_explicit(&w->range[t], memory_order_relaxed);
    for (;;) {
        const uint64_t front = v & 0xffffffffu, end = v >> 32;
        if (front >= end) return -1;
        const uint64_t next = back ? front | (end - 1) << 32 : (front + 1) | end << 32;
        if (atomic_compare_exchange_weak_explicit(&w->range[t], &v, next, memory_order_relaxed, memory_order_relaxed))
            return (long)(back ? end - 1 : front);
    }
}

long ck_items_next(ck_items *w, long thread) {
    const long own = take(w, thread, 0);
    if (own >= 0) return own;
    // The thread with the most left gives up its last item.
    for (;;) {
        long victim = -1;
        uint64_t most = 0;
        for (long t = 0; t < w->threads; t++) {
            const uint64_t v = atomic_load_explicit(&w->range[t], memory_order_relaxed), front = v & 0xffffffffu,
                           end = v >> 32;
            if (end > front && end - front > most) {
                victim = t;
                most = end - front;
            }
        }
        if (victim < 0) return -1;
        const long item = take(w, victim, 1);
        if (item >= 0) return item;
    }
}
