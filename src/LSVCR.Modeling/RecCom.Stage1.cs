using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace LSVCR.Modeling;

/// <summary>
/// One stage-1 batch (MODEL.md §3): the item text embeddings come from the LLM, per position and with gradients,
/// instead of the fixed tables; Rec and CommRank examples are mixed (<see cref="IsRec"/>).
/// </summary>
/// <param name="PhotoHistory">[B, Lp] video ids (only pad vs not: masks)</param>
/// <param name="PhotoTitle">[B, Lp, E] title embedding per video-history position</param>
/// <param name="PhotoComment">[B, Lp, E] the popular comment shown with it (0 = none)</param>
/// <param name="CommentHistoryPhoto">[B, Lc] video ids of the comment-history entries</param>
/// <param name="CommentTitle">[B, Lc, E]</param>
/// <param name="CommentMean">[B, Lc, E] mean embedding of the comments the user interacted with there</param>
/// <param name="Watched">[B, E] title embedding of the watched video (CommRank query; unused in Rec rows)</param>
/// <param name="IsRec">[B] bool</param>
/// <param name="PhotoPositions">[Lp] int64 position ids (<see cref="RecCom.RandomPositions"/>)</param>
/// <param name="CommentPositions">[Lc] int64 position ids</param>
public sealed record Stage1Batch(Tensor PhotoHistory, Tensor PhotoTitle, Tensor PhotoComment, Tensor CommentHistoryPhoto,
    Tensor CommentTitle, Tensor CommentMean, Tensor Watched, Tensor IsRec, Tensor PhotoPositions, Tensor CommentPositions);

/// <summary>Normalised user vectors [B, d]: the task's own (<see cref="Primary"/>) and the same head on the other history.</summary>
public sealed record Stage1Users(Tensor Primary, Tensor Other);

// Stage-1 form of the SR model: no ids (RecComConfig.UseIds = false), random sorted position ids, text vectors from
// the caller, and the "other" behaviour's vector for the behaviour contrast. Written with the plain modules (no
// fused input kernel): stage 1 is dominated by the LLM, not by this model.
public sealed partial class RecCom
{
    /// <summary>A random sorted subset of [0, maxPosition) of size <paramref name="length"/> (stage 1, MODEL.md §2.3 step 2).</summary>
    public static Tensor RandomPositions(int length, int maxPosition, Generator? generator = null)
    {
        if (length > maxPosition) throw new ArgumentException($"History length {length} exceeds MaxPosition={maxPosition}.");
        using var scope = NewDisposeScope();
        var (sorted, _) = randperm(maxPosition, generator: generator).narrow(0, 0, length).sort();
        return sorted.MoveToOuterDisposeScope();
    }

    /// <summary>llm_adapter (E → d, no bias) on any [.., E] text embeddings.</summary>
    public Tensor AdaptText(Tensor text) => llm_adapter!.forward(text);

    /// <summary>Steps 1 and 3–7 of MODEL.md §2.3 in the stage-1 form, for a mixed batch.</summary>
    public Stage1Users EncodeStage1(Stage1Batch b)
    {
        if (Config.UseIds || !Config.UseText)
            throw new InvalidOperationException("EncodeStage1 needs the stage-1 form: RecComConfig.UseIds = false, UseText = true.");
        using var scope = NewDisposeScope();
        var device = b.PhotoTitle.device;
        var pIds = b.PhotoHistory.to(device);
        var cIds = b.CommentHistoryPhoto.to(device);
        var xp = pc_merge!.forward(cat([AdaptText(b.PhotoTitle), AdaptText(b.PhotoComment)], -1));
        var xc = pc_merge.forward(cat([AdaptText(b.CommentTitle), AdaptText(b.CommentMean)], -1));
        var inP = Dropout.Apply(photo_layernorm.forward(xp.add(pposition_embedding.forward(b.PhotoPositions.to(device)).unsqueeze(0))), Config.HiddenDropout, training);
        var inC = Dropout.Apply(comment_layernorm.forward(xc.add(cposition_embedding.forward(b.CommentPositions.to(device)).unsqueeze(0))), Config.HiddenDropout, training);

        var (bidirP, bidirC) = (Masks.Bidirectional(pIds), Masks.Bidirectional(cIds));
        var hp = phis_encoder.forward(inP, inP, Masks.Causal(pIds));
        var hc = chis_encoder.forward(inC, inC, Masks.Causal(cIds));
        var hpFinal = Project(p_linear, hp, phis_mix_layer.forward(hp, hc, bidirC));
        var hcFinal = Project(c_linear, hc, chis_mix_layer.forward(hc, hp, bidirP));

        // Both heads on both histories (d = 64: cheap), then each row keeps its task's pair.
        var flatP = bidirP.view(bidirP.shape[0], -1);
        var flatC = bidirC.view(bidirC.shape[0], -1);
        var recPrimary = rec_att.forward(hpFinal, flatP);
        var recOther = rec_att.forward(hcFinal, flatC);
        var q = AdaptText(b.Watched).unsqueeze(1);
        var comPrimary = comm_rank_att.forward(q, hcFinal, bidirC).squeeze(1);
        var comOther = comm_rank_att.forward(q, hpFinal, bidirP).squeeze(1);
        var isRec = b.IsRec.to(device).unsqueeze(1);
        var primary = F.normalize(where(isRec, recPrimary, comPrimary), dim: -1);
        var other = F.normalize(where(isRec, recOther, comOther), dim: -1);
        return new Stage1Users(primary.MoveToOuterDisposeScope(), other.MoveToOuterDisposeScope());
    }
}
