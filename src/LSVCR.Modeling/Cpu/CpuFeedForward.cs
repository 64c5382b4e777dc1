using static TorchSharp.torch;

namespace LSVCR.Modeling.Cpu;

/// <summary><see cref="FeedForward"/> with its training forward as one fused node (<see cref="FusedFeedForward"/>:
/// both GEMMs, GELU, dropout, residual and norm per block of rows). Evaluation, and tensors the kernels cannot read,
/// run the plain module.</summary>
internal sealed class CpuFeedForward(RecComConfig c) : FeedForward(c)
{
    public override Tensor forward(Tensor x) =>
        training && CpuBackend.Reads(x)
            ? FusedFeedForward.Apply(x, linear_1, linear_2, LayerNorm, DropoutP, Eps, training)
            : base.forward(x);
}
