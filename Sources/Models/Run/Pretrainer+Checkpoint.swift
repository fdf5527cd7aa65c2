import Foundation
import TesseraData
import TesseraEngine

// A run's checkpoints: what a save writes (the train state first, then the reported model and the
// encoder, each atomically), what a resume reads back, and the processes' agreement on the state.
extension Pretrainer {
    /// Images the run has trained on (all processes together).
    public var samplesConsumed: Int { step * config.effectiveBatch }

    func metadata() -> [String: String] {
        ["format": "pt", "method": method.methodName, "config": config.json(), "epoch": "\(epoch)", "step": "\(step)",
         "producer": "tessera", "world_size": "\(comm.size)", "samples": "\(samplesConsumed)"]
    }

    /// Gives every process rank 0's parameters, buffers, optimizer moments and counters (at the
    /// start of a data-parallel run, and after rank 0 resumed from a checkpoint).
    public func synchronizeState() {
        guard comm.size > 1 else { return }
        for (_, t) in method.reportedModel.stateDict() { comm.broadcast(t) }
        for (_, t) in method.extraState() { comm.broadcast(t) }
        let arena = optimizer.arena
        for storage in [arena.values, optimizer.m, optimizer.v] {
            comm.broadcast(UnsafeMutableRawBufferPointer(start: storage.base, count: arena.count * MemoryLayout<Float>.stride), from: 0)
        }
        var counters: [Int64] = [Int64(step), Int64(epoch), Int64(optimizer.step), Int64(bestKNN.bitPattern)]
        counters.withUnsafeMutableBytes { comm.broadcast($0, from: 0) }
        step = Int(counters[0]); epoch = Int(counters[1]); optimizer.restore(step: Int(counters[2]))
        bestKNN = Float(bitPattern: UInt32(counters[3]))
    }

