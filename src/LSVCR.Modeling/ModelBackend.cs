using System.Runtime.Intrinsics.X86;
using TorchSharp.Modules;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace LSVCR.Modeling;

/// <summary>
/// The implementation of <see cref="RecCom"/>'s parts. This class is the reference: the formulas of MODEL.md §2 in
/// plain libtorch ops, for any device and dtype. <see cref="Cpu.CpuBackend"/> replaces each part by a sibling of the
/// same signature that runs fused CPU kernels (same parameters, the same arithmetic up to float rounding, the same
/// dropout masks). <see cref="Select"/> is the one place that chooses between them.
/// </summary>
public class ModelBackend
{
    private protected ModelBackend() { }

    /// <summary>Plain TorchSharp modules and ops: any device, any dtype.</summary>
    public static ModelBackend Plain { get; } = new();

    /// <summary>The fused CPU kernels (float32 on the CPU; a part handed anything else runs its plain form).</summary>
    public static ModelBackend CpuKernels => Cpu.CpuBackend.Instance;

    /// <summary>Short name for logs and bench output.</summary>
    public virtual string Name => "plain";

    /// <summary>True when this machine can run the CPU kernels at speed: x86 with AVX2 and FMA (AVX-512 where present
    /// is used on top; without them the kernels would run on emulated vectors, slower than libtorch).</summary>
    public static bool CpuKernelsSupported => Avx2.IsSupported && Fma.IsSupported;

    /// <summary>
    /// The choice, from facts: the CPU kernels for a model on the CPU in float32 on a machine that supports them
    /// (<see cref="CpuKernelsSupported"/>), unless <paramref name="cpuKernels"/> is false (the host's opt-out:
    /// <c>--no-cpu-kernels</c>, a service setting); the plain modules for any other device or dtype.
    /// </summary>
    public static ModelBackend Select(Device? device, ScalarType dtype, bool cpuKernels = true) =>
        cpuKernels && (device is null || device.type == DeviceType.CPU) && dtype == ScalarType.Float32 && CpuKernelsSupported
            ? CpuKernels
            : Plain;

    internal virtual MultiHeadAttention MultiHeadAttention(RecComConfig c) => new(c);

    internal virtual FeedForward FeedForward(RecComConfig c) => new(c);

    internal virtual AdditiveAttention AdditiveAttention(RecComConfig c) => new(c);

    /// <summary>a·W_aᵀ (+ b·W_bᵀ) (+ bias): a linear map over one input, or over the two halves of a concatenation
    /// [a ; b] whose weight is [W_a | W_b] (the concatenation itself is never built).</summary>
    internal virtual Tensor Linear(Tensor a, Tensor weightA, Tensor? b, Tensor? weightB, Tensor? bias)
    {
        var y = F.linear(a, weightA, bias);
        return b is null ? y : y.add(F.linear(b, weightB!, null));
    }

    /// <summary>Step 3 of MODEL.md §2.3: Dropout(LayerNorm(gate·id + x + pos)); <paramref name="id"/> [B, L, d] with
    /// <paramref name="gate"/> or neither, <paramref name="x"/> [B, L, d] or null, <paramref name="pos"/> [L, d].</summary>
    internal virtual Tensor Input(Tensor? id, Tensor? gate, Tensor? x, Tensor pos, LayerNorm norm, double p, double eps, bool training)
    {
        var (b, l, d) = ((x ?? id)!.shape[0], pos.shape[0], pos.shape[1]);
        var rows = pos.unsqueeze(0);
        var sum = x is null ? rows.expand(b, l, d) : x.add(rows);
        if (id is not null) sum = id.mul(gate!).add(sum);
        return Dropout.Apply(norm.forward(sum), p, training);
    }

    /// <summary>normalize(gate·<paramref name="ids"/> + <paramref name="titles"/>) row by row over [V, d] tables
    /// (ids with gate, or neither; titles or null): the candidate vectors of all videos.</summary>
    internal virtual Tensor CandidateVectors(Tensor? ids, Tensor? gate, Tensor? titles)
    {
        var id = ids?.mul(gate!);
        var v = titles is null ? id! : id is null ? titles : id.add(titles);
        return F.normalize(v, dim: -1);
    }

    /// <summary>Mean cross-entropy of the scores u·vᵀ [B, V] against <paramref name="target"/> [B].</summary>
    internal virtual Tensor SoftmaxCrossEntropy(Tensor u, Tensor v, Tensor target) =>
        F.cross_entropy(u.matmul(v.t()), target);

    /// <summary>
    /// The id–text block loss of <see cref="IdTextLoss"/> after sampling. In each block of S slots (<paramref name="index"/>
    /// [blocks, S], rows of <paramref name="id"/>/<paramref name="text"/> [M, d]), slot i's id→text logits are
    /// x_i·y_(i+δ) for δ = 0..<paramref name="k1"/> and its text→id logits x_(i−δ)·y_i for δ = 0..<paramref name="k2"/>
    /// (mod S; δ = 0 is the positive), with x = normalize(id)/T and y = normalize(text). The loss is
    /// −Σ owner·(log p(id→text) + log p(text→id)) / (2·<paramref name="positions"/>).
    /// </summary>
    internal virtual Tensor IdTextBand(Tensor id, Tensor text, Tensor index, Tensor owner, int k1, int k2, long positions, double temperature)
    {
        var (blocks, s) = (index.shape[0], index.shape[1]);
        var x = F.normalize(id, dim: -1).div(temperature);
        var y = F.normalize(text, dim: -1);
        var xb = x.index_select(0, index.reshape(-1)).view(blocks, s, -1);
        var yb = y.index_select(0, index.reshape(-1)).view(blocks, s, -1);
        var logits = bmm(xb, yb.transpose(1, 2));
        var i = arange(s, device: id.device);
        var delta = i.unsqueeze(0).sub(i.unsqueeze(1)).remainder(s); // [i, j] = (j − i) mod S
        Tensor Band(long last) => delta.le(last).to(id.dtype).sub(1).mul(-Masks.Hidden);
        var idToText = logits.add(Band(k1)).log_softmax(2).diagonal(0, 1, 2);
        var textToId = logits.add(Band(k2)).log_softmax(1).diagonal(0, 1, 2);
        return idToText.add(textToId).mul(owner.to(id.dtype)).sum().div(-2.0 * positions);
    }

    /// <summary>The mean of a fixed table's rows over each bag's ids, [Entries, E]; pad 0 is excluded from sum and
    /// count, an empty bag gives 0 (each comment-history entry's comment texts, all of them).</summary>
    internal virtual Tensor RowMean(Tensor table, CommentBags bags) => bags.Mean(table);
}
