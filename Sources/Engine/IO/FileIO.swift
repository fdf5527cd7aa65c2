import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// File reading and atomic writing with one-line errors.
public enum FileIO {
    /// An I/O failure, described in one line that names the path.
    public struct Error: Swift.Error, CustomStringConvertible {
        public let message: String
        public init(message: String) { self.message = message }
        public var description: String { message }
    }

    /// Opens a regular file for reading, or throws one line naming `path`: never blocks on a FIFO
    /// or a device (the open is non-blocking, then the type is checked on the descriptor itself).
    /// Returns the descriptor (blocking again) and its size; the caller closes it.
    public static func openRegularFile(_ path: String) throws -> (fd: Int32, size: Int) {
        try openRegularFile(bytes: Array(path.utf8), shown: path)
    }

    /// ``openRegularFile(_:)`` for a path given as its bytes (a file name need not be valid UTF-8);
    /// `path` is how messages show it.
    public static func openRegularFile(bytes: [UInt8], shown path: String) throws -> (fd: Int32, size: Int) {
        let fd = (bytes + [0]).withUnsafeBufferPointer { b in
            b.withMemoryRebound(to: CChar.self) { open($0.baseAddress!, O_RDONLY | O_CLOEXEC | O_NONBLOCK) }
        }
        guard fd >= 0 else { throw FileIO.Error(message: "\(path): cannot open (\(String(cString: strerror(errno))))") }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let e = errno
            close(fd)
            throw Error(message: "\(path): cannot stat (\(String(cString: strerror(e))))")
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            throw Error(message: "\(path): not a regular file (\(kind(st.st_mode))); pass a file")
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        return (fd, Int(st.st_size))
    }

    /// What a file mode is, in words.
    static func kind(_ mode: mode_t) -> String {
        let names: [UInt32: String] = [UInt32(S_IFDIR): "a directory", UInt32(S_IFIFO): "a FIFO", UInt32(S_IFCHR): "a character device",
                                       UInt32(S_IFBLK): "a block device", UInt32(S_IFSOCK): "a socket", UInt32(S_IFLNK): "a symbolic link"]
        return names[UInt32(mode & S_IFMT)] ?? "a regular file"
    }

    /// Reads a whole file, refusing files larger than `limit` bytes.
    public static func readAll(_ path: String, limit: Int = 1 << 34) throws -> [UInt8] {
        try readAll(bytes: Array(path.utf8), shown: path, limit: limit)
    }

    /// ``readAll(_:limit:)`` for a path given as its bytes; `path` is how messages show it.
    public static func readAll(bytes pathBytes: [UInt8], shown path: String, limit: Int = 1 << 34) throws -> [UInt8] {
        let (fd, size) = try openRegularFile(bytes: pathBytes, shown: path)
        defer { close(fd) }
        guard size <= limit else { throw Error(message: "\(path): \(size) bytes exceeds the \(limit)-byte limit") }
        var out = [UInt8](repeating: 0, count: size)
        var done = 0
        while done < size {
            let r = out.withUnsafeMutableBytes { read(fd, $0.baseAddress! + done, size - done) }
            if r < 0 && errno == EINTR { continue }
            guard r > 0 else { throw Error(message: "\(path): read failed after \(done) of \(size) bytes") }
            done += r
        }
        return out
    }

