import COpenBLAS

/// Dense linear algebra from the LAPACK that OpenBLAS carries (no hand-written solver).
public enum Linalg {
    /// Why a LAPACK routine failed.
    public struct Error: Swift.Error, CustomStringConvertible {
        public let description: String
    }

    /// Eigenvalues of the symmetric matrix `a [n, n]`, in descending order: LAPACK's `dsyevd`. (It
    /// reads one triangle; `a` being symmetric, row-major or column-major order reads the same.)
    public static func symmetricEigenvalues(_ a: [Double], n: Int) throws -> [Double] {
        precondition(n >= 1 && a.count == n * n, "symmetricEigenvalues: a must hold n × n values")
        guard n <= Int(Int32.max) / 2 else { throw Error(description: "symmetricEigenvalues: n = \(n) is too large for LAPACK's 32-bit sizes") }
        var m = a, w = [Double](repeating: 0, count: n)
        var jobz = CChar(UInt8(ascii: "N")), uplo = CChar(UInt8(ascii: "L"))
        var nn = Int32(n), lda = Int32(n), lwork = Int32(2 * n + 1), liwork = Int32(1), info = Int32(0)
        var work = [Double](repeating: 0, count: 2 * n + 1), iwork = [Int32](repeating: 0, count: 1)
        dsyevd_(&jobz, &uplo, &nn, &m, &lda, &w, &work, &lwork, &iwork, &liwork, &info, 1, 1)
        guard info == 0 else {
            throw Error(description: info < 0 ? "dsyevd: argument \(-info) is invalid" : "dsyevd: the eigenvalues did not converge (\(info) off-diagonal elements)")
        }
        return w.reversed()
    }
}
