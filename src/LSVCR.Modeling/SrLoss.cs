using LSVCR.Data;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace LSVCR.Modeling;

/// <summary>Stage-2 training losses (MODEL.md §4).</summary>
public static class SrLoss
{
    /// <summary>
    /// Rec, <paramref name="candidates"/> null: full softmax cross-entropy over all videos (pad masked), label = batch.Target.
    /// Rec, candidates [B, 1+k] (target first): sampled softmax, label 0.
    /// CommRank: candidates [B, 1+n] comment ids, positive first, label 0 (required).
    /// Total = task + <paramref name="idTextWeight"/>·idText; the id–text term is computed only when the weight is
    /// positive, the model is in training mode and uses ids and text (else IdText is null).
    /// </summary>
    public static (Tensor Total, Tensor Task, Tensor? IdText) Compute(RecCom model, SrBatch batch, TaskKind task,
        Tensor? candidates, double idTextWeight)
    {
        if (task == TaskKind.CommRank && candidates is null)
            throw new ArgumentException("CommRank loss needs candidates [B, 1+n] with the positive comment first.", nameof(candidates));
        using var scope = NewDisposeScope();
        var withIdText = idTextWeight > 0 && model.training && model.Config.UseIds && model.Config.UseText;
        // One llm_adapter pass over the title table serves history titles, the CommRank query and all-video scoring.
        var titles = model.Config.UseText && (task == TaskKind.Rec && candidates is null) ? model.AdaptedTitles() : null;
        var (user, idText) = model.Encode(batch, task, withIdText, titles);
        Tensor taskLoss;
        if (candidates is null)
        {
            taskLoss = model.FullSoftmaxLoss(user, batch.Target, titles);
        }
        else
        {
            var scores = model.ScoreCandidates(user, candidates, task, titles);
            taskLoss = F.cross_entropy(scores, zeros(scores.shape[0], dtype: ScalarType.Int64));
        }
        var total = idText is null ? taskLoss.alias() : taskLoss.add(idText.mul(idTextWeight));
        return (total.MoveToOuterDisposeScope(), taskLoss.MoveToOuterDisposeScope(), idText?.MoveToOuterDisposeScope());
    }
}
