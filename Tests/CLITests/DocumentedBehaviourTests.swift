import Foundation
import TesseraData
import TesseraEngine
import TesseraModels
import TestSupport
import XCTest

/// Behaviour the docs promise that no other test held to: `--resume` refuses every option that would
/// change the saved run (docs/cli.md); `TESSERA_GEMM`'s choices and errors (docs/engine.md); a batch
/// too large for the machine is refused before the run folder exists (docs/reliability.md).
final class DocumentedBehaviourTests: XCTestCase {
    let binary = Subprocess.product("tessera", besides: DocumentedBehaviourTests.self)

    func tessera(_ args: [String], env: [String: String] = [:]) throws -> Subprocess.Outcome {
        try Subprocess.run(binary, args, env: ["TESSERA_THREADS": "2"].merging(env) { $1 })
    }

    func scratch() throws -> String { try scratchDirectory("documented") }

    func tinyData(_ dir: String) throws -> String {
        var rng = TesseraRNG(seed: 11)
        try FileIO.writeAtomically(NpyArray.serialize(floats: (0..<(32 * 16 * 16)).map { _ in rng.uniform() }, shape: [32, 16, 16]), to: dir + "/d.npy")
        return dir + "/d.npy"
    }

    /// docs/cli.md's recipe table holds each method's recipe as the code states it (`MethodKind.recipeSummary`,
    /// from which `tessera pretrain --help` is made), and its options column each method's flags as the
    /// parser has them: its own option group's (`<title> options`) and the shared flags whose help names
    /// it among their readers; a method option is refused under another method.
    func testTheDocumentedRecipesAndMethodOptionsAreTheCode() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let doc = try String(contentsOf: root.appendingPathComponent("docs/cli.md"), encoding: .utf8)
        for m in MethodKind.allCases {
            XCTAssertTrue(doc.contains("| \(m.title) | \(m.recipeSummary) |"), "docs/cli.md's recipe table has no row '| \(m.title) | \(m.recipeSummary) |'")
        }
        let dump = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(try tessera(["pretrain", "--experimental-dump-help"]).stdout.utf8)) as? [String: Any])
        let arguments = try XCTUnwrap((dump["command"] as? [String: Any])?["arguments"] as? [[String: Any]])
        var readers: [String: Set<String>] = [:]   // flag → the titles of the methods that read it
        for a in arguments {
            guard let name = (a["names"] as? [[String: Any]])?.first?["name"] as? String else { continue }
            if let section = a["sectionTitle"] as? String, section.hasSuffix(" options") {
                readers["--" + name] = [String(section.dropLast(" options".count))]
            } else if let abstract = a["abstract"] as? String, let open = abstract.firstIndex(of: "(") {
                // A shared flag's help starts its parenthesis with its readers: "(MAE, RC-MAE and SIM; …".
                let head = abstract[abstract.index(after: open)...].prefix { $0 != ";" && $0 != ")" }
                let titles = head.replacingOccurrences(of: " and ", with: ", ").components(separatedBy: ", ")
                if titles.allSatisfy({ t in MethodKind.allCases.contains { $0.title == t } }) { readers["--" + name] = Set(titles) }
            }
        }
        XCTAssertEqual(readers["--gamma"], ["RC-MAE"])
        XCTAssertEqual(readers["--decoder-depth"], ["MAE", "RC-MAE"])
        for m in MethodKind.allCases {
            let row = try XCTUnwrap(doc.split(separator: "\n").first { $0.hasPrefix("| `\(m.rawValue)`") }, "no options row for \(m)")
            let listed = Set(row.matches(of: /--[a-z][a-z-]*/).map { String($0.output) })
            XCTAssertEqual(listed, Set(readers.filter { $0.value.contains(m.title) }.keys), "docs/cli.md's options of \(m)")
        }
        let refused = try tessera(["pretrain", "--method", "mae", "--teacher-momentum", "0.9", "--run", try scratch() + "/r"])
        XCTAssertEqual(refused.status, 1, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("--teacher-momentum does not apply to mae (it applies to RC-MAE, MSN and SIM); MAE has no teacher"), refused.stderr)
        let other = try tessera(["pretrain", "--method", "mae", "--focal-views", "2", "--run", try scratch() + "/r"])
        XCTAssertTrue(other.stderr.contains("--focal-views applies to msn only"), other.stderr)
        // Every method's own flag (a valid value each) is refused under each other method: a flag its
        // group forgets to list among those given would slip through.
        let valid = ["--gamma": "1", "--momentum-schedule": "constant", "--focal-views": "2", "--focal-size": "8", "--patch-drop": "0.1",
                     "--prototypes": "16", "--head-hidden": "16", "--sim-norm": "layer", "--neg-weight": "0.1"]
        for (flag, owners) in readers where owners.count == 1 && arguments.contains(where: {
            ($0["sectionTitle"] as? String)?.hasSuffix(" options") == true && ((($0["names"] as? [[String: Any]])?.first?["name"] as? String).map { "--" + $0 } == flag)
        }) {
            let value = try XCTUnwrap(valid[flag], "\(flag): give it a valid value here")
            let owner = try XCTUnwrap(MethodKind.allCases.first { $0.title == owners.first })
            for m in MethodKind.allCases where m != owner {
                // A missing data file: a flag that slipped through ends the command there, not in a run.
                let dir = try scratch()
                let r = try tessera(["pretrain", "--method", m.rawValue, flag, value, "--data", dir + "/missing.npy", "--run", dir + "/r"])
                XCTAssertEqual(r.status, 1, "\(flag) under \(m): \(r.stderr)")
                XCTAssertTrue(r.stderr.contains("\(flag) applies to \(owner) only"), "\(flag) under \(m): \(r.stderr)")
            }
        }
    }

    /// Only --epochs, --threads, --workers, --skip-unreadable and --evaluate apply to a resumed run;
    /// every option that shapes it is refused in one line naming it, and the run is left as it was.
    func testResumeRefusesEveryOptionThatWouldChangeTheRun() throws {
        let dir = try scratch()
        let run = dir + "/run"
        let first = try tessera(["pretrain", "--data", try tinyData(dir), "--run", run, "--batch-size", "16", "--epochs", "1", "--depth", "1",
                                 "--dim", "16", "--heads", "1", "--decoder-dim", "16", "--decoder-depth", "1", "--decoder-heads", "1"])
        XCTAssertEqual(first.status, 0, first.stderr)
        let state = try Data(contentsOf: URL(fileURLWithPath: run + "/last.train-state.safetensors"))
        for (option, value) in [("--depth", "2"), ("--blr", "1e-3"), ("--batch-size", "8"), ("--seed", "3"), ("--mask-ratio", "0.5"),
                                ("--data", "fashion-mnist"), ("--weight-decay", "0.1"), ("--image-size", "32"), ("--accum", "2")] {
            let r = try tessera(["pretrain", "--run", run, "--resume", "--epochs", "2", option, value])
            XCTAssertEqual(r.status, 1, "\(option): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains("\(option) cannot change a run being resumed"), "\(option): \(r.stderr)")
        }
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: run + "/last.train-state.safetensors")), state)
        let allowed = try tessera(["pretrain", "--run", run, "--resume", "--epochs", "2", "--threads", "1", "--workers", "1"])
        XCTAssertEqual(allowed.status, 0, allowed.stderr)
    }

    /// TESSERA_GEMM: a name that is not a backend, and oneDNN where it cannot be loaded, are one line
    /// each; auto runs Tessera's GEMM on AVX2 and AVX-512 CPUs without libdnnl, OpenBLAS on baseline
    /// ones; openblas and tessera are taken as asked. The tool names the GEMM it runs.
    func testGEMMChoiceAndItsErrors() throws {
        let dir = try scratch()
        let data = try tinyData(dir)
        let bench = ["bench", "--rounds", "1", "--steps", "1", "--", "--data", data, "--batch-size", "8", "--depth", "1", "--dim", "16",
                     "--heads", "1", "--decoder-dim", "16", "--decoder-depth", "1", "--decoder-heads", "1"]
        let bogus = try tessera(bench, env: ["TESSERA_GEMM": "cublas"])
        XCTAssertEqual(bogus.status, 1)
        XCTAssertTrue(bogus.stderr.contains("TESSERA_GEMM=cublas is not a GEMM backend; use auto, openblas, onednn or tessera"), bogus.stderr)
        let onednn = try tessera(bench, env: ["TESSERA_GEMM": "onednn"])
        let libdnnlInstalled = try Subprocess.run("/bin/sh", ["-c", "ldconfig -p | grep -q libdnnl"]).status == 0
        if libdnnlInstalled {
            XCTAssertEqual(onednn.status, 0, onednn.stderr)
        } else {
            XCTAssertEqual(onednn.status, 1)
            XCTAssertTrue(onednn.stderr.contains("TESSERA_GEMM=onednn but no libdnnl could be loaded"), onednn.stderr)
        }
        for (choice, name) in [("openblas", "OpenBLAS"), ("tessera", "Tessera GEMM")] {
            let r = try tessera(bench, env: ["TESSERA_GEMM": choice])
            XCTAssertEqual(r.status, 0, "\(choice): \(r.stderr)")
            XCTAssertTrue(r.stdout.contains(name), "\(choice): \(r.stdout)")
        }
        if Runtime.gemm != .oneDNN {
            let auto = try tessera(bench, env: ["TESSERA_GEMM": "auto"])
            XCTAssertEqual(auto.status, 0, auto.stderr)
            XCTAssertTrue(auto.stdout.contains(Runtime.cpuLevel == "baseline" ? "OpenBLAS" : "Tessera GEMM"), "auto on \(Runtime.cpuLevel): \(auto.stdout)")
        }
    }

    /// A batch whose pixels alone would take more than half the machine's memory is refused in one
    /// line, before the run folder exists.
    func testABatchTooLargeForTheMachineIsRefusedUpFront() throws {
        let dir = try scratch()
        let r = try tessera(["pretrain", "--data", try tinyData(dir), "--run", dir + "/run", "--batch-size", "1048576", "--image-size", "4096",
                             "--patch-size", "64", "--limit", "32"])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("more than half of this machine's"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/run"))
    }

    /// Memory that runs out after the checks (here a 600 MB address-space limit and a model of width
    /// 4096) ends the run with one line naming the fix and exit status 1, not a trap; and a run that
    /// never saved leaves no folder behind, as any other failure before the first checkpoint.
    func testMemoryThatRunsOutLaterEndsTheRunInOneLine() throws {
        let dir = try scratch()
        let args = ["pretrain", "--data", try tinyData(dir), "--run", dir + "/run", "--batch-size", "16", "--epochs", "1", "--depth", "1",
                    "--dim", "4096", "--heads", "16", "--decoder-dim", "16", "--decoder-depth", "1", "--decoder-heads", "1"]
        let r = try Subprocess.run("/bin/sh", ["-c", "ulimit -v 600000 && exec \"$0\" \"$@\"", binary] + args, env: ["TESSERA_THREADS": "2"])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertTrue(r.stderr.hasPrefix("error: out of memory: a tensor of "), r.stderr)
        XCTAssertTrue(r.stderr.hasSuffix(" GiB does not fit; lower --batch-size, the image size or the model size\n"), r.stderr)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/run"), "the run that never saved left its folder")
    }

    /// The launcher is recognized from the environment it sets (docs/distributed.md): Open MPI's
    /// `OMPI_COMM_WORLD_SIZE`, Hydra's and PMI's `PMI_SIZE`, PMIx's `PMIX_RANK` with SLURM's
    /// `SLURM_NTASKS`; `TESSERA_MPI=0` ignores it, and `SLURM_NTASKS` alone (a batch script outside
    /// `srun`) is no launcher. Seen through a command that must refuse to run as one of several
    /// processes: recognized, it names the launcher; not, it goes on to the missing file.
    func testTheLauncherIsRecognizedFromItsEnvironment() throws {
        let cases: [([String: String], Bool)] = [
            (["OMPI_COMM_WORLD_SIZE": "2"], true), (["PMI_SIZE": "3"], true), (["PMIX_RANK": "0", "SLURM_NTASKS": "2"], true),
            (["SLURM_STEP_ID": "0", "SLURM_NTASKS": "4"], true), (["OMPI_COMM_WORLD_SIZE": "2", "TESSERA_MPI": "0"], false),
            (["SLURM_NTASKS": "4"], false), (["OMPI_COMM_WORLD_SIZE": "1"], false), ([:], false),
        ]
        for (env, launched) in cases {
            let r = try tessera(["inspect", "/nonexistent/model.safetensors"], env: env)
            XCTAssertEqual(r.status, 1, "\(env): \(r.stderr)")
            XCTAssertEqual(r.stderr.contains("started by an MPI launcher as one of"), launched, "\(env): \(r.stderr)")
            XCTAssertEqual(r.stderr.contains("/nonexistent/model.safetensors"), !launched, "\(env): \(r.stderr)")
        }
    }

    /// `--precision` (docs/cli.md): recorded in config.json and the checkpoints, kept by `--resume`
    /// unless given, the products' precision named in the log; a resumed bf16 run ends with the bits
    /// of the uninterrupted one; bad values and bf16 on another backend refused in one line before
    /// anything is written; `auto` is bf16 exactly where the CPU multiplies bf16 at twice fp32's rate.
    func testPrecisionIsRecordedKeptOnResumeAndRefusedWhereItCannotRun() throws {
        let dir = try scratch(), data = try tinyData(dir)
        let small = ["--data", data, "--batch-size", "16", "--depth", "1", "--dim", "32", "--heads", "2", "--decoder-dim", "32",
                     "--decoder-depth", "1", "--decoder-heads", "2"]
        func config(_ run: String) throws -> String { try String(contentsOfFile: run + "/config.json", encoding: .utf8) }
        let whole = try tessera(["pretrain", "--run", dir + "/whole", "--epochs", "2", "--precision", "bf16"] + small)
        XCTAssertEqual(whole.status, 0, whole.stderr)
        XCTAssertTrue(whole.stdout.contains("; products in bf16 ("), whole.stdout)
        XCTAssertTrue(try config(dir + "/whole").contains("\"precision\" : \"bf16\""))
        XCTAssertEqual(try SafeTensors.read(dir + "/whole/last.safetensors").metadata["config"].map { $0.contains("\"precision\" : \"bf16\"") }, true)

        let cut = try tessera(["pretrain", "--run", dir + "/cut", "--epochs", "1", "--precision", "bf16"] + small)
        XCTAssertEqual(cut.status, 0, cut.stderr)
        let resumed = try tessera(["pretrain", "--run", dir + "/cut", "--resume", "--epochs", "2"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stdout.contains("; products in bf16 ("), "resume keeps the recorded precision: \(resumed.stdout)")
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: dir + "/cut/last.safetensors")),
                       try Data(contentsOf: URL(fileURLWithPath: dir + "/whole/last.safetensors")), "a resumed bf16 run must end with the uninterrupted run's bits")
        let told = try tessera(["pretrain", "--run", dir + "/cut", "--resume", "--epochs", "3", "--precision", "fp32"])
        XCTAssertEqual(told.status, 0, told.stderr)
        XCTAssertTrue(told.stdout.contains("; products in fp32"), told.stdout)
        XCTAssertTrue(try config(dir + "/cut").contains("\"precision\" : \"fp32\""))

        let auto = try tessera(["pretrain", "--run", dir + "/auto", "--epochs", "1"] + small)
        XCTAssertEqual(auto.status, 0, auto.stderr)
        let expected = Runtime.bf16Offer == .fullRate && ProcessInfo.processInfo.environment["TESSERA_GEMM"].map { ["auto", "tessera"].contains($0) } ?? true
        XCTAssertTrue(try config(dir + "/auto").contains("\"precision\" : \"\(expected ? "bf16" : "fp32")\""), "auto on \(Runtime.bf16Offer)")

        for (args, env, message) in [(["--precision", "fp16"], [String: String](), "--precision must be auto, fp32 or bf16, got 'fp16'"),
                                     (["--precision", "bf16"], ["TESSERA_GEMM": "openblas"], "bf16 products run on Tessera's GEMM, but TESSERA_GEMM=openblas")] {
            let r = try tessera(["pretrain", "--run", dir + "/refused", "--epochs", "1"] + small + args, env: env)
            XCTAssertEqual(r.status, 1, r.stderr)
            XCTAssertTrue(r.stderr.contains(message), r.stderr)
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
            XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/refused"))
        }
    }
}
