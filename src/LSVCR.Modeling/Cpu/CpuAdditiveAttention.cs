using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LSVCR.Modeling.Cpu;

/// <summary><see cref="AdditiveAttention"/> (rec_att) with its training forward as one fused node
/// (<see cref="FusedAdditiveAttention"/>). Evaluation, shapes the node does not take and tensors the kernels cannot
/// read run the plain module.</summary>
internal sealed class CpuAdditiveAttention(RecComConfig c) : AdditiveAttention(c)
{
    public override Tensor forward(Tensor h, Tensor mask)
    {
        if (training && CpuBackend.Reads(h, mask)
            && FusedAdditiveAttention.TryApply(h, mask, (Linear)attn[0], (LayerNorm)attn[2], (Linear)attn[4], DropoutP, Eps) is { } fused)
            return fused;
        return base.forward(h, mask);
    }
}