    /// Writes `bytes` to `path` so that a crash at any moment leaves either the old file or the new
    /// one: write a temporary file in the same directory, fsync it, rename it over `path`, fsync the
    /// directory. The temporary file is removed on failure.
    ///
    /// Only a regular file is replaced: a `path` that is a directory, FIFO, device or socket is
    /// refused (one line), and a symbolic link is followed, so the file it points to is replaced and
    /// the link stays (see ``outputTarget(_:)``).
    public static func writeAtomically(_ bytes: [UInt8], to requested: String) throws {
        let path = try outputTarget(requested)
        let url = URL(fileURLWithPath: path)
        let dir = url.deletingLastPathComponent().path
        let tmp = dir + "/." + url.lastPathComponent + ".tmp-\(getpid())"
        // A new file of this process's own: never through a link or onto something already there (a
        // leftover of a killed write, or a planted link, is removed first; unlink removes a link itself).
        var fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
        if fd < 0 && errno == EEXIST {
            unlink(tmp)
            fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
        }
        guard fd >= 0 else { throw FileIO.Error(message: "\(path): cannot write (\(String(cString: strerror(errno)))); check that \(dir) exists and is writable") }
        var ok = false
        defer { if !ok { unlink(tmp) } }
        // Reserve the whole size first: a full disk fails here, before any byte is written.
        let reserved = bytes.isEmpty ? 0 : posix_fallocate(fd, 0, off_t(bytes.count))
        if reserved == ENOSPC || reserved == EDQUOT { close(fd); throw noSpace(path, needed: bytes.count) }
        var done = 0
        while done < bytes.count {
            let r = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + done, bytes.count - done) }
            if r < 0 && errno == EINTR { continue }
            guard r > 0 else {
                let e = errno
                close(fd)
                if e == ENOSPC || e == EDQUOT { throw noSpace(path, needed: bytes.count) }
                throw Error(message: "\(path): write failed (\(String(cString: strerror(e))))")
            }
            done += r
        }
        guard fsync(fd) == 0 else {
            let e = errno
            close(fd)
            if e == ENOSPC || e == EDQUOT { throw noSpace(path, needed: bytes.count) }
            throw Error(message: "\(path): fsync failed (\(String(cString: strerror(e))))")
        }
        close(fd)
        guard rename(tmp, path) == 0 else { throw Error(message: "\(path): rename failed (\(String(cString: strerror(errno))))") }
        ok = true
        let dfd = open(dir.isEmpty ? "." : dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 { fsync(dfd); close(dfd) }
    }

    /// The file a write to `path` replaces: `path` itself when it does not exist or is a regular
    /// file, the file a symbolic link resolves to (which must itself not exist in an existing
    /// directory, or be a regular file); anything else is refused with one line naming `path`. The
    /// commands check their outputs with it before they start work, so a refused output costs nothing.
    public static func outputTarget(_ path: String) throws -> String {
        guard !path.isEmpty else { throw Error(message: "an output path is empty; give a file name") }
        var st = stat()
        guard lstat(path, &st) == 0 else {
            guard errno == ENOENT else { throw Error(message: "\(path): cannot write (\(String(cString: strerror(errno)))); choose another path") }
            return path
        }
        let type = st.st_mode & S_IFMT
        if type == S_IFREG { return path }
        if type == S_IFLNK {
            // Follow the whole chain; a link to nothing names a file to create in an existing directory.
            if let resolved = realpath(path, nil) {
                defer { free(resolved) }
                let target = String(cString: resolved)
                var t = stat()
                guard stat(target, &t) == 0, (t.st_mode & S_IFMT) == S_IFREG else {
                    throw Error(message: "\(path): a link to \(target), which is not a regular file (\(kind(t.st_mode))); choose another path")
                }
                return target
            }
            throw Error(message: "\(path): a symbolic link that does not resolve (\(String(cString: strerror(errno)))); remove it or choose another path")
        }
        throw Error(message: "\(path): exists and is not a regular file (\(kind(st.st_mode))); choose another path")
    }

    /// Fails with one line unless a write to `path` could go ahead: the target (``outputTarget(_:)``)
    /// is an existing writable regular file, or its directory exists and is writable. Writes nothing.
    public static func checkWritable(_ path: String) throws {
        let target = try outputTarget(path)
        let dir = parentDirectory(target)
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
            throw Error(message: "\(path): the directory \(dir) does not exist; create it or choose another path")
        }
        guard access(dir, W_OK) == 0 else {
            throw Error(message: "\(path): \(dir) is not writable; choose a writable location")
        }
    }

    /// The directory a path names a file in: "." for a bare name, "/" for a file at the root.
    public static func parentDirectory(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    /// The error of a write that found its device full: the file, the bytes it needed and the bytes
    /// free there.
    static func noSpace(_ path: String, needed: Int) -> FileIO.Error {
        let dir = URL(fileURLWithPath: path).deletingLastPathComponent().path
        let free = freeBytes(dir.isEmpty ? "." : dir)
        return FileIO.Error(message: "\(path): no space left on the device (\(needed) bytes to write, \(free >= 0 ? "\(free)" : "unknown") free in \(dir)); free some space or choose another location; the previous file is unchanged")
    }

    /// Writes text atomically.
    public static func writeAtomically(_ text: String, to path: String) throws {
        try writeAtomically(Array(text.utf8), to: path)
    }

    /// Appends a line to a file (metrics logs), creating it if needed.
    public static func appendLine(_ line: String, to path: String) throws {
        // Non-blocking, not through a link, and only to a regular file: a FIFO or a device put in a run
        // folder is refused in one line instead of blocking the run.
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW, 0o644)
        guard fd >= 0 else { throw FileIO.Error(message: "\(path): cannot append (\(String(cString: strerror(errno))))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            throw Error(message: "\(path): not a regular file (\(kind(st.st_mode))); remove it")
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        let bytes = Array((line + "\n").utf8)
        guard bytes.withUnsafeBytes({ write(fd, $0.baseAddress!, bytes.count) }) == bytes.count else {
            let e = errno
            if e == ENOSPC || e == EDQUOT { throw noSpace(path, needed: bytes.count) }
            throw Error(message: "\(path): append failed (\(String(cString: strerror(e))))")
        }
    }

    /// Fails with a one-line error unless `path` is a writable directory or could be created as one
    /// (its nearest existing ancestor is a writable directory). Creates nothing.
    public static func checkCreatable(_ path: String) throws {
        var p = URL(fileURLWithPath: path).standardizedFileURL.path
        while !FileManager.default.fileExists(atPath: p) {
            let parent = (p as NSString).deletingLastPathComponent
            if parent == p || parent.isEmpty { break }
            p = parent
        }
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: p, isDirectory: &isDir), isDir.boolValue else {
            throw Error(message: "\(path): \(p) is not a directory; choose another location")
        }
        guard access(p, W_OK) == 0 else { throw Error(message: "\(path): \(p) is not writable; choose a writable location") }
    }

    /// Creates a directory (and parents) or fails with a one-line error; returns the directories it
    /// created, outermost first (so a caller can take them back).
    @discardableResult
    public static func makeDirectory(_ path: String) throws -> [String] {
        // Each missing component with mkdir, so that the message is the system's reason.
        var missing: [String] = []
        var p = path
        var isDir: ObjCBool = false
        while !p.isEmpty && p != "/" && !FileManager.default.fileExists(atPath: p, isDirectory: &isDir) {
            missing.append(p)
            p = parentDirectory(p)
            if p == "." { break }
        }
        for dir in missing.reversed() where mkdir(dir, 0o755) != 0 && errno != EEXIST {
            throw Error(message: "\(path): cannot create directory \(dir) (\(String(cString: strerror(errno)))); choose a writable location")
        }
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue else {
            throw Error(message: "\(path): exists and is not a directory; choose another location")
        }
        guard access(path, W_OK) == 0 else { throw Error(message: "\(path): directory is not writable; choose a writable location") }
        return missing.reversed()
    }

    /// An exclusive lock on a directory, held while this object lives (`flock` on `<dir>/.tessera.lock`,
    /// which records the holder's pid). The kernel releases it when the process ends in any way, so a
    /// lock left by a killed process is simply taken over.
    public final class DirectoryLock {
        private let fd: Int32
        /// The lock file, `<dir>/.tessera.lock`.
        public let path: String

        /// Locks `directory` (which must exist), or throws naming the process that holds it; records
        /// this process as the holder unless told not to yet (``recordHolder()``).
        public init(_ directory: String, recordingHolder: Bool = true) throws {
            path = directory + "/.tessera.lock"
            // Never through a link, never a FIFO or device: the lock file is a regular file of the folder.
            let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0o644)
            guard fd >= 0 else {
                let e = errno
                if e == ELOOP { throw FileIO.Error(message: "\(path) is a symbolic link, which tessera does not follow; remove it (rm \(path)) and retry") }
                throw FileIO.Error(message: "\(path): cannot open (\(String(cString: strerror(e)))); choose a writable location")
            }
            var st = stat()
            guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
                close(fd)
                throw FileIO.Error(message: "\(path) is not a regular file (\(FileIO.kind(st.st_mode))); remove it and retry")
            }
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
            guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
                var buf = [UInt8](repeating: 0, count: 32)
                let n = pread(fd, &buf, 31, 0)
                let holder = n > 0 ? String(decoding: buf[0..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) : "?"
                close(fd)
                throw FileIO.Error(message: "\(directory) is in use by another tessera process (pid \(holder)); wait for it to finish or choose another --run")
            }
            self.fd = fd
            if st.st_size > 0 && st.st_size < 64 {
                var old = [UInt8](repeating: 0, count: Int(st.st_size))
                if pread(fd, &old, old.count, 0) == old.count { previous = (old, st.st_mtim) }
            }
            if recordingHolder { recordHolder() }
        }

        /// Writes this process's pid into the lock file, for the message a second process prints.
        /// A command that may still be refused after locking (its checks run under the lock) records
        /// itself only once they pass, so that a refusal changes nothing in the folder.
        public func recordHolder() { restore(Array("\(getpid())\n".utf8), modified: nil) }

        /// The lock file's content and modification time, as they were before this process locked it.
        public private(set) var previous: (bytes: [UInt8], modified: timespec)?

        /// Puts `bytes` in the lock file, and its modification time back to `modified` when given.
        public func restore(_ bytes: [UInt8], modified: timespec?) {
            _ = ftruncate(fd, 0)
            _ = pwrite(fd, bytes, bytes.count, 0)
            if let modified { var times = [timespec(tv_sec: 0, tv_nsec: (1 << 30) - 2 /* UTIME_OMIT: access time unchanged */), modified]; _ = futimens(fd, &times) }
        }

        deinit { close(fd) }   // closing the descriptor releases the lock
    }
}

/// Bytes free on the file system of `directory`, or -1.
private func freeBytes(_ directory: String) -> Int {
    ((try? FileManager.default.attributesOfFileSystem(forPath: directory))?[.systemFreeSize] as? NSNumber)?.intValue ?? -1
}
