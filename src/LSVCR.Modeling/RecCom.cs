using LSVCR.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace LSVCR.Modeling;

/// <summary>
/// The SR model of MODEL.md §2 ("RecCom"), the part of LSVCR that is deployed. Item text embeddings are fixed inputs
/// held as buffers (not parameters, not in checkpoints): they come from the embeddings artifacts.
/// CONTRACT ONLY — the implementation is in progress; the signatures below are what training and serving build on.
/// </summary>
public sealed class RecCom : nn.Module
{
    /// <param name="photoText">[PhotoCount, TextDim] float32 title embeddings, row 0 = pad.</param>
    /// <param name="commentText">[CommentCount, TextDim] float32 comment embeddings, row 0 = pad.</param>
    public RecCom(RecComConfig config, Tensor photoText, Tensor commentText) : base("reccom")
    {
        Config = config;
        throw new NotImplementedException();
    }

    public RecComConfig Config { get; }

    /// <summary>
    /// User vectors for the task, normalised, [B, Hidden]: Rec = rec_att over the mixed video history; CommRank =
    /// comm_rank_att with the watched video (batch.Target) as query over the mixed comment history.
    /// With <paramref name="withIdTextLoss"/> (training, ids enabled) also returns the §4 id–text alignment loss
    /// (unweighted scalar), else null.
    /// </summary>
    public (Tensor User, Tensor? IdTextLoss) Encode(SrBatch batch, TaskKind task, bool withIdTextLoss = false)
        => throw new NotImplementedException();

    /// <summary>Normalised candidate vectors of videos: gate·id_emb + llm_adapter(title). ids = null → all videos [PhotoCount, Hidden].</summary>
    public Tensor VideoVectors(Tensor? ids = null) => throw new NotImplementedException();

    /// <summary>Normalised candidate vectors of comments: llm_adapter(text) (id-only variant: comment id embedding).</summary>
    public Tensor CommentVectors(Tensor ids) => throw new NotImplementedException();

    /// <summary>Cosine/T scores of normalised user vectors [B, d] against all videos → [B, PhotoCount]; column 0 (pad) = -1e6.</summary>
    public Tensor ScoreAllVideos(Tensor user) => throw new NotImplementedException();

    /// <summary>Cosine/T scores against per-example candidates [B, C] (video ids for Rec, comment ids for CommRank); pad candidates (0) = -1e6.</summary>
    public Tensor ScoreCandidates(Tensor user, Tensor candidates, TaskKind task) => throw new NotImplementedException();
}
