using static TorchSharp.torch;

namespace LSVCR.Modeling;

/// <summary>
/// Inverted dropout with a cheaper random draw than libtorch's: one int16 uniform per element (a keep iff it is ≥ a
/// threshold) instead of a Bernoulli sample, which profiling showed to be the largest single cost of a training step
/// (≈35 M draws per step). The keep probability is 1−p quantised to 1/65536 (p = 0.3 → 0.299997 dropped); kept values
/// are scaled by 1/(1−p) as in torch. Inference (training = false) is the identity.
/// </summary>
internal static class Dropout
{
    public static Tensor Apply(Tensor x, double p, bool training)
    {
        if (!training || p <= 0) return x.alias();
        if (p >= 1) return zeros_like(x);
        using var scope = NewDisposeScope();
        var threshold = (long)Math.Round(p * 65536) - 32768;
        using var bits = randint(-32768, 32768, x.shape, dtype: ScalarType.Int16);
        var keep = bits.ge(threshold).to(x.dtype).mul_(1.0 / (1.0 - p));
        return x.mul(keep).MoveToOuterDisposeScope();
    }
}
