using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace LSVCR.Alignment;

/// <summary>The loss terms of one stage-1 batch (scalars); <see cref="Lm"/> is null for encoder backbones.</summary>
public sealed record AlignmentLossTerms(Tensor? Lm, Tensor Rec, Tensor Bhv, Tensor Nce, Tensor Contrast, Tensor Total);

/// <summary>
/// The stage-1 losses of MODEL.md §3. Vectors are normalised inside (idempotent for the already-normalised user
/// vectors), so each term is a cosine/T softmax; <c>T</c> is the SR model's temperature (0.07).
/// </summary>
public static class AlignmentLosses
{
    public const double RecWeight = 1.0;
    public const double ContrastWeight = 0.5;

    /// <summary>
    /// Next-token cross-entropy on the response tokens only: position t's logits predict token t+1, counted where
    /// <paramref name="responseMask"/>[t+1] is 1. <paramref name="logits"/> [B, T, V], <paramref name="ids"/> and
    /// <paramref name="responseMask"/> [B, T].
    /// </summary>
    public static Tensor Lm(Tensor logits, Tensor ids, Tensor responseMask)
    {
        using var scope = NewDisposeScope();
        var t = logits.shape[1];
        var predict = logits.narrow(1, 0, t - 1);
        var targets = ids.narrow(1, 1, t - 1);
        var keep = responseMask.narrow(1, 1, t - 1).ne(0);
        var rows = keep.reshape(-1).nonzero().view(-1);
        if (rows.numel() == 0) throw new ArgumentException("no response tokens: the lm loss needs at least one");
        var flat = predict.reshape(-1, predict.shape[2]).index_select(0, rows).to(ScalarType.Float32);
        return F.cross_entropy(flat, targets.reshape(-1).index_select(0, rows)).MoveToOuterDisposeScope();
    }

    /// <summary>In-batch InfoNCE: logits normalize(x)·normalize(y)ᵀ/T [B, B], labels the diagonal.</summary>
    public static Tensor Nce(Tensor x, Tensor y, double temperature)
    {
        using var scope = NewDisposeScope();
        var logits = F.normalize(x, dim: -1).matmul(F.normalize(y, dim: -1).t()).div(temperature);
        return F.cross_entropy(logits, arange(x.shape[0], device: x.device)).MoveToOuterDisposeScope();
    }

    /// <summary>Behaviour contrast: per example softmax over [⟨u_llm, u_primary⟩, ⟨u_llm, u_other⟩]/T with label 0.</summary>
    public static Tensor Bhv(Tensor llm, Tensor primary, Tensor other, double temperature)
    {
        using var scope = NewDisposeScope();
        var l = F.normalize(llm, dim: -1);
        var logits = stack([l.mul(F.normalize(primary, dim: -1)).sum(-1), l.mul(F.normalize(other, dim: -1)).sum(-1)], 1).div(temperature);
        return F.cross_entropy(logits, zeros(llm.shape[0], dtype: ScalarType.Int64, device: llm.device)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// All terms: contrast = bhv + nce(u_primary, u_llm)/2 + nce(u_llm, u_primary)/2; rec = nce(u_primary, target);
    /// total = lm + 1.0·rec + 0.5·contrast (lm omitted when null).
    /// </summary>
    /// <param name="target">the target item's SR vector, normalize(llm_adapter(target text embedding)) [B, d]</param>
    public static AlignmentLossTerms Combine(Tensor? lm, Tensor llm, Tensor primary, Tensor other, Tensor target, double temperature)
    {
        var bhv = Bhv(llm, primary, other, temperature);
        var nce = Nce(primary, llm, temperature).add(Nce(llm, primary, temperature)).div(2);
        var contrast = bhv.add(nce);
        var rec = Nce(primary, target, temperature);
        var total = rec.mul(RecWeight).add(contrast.mul(ContrastWeight));
        if (lm is not null) total = total.add(lm);
        return new AlignmentLossTerms(lm, rec, bhv, nce, contrast, total);
    }
}
