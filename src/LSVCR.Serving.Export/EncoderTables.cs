using LSVCR.Data;
using LSVCR.Modeling;
using static TorchSharp.torch;

namespace LSVCR.Serving.Export;

/// <summary>
/// The per-item tables of one model in eval mode (MODEL.md §2.3): what the encoder graph gathers instead of running
/// llm_adapter and pc_merge per request, and the normalised candidate vectors.
/// </summary>
internal sealed record EncoderTables(Weight History, Weight EntryTitles, Weight Query, FloatMatrix VideoVectors, FloatMatrix CommentVectors, FloatMatrix CommentNorms)
{
    /// <summary>
    /// History = gate·id + pc_merge([adapt(title); adapt(first comment)]) (evaluation shows each history video with its
    /// most popular comment); EntryTitles = gate·id + title half of pc_merge + bias (the comment half is added in the
    /// graph from the entry's comments); Query = gate·id + adapt(title); candidates from the model's own
    /// VideoVectors / CommentVectors; CommentNorms = ‖adapt(comment)‖, so vector × norm = adapt(comment).
    /// </summary>
    public static EncoderTables Compute(RecCom model, Catalog catalog, FloatMatrix photoEmbs, FloatMatrix commentEmbs)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        model.eval();
        var c = model.Config;
        var d = c.Hidden;
        var sd = model.state_dict();
        var adapter = sd["llm_adapter.weight"];
        var merge = sd["pc_merge.weight"];
        var (titleHalf, commentHalf) = (merge.narrow(1, 0, d), merge.narrow(1, d, d));
        var titles = tensor(photoEmbs.Data, [photoEmbs.Rows, photoEmbs.Cols]).matmul(adapter.t());
        var comments = tensor(commentEmbs.Data, [commentEmbs.Rows, commentEmbs.Cols]).matmul(adapter.t());
        var first = new long[catalog.PhotoCount];
        for (int v = 1; v < catalog.PhotoCount; v++) { var list = catalog.CommentsOf(v); first[v] = list.Length == 0 ? 0 : list[0]; }
        var firstComment = comments.index_select(0, tensor(first));
        Tensor ids = c.UseIds ? sd["photo_embedding.weight"].mul(sd["gate"]) : zeros(catalog.PhotoCount, d);
        var titlePart = titles.matmul(titleHalf.t()).add(sd["pc_merge.bias"]);
        var entryTitles = ids.add(titlePart);
        var history = entryTitles.add(firstComment.matmul(commentHalf.t()));
        var query = ids.add(titles);
        var videoVectors = model.VideoVectors();
        var commentVectors = model.CommentVectors(arange(catalog.CommentCount, dtype: ScalarType.Int64));
        var norms = comments.norm(1, keepdim: true);
        return new EncoderTables(ToWeight(history), ToWeight(entryTitles), ToWeight(query), ToMatrix(videoVectors), ToMatrix(commentVectors), ToMatrix(norms));
    }

    private static Weight ToWeight(Tensor t) => new(t.contiguous().data<float>().ToArray(), t.shape);

    private static FloatMatrix ToMatrix(Tensor t) => new(t.contiguous().data<float>().ToArray(), (int)t.shape[0], (int)t.shape[1]);
}
