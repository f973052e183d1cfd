import Checkpoint
import Tensor

/// Float32 weights read from a checked SAM state dict by their segment_anything names.
struct Weights {
    let state: StateDict

    func callAsFunction(_ key: String) throws -> Tensor {
        guard let stored = state[key] else { throw CheckpointError.missingKey(path: state.path, key: key) }
        return stored.tensor()
    }

    /// `nn.Linear` at `prefix`: weight [out, in] and bias.
    func linear(_ prefix: String) throws -> LinearLayer {
        LinearLayer(weight: try self(prefix + ".weight"), bias: try self(prefix + ".bias"))
    }

    /// A LayerNorm's (or LayerNorm2d's) weight and bias.
    func norm(_ prefix: String) throws -> Norm { Norm(weight: try self(prefix + ".weight"), bias: try self(prefix + ".bias")) }
}

/// `nn.Linear` with PyTorch's [out, in] weight.
struct LinearLayer {
    let weight: Tensor
    let bias: Tensor?
    func callAsFunction(_ x: Tensor) -> Tensor { linear(x, weight: weight, bias: bias) }
}

struct Norm {
    let weight: Tensor
    let bias: Tensor
}
