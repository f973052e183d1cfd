import COpenBLAS
import Dispatch
import Foundation

/// The one thread-count setting of the process: it governs OpenBLAS and our own parallel loops together,
/// so that `threads=N` on the command line means N busy cores, not N × BLAS threads.
public enum Threading {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var current = ProcessInfo.processInfo.activeProcessorCount

    /// Threads used by BLAS and by `parallelFor`. Defaults to every core.
    public static var count: Int {
        get { lock.withLock { current } }
        set {
            let value = max(1, newValue)
            lock.withLock { current = value }
            openblas_set_num_threads(Int32(value))
        }
    }

    /// Runs `body` over `0..<n` split into at most `count` contiguous ranges, in parallel; ranges are never
    /// smaller than `grain` iterations so that tiny loops stay on the calling thread.
    public static func parallelFor(_ n: Int, grain: Int = 1, _ body: (Range<Int>) -> Void) {
        guard n > 0 else { return }
        let parts = min(count, max(1, n / max(1, grain)))
        if parts == 1 { body(0..<n); return }
        DispatchQueue.concurrentPerform(iterations: parts) { part in
            let start = n * part / parts
            let end = n * (part + 1) / parts
            if start < end { body(start..<end) }
        }
    }
}