    /// A checksum of the trained state, equal on every process unless they diverged.
    func stateChecksum() -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        let arena = optimizer.arena
        for storage in [arena.values, optimizer.m, optimizer.v] {
            let words = UnsafeRawPointer(storage.base).bindMemory(to: UInt32.self, capacity: arena.count)
            for i in 0..<arena.count { h = (h ^ UInt64(words[i])) &* 0x100_0000_01b3 }
        }
        return h
    }

    /// Checks that every process holds the same state (a deterministic reduction keeps them equal).
    func verifyProcessesAgree() throws {
        guard comm.size > 1 else { return }
        let c = stateChecksum()
        let all = comm.allGather([Int32(truncatingIfNeeded: c), Int32(truncatingIfNeeded: c >> 32)])
        let disagreeing = (0..<comm.size).filter { all[2 * $0] != all[0] || all[2 * $0 + 1] != all[1] }
        guard disagreeing.isEmpty else {
            throw TrainingError(description: "processes \(disagreeing.map(String.init).joined(separator: ", ")) hold different parameters than rank 0 at step \(step); the job is not deterministic (mixed builds or CPUs?)",
                                onEveryProcess: true)
        }
    }

    /// Writes `<tag>.train-state`, then `<tag>` (full model) and `<tag>.encoder`, each atomically.
    ///
    /// The train state holds everything a resume needs (the reported model's tensors as `model.<name>`,
    /// the AdamW moments, the method's extra state and the step), so resuming reads that one file, and
    /// a run killed between two of the three writes resumes from whichever train state is on disk.
    public func saveCheckpoint(tag: String, includeTrainState: Bool = true) throws {
        let meta = metadata()
        if includeTrainState {
            var tensors: [(name: String, entry: SafeTensors.Entry)] = method.reportedModel.stateDict().map {
                ("model." + $0.name, .init(floats: $0.tensor.array, shape: $0.tensor.shape))
            }
            for (name, t, off) in optimizer.arena.entries {
                tensors.append(("exp_avg." + name, .init(floats: Array(UnsafeBufferPointer(start: optimizer.m.base + off, count: t.count)), shape: t.shape)))
                tensors.append(("exp_avg_sq." + name, .init(floats: Array(UnsafeBufferPointer(start: optimizer.v.base + off, count: t.count)), shape: t.shape)))
            }
            for (name, t) in method.extraState() { tensors.append(("extra." + name, .init(floats: t.array, shape: t.shape))) }
            tensors.append(("optimizer.step", .init(int64s: [Int64(optimizer.step)], shape: [])))
            try SafeTensors.write(.init(tensors: tensors, metadata: meta), to: run.trainState(tag))
        }
        try SafeTensors.write(.init(tensors: method.reportedModel.stateDict().map { ($0.name, .init(floats: $0.tensor.array, shape: $0.tensor.shape)) }, metadata: meta),
                              to: run.model(tag))
        try SafeTensors.write(.init(tensors: method.evaluationEncoder.stateDict().map { ($0.name, .init(floats: $0.tensor.array, shape: $0.tensor.shape)) },
                                    metadata: meta), to: run.encoder(tag))
        logger.debug("checkpoint written", metadata: ["path": "\(run.model(tag))", "epoch": "\(epoch)", "step": "\(step)"])
    }

    /// Restores weights, optimizer moments, step counters and extra state from `<tag>.train-state`
    /// (the weights from `<tag>` itself when the train state predates holding them).
    public func resume(tag: String = "last") throws {
        let state = try SafeTensors.read(run.trainState(tag))
        let embedded = state.tensors.contains { $0.name.hasPrefix("model.") }
        let model = embedded ? SafeTensors.File(tensors: state.tensors.filter { $0.name.hasPrefix("model.") }
                                                    .map { (String($0.name.dropFirst(6)), $0.entry) }, metadata: state.metadata)
                             : try SafeTensors.read(run.model(tag))
        guard model.metadata["step"] == state.metadata["step"], let stepText = model.metadata["step"], let s = Int(stepText),
              let e = Int(model.metadata["epoch"] ?? "") else {
            throw TrainingError(description: "\(run.path): \(tag).safetensors and \(tag).train-state.safetensors are from different steps; start a new run or restore both files")
        }
        // Checkpoints are written at epoch ends: the step is the epochs done times the steps per epoch.
        guard e >= 0, e <= ConfigLimits.epochs.upperBound, s >= 0, s == e * stepsPerEpoch else {
            let was = e > 0 && s > 0 && s % e == 0 && s / e <= Int(Int32.max) ? s / e : nil
            if let was, was != stepsPerEpoch {
                throw TrainingError(description: "\(run.trainState(tag)) was saved after \(e) epoch\(e == 1 ? "" : "s") of \(was) steps, but the training data now gives \(stepsPerEpoch) steps per epoch; the data changed since the run started: resume with the data it was trained on")
            }
            throw TrainingError(description: "\(run.trainState(tag)): epoch \(e) and step \(s) are not a point of this run (\(stepsPerEpoch) steps per epoch); the file is damaged: restore it or start a new run")
        }
        if let c = model.metadata["config"] {
            let saved = try PretrainConfig.decode(c)
            // More epochs may be asked for on resume (the remaining schedule then stretches), the
            // logging, saving and monitoring cadence may change, and so may the products' precision
            // (a choice of arithmetic, not of the run); everything that shapes the run must match.
            func shape(_ c: PretrainConfig) -> PretrainConfig {
                var c = c
                c.epochs = 0; c.logEvery = 0; c.saveEvery = 0; c.knnEvery = 0; c.evalData = nil; c.precision = nil
                return c
            }
            guard shape(saved) == shape(config) else {
                throw TrainingError(description: "\(run.path): the checkpoint was trained with a different configuration (see config.json); resume with the same options")
            }
        }
        try loadWeights(model, into: method.reportedModel)
        for (name, t, off) in optimizer.arena.entries {
            guard let m = state["exp_avg." + name]?.floats(), let v = state["exp_avg_sq." + name]?.floats(), m.count == t.count, v.count == t.count else {
                throw TrainingError(description: "\(run.trainState(tag)): optimizer state for '\(name)' is missing or has the wrong size")
            }
            (optimizer.m.base + off).update(from: m, count: t.count)
            (optimizer.v.base + off).update(from: v, count: t.count)
        }
        for (name, t) in method.extraState() {
            guard let v = state["extra." + name]?.floats(), v.count == t.count else {
                throw TrainingError(description: "\(run.trainState(tag)): state '\(name)' is missing or has the wrong size")
            }
            t.data.update(from: v, count: t.count)
        }
        guard let st = state["optimizer.step"]?.int64s()?.first, st >= 0, st <= Int64(s) else {
            throw TrainingError(description: "\(run.trainState(tag)): optimizer.step is missing or not within 0…\(s); the file is damaged: restore it or start a new run")
        }
        optimizer.restore(step: Int(st))
        step = s
        epoch = e
    }
}
