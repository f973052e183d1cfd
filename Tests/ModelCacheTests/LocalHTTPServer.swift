import Foundation

/// A small HTTP/1.1 server on 127.0.0.1 for download tests: each request is answered by `handler`, which can
/// send a body slowly, cut it short, or refuse. Nothing leaves the machine.
// Unchecked: `seen` is guarded by `lock`; the rest is set in `init` and only read after.
final class LocalHTTPServer: @unchecked Sendable {
    struct Request {
        var path: String
        var headers: [String: String]
    }
    struct Response {
        var status = 200
        var headers: [String: String] = [:]
        var body = Data()
        /// Close the connection after this many body bytes (the headers still announce the whole body).
        var cutAfter: Int? = nil
        /// Pause between 64 KiB pieces of the body.
        var pause: Double = 0
    }

    let port: UInt16
    private let listener: Int32
    private let handler: (Request) -> Response
    private let lock = NSLock()
    private var seen: [Request] = []

    /// Requests served so far.
    var requests: [Request] {
        lock.lock()
        defer { lock.unlock() }
        return seen
    }

    init(handler: @escaping (Request) -> Response) throws {
        self.handler = handler
        signal(SIGPIPE, SIG_IGN)  // a client that hangs up must not end the test process
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.listener = listener
        var yes: Int32 = 1
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0, listen(listener, 16) == 0 else { throw POSIXError(.EADDRINUSE) }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) }
        }
        let port = UInt16(bigEndian: address.sin_port)
        self.port = port
        let thread = Thread { [unowned self] in self.serve() }
        thread.start()
    }

    deinit { stop() }

    func stop() {
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    func url(_ path: String) -> String { "http://127.0.0.1:\(port)\(path)" }

    private func serve() {
        while true {
            let connection = accept(listener, nil, nil)
            guard connection >= 0 else { return }
            Thread { [self] in answer(connection) }.start()
        }
    }

    private func answer(_ connection: Int32) {
        defer { close(connection) }
        var buffer = [UInt8](repeating: 0, count: 8192)
        var text = ""
        while !text.contains("\r\n\r\n") {
            let n = read(connection, &buffer, buffer.count)
            guard n > 0 else { return }
            text += String(decoding: buffer[0..<n], as: UTF8.self)
        }
        let lines = text.components(separatedBy: "\r\n")
        let path = lines[0].split(separator: " ").dropFirst().first.map(String.init) ?? "/"
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(
                in: .whitespaces)
        }
        let request = Request(path: path, headers: headers)
        lock.lock()
        seen.append(request)
        lock.unlock()
        let response = handler(request)
        var head = "HTTP/1.1 \(response.status) \(response.status == 200 ? "OK" : "Status")\r\nConnection: close\r\n"
        var allHeaders = response.headers
        if allHeaders["Content-Length"] == nil { allHeaders["Content-Length"] = "\(response.body.count)" }
        for (key, value) in allHeaders { head += "\(key): \(value)\r\n" }
        guard send(connection, Data((head + "\r\n").utf8)) else { return }
        let body = response.cutAfter.map { response.body.prefix($0) } ?? response.body
        var offset = body.startIndex
        while offset < body.endIndex {
            let end = min(offset + 65536, body.endIndex)
            guard send(connection, body[offset..<end]) else { return }
            offset = end
            if response.pause > 0 { Thread.sleep(forTimeInterval: response.pause) }
        }
    }

    private func send(_ connection: Int32, _ data: Data) -> Bool {
        data.withUnsafeBytes { raw in
            var sent = 0
            while sent < raw.count {
                let n = write(connection, raw.baseAddress! + sent, raw.count - sent)
                if n <= 0 { return false }
                sent += n
            }
            return true
        }
    }
}
