using static TorchSharp.torch;

namespace LSVCR.Modeling.Cpu;

/// <summary><see cref="MultiHeadAttention"/> with its training forward as one fused node
/// (<see cref="FusedMultiHeadAttention"/>: projections, heads, out_linear, dropout, residual and norm per chunk of
/// examples, k and v as one projection). Evaluation, and tensors the kernels cannot read, run the plain module.</summary>
internal sealed class CpuMultiHeadAttention(RecComConfig c) : MultiHeadAttention(c)
{
    public override Tensor forward(Tensor q, Tensor kv, Tensor mask)
    {
        if (!training || !CpuBackend.Reads(q, kv) || AttentionDropout >= 1 || HiddenDropout >= 1) return base.forward(q, kv, mask);
        using var scope = NewDisposeScope();
        var p = new FusedMultiHeadAttention.Parameters(query.weight!, query.bias!, cat([key.weight!, value.weight!], 0),
            cat([key.bias!, value.bias!], 0), out_linear.weight!, out_linear.bias!, LayerNorm.weight!, LayerNorm.bias!);
        return FusedMultiHeadAttention.Apply(q, ReferenceEquals(q, kv) ? null : kv, mask, p, Heads, AttentionDropout, HiddenDropout, Eps)
            .MoveToOuterDisposeScope();
    }
}
