import CKernels
import COpenBLAS
import Dispatch
import Foundation

/// The one thread-count setting of the process, for BLAS and our own loops together.
///
/// OpenBLAS is kept single-threaded and every parallel loop — GEMM included, split by `gemm` into
/// per-thread blocks — runs on our threads: OpenBLAS's own idle workers would spin (sched_yield) through our
/// elementwise loops and small attention GEMMs. One pool means `threads=N` is N busy cores, never N × BLAS threads.
public enum Threading {
    private static let lock = NSLock()
    // Unchecked: read and written only under `lock`.
    nonisolated(unsafe) private static var current: Int = {
        openblas_set_num_threads(1)
        // Activations of tens of megabytes are allocated and freed for every layer. glibc serves blocks above
        // its mmap threshold with fresh mappings, so each one page-faults and zero-fills anew; keeping them in
        // the heap lets freed blocks be reused. Peak RSS is unchanged:
        // it is set by the largest working set, which is held either way.
        ck_keep_large_allocations()
        return ProcessInfo.processInfo.activeProcessorCount
    }()
    /// Marks threads that are running a `parallelFor` body, so that nested loops run serially instead of
    /// oversubscribing the cores.
    private static let insideKey: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()

    /// Threads used by `parallelFor` (and so by GEMM). Defaults to every core.
    public static var count: Int {
        get { lock.withLock { current } }
        set { lock.withLock { current = max(1, newValue) } }
    }

    /// True on a thread that is already inside a `parallelFor` body.
    public static var isInsideParallelRegion: Bool { pthread_getspecific(insideKey) != nil }

    /// Runs `body` once on each of up to `count` threads, which take the items `0..<n` through `next` until it
    /// returns nil: each thread its own contiguous share in order, then the others' last items — so that a thread
    /// slowed by the machine (a VM's core shared with another tenant) leaves its work to the others instead of
    /// keeping them idle at the end. `body` keeps what it likes between its items (a head's packed keys). Items
    /// must not depend on one another; nested calls run serially. At most `threads` threads take part.
    public static func parallelItems(_ n: Int, threads: Int = .max, _ body: (_ next: () -> Int?) -> Void) {
        parallelWork(n, threads: threads) { work, thread in
            guard let work else {
                var items = (0..<n).makeIterator()
                return body { items.next() }
            }
            body {
                let item = ck_items_next(work, thread)
                return item >= 0 ? item : nil
            }
        }
    }

    /// `parallelItems` for a C kernel that takes its items itself, by `ck_items_next(work, thread)`; `work` is nil
    /// where one thread runs every item.
    public static func parallelWork(
        _ n: Int, threads: Int = .max, _ body: (_ work: OpaquePointer?, _ thread: Int) -> Void
    ) {
        guard n > 0 else { return }
        let parts = isInsideParallelRegion ? 1 : min(count, n, threads)
        guard parts > 1, let work = ck_items_create(n, parts) else { return parallelFor(1) { _ in body(nil, 0) } }
        defer { ck_items_free(work) }
        concurrentPerform(parts) { part in
            pthread_setspecific(insideKey, UnsafeRawPointer(bitPattern: 1))
            defer { pthread_setspecific(insideKey, nil) }
            body(work, part)
        }
    }

    /// Runs `body` over `0..<n` split into at most `count` contiguous ranges, in parallel; ranges are never
    /// smaller than `grain` iterations, so tiny loops stay on the calling thread. Nested calls run serially.
    public static func parallelFor(_ n: Int, grain: Int = 1, _ body: (Range<Int>) -> Void) {
        guard n > 0 else { return }
        if isInsideParallelRegion {
            body(0..<n)
            return
        }
        let parts = min(count, max(1, n / max(1, grain)))
        if parts == 1 {
            // Still a parallel region, so that what runs inside (a nested GEMM) splits the same way whatever
            // the thread count: results must not depend on it.
            pthread_setspecific(insideKey, UnsafeRawPointer(bitPattern: 1))
            defer { pthread_setspecific(insideKey, nil) }
            body(0..<n)
            return
        }
        concurrentPerform(parts) { part in
            let start = n * part / parts
            let end = n * (part + 1) / parts
            pthread_setspecific(insideKey, UnsafeRawPointer(bitPattern: 1))
            defer { pthread_setspecific(insideKey, nil) }
            if start < end { body(start..<end) }
        }
    }

    /// `DispatchQueue.concurrentPerform` for a body that is not `Sendable`: every parallel loop here gives each
    /// iteration its own part of the work, and the call returns only once all iterations have run.
    private static func concurrentPerform(_ iterations: Int, _ body: (Int) -> Void) {
        withoutActuallyEscaping(body) { body in
            // Unchecked: the iterations share only what the caller made safe to share (disjoint outputs).
            nonisolated(unsafe) let body = body
            DispatchQueue.concurrentPerform(iterations: iterations) { body($0) }
        }
    }
}
