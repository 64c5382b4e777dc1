using TorchSharp.Modules;
using TorchSharp;
using static TorchSharp.torch;

namespace LSVCR.Modeling.Cpu;

/// <summary>
/// The CPU backend of <see cref="RecCom"/>: each part of <see cref="ModelBackend"/> replaced by its fused CPU kernel
/// (autograd nodes with hand-written forward and backward, <see cref="CpuKernels"/>, <see cref="ShardWorkers"/>).
/// Chosen by <see cref="ModelBackend.Select"/>; every part falls back to its plain form for tensors its kernel
/// cannot read (another device or dtype, e.g. after <c>model.to(…)</c>), so a model built here can still move.
/// </summary>
internal sealed class CpuBackend : ModelBackend
{
    public static CpuBackend Instance { get; } = new();

    private CpuBackend() { }

    public override string Name => "cpu-kernels";

    /// <summary>True when every given tensor is a float32 CPU tensor: what the kernels read through raw pointers.</summary>
    internal static bool Reads(params ReadOnlySpan<Tensor?> tensors)
    {
        foreach (var t in tensors)
            if (t is not null && (t.device_type != DeviceType.CPU || t.dtype != ScalarType.Float32)) return false;
        return true;
    }

    internal override MultiHeadAttention MultiHeadAttention(RecComConfig c) => new CpuMultiHeadAttention(c);

    internal override FeedForward FeedForward(RecComConfig c) => new CpuFeedForward(c);

    internal override AdditiveAttention AdditiveAttention(RecComConfig c) => new CpuAdditiveAttention(c);

    internal override Tensor Linear(Tensor a, Tensor weightA, Tensor? b, Tensor? weightB, Tensor? bias) =>
        Reads(a, weightA, b, weightB, bias) ? TiledLinear.Apply(a, weightA, b, weightB, bias) : base.Linear(a, weightA, b, weightB, bias);

    internal override Tensor Input(Tensor? id, Tensor? gate, Tensor? x, Tensor pos, LayerNorm norm, double p, double eps, bool training)
    {
        if (training && Reads(id, gate, x, pos, norm.weight, norm.bias)
            && InputLayer.TryApply(id, gate, x, pos, norm.weight!, norm.bias!, p, eps) is { } fused)
            return fused;
        return base.Input(id, gate, x, pos, norm, p, eps, training);
    }

    internal override Tensor CandidateVectors(Tensor? ids, Tensor? gate, Tensor? titles) =>
        Reads(ids, gate, titles) && Cpu.CandidateVectors.TryApply(ids, gate, titles) is { } fused ? fused : base.CandidateVectors(ids, gate, titles);

    internal override Tensor SoftmaxCrossEntropy(Tensor u, Tensor v, Tensor target) =>
        Reads(u, v) ? Cpu.SoftmaxCrossEntropy.Loss(u, v, target) : base.SoftmaxCrossEntropy(u, v, target);

    internal override Tensor IdTextBand(Tensor id, Tensor text, Tensor index, Tensor owner, int k1, int k2, long positions, double temperature) =>
        Reads(id, text)
            ? IdTextKernel.Loss(id, text, index, owner, k1, k2, positions, temperature)
            : base.IdTextBand(id, text, index, owner, k1, k2, positions, temperature);

    internal override Tensor RowMean(Tensor table, CommentBags bags) =>
        Reads(table) ? GatherMean.Of(table, bags) : base.RowMean(table, bags);
}
