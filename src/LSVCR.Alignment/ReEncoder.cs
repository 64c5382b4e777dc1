using LSVCR.Data;
using static TorchSharp.torch;

namespace LSVCR.Alignment;

/// <summary>
/// After stage 1: every title and comment through the aligned LLM + <c>llm_emb_mlp</c> into the E-wide tables stage 2
/// reads (row = internal id, row 0 = pad = zeros). Identical texts are encoded once; texts are batched by token count.
/// </summary>
public static class ReEncoder
{
    public static (FloatMatrix Photos, FloatMatrix Comments) Encode(Catalog catalog, ItemEncoder items, Func<string, int> tokenCount,
        int textDim, int batchSize, IProgress<JobProgress>? progress, CancellationToken ct)
    {
        var distinct = catalog.PhotoTitles.Skip(1).Concat(catalog.CommentTexts.Skip(1)).Distinct().ToArray();
        var lengths = distinct.Select(tokenCount).ToArray();
        var order = Enumerable.Range(0, distinct.Length).OrderBy(i => lengths[i]).ThenBy(i => i).ToArray();
        var vectors = new Dictionary<string, float[]>(distinct.Length);
        using (no_grad())
        {
            for (int start = 0; start < order.Length; start += batchSize)
            {
                ct.ThrowIfCancellationRequested();
                using var scope = NewDisposeScope();
                var texts = order.Skip(start).Take(batchSize).Select(i => distinct[i]).ToArray();
                var rows = items.Encode(texts).cpu().contiguous();
                var data = rows.data<float>().ToArray();
                for (int i = 0; i < texts.Length; i++) vectors[texts[i]] = data.AsSpan(i * textDim, textDim).ToArray();
                progress?.Report(new("re-encode items", Math.Min(start + batchSize, order.Length), order.Length));
            }
        }
        FloatMatrix Table(string[] texts)
        {
            var m = new float[(long)texts.Length * textDim];
            for (int i = 1; i < texts.Length; i++) vectors[texts[i]].CopyTo(m.AsSpan(i * textDim, textDim));
            return new FloatMatrix(m, texts.Length, textDim);
        }
        return (Table(catalog.PhotoTitles), Table(catalog.CommentTexts));
    }
}
