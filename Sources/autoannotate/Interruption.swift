import Dispatch
import Foundation

/// Ctrl-C (SIGINT) and SIGTERM end the program with exit code 1 and a sentence, never by the signal. A job asks
/// to stop gracefully: the first signal lets it finish the image in hand and return; a second stops it at once
/// (its store is consistent after any kill, so `resume` continues either way).
enum Interruption {
    /// Installs the handlers; call once, before any work.
    static func install() {
        for number in [SIGINT, SIGTERM] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { state.received(number) }
            source.resume()
            state.keep(source)
        }
    }

    /// From now on the first signal asks the caller (through `requested`) to stop instead of ending the program.
    static func stopGracefully(_ message: String) { state.graceful(message) }

    /// Whether a signal asked a graceful caller to stop.
    static var requested: Bool { state.isRequested }

    private static let state = State()

    // Unchecked: every field is read and written holding `lock`.
    private final class State: @unchecked Sendable {
        private let lock = NSLock()
        private var sources: [any DispatchSourceSignal] = []
        private var gracefulMessage: String?
        private var stopRequested = false

        func keep(_ source: any DispatchSourceSignal) { lock.withLock { sources.append(source) } }
        func graceful(_ message: String) { lock.withLock { gracefulMessage = message } }
        var isRequested: Bool { lock.withLock { stopRequested } }

        func received(_ number: Int32) {
            let name = number == SIGINT ? "interrupted (Ctrl-C)" : "terminated (SIGTERM)"
            let message: String? = lock.withLock {
                guard let text = gracefulMessage, !stopRequested else { return nil }
                stopRequested = true
                return text
            }
            if let message {
                FileHandle.standardError.write(Data("\n\(name): \(message)\n".utf8))
            } else {
                FileHandle.standardError.write(Data("\n\(name): stopped\n".utf8))
                _exit(1)
            }
        }
    }
}
